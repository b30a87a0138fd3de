#pragma once

// Report download (DESIGN §5, issue 13 part 3): one HTTP(S) GET of a report's source into a
// file under the data dir, with limits and SSRF protection. The libcurl adapter; the job that
// calls it (attempts, backoff, events) lives elsewhere.
//
// - http and https only, also after redirects (at most `max_redirects`);
// - connect and total timeouts; a size limit checked while streaming (the transfer is aborted
//   at the first byte past it, whatever Content-Length said);
// - only the listed content types (parameters such as charset ignored);
// - unless `allow_private`, no connection to a loopback, private, link-local (the cloud metadata
//   address 169.254.169.254 among them), CGNAT or otherwise non-public address: checked on the
//   address of every connection libcurl opens, after DNS and after each redirect, so neither a
//   DNS answer that changes (rebinding) nor a redirect gets past it;
// - the body goes to "<destination>.part", is fsynced and renamed: `destination` only ever
//   exists complete.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <cauce/core/config.hpp>

struct sockaddr;

namespace cauce::workers {

struct DownloadLimits {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds total_timeout{60000};
  int max_redirects = 5;
  std::int64_t max_bytes = 50 * 1024 * 1024;
  std::vector<std::string> content_types = {"text/csv", "application/json"};
  bool allow_private = false;  // download.allow_private: for local use and tests

  // The download.* settings (CAUCE_DOWNLOAD_ALLOW_PRIVATE etc.).
  static DownloadLimits from(const core::DownloadConfig& config);
};

struct Downloaded {
  std::int64_t bytes = 0;
  std::string sha256;        // lower-case hex of the body
  std::string content_type;  // as allowed, without parameters
};

// Why a download did not happen, and whether trying again later may help: retryable for
// network failures, timeouts, 5xx, 408 and 429; permanent for other 4xx, a refused address, a
// wrong content type, a body over the limit, an unsupported URL or too many redirects.
class DownloadError : public std::runtime_error {
 public:
  DownloadError(const std::string& message, bool retryable)
      : std::runtime_error(message), retryable_(retryable) {}
  bool retryable() const noexcept { return retryable_; }

 private:
  bool retryable_;
};

struct SourceCredential;

// Throws DownloadError; a failed download leaves neither `destination` nor its ".part". With a
// `credential` (source_auth.hpp) the request carries it as its Authorization header (Bearer or
// Basic), to the URL's host only: libcurl does not send it on to another host a redirect names.
Downloaded download(const std::string& url, const std::filesystem::path& destination,
                    const DownloadLimits& limits, const SourceCredential* credential = nullptr);

// Whether a download may not connect to `address` (IPv4 or IPv6, IPv4-mapped included) unless
// allow_private: anything but a public unicast address.
bool is_non_public_address(const sockaddr& address);

}  // namespace cauce::workers
