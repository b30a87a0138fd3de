#pragma once

namespace cauce::api {

// The `cauce` command line: serve, topics create, migrate, keys, config --print, version.
// Exit codes: 0 success, 1 failure at run time, 2 bad usage or configuration.
int run_cli(int argc, char** argv);

}  // namespace cauce::api
