#include <charconv>
#include <cstring>

#include <arpa/inet.h>

#include <cauce/core/cidr.hpp>

namespace cauce::core {

namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_mapped(const std::array<std::uint8_t, 16>& bytes) {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin());
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton wants a terminated string; no address is longer than this.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buffer[INET6_ADDRSTRLEN] = {};
  std::memcpy(buffer, text.data(), text.size());
  IpAddress out;
  if (text.find(':') == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, buffer, &v4) != 1) return std::nullopt;
    std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), out.bytes.begin());
    std::memcpy(out.bytes.data() + 12, &v4, 4);
    out.v4 = true;
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, buffer, &v6) != 1) return std::nullopt;
  std::memcpy(out.bytes.data(), &v6, 16);
  out.v4 = is_mapped(out.bytes);
  return out;
}

std::string IpAddress::text() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (v4) {
    inet_ntop(AF_INET, bytes.data() + 12, buffer, sizeof buffer);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buffer, sizeof buffer);
  }
  return buffer;
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error) {
  const auto refuse = [&](std::string reason) -> std::optional<Cidr> {
    if (error != nullptr) *error = std::move(reason);
    return std::nullopt;
  };
  const auto slash = text.find('/');
  const auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return refuse("\"" + std::string(text) + "\" is not an IP address or CIDR");
  // An address written in IPv6 notation is a range of the 128-bit space, even ::ffff:a.b.c.d.
  const bool written_v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  Cidr out{*address, written_v4 ? 32 : 128};
  out.network.v4 = written_v4;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    int prefix = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() ||
        (digits.size() > 1 && digits.front() == '0') || prefix < 0 || prefix > out.prefix) {
      return refuse("\"" + std::string(text) + "\" has no valid prefix length (0 to " +
                    std::to_string(out.prefix) + ")");
    }
    out.prefix = prefix;
  }
  // The bits of the 16-byte form that the prefix covers.
  const int bits = out.prefix + (written_v4 ? 96 : 0);
  for (int bit = bits; bit < 128; ++bit) {
    if ((out.network.bytes[bit / 8] >> (7 - bit % 8)) & 1) {
      return refuse("\"" + std::string(text) + "\" has bits set past its prefix length (the " +
                    "network is written with them zero, e.g. 10.0.0.0/8)");
    }
  }
  return out;
}

bool Cidr::contains(const IpAddress& address) const {
  // An IPv4 range holds IPv4 addresses only; an IPv6 one is compared in the 128-bit space, where
  // an IPv4 address is ::ffff:a.b.c.d (so ::ffff:0:0/96 and ::/0 hold every IPv4 address).
  if (network.v4 && !address.v4) return false;
  const int bits = prefix + (network.v4 ? 96 : 0);
  for (int i = 0; i < bits / 8; ++i) {
    if (address.bytes[i] != network.bytes[i]) return false;
  }
  if (bits % 8 == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits % 8));
  return (address.bytes[bits / 8] & mask) == (network.bytes[bits / 8] & mask);
}

std::string Cidr::text() const { return network.text() + "/" + std::to_string(prefix); }

}  // namespace cauce::core
