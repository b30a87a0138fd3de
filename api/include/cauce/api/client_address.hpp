#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/beast/http/fields.hpp>

#include <cauce/core/cidr.hpp>

namespace cauce::api {

// Who sent a request, as far as cauce may believe it, and over which scheme it arrived.
struct ClientOrigin {
  std::string address;  // "203.0.113.7", "2001:db8::7"; "" when the request came off no socket
  bool https = false;
  friend bool operator==(const ClientOrigin&, const ClientOrigin&) = default;
};

// http.trusted_proxies: the reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are
// believed. A request's client is its TCP peer, unless the peer is one of them: then it is the
// right-most X-Forwarded-For address that is not itself a trusted proxy (the left-most when
// every one is), so a client cannot pose as another by sending the header itself (its own
// value stays to the left of what the proxy appends). A header that does not parse (any entry
// not an IP address) is not believed: the peer is the client. The scheme is X-Forwarded-Proto's
// right-most value (the nearest proxy's) when it is http or https, else the connection's own.
class TrustedProxies {
 public:
  TrustedProxies() = default;
  // Canonical CIDRs (core::HttpConfig::trusted_proxies); throws core::ConfigError naming
  // http.trusted_proxies for one that does not parse.
  explicit TrustedProxies(const std::vector<std::string>& cidrs);

  bool empty() const { return ranges_.empty(); }
  bool contains(const core::IpAddress& address) const;

  // The client of a request from `peer` (nullopt: unknown, e.g. the socket is gone) over a
  // connection that is TLS or not.
  ClientOrigin resolve(const std::optional<core::IpAddress>& peer, bool tls,
                       const boost::beast::http::fields& headers) const;

 private:
  std::vector<core::Cidr> ranges_;
};

}  // namespace cauce::api
