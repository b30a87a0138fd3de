// A process that crashes on purpose, as the argument says, with cauce's fatal-signal handlers
// installed (core/fatal_signals.hpp); run by fatal_signal_test.cpp, which reads its stderr.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include <cauce/core/fatal_signals.hpp>

namespace {

volatile int* volatile g_nowhere = nullptr;
volatile bool g_stop = false;  // never set: keeps GCC from proving the recursion endless

[[gnu::noinline]] void write_through_a_null_pointer() { *g_nowhere = 1; }

[[gnu::noinline]] void abort_on_a_broken_invariant() { std::abort(); }

[[gnu::noinline]] int recurse_without_end(int depth) {
  volatile char frame[512] = {};
  frame[0] = static_cast<char>(depth);
  if (g_stop) return frame[0];
  return recurse_without_end(depth + 1) + frame[0];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fatal_signal_child segv|abort|two-threads|stack-overflow\n";
    return 2;
  }
  if (!cauce::core::install_fatal_signal_handlers()) {
    std::cerr << "fatal-signal handlers not installed\n";
    return 3;
  }
  const std::string_view what = argv[1];
  if (what == "segv") write_through_a_null_pointer();
  if (what == "abort") abort_on_a_broken_invariant();
  if (what == "two-threads") {
    // Both fault at about the same time: one reports, the other waits for the end.
    std::atomic<int> ready{0};
    const auto crash = [&ready] {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      write_through_a_null_pointer();
    };
    std::thread first(crash);
    std::thread second(crash);
    first.join();
    second.join();
  }
  if (what == "stack-overflow") {
    // On a thread of its own with its alternate stack, as the HTTP I/O threads run.
    std::thread([] {
      const cauce::core::FatalSignalStack fatal_signal_stack;
      recurse_without_end(0);
    }).join();
  }
  return 4;  // not reached
}
