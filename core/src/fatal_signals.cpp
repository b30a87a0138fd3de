#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <boost/stacktrace/frame.hpp>
#include <boost/stacktrace/safe_dump_to.hpp>
#include <unistd.h>

#include <cauce/core/fatal_signals.hpp>
#include <cauce/core/log.hpp>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAUCE_SANITIZED 1  // the sanitizers' own handlers report crashes (with their stacks)
#else
#define CAUCE_SANITIZED 0
#endif

namespace cauce::core {
namespace {

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
// Symbolising (libbacktrace reading the DWARF of the binary) needs far more than SIGSTKSZ.
constexpr std::size_t kAltStackBytes = 256 * 1024;
constexpr std::size_t kMaxFrames = 64;
// Symbolising that has not finished by then (a lock the crashing thread held) is given up.
constexpr unsigned kWatchdogSeconds = 10;

// The signal being reported; 0 until the first fatal signal.
std::atomic<int> g_reporting{0};

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    default:
      return "unknown";
  }
}

// The log line, built in static memory (the alternate stack is small and the heap may be what
// broke). Appends past the end are dropped; the line stays one JSON object.
class CrashLine {
 public:
  void raw(std::string_view s) {
    for (char c : s) put(c);
  }
  // `s` inside a JSON string: quotes, backslashes and control characters escaped.
  void escaped(std::string_view s) {
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        put('\\');
        put(c);
      } else if (u < 0x20) {
        raw("\\u00");
        put(kHex[u >> 4]);
        put(kHex[u & 0xf]);
      } else {
        put(c);
      }
    }
  }
  void hex(std::uintptr_t v) {
    char digits[2 * sizeof v];
    std::size_t n = 0;
    do {
      digits[n++] = kHex[v & 0xf];
      v >>= 4;
    } while (v != 0);
    raw("0x");
    while (n > 0) put(digits[--n]);
  }
  void number(std::size_t v) {
    char digits[20];
    std::size_t n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) put(digits[--n]);
  }
  // Closes the line (the object's tail always fits: it is reserved) and writes it with write(2).
  void finish_and_write() {
    size_ = std::min(size_, kCapacity);
    for (char c : std::string_view("]}\n")) data_[size_++] = c;
    std::size_t done = 0;
    while (done < size_) {
      const auto n = ::write(STDERR_FILENO, data_ + done, size_ - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr std::size_t kCapacity = 32 * 1024;
  void put(char c) {
    if (size_ < kCapacity) data_[size_++] = c;
  }
  char data_[kCapacity + 3];
  std::size_t size_ = 0;
};

CrashLine g_line;

// Dies of `sig` with its default action. It is blocked while its handler runs, so the raised
// one stays pending until unblocked here, and then kills.
[[noreturn]] void die_of(int sig) {
  ::signal(sig, SIG_DFL);
  ::raise(sig);
  sigset_t pending;
  sigemptyset(&pending);
  sigaddset(&pending, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &pending, nullptr);
  ::signal(SIGABRT, SIG_DFL);
  ::abort();  // not reached unless the raise was lost
}

void on_watchdog(int) { die_of(g_reporting.load()); }

void on_fatal_signal(int sig, siginfo_t* info, void*) {
  int none = 0;
  if (!g_reporting.compare_exchange_strong(none, sig)) {
    // Another thread is reporting; it ends the process.
    for (;;) ::pause();
  }
  struct sigaction watchdog {};
  watchdog.sa_handler = on_watchdog;
  ::sigaction(SIGALRM, &watchdog, nullptr);
  ::alarm(kWatchdogSeconds);

  // The async-signal-safe part: the addresses, without this handler's frame and the kernel's
  // signal trampoline (__restore_rt) under it. frames[0] is where the signal struck; the others
  // are return addresses, which point after their call: symbolised one byte earlier, or a call
  // to a function that never returns (abort) would be named after the function that follows.
  void* frames[kMaxFrames + 1] = {};
  const std::size_t count = boost::stacktrace::safe_dump_to(2, frames, sizeof frames);

  // The rest allocates (names, files) and may take locks: see core/README.md "Fatal signals".
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  g_line.raw(R"({"ts":")");
  g_line.raw(format_utc_micros(now.count()));
  g_line.raw(R"(","level":"error","component":"crash","msg":"fatal signal","signal":")");
  g_line.raw(signal_name(sig));
  g_line.raw("\"");
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL) {
    g_line.raw(R"(,"address":")");
    g_line.hex(reinterpret_cast<std::uintptr_t>(info->si_addr));
    g_line.raw("\"");
  }
  g_line.raw(R"(,"stacktrace":[)");
  for (std::size_t i = 0; i < count && frames[i] != nullptr; ++i) {
    const auto* address = static_cast<const char*>(frames[i]);
    const boost::stacktrace::frame frame(i == 0 ? address : address - 1);
    const std::string name = frame.name();
    const std::string file = frame.source_file();
    if (i > 0) g_line.raw(",");
    g_line.raw("\"#");
    g_line.number(i);
    g_line.raw(" ");
    g_line.hex(reinterpret_cast<std::uintptr_t>(frames[i]));
    if (!name.empty()) {
      g_line.raw(" in ");
      g_line.escaped(name);
    }
    if (!file.empty()) {
      g_line.raw(" at ");
      g_line.escaped(file);
      g_line.raw(":");
      g_line.number(frame.source_line());
    }
    g_line.raw("\"");
  }
  g_line.finish_and_write();
  die_of(sig);
}

}  // namespace

FatalSignalStack::FatalSignalStack() {
  if (CAUCE_SANITIZED) return;
  memory_ = std::make_unique_for_overwrite<char[]>(kAltStackBytes);
  stack_t stack{};
  stack.ss_sp = memory_.get();
  stack.ss_size = kAltStackBytes;
  installed_ = ::sigaltstack(&stack, nullptr) == 0;
}

FatalSignalStack::~FatalSignalStack() {
  if (!installed_) return;
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  ::sigaltstack(&off, nullptr);
}

bool install_fatal_signal_handlers() {
  if (CAUCE_SANITIZED) return false;
  static const FatalSignalStack main_thread_stack;
  struct sigaction action {};
  action.sa_sigaction = on_fatal_signal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  // A fatal signal inside the handler (symbolising failed) is then blocked: the kernel kills.
  sigemptyset(&action.sa_mask);
  for (const int sig : kFatalSignals) sigaddset(&action.sa_mask, sig);
  bool all = true;
  for (const int sig : kFatalSignals) all = ::sigaction(sig, &action, nullptr) == 0 && all;
  return all;
}

}  // namespace cauce::core
