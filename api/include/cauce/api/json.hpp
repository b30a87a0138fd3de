#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/api/http.hpp>

namespace cauce::api {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Parses the body of a JSON request into an object with core::parse_json (depth-bounded,
// storable strings, no duplicate keys). Throws ApiError: 415 when the content type is not JSON,
// 400 naming the field (or "body" with the byte offset) otherwise.
rapidjson::Document parse_json_object(const Request& request);

// The same for a message that is not a request body (a WebSocket message): `what` names it.
rapidjson::Document parse_json_message(std::string_view text, std::string_view what);

// Rejects members other than `allowed` with a 400 naming the first unknown field.
void reject_unknown_fields(const rapidjson::Value& object,
                           std::initializer_list<std::string_view> allowed);

// A required string member of at most max_length characters (400 naming it otherwise).
std::string required_string(const rapidjson::Value& object, const char* field,
                            std::size_t max_length);

inline void write_string(JsonWriter& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

}  // namespace cauce::api
