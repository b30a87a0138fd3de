#include <atomic>
#include <set>
#include <stdexcept>

#include <rapidjson/error/en.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>

#include <cauce/commands/schemas.hpp>
#include <cauce/core/json.hpp>

namespace cauce::commands {
namespace {

std::string describe_keyword(std::string_view keyword) {
  if (keyword == "type") return "has the wrong type";
  if (keyword == "maxLength") return "is too long";
  if (keyword == "minLength") return "is too short";
  if (keyword == "pattern") return "has the wrong format";
  if (keyword == "enum") return "is not one of the allowed values";
  if (keyword == "maximum" || keyword == "minimum") return "is out of range";
  if (keyword == "maxItems") return "has too many items";
  if (keyword == "uniqueItems") return "has duplicate items";
  return "violates " + std::string(keyword);
}

// "/tags/3" -> "tags[3]"; "" -> "body".
std::string field_of(const std::string& pointer) {
  if (pointer.empty()) return "body";
  std::string out;
  std::size_t start = 1;
  bool first = true;
  while (start <= pointer.size()) {
    const auto end = pointer.find('/', start);
    const auto token =
        pointer.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const bool index = !token.empty() && token.find_first_not_of("0123456789") == std::string::npos;
    out += index ? "[" + token + "]" : (first ? "" : ".") + token;
    first = false;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

struct SchemaRegistry::Entry {
  rapidjson::Document source;  // read-only once loaded: shared by every thread
  std::size_t index = 0;       // its slot in each thread's compiled schemas
  std::set<std::string, std::less<>> properties;
  std::vector<std::string> required;
};

SchemaRegistry::SchemaRegistry() {
  static std::atomic<std::uint64_t> next_id{0};
  id_ = next_id++;
  for (const auto& file : embedded_schema_files()) {
    auto entry = std::make_unique<Entry>();
    entry->index = entries_.size();
    entry->source.Parse(file.text.c_str(), file.text.size());
    if (entry->source.HasParseError() || !entry->source.IsObject()) {
      throw std::invalid_argument("schemas/" + file.file_name + " is not valid JSON");
    }
    rapidjson::SchemaDocument compiles(entry->source);  // fail here, not on first use
    if (const auto it = entry->source.FindMember("properties"); it != entry->source.MemberEnd()) {
      for (const auto& p : it->value.GetObject()) entry->properties.emplace(p.name.GetString());
    }
    if (const auto it = entry->source.FindMember("required"); it != entry->source.MemberEnd()) {
      for (const auto& r : it->value.GetArray()) entry->required.emplace_back(r.GetString());
    }
    auto name = file.file_name.substr(0, file.file_name.size() - 5);  // drop ".json"
    entries_.emplace(std::move(name), std::move(entry));
  }
}

SchemaRegistry::~SchemaRegistry() = default;

const SchemaRegistry& SchemaRegistry::instance() {
  static const SchemaRegistry registry;
  return registry;
}

bool SchemaRegistry::contains(std::string_view name) const {
  return entries_.find(name) != entries_.end();
}

std::vector<std::string> SchemaRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

std::optional<SchemaViolation> SchemaRegistry::validate(std::string_view name,
                                                        const rapidjson::Value& document) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) throw std::invalid_argument("no schema " + std::string(name));
  const auto& entry = *it->second;
  if (!document.IsObject()) return SchemaViolation{"body", "must be a JSON object"};
  // Named checks first: RapidJSON reports these at the object, not at the member.
  for (const auto& member : document.GetObject()) {
    const std::string_view member_name(member.name.GetString(), member.name.GetStringLength());
    if (!entry.properties.contains(member_name)) {
      return SchemaViolation{std::string(member_name), "unknown field"};
    }
  }
  for (const auto& required : entry.required) {
    if (!document.HasMember(required.c_str())) return SchemaViolation{required, "is required"};
  }
  // RapidJSON 1.1's regex (the `pattern` keyword) keeps its search state inside the schema
  // document, so one document validated from two threads at once is a data race that crashes
  // or answers wrongly. Each thread compiles its own copy of a schema, once, on first use.
  thread_local std::map<std::uint64_t, std::vector<std::unique_ptr<rapidjson::SchemaDocument>>>
      compiled;
  auto& mine = compiled[id_];
  if (mine.empty()) mine.resize(entries_.size());
  auto& schema = mine[entry.index];
  if (!schema) schema = std::make_unique<rapidjson::SchemaDocument>(entry.source);
  rapidjson::SchemaValidator validator(*schema);
  if (document.Accept(validator)) return std::nullopt;
  rapidjson::StringBuffer pointer;
  validator.GetInvalidDocumentPointer().StringifyUriFragment(pointer);
  std::string fragment(pointer.GetString(), pointer.GetSize());
  if (!fragment.empty() && fragment[0] == '#') fragment.erase(0, 1);
  const std::string_view keyword = validator.GetInvalidSchemaKeyword();
  std::string message = describe_keyword(keyword);
  // A pattern (or a minimum of members) says what it wants in words too: the schema's
  // "x-message" ("must be a phone number with its country code, ...") instead of "has the wrong
  // format".
  if (keyword == "pattern" || keyword == "minProperties") {
    const auto* node = validator.GetInvalidSchemaPointer().Get(entry.source);
    // Only from the node that holds the keyword that failed (never a parent's message).
    if (node != nullptr && node->IsObject() &&
        node->HasMember(rapidjson::StringRef(keyword.data(), keyword.size()))) {
      const auto said = node->FindMember("x-message");
      if (said != node->MemberEnd() && said->value.IsString()) message = said->value.GetString();
    }
  }
  return SchemaViolation{field_of(fragment), std::move(message)};
}

std::optional<SchemaViolation> SchemaRegistry::validate_json(std::string_view name,
                                                             std::string_view json) const {
  rapidjson::Document doc;
  if (auto error = core::parse_json(json, doc, {.max_depth = kMaxEventDepth})) {
    return SchemaViolation{std::move(error->field), std::move(error->message)};
  }
  return validate(name, doc);
}

}  // namespace cauce::commands
