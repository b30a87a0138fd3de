#include "query_params.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include <cauce/api/problem.hpp>
#include <cauce/commands/envelope.hpp>

namespace cauce::api {
namespace {

constexpr std::size_t kMaxIdempotencyKey = 200;

constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding (and '+' as space, as HTML forms send it); nullopt when malformed.
std::optional<std::string> url_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Well-formed UTF-8 without control characters: what PostgreSQL and the JSON answers can take.
bool printable_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) return false;
    // Sequence length and the range of the second byte (no overlong forms, no surrogates,
    // nothing above U+10FFFF), as RFC 3629 table 3.
    std::size_t length = 1;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (c < 0x80) {
      length = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) low = 0xA0;
      if (c == 0xED) high = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) low = 0x90;
      if (c == 0xF4) high = 0x8F;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if (k == 1 ? (b < low || b > high) : (b & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const auto pos = kBase64Url.find(c);
    if (pos == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

}  // namespace

std::optional<std::int64_t> parse_decimal(std::string_view text, std::int64_t max) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > max) return std::nullopt;
  return value;
}

std::map<std::string, std::string> query_params(std::string_view target,
                                                const std::set<std::string>& allowed) {
  std::map<std::string, std::string> out;
  const auto q = target.find('?');
  if (q == std::string_view::npos) return out;
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const auto pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const auto raw_name = pair.substr(0, eq);
    const auto name = url_decode(raw_name);
    if (!name || !printable_utf8(*name)) {
      throw invalid_field("query", "a parameter name is not valid percent-encoded UTF-8");
    }
    if (!allowed.contains(*name)) {
      std::string known;
      for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + a;
      throw invalid_field(*name, "is not a parameter of this route (known: " +
                                     (known.empty() ? std::string("none") : known) + ")");
    }
    const auto value =
        url_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!value) throw invalid_field(*name, "has a malformed percent-escape");
    if (!printable_utf8(*value)) {
      throw invalid_field(*name, "must be UTF-8 text without control characters");
    }
    if (!out.emplace(*name, *value).second) throw invalid_field(*name, "is given twice");
  }
  return out;
}

int page_limit(const std::map<std::string, std::string>& params, int default_limit) {
  const auto it = params.find("limit");
  if (it == params.end()) return default_limit;
  const auto v = parse_decimal(it->second, 1'000'000);
  if (!v || *v < 1 || *v > 500) throw invalid_field("limit", "must be an integer from 1 to 500");
  return static_cast<int>(*v);
}

std::string encode_cursor(std::string_view list, std::string_view key) {
  const std::string text = std::string(list) + ":" + std::string(key);
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const unsigned char c : text) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kBase64Url[(buffer >> bits) & 0x3F];
    }
  }
  if (bits > 0) out += kBase64Url[(buffer << (6 - bits)) & 0x3F];
  return out;
}

std::string decode_cursor(std::string_view cursor, std::string_view list,
                          bool (*valid)(const std::string&)) {
  const auto text = base64url_decode(cursor);
  const auto prefix = std::string(list) + ":";
  if (!text || !text->starts_with(prefix) || !valid(text->substr(prefix.size()))) {
    throw invalid_field("cursor", "is not a cursor of this list (use next_cursor as returned)");
  }
  return text->substr(prefix.size());
}

std::optional<LogPosition> min_position(const Request& request) {
  const auto it = request.message.find("Cauce-Min-Position");
  if (it == request.message.end()) return std::nullopt;
  // "<partition>:<offset>": 1 to 6 digits, then 1 to 17 (api/openapi.yaml's pattern).
  const auto token = it->value();
  const auto colon = token.find(':');
  std::optional<std::int64_t> partition;
  std::optional<std::int64_t> offset;
  if (colon != std::string_view::npos && colon <= 6 && token.size() - colon - 1 <= 17) {
    partition = parse_decimal(token.substr(0, colon), 999'999);
    offset = parse_decimal(token.substr(colon + 1), 99'999'999'999'999'999);
  }
  if (!partition || !offset) {
    throw invalid_field("Cauce-Min-Position",
                        "must be a position token as a command returned it in Cauce-Position");
  }
  return LogPosition{static_cast<std::int32_t>(*partition), *offset};
}

std::int64_t event_id(std::string_view text, const std::string& field) {
  const auto id = parse_decimal(text, INT64_MAX / 10);
  if (!id) throw invalid_field(field, "must be a notification id");
  return *id;
}

// If-Match: "7" (or W/"7", or 7). "*" asks for no particular version.
std::optional<std::int64_t> expected_version(const Request& request) {
  const auto it = request.message.find(http::field::if_match);
  if (it == request.message.end()) return std::nullopt;
  std::string_view value = it->value();
  if (value == "*") return std::nullopt;
  if (value.starts_with("W/")) value.remove_prefix(2);
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  const auto version =
      value.size() <= 18 ? parse_decimal(value, 999'999'999'999'999'999) : std::nullopt;
  if (!version) {
    throw invalid_field("If-Match", "must be a version as returned in ETag, e.g. \"3\"");
  }
  return *version;
}

std::string path_uuid(const Request& request, std::string_view name) {
  std::string id(request.path_param(name));
  std::transform(id.begin(), id.end(), id.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (!commands::is_uuid(id)) throw invalid_field(std::string(name), "must be a UUID");
  return id;
}

std::optional<std::string> idempotency_key(const Request& request) {
  const auto it = request.message.find("Idempotency-Key");
  if (it == request.message.end()) return std::nullopt;
  const std::string key(it->value());
  if (key.empty() || key.size() > kMaxIdempotencyKey) {
    throw invalid_field("Idempotency-Key", "must be 1 to 200 characters");
  }
  return key;
}

}  // namespace cauce::api
