#pragma once

// Reading a query's inputs: the query string, opaque page cursors, position tokens. Every
// failure is an ApiError 400 naming the parameter or header.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <cauce/api/http.hpp>

namespace cauce::api {

// The decoded parameters of `target`'s query string. Unknown names (not in `allowed`),
// repeated names and malformed percent-escapes are 400s naming the parameter.
std::map<std::string, std::string> query_params(std::string_view target,
                                                const std::set<std::string>& allowed);

// A non-negative decimal integer of at most 18 digits and at most `max`; nullopt otherwise.
std::optional<std::int64_t> parse_decimal(std::string_view text, std::int64_t max);

// `limit`: absent -> default_limit; else an integer 1..500.
int page_limit(const std::map<std::string, std::string>& params, int default_limit = 50);

// Opaque cursors: base64url of "<list>:<key>". decode_cursor checks the list and the key's shape
// (`valid`) and names `cursor` when either is wrong.
std::string encode_cursor(std::string_view list, std::string_view key);
std::string decode_cursor(std::string_view cursor, std::string_view list,
                          bool (*valid)(const std::string&));

struct LogPosition {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
};
// The Cauce-Min-Position header ("<partition>:<offset>" as commands return it), if present.
std::optional<LogPosition> min_position(const Request& request);

// A notification id (Last-Event-ID, last_event_id): a decimal as parse_decimal takes it; else a
// 400 naming `field`.
std::int64_t event_id(std::string_view text, const std::string& field);

// If-Match: "7" (or W/"7", or 7). "*" (or no header) asks for no particular version.
std::optional<std::int64_t> expected_version(const Request& request);

// A UUID path parameter in its canonical form: any case is taken (RFC 9562 reads UUIDs
// case-insensitively) and lower case returned, as ids are stored and answered; else a 400.
std::string path_uuid(const Request& request, std::string_view name = "id");

// Idempotency-Key, if present: 1 to 200 characters.
std::optional<std::string> idempotency_key(const Request& request);

}  // namespace cauce::api
