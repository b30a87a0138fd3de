// The cauce executable: everything it does lives in the libraries; see api/src/cli.cpp.
#include <cauce/api/cli.hpp>
#include <cauce/core/fatal_signals.hpp>

int main(int argc, char** argv) {
  cauce::core::install_fatal_signal_handlers();  // a crash logs its stack trace, then dies
  return cauce::api::run_cli(argc, argv);
}
