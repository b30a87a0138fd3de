#pragma once

// Writing the small JSON objects of the workers (command data, dead letters, export lines).

#include <cstdint>
#include <string>
#include <string_view>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cauce::workers {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

inline void put(JsonWriter& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}
inline void put(JsonWriter& w, const char* key, std::int64_t value) {
  w.Key(key);
  w.Int64(value);
}

// {…} as text; `fill` writes the members.
template <typename Fill>
std::string json_object(Fill&& fill) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  fill(w);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace cauce::workers
