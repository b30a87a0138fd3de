#include <algorithm>
#include <cmath>
#include <vector>

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <cauce/core/json.hpp>

namespace cauce::core {
namespace {

// Forwards SAX events to the document being built and stops the reader when objects and
// arrays nest deeper than the limit (the iterative reader keeps its own stack on the heap, so
// the depth is the only thing left to bound).
class DepthLimit {
 public:
  DepthLimit(rapidjson::Document& doc, const JsonLimits& limits)
      : doc_(doc), max_(limits.max_depth), integers_(limits.whole_numbers_are_integers) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(std::int64_t i) { return doc_.Int64(i); }
  bool Uint64(std::uint64_t u) { return doc_.Uint64(u); }
  // JsonLimits::whole_numbers_are_integers.
  bool Double(double d) {
    constexpr double kExact = 9007199254740992.0;  // 2^53: every integer up to it is exact
    if (integers_ && d == std::trunc(d) && d >= -kExact && d <= kExact) {
      return doc_.Int64(static_cast<std::int64_t>(d));
    }
    return doc_.Double(d);
  }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return doc_.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc_.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc_.Key(s, n, copy); }
  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType members) {
    --depth_;
    return doc_.EndObject(members);
  }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) {
    --depth_;
    return doc_.EndArray(elements);
  }

  bool too_deep() const { return too_deep_; }

 private:
  bool enter() {
    if (++depth_ > max_) too_deep_ = true;
    return !too_deep_;
  }

  rapidjson::Document& doc_;
  std::size_t max_;
  bool integers_;
  std::size_t depth_ = 0;
  bool too_deep_ = false;
};

std::string member_path(const std::string& parent, std::string_view name) {
  return parent.empty() ? std::string(name) : parent + "." + std::string(name);
}

std::string index_path(const std::string& parent, std::size_t index) {
  return (parent.empty() ? std::string("body") : parent) + "[" + std::to_string(index) + "]";
}

std::string_view view(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

// What no downstream can hold, below `value` (depth already bounded, so recursion is too).
std::optional<JsonError> unstorable(const rapidjson::Value& value, const std::string& path) {
  if (value.IsString()) {
    if (auto problem = storable_text_problem(view(value))) {
      return JsonError{path.empty() ? "body" : path, *problem};
    }
  } else if (value.IsArray()) {
    std::size_t i = 0;
    for (const auto& item : value.GetArray()) {
      if (auto e = unstorable(item, index_path(path, i++))) return e;
    }
  } else if (value.IsObject()) {
    const auto object = value.GetObject();
    std::vector<std::string_view> names;
    names.reserve(object.MemberCount());
    for (const auto& m : object) {
      const auto name = view(m.name);
      if (auto problem = storable_text_problem(name)) {
        return JsonError{path.empty() ? "body" : path, "has a member name that " + *problem};
      }
      names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    if (const auto twice = std::adjacent_find(names.begin(), names.end()); twice != names.end()) {
      return JsonError{member_path(path, *twice), "appears more than once in the same object"};
    }
    for (const auto& m : object) {
      if (auto e = unstorable(m.value, member_path(path, view(m.name)))) return e;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> storable_text_problem(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* const end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c == 0) return "contains U+0000, which cannot be stored";
    if (c < 0x80) {
      ++p;
      continue;
    }
    // Lead byte: how many continuation bytes, and the smallest code point that needs them.
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return "is not valid UTF-8";
    }
    if (static_cast<std::size_t>(end - p) <= extra) return "is not valid UTF-8";
    for (std::size_t i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) return "is not valid UTF-8";
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF) return "is not valid UTF-8";
    if (cp >= 0xD800 && cp <= 0xDFFF) return "contains a lone UTF-16 surrogate";
    p += extra + 1;
  }
  return std::nullopt;
}

std::optional<JsonError> parse_json(std::string_view text, rapidjson::Document& doc,
                                    const JsonLimits& limits) {
  constexpr unsigned kFlags =
      rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;
  rapidjson::MemoryStream bytes(text.data(), text.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(bytes);
  rapidjson::ParseResult result;
  bool too_deep = false;
  auto generate = [&](rapidjson::Document& target) {
    DepthLimit handler(target, limits);
    rapidjson::Reader reader;
    result = reader.Parse<kFlags>(in, handler);
    too_deep = handler.too_deep();
    return !result.IsError();
  };
  doc.Populate(generate);
  if (too_deep) {
    return JsonError{"body", "nests objects and arrays deeper than " +
                                 std::to_string(limits.max_depth) + " levels (at byte " +
                                 std::to_string(result.Offset()) + ")"};
  }
  if (result.IsError()) {
    return JsonError{"body", std::string("is not valid JSON: ") +
                                 rapidjson::GetParseError_En(result.Code()) + " (at byte " +
                                 std::to_string(result.Offset()) + ")"};
  }
  return unstorable(doc, "");
}

std::size_t utf8_length(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // not a continuation byte
  }));
}

}  // namespace cauce::core
