#pragma once

// The JSON Schemas of schemas/ (compiled in): every command body, every event's data and the
// envelope. The API validates command bodies against them; tests validate every event.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

namespace rapidjson {
template <typename ValueT, typename Allocator>
class GenericSchemaDocument;
}

namespace cauce::commands {

struct SchemaFile {
  std::string file_name;  // "contact.registered.v1.json"
  std::string text;
};

// Generated from schemas/*.json by cmake/EmbedFiles.cmake.
std::vector<SchemaFile> embedded_schema_files();

// How deep an envelope with its data, or a command body read back from the log, may nest (a
// request body may nest core::JsonLimits{}.max_depth levels; the envelope adds one).
inline constexpr std::size_t kMaxEventDepth = 34;

// Why a document does not fit: the offending field ("name", "tags", "body") and what is wrong.
struct SchemaViolation {
  std::string field;
  std::string message;
};

class SchemaRegistry {
 public:
  // Loads the embedded schemas; throws std::invalid_argument for a malformed one.
  SchemaRegistry();
  ~SchemaRegistry();
  SchemaRegistry(const SchemaRegistry&) = delete;
  SchemaRegistry& operator=(const SchemaRegistry&) = delete;

  // The one registry of the process (schemas never change at run time). Every member function
  // is safe to call from any number of threads at once.
  static const SchemaRegistry& instance();

  bool contains(std::string_view name) const;  // name without ".json": "alert.raise.v1"

  // nullopt when `document` fits schemas/<name>.json. Unknown and missing members are named.
  std::optional<SchemaViolation> validate(std::string_view name,
                                          const rapidjson::Value& document) const;
  // Parses `json` with core::parse_json (the storable-input rule, kMaxEventDepth) first.
  std::optional<SchemaViolation> validate_json(std::string_view name, std::string_view json) const;

  std::vector<std::string> names() const;

 private:
  struct Entry;
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;
  std::uint64_t id_ = 0;  // tells apart the registries' per-thread compiled schemas
};

}  // namespace cauce::commands
