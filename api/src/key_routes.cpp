#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/core/json.hpp>
#include <cauce/projections/notification_hub.hpp>

namespace cauce::api {
namespace {

// null (everything) or the names, sorted.
void write_names(JsonWriter& w, const char* key,
                 const std::optional<std::set<std::string>>& names) {
  w.Key(key);
  if (!names) {
    w.Null();
    return;
  }
  w.StartArray();
  for (const auto& n : *names) w.String(n.c_str(), static_cast<rapidjson::SizeType>(n.size()));
  w.EndArray();
}

void write_key(JsonWriter& w, const ApiKeyRecord& r) {
  write_string(w, "id", r.id);
  write_string(w, "name", r.name);
  write_string(w, "actor", r.actor);
  write_string(w, "role", role_name(r.role));
  write_names(w, "topics", r.scope.topics);
  write_names(w, "regions", r.scope.regions);
  write_string(w, "created_at", r.created_at);
  w.Key("revoked_at");
  if (r.revoked_at) {
    w.String(r.revoked_at->c_str());
  } else {
    w.Null();
  }
}

constexpr std::size_t kMaxRegions = 100;

// An optional member holding a non-empty array of distinct names; null or absent: nullopt
// (no limit). `check` throws for a name that is not allowed.
template <typename Check>
std::optional<std::set<std::string>> name_list(const rapidjson::Value& body, const char* field,
                                               std::size_t max_items, Check&& check) {
  const auto it = body.FindMember(field);
  if (it == body.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsArray() || it->value.Empty() || it->value.Size() > max_items) {
    throw invalid_field(field,
                        "must be null or an array of 1 to " + std::to_string(max_items) + " names");
  }
  std::set<std::string> names;
  for (const auto& v : it->value.GetArray()) {
    if (!v.IsString()) throw invalid_field(field, "must hold strings");
    std::string name(v.GetString(), v.GetStringLength());
    check(name);
    if (!names.insert(std::move(name)).second) throw invalid_field(field, "names a value twice");
  }
  return names;
}

std::string to_string(const rapidjson::StringBuffer& buffer) {
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace

void add_key_routes(Router& router, ApiKeys& keys) {
  router.add(http::verb::get, "/v1/keys", Role::kAdmin, [&keys](Request& request) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    w.Key("items");
    w.StartArray();
    for (const auto& record : keys.list()) {
      w.StartObject();
      write_key(w, record);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return json_response(request, http::status::ok, to_string(buffer));
  });

  router.add(http::verb::post, "/v1/keys", Role::kAdmin, [&keys](Request& request) {
    const auto body = parse_json_object(request);
    reject_unknown_fields(body, {"name", "role", "actor", "topics", "regions"});
    const auto name = required_string(body, "name", 100);
    const auto role_text = required_string(body, "role", 20);
    const auto role = parse_role(role_text);
    if (!role) throw invalid_field("role", "must be reader, operator or admin");
    std::string actor;
    if (body.HasMember("actor")) {
      actor = required_string(body, "actor", 100);
      if (!valid_actor(actor)) {
        throw invalid_field("actor", "must not be blank nor hold control characters");
      }
    }
    KeyScope scope;
    const auto& topics = projections::subscribable_topics();
    scope.topics = name_list(body, "topics", topics.size(), [&topics](const std::string& t) {
      if (!topics.contains(t)) {
        throw invalid_field("topics",
                            "\"" + t + "\" is not a topic (" + projections::topic_list() + ")");
      }
    });
    scope.regions = name_list(body, "regions", kMaxRegions, [](const std::string& r) {
      if (!valid_region(r)) {
        throw invalid_field("regions",
                            "must hold region names of 1 to 100 characters, not blank, without "
                            "commas or control characters");
      }
    });
    const auto issued = keys.create(name, *role, actor, std::move(scope));
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_key(w, issued.record);
    write_string(w, "key", issued.token);  // shown this once; only its hash is stored
    w.EndObject();
    auto response = json_response(request, http::status::created, to_string(buffer));
    response.set(http::field::location, "/v1/keys/" + issued.record.id);
    return response;
  });

  router.add(http::verb::delete_, "/v1/keys/{id}", Role::kAdmin, [&keys](Request& request) {
    const std::string id(request.path_param("id"));
    if (!keys.revoke(id)) {
      throw ApiError(http::status::not_found, "not-found", "no active API key with id " + id);
    }
    Response response(http::status::no_content, request.message.version());
    response.prepare_payload();
    return response;
  });
}

}  // namespace cauce::api
