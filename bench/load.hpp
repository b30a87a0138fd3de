#pragma once

// An HTTP load generator for the benchmarks: `connections` keep-alive connections for
// `duration`. Closed loop by default (each connection sends its next request as soon as the
// previous answer arrived; latency from write to complete response). With a target rate the
// connections pace their requests to that total rate, and latency counts from the moment a
// request was due (a late answer delays the next request but is not hidden: no coordinated
// omission).

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <boost/beast/http.hpp>

namespace cauce::bench {

namespace http = boost::beast::http;

struct LoadRequest {
  http::verb method = http::verb::get;
  std::string target;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct LoadResult {
  double seconds = 0;
  std::size_t ok = 0;      // 2xx, or a 304 (a conditional GET answered)
  std::size_t failed = 0;  // anything else, or a broken connection
  std::size_t busy = 0;    // of those, 503s (backpressure: Retry-After)
  // The share of the machine's CPU time left idle meanwhile (/proc/stat; -1 where unknown):
  // near 0, the figure is the machine's limit, not the server's alone.
  double machine_idle = -1;
  std::vector<double> latencies_ms;

  double per_second() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0; }
  double percentile(double p) const;  // of latencies_ms, p in [0, 100]
};

// `next` builds the request for a connection; it runs on the load thread only.
LoadResult run_load(std::uint16_t port, int connections, std::chrono::milliseconds duration,
                    const std::function<LoadRequest(std::mt19937_64&)>& next,
                    double rate_per_second = 0);

double median(std::vector<double> values);

// The end of every benchmark's main(): runs it; an exception becomes "<name>: <what>" on stderr
// and exit code 1.
template <typename Run>
int run_reporting_errors(const char* name, Run&& run) {
  try {
    return run();
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace cauce::bench
