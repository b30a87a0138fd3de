#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>

namespace cauce::api {
namespace {

void write_key(JsonWriter& w, const ApiKeyRecord& r) {
  write_string(w, "id", r.id);
  write_string(w, "name", r.name);
  write_string(w, "role", role_name(r.role));
  write_string(w, "created_at", r.created_at);
  w.Key("revoked_at");
  if (r.revoked_at) {
    w.String(r.revoked_at->c_str());
  } else {
    w.Null();
  }
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
    reject_unknown_fields(body, {"name", "role"});
    const auto name = required_string(body, "name", 100);
    const auto role_text = required_string(body, "role", 20);
    const auto role = parse_role(role_text);
    if (!role) throw invalid_field("role", "must be reader, operator or admin");
    const auto issued = keys.create(name, *role);
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
