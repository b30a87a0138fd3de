#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cauce::core {

// An IP address as 16 bytes: IPv4 as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so that a
// peer seen on a dual-stack socket matches the IPv4 ranges written for it.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool v4 = false;  // written as IPv4 (or IPv4-mapped): printed as a.b.c.d

  // "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1" (taken as 10.0.0.1); nullopt for anything
  // else (no brackets, ports, zone ids or surrounding space).
  static std::optional<IpAddress> parse(std::string_view text);
  std::string text() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// An address range: "10.0.0.0/8", "2001:db8::/32"; a bare address is one host (/32, /128).
struct Cidr {
  IpAddress network;
  int prefix = 0;  // of the address as written (0..32 for IPv4, 0..128 for IPv6)

  // Strict: a valid address, a decimal prefix within the family's bits without sign or leading
  // zeros, and no bits set past the prefix ("10.0.0.1/8" is refused: 10.0.0.0/8 is meant, or a
  // typo). Returns the reason in `error` when it refuses.
  static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);
  bool contains(const IpAddress& address) const;
  std::string text() const;  // canonical: "10.0.0.0/8", "2001:db8::/32"
};

}  // namespace cauce::core
