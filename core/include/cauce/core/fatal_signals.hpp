#pragma once

#include <memory>

namespace cauce::core {

// On SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT, writes one JSON log line to stderr before the
// process dies: {"ts","level":"error","component":"crash","msg":"fatal signal","signal":"SIGSEGV",
// "stacktrace":["#0 0x... in function at file:line", ...]} (symbolised by Boost.Stacktrace's
// libbacktrace backend), then dies of that same signal with its default action (core dump,
// exit status 128 + n). The first fatal signal is reported; another one meanwhile just dies.
// Symbolising in a signal handler is not async-signal-safe: core/README.md "Fatal signals" says
// why it is done anyway and what bounds the risk. Under ASan or TSan (which report crashes
// themselves) it installs nothing and returns false.
//
// Call once, early in main, before any thread starts; it gives the calling thread an alternate
// signal stack (a FatalSignalStack that lives as long as the process).
bool install_fatal_signal_handlers();

// An alternate signal stack for the thread that constructs it, so that the thread's stack
// overflowing (deep recursion) is reported too: the handler cannot run on the stack that
// overflowed. Threads do not inherit one; a thread that runs untrusted input through recursive
// code (the HTTP I/O threads) keeps one for its lifetime. Without one, every fatal signal but a
// stack overflow is still reported.
class FatalSignalStack {
 public:
  FatalSignalStack();
  ~FatalSignalStack();
  FatalSignalStack(const FatalSignalStack&) = delete;
  FatalSignalStack& operator=(const FatalSignalStack&) = delete;

 private:
  std::unique_ptr<char[]> memory_;  // NOLINT(*-avoid-c-arrays): raw stack memory for sigaltstack
  bool installed_ = false;
};

}  // namespace cauce::core
