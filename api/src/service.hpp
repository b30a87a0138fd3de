#pragma once

#include <cauce/core/config.hpp>

namespace cauce::api {

// `cauce serve`: migrates, ensures the admin key, starts the roles and the HTTP server, and
// runs until SIGINT/SIGTERM, then drains and stops. Returns the process exit code.
int run_serve(const core::Config& config);

}  // namespace cauce::api
