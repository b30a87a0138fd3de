#include <algorithm>
#include <cctype>
#include <optional>

#include <cauce/api/client_address.hpp>
#include <cauce/core/errors.hpp>

namespace cauce::api {
namespace {

namespace http = boost::beast::http;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Every comma-separated entry of every field named `name`, in order (repeated fields count as
// one list, RFC 9110 5.3).
std::vector<std::string_view> list_of(const http::fields& headers, std::string_view name) {
  std::vector<std::string_view> out;
  for (auto [it, end] = headers.equal_range(name); it != end; ++it) {
    std::string_view value = it->value();
    for (;;) {
      const auto comma = value.find(',');
      out.push_back(trim(value.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return out;
}

}  // namespace

TrustedProxies::TrustedProxies(const std::vector<std::string>& cidrs) {
  for (const auto& text : cidrs) {
    std::string error;
    const auto cidr = core::Cidr::parse(text, &error);
    if (!cidr) throw core::ConfigError("http.trusted_proxies", error);
    ranges_.push_back(*cidr);
  }
}

bool TrustedProxies::contains(const core::IpAddress& address) const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [&](const core::Cidr& range) { return range.contains(address); });
}

ClientOrigin TrustedProxies::resolve(const std::optional<core::IpAddress>& peer, bool tls,
                                     const http::fields& headers) const {
  ClientOrigin origin{peer ? peer->text() : std::string(), tls};
  if (!peer || !contains(*peer)) return origin;

  const auto forwarded = list_of(headers, "X-Forwarded-For");
  if (!forwarded.empty()) {
    std::vector<core::IpAddress> chain;
    chain.reserve(forwarded.size());
    for (const auto entry : forwarded) {
      auto address = core::IpAddress::parse(entry);
      if (!address) {
        chain.clear();  // malformed: believed not at all
        break;
      }
      chain.push_back(*address);
    }
    if (!chain.empty()) {
      const auto client = std::find_if(chain.rbegin(), chain.rend(),
                                       [this](const auto& a) { return !contains(a); });
      origin.address = (client != chain.rend() ? *client : chain.front()).text();
    }
  }

  const auto proto = list_of(headers, "X-Forwarded-Proto");
  if (!proto.empty()) {
    std::string scheme(proto.back());
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (scheme == "https") origin.https = true;
    if (scheme == "http") origin.https = false;
  }
  return origin;
}

}  // namespace cauce::api
