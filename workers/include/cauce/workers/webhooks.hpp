#pragma once

// Webhook deliveries (issue 16 part 7, workers/README.md "Webhook deliveries"): the signature,
// the address policy at registration, and one delivery attempt (the libcurl adapter). The loop
// that feeds and retries deliveries lives in job_worker.cpp / webhook_runner.cpp.

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::workers {

// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>": the Cauce-Signature
// header of a delivery. The secret's bytes (its text as given at registration) are the key.
std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds,
                              std::string_view body);

// A fresh signing secret: "whsec_" and 64 hex characters (256 bits from the system's CSPRNG).
std::string new_webhook_secret();

// What registration makes of a webhook URL's host (the API asks before it registers one).
struct HostCheck {
  enum Kind {
    kAllowed,      // every address it resolves to may be reached
    kRefused,      // it resolves to a non-public address and allow_private is off: a 400
    kUnknown,      // the name does not exist: a 400
    kUnavailable,  // DNS did not answer now: a 503
  } kind = kAllowed;
  std::string detail;  // for the problem's message (never logged with a secret: there is none)
};
// Resolves the host of an http(s) URL (a name or an IP literal) and checks every address it
// gives against is_non_public_address (download.hpp) unless `allow_private`. Blocking (DNS).
HostCheck check_webhook_host(const std::string& url, bool allow_private);

// One delivery attempt's limits (webhooks.* settings).
struct DeliveryLimits {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds total_timeout{10000};
  bool allow_private = false;
  static DeliveryLimits from(const core::WebhooksConfig& config);
};

// What one attempt did. `delivered`: a 2xx. Otherwise `retryable` says whether trying again may
// help: network errors, timeouts, 5xx, 408 and 429 yes; other 4xx, a redirect (not followed), a
// refused address and a URL that is not http(s) no. `status` is the HTTP status (0: no answer).
struct DeliveryResult {
  bool delivered = false;
  bool retryable = false;
  long status = 0;
  std::string error;  // empty when delivered
};

// POSTs `body` (application/json) with `headers` to `url`: no redirects followed, no proxy from
// the environment, and unless limits.allow_private no connection to a non-public address
// (checked on the address each connection actually uses, as downloads are). The answer's body is
// read up to 64 KiB and dropped. Never throws for what the receiver or the network does.
DeliveryResult post_webhook(const std::string& url,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body, const DeliveryLimits& limits);

}  // namespace cauce::workers
