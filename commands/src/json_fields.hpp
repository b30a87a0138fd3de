#pragma once

// Small helpers for the events' JSON data (private to commands/).

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/schemas.hpp>
#include <cauce/core/json.hpp>

namespace cauce::commands::json {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

inline void key(Writer& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}
inline void field(Writer& w, std::string_view k, std::string_view v) {
  key(w, k);
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
inline void field(Writer& w, std::string_view k, std::int64_t v) {
  key(w, k);
  w.Int64(v);
}
inline void field(Writer& w, std::string_view k, const std::vector<std::string>& v) {
  key(w, k);
  w.StartArray();
  for (const auto& s : v) w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  w.EndArray();
}
template <typename T>
void optional_field(Writer& w, std::string_view k, const std::optional<T>& v) {
  if (v) field(w, k, *v);
}

template <typename Fn>
std::string object(Fn&& fill) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  fill(w);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

// Commands and events are read back from Kafka, where a foreign producer can write anything:
// parsed with the storable-input rule and a depth bound, never recursively.
inline rapidjson::Document parse(std::string_view text) {
  rapidjson::Document doc;
  if (const auto error = core::parse_json(text, doc, {.max_depth = kMaxEventDepth})) {
    throw std::invalid_argument("not a cauce record: " + error->field + " " + error->message);
  }
  if (!doc.IsObject()) throw std::invalid_argument("not a cauce record: not a JSON object");
  return doc;
}

inline std::optional<std::string> opt_string(const rapidjson::Value& o, const char* k) {
  const auto it = o.FindMember(k);
  if (it == o.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsString()) throw std::invalid_argument(std::string(k) + " must be a string");
  return std::string(it->value.GetString(), it->value.GetStringLength());
}
inline std::string string(const rapidjson::Value& o, const char* k) {
  auto v = opt_string(o, k);
  if (!v) throw std::invalid_argument(std::string(k) + " is required");
  return *v;
}
inline std::optional<std::int64_t> opt_int(const rapidjson::Value& o, const char* k) {
  const auto it = o.FindMember(k);
  if (it == o.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsInt64()) throw std::invalid_argument(std::string(k) + " must be an integer");
  return it->value.GetInt64();
}
inline std::int64_t integer(const rapidjson::Value& o, const char* k) {
  auto v = opt_int(o, k);
  if (!v) throw std::invalid_argument(std::string(k) + " is required");
  return *v;
}
inline bool boolean(const rapidjson::Value& o, const char* k) {
  const auto it = o.FindMember(k);
  if (it == o.MemberEnd() || !it->value.IsBool()) {
    throw std::invalid_argument(std::string(k) + " must be true or false");
  }
  return it->value.GetBool();
}
inline std::vector<std::int64_t> integers(const rapidjson::Value& o, const char* k) {
  const auto it = o.FindMember(k);
  if (it == o.MemberEnd() || !it->value.IsArray()) {
    throw std::invalid_argument(std::string(k) + " must be an array");
  }
  std::vector<std::int64_t> out;
  for (const auto& item : it->value.GetArray()) {
    if (!item.IsInt64()) throw std::invalid_argument(std::string(k) + " must hold integers");
    out.push_back(item.GetInt64());
  }
  return out;
}
inline std::optional<std::vector<std::string>> opt_strings(const rapidjson::Value& o,
                                                           const char* k) {
  const auto it = o.FindMember(k);
  if (it == o.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsArray()) throw std::invalid_argument(std::string(k) + " must be an array");
  std::vector<std::string> out;
  for (const auto& item : it->value.GetArray()) {
    if (!item.IsString()) throw std::invalid_argument(std::string(k) + " must hold strings");
    out.emplace_back(item.GetString(), item.GetStringLength());
  }
  return out;
}

}  // namespace cauce::commands::json
