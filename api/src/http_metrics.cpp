#include <cauce/api/http_metrics.hpp>

namespace cauce::api {

HttpMetrics::HttpMetrics(prometheus::Registry& registry)
    : requests_(prometheus::BuildCounter()
                    .Name("cauce_http_requests_total")
                    .Help("HTTP requests answered, by route pattern, method and status")
                    .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("cauce_http_request_duration_seconds")
                    .Help("Time from a request's last byte read to its response being ready")
                    .Register(registry)),
      handshake_failures_(prometheus::BuildCounter()
                              .Name("cauce_http_tls_handshake_failures_total")
                              .Help("HTTPS connections whose TLS handshake failed, by reason")
                              .Register(registry)) {}

void HttpMetrics::observe(const std::string& route, const std::string& method, unsigned status,
                          double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  requests_.Add({{"route", route}, {"method", method}, {"status", std::to_string(status)}})
      .Increment();
  duration_.Add({{"route", route}, {"method", method}}, kBuckets).Observe(seconds);
}

void HttpMetrics::tls_handshake_failed(const std::string& reason) {
  handshake_failures_.Add({{"reason", reason}}).Increment();
}

}  // namespace cauce::api
