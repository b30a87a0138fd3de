#pragma once

#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace cauce::api {

// cauce_http_requests_total{route,method,status} and
// cauce_http_request_duration_seconds{route,method}. `route` is the matched pattern (or
// "unmatched"), never the raw path, so label cardinality stays bounded.
class HttpMetrics {
 public:
  explicit HttpMetrics(prometheus::Registry& registry);

  void observe(const std::string& route, const std::string& method, unsigned status,
               double seconds);
  // cauce_http_tls_handshake_failures_total{reason}: timeout, closed, protocol_version,
  // plain_http, no_shared_cipher, certificate_refused, other.
  void tls_handshake_failed(const std::string& reason);

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Counter>& handshake_failures_;
};

}  // namespace cauce::api
