#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/download.hpp>
#include <cauce/workers/source_auth.hpp>

#include "part_file.hpp"

namespace cauce::workers {
namespace {

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};

// libcurl's global state, set up once (before any thread uses a handle).
void init_curl_once() {
  static const CURLcode kInit = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (kInit != CURLE_OK) throw DownloadError("libcurl does not start", true);
}

// What one transfer saw, shared with libcurl's callbacks.
struct Transfer {
  const DownloadLimits& limits;
  CURL* curl = nullptr;
  PartFile* file = nullptr;
  core::Sha256* digest = nullptr;
  std::int64_t bytes = 0;
  bool checked = false;  // status and content type looked at (first body bytes, or the end)
  bool keep = false;     // a 2xx: the body is the report; otherwise it is read and dropped
  bool write_failed = false;
  std::string content_type{};
  std::string refused{};  // set when the download is refused for good (address, type, size)
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// "text/csv; charset=utf-8" -> "text/csv".
std::string media_type(const char* header) {
  std::string type = header == nullptr ? "" : header;
  type = type.substr(0, type.find(';'));
  const auto first = type.find_first_not_of(" \t");
  const auto last = type.find_last_not_of(" \t");
  return first == std::string::npos ? "" : lower(type.substr(first, last - first + 1));
}

std::string allowed_types(const DownloadLimits& limits) {
  std::string out;
  for (const auto& t : limits.content_types) out += (out.empty() ? "" : ", ") + t;
  return out;
}

// Looks at the status and, for a 2xx, the content type; false when the type is refused.
bool check_response(Transfer& t) {
  t.checked = true;
  long code = 0;
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &code);
  t.keep = code >= 200 && code < 300;
  if (!t.keep) return true;
  const char* header = nullptr;
  curl_easy_getinfo(t.curl, CURLINFO_CONTENT_TYPE, &header);
  t.content_type = media_type(header);
  const auto& allowed = t.limits.content_types;
  if (std::find(allowed.begin(), allowed.end(), t.content_type) != allowed.end()) return true;
  t.refused = "the content type " + (t.content_type.empty() ? "(none)" : t.content_type) +
              " is not one of " + allowed_types(t.limits);
  return false;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const auto length = size * count;
  if (!t.checked && !check_response(t)) return 0;  // aborts the transfer
  if (!t.keep) return length;
  if (t.bytes + static_cast<std::int64_t>(length) > t.limits.max_bytes) {
    t.refused =
        "the body is over the size limit of " + std::to_string(t.limits.max_bytes) + " bytes";
    return 0;
  }
  if (!t.file->write(data, length)) {
    t.write_failed = true;
    return 0;
  }
  t.digest->update(std::string_view(data, length));
  t.bytes += static_cast<std::int64_t>(length);
  return length;
}

std::string address_text(const sockaddr& address) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  const void* raw =
      address.sa_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&address)->sin_addr);
  return ::inet_ntop(address.sa_family, raw, text.data(), text.size()) != nullptr
             ? std::string(text.data())
             : std::string("an unknown address");
}

// Every connection libcurl opens (first hop, each redirect, each address DNS gave) comes here.
curl_socket_t on_open_socket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto& t = *static_cast<Transfer*>(user);
  if (purpose == CURLSOCKTYPE_IPCXN && !t.limits.allow_private &&
      is_non_public_address(address->addr)) {
    t.refused = "refused to connect to " + address_text(address->addr) +
                ": not a public address (download.allow_private is off)";
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

bool in_v4(std::uint32_t a, std::uint32_t network, int bits) {
  const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
  return (a & mask) == network;
}

bool non_public_v4(std::uint32_t a) {
  constexpr auto ip = [](int b0, int b1, int b2, int b3) {
    return static_cast<std::uint32_t>(b0) << 24 | static_cast<std::uint32_t>(b1) << 16 |
           static_cast<std::uint32_t>(b2) << 8 | static_cast<std::uint32_t>(b3);
  };
  return in_v4(a, ip(0, 0, 0, 0), 8) ||        // "this network"
         in_v4(a, ip(10, 0, 0, 0), 8) ||       // private
         in_v4(a, ip(100, 64, 0, 0), 10) ||    // CGNAT
         in_v4(a, ip(127, 0, 0, 0), 8) ||      // loopback
         in_v4(a, ip(169, 254, 0, 0), 16) ||   // link-local, cloud metadata
         in_v4(a, ip(172, 16, 0, 0), 12) ||    // private
         in_v4(a, ip(192, 0, 0, 0), 24) ||     // IETF protocol assignments
         in_v4(a, ip(192, 0, 2, 0), 24) ||     // documentation
         in_v4(a, ip(192, 168, 0, 0), 16) ||   // private
         in_v4(a, ip(198, 18, 0, 0), 15) ||    // benchmarking
         in_v4(a, ip(198, 51, 100, 0), 24) ||  // documentation
         in_v4(a, ip(203, 0, 113, 0), 24) ||   // documentation
         in_v4(a, ip(224, 0, 0, 0), 4) ||      // multicast
         in_v4(a, ip(240, 0, 0, 0), 4);        // reserved, broadcast
}

}  // namespace

DownloadLimits DownloadLimits::from(const core::DownloadConfig& config) {
  DownloadLimits limits;
  limits.connect_timeout = std::chrono::milliseconds(config.connect_timeout_ms);
  limits.total_timeout = std::chrono::milliseconds(config.total_timeout_ms);
  limits.max_redirects = config.max_redirects;
  limits.max_bytes = config.max_bytes;
  limits.allow_private = config.allow_private;
  return limits;
}

bool is_non_public_address(const sockaddr& address) {
  if (address.sa_family == AF_INET) {
    return non_public_v4(ntohl(reinterpret_cast<const sockaddr_in*>(&address)->sin_addr.s_addr));
  }
  if (address.sa_family != AF_INET6) return true;
  const auto& b = reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr.s6_addr;
  const auto embedded_v4 = [&b] {
    return static_cast<std::uint32_t>(b[12]) << 24 | static_cast<std::uint32_t>(b[13]) << 16 |
           static_cast<std::uint32_t>(b[14]) << 8 | static_cast<std::uint32_t>(b[15]);
  };
  const bool first_80_zero = std::all_of(b, b + 10, [](std::uint8_t x) { return x == 0; });
  if (first_80_zero && b[10] == 0xff && b[11] == 0xff) return non_public_v4(embedded_v4());
  if (first_80_zero && b[10] == 0 && b[11] == 0) return true;  // ::, ::1, IPv4-compatible
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
      std::all_of(b + 4, b + 12, [](std::uint8_t x) { return x == 0; })) {
    return non_public_v4(embedded_v4());  // NAT64 64:ff9b::/96
  }
  return (b[0] & 0xfe) == 0xfc ||                                           // unique local fc00::/7
         (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||                         // link-local fe80::/10
         (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) ||                         // site-local fec0::/10
         b[0] == 0xff ||                                                    // multicast
         (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) ||  // documentation
         (b[0] == 0x01 && std::all_of(b + 1, b + 8, [](std::uint8_t x) { return x == 0; }));
}

Downloaded download(const std::string& url, const std::filesystem::path& destination,
                    const DownloadLimits& limits, const SourceCredential* credential) {
  const auto scheme = lower(url.substr(0, url.find("://")));
  if (url.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
    throw DownloadError("only http:// and https:// URLs can be downloaded", false);
  }
  init_curl_once();
  const std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) throw DownloadError("cannot start a transfer", true);
  core::Sha256 digest;
  PartFile file(destination);
  try {
    file.open_for_writing();
  } catch (const std::system_error& e) {
    throw DownloadError(e.what(), true);
  }
  Transfer t{.limits = limits, .curl = curl.get(), .file = &file, .digest = &digest};
  std::array<char, CURL_ERROR_SIZE> error{};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, static_cast<long>(limits.max_redirects));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(limits.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(limits.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");            // never a proxy from the environment
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // the size limit counts decoded bytes
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(limits.max_bytes));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "cauce-report-download");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error.data());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
  if (credential != nullptr) {
    // Sent at once (no 401 round trip first), never verbose-logged, never in an error text.
    if (credential->kind == SourceCredential::Kind::kBearer) {
      curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
      curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, credential->token.reveal().c_str());
    } else {
      curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(c, CURLOPT_USERNAME, credential->user.reveal().c_str());
      curl_easy_setopt(c, CURLOPT_PASSWORD, credential->password.reveal().c_str());
    }
  }

  const auto rc = curl_easy_perform(c);
  if (!t.refused.empty()) throw DownloadError(t.refused, false);
  if (t.write_failed) {
    throw DownloadError("cannot write the download: " + std::string(std::strerror(errno)), true);
  }
  const std::string detail = error[0] != '\0' ? error.data() : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_OK:
      break;
    case CURLE_FILESIZE_EXCEEDED:
      throw DownloadError(
          "the body is over the size limit of " + std::to_string(limits.max_bytes) + " bytes",
          false);
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      throw DownloadError(detail, false);
    default:  // timeouts, DNS, refused or reset connections, TLS: may work later
      throw DownloadError(detail, true);
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code >= 300) {
    const bool retryable = code >= 500 || code == 408 || code == 429;
    throw DownloadError("the source answered HTTP " + std::to_string(code), retryable);
  }
  if (!t.checked && !check_response(t)) throw DownloadError(t.refused, false);  // empty body
  Downloaded out;
  out.sha256 = digest.hex();
  out.bytes = t.bytes;
  out.content_type = t.content_type;
  try {
    file.publish();
  } catch (const std::system_error& e) {
    throw DownloadError(e.what(), true);
  }
  return out;
}

}  // namespace cauce::workers
