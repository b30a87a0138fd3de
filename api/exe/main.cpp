// The cauce executable: everything it does lives in the libraries; see api/src/cli.cpp.
#include <cauce/api/cli.hpp>

int main(int argc, char** argv) { return cauce::api::run_cli(argc, argv); }
