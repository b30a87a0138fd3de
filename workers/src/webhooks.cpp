#include <algorithm>
#include <array>
#include <memory>

#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/download.hpp>
#include <cauce/workers/webhooks.hpp>

namespace cauce::workers {
namespace {

constexpr std::size_t kMaxAnswerBytes = 64 * 1024;

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct HeaderListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
struct AddrInfoDeleter {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};

bool curl_ready() {
  static const CURLcode kInit = curl_global_init(CURL_GLOBAL_DEFAULT);
  return kInit == CURLE_OK;
}

struct Attempt {
  const DeliveryLimits& limits;
  std::size_t answer_bytes = 0;
  std::string refused{};
};

std::size_t on_answer(char*, std::size_t size, std::size_t count, void* user) {
  auto& a = *static_cast<Attempt*>(user);
  const auto length = size * count;
  a.answer_bytes += length;
  return a.answer_bytes > kMaxAnswerBytes ? 0 : length;  // past the cap: the transfer stops
}

curl_socket_t on_open_socket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto& a = *static_cast<Attempt*>(user);
  if (purpose == CURLSOCKTYPE_IPCXN && !a.limits.allow_private &&
      is_non_public_address(address->addr)) {
    a.refused = "refused to connect to a non-public address (webhooks.allow_private is off)";
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The host of "http(s)://host[:port][/...]": a name, or the inside of "[v6 literal]".
std::string host_of(const std::string& url) {
  const auto start = url.find("://");
  if (start == std::string::npos) return "";
  auto rest = url.substr(start + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (rest.starts_with("[")) {
    const auto end = rest.find(']');
    return end == std::string::npos ? "" : rest.substr(1, end - 1);
  }
  return rest.substr(0, rest.find(':'));
}

}  // namespace

std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds,
                              std::string_view body) {
  const auto t = std::to_string(unix_seconds);
  std::string signed_text;
  signed_text.reserve(t.size() + 1 + body.size());
  signed_text.append(t).append(".").append(body);
  return "t=" + t + ",v1=" + core::hmac_sha256_hex(secret, signed_text);
}

std::string new_webhook_secret() { return "whsec_" + core::random_hex(32); }

HostCheck check_webhook_host(const std::string& url, bool allow_private) {
  const auto scheme = lower(url.substr(0, url.find("://")));
  if (url.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
    return {HostCheck::kUnknown, "must be an http:// or https:// URL"};
  }
  const auto host = host_of(url);
  if (host.empty()) return {HostCheck::kUnknown, "has no host"};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  const std::unique_ptr<addrinfo, AddrInfoDeleter> owned(found);
  if (rc == EAI_AGAIN) {
    return {HostCheck::kUnavailable, "the name " + host + " could not be resolved now"};
  }
  if (rc != 0 || found == nullptr) {
    return {HostCheck::kUnknown, "its host " + host + " does not resolve"};
  }
  if (allow_private) return {};
  for (const auto* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_addr != nullptr && is_non_public_address(*a->ai_addr)) {
      return {HostCheck::kRefused,
              "its host " + host +
                  " resolves to a loopback, private or otherwise non-public address "
                  "(webhooks.allow_private is off)"};
    }
  }
  return {};
}

DeliveryLimits DeliveryLimits::from(const core::WebhooksConfig& config) {
  DeliveryLimits limits;
  limits.connect_timeout = std::chrono::milliseconds(config.connect_timeout_ms);
  limits.total_timeout = std::chrono::milliseconds(config.timeout_ms);
  limits.allow_private = config.allow_private;
  return limits;
}

DeliveryResult post_webhook(const std::string& url,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body, const DeliveryLimits& limits) {
  DeliveryResult out;
  const auto scheme = lower(url.substr(0, url.find("://")));
  if (url.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
    out.error = "only http:// and https:// URLs can be delivered to";
    return out;
  }
  if (!curl_ready()) {
    out.retryable = true;
    out.error = "libcurl does not start";
    return out;
  }
  const std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) {
    out.retryable = true;
    out.error = "cannot start a transfer";
    return out;
  }
  // curl_slist_append returns the list's head (the same one after the first item), or null
  // leaving the list as it was.
  std::unique_ptr<curl_slist, HeaderListDeleter> header_list;
  const auto append = [&header_list](const std::string& line) {
    curl_slist* head = curl_slist_append(header_list.get(), line.c_str());
    if (head == nullptr) return false;
    if (head != header_list.get()) header_list.reset(head);
    return true;
  };
  bool listed = append("Expect:");  // no 100-continue round trip
  for (const auto& [name, value] : headers) listed = listed && append(name + ": " + value);
  if (!listed) {
    out.retryable = true;
    out.error = "out of memory";
    return out;
  }
  Attempt a{.limits = limits};
  std::array<char, CURL_ERROR_SIZE> error{};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, header_list.get());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(limits.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(limits.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // never a proxy from the environment
  curl_easy_setopt(c, CURLOPT_USERAGENT, "cauce-webhooks");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error.data());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &a);

  const auto rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  out.status = code;
  if (!a.refused.empty()) {
    out.error = a.refused;
    return out;  // permanent
  }
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && code != 0)) {
    out.error = error[0] != '\0' ? std::string(error.data()) : curl_easy_strerror(rc);
    out.retryable = rc != CURLE_UNSUPPORTED_PROTOCOL && rc != CURLE_URL_MALFORMAT;
    return out;
  }
  if (code >= 200 && code < 300) {
    out.delivered = true;
    return out;
  }
  out.error = "the receiver answered HTTP " + std::to_string(code);
  if (code >= 300 && code < 400) out.error += " (redirects are not followed)";
  out.retryable = code >= 500 || code == 408 || code == 429;
  return out;
}

}  // namespace cauce::workers
