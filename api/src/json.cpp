#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/core/json.hpp>

namespace cauce::api {

rapidjson::Document parse_json_object(const Request& request) {
  const auto content_type = request.message[http::field::content_type];
  const auto media = content_type.substr(0, content_type.find(';'));
  if (media != "application/json" &&
      !(media.starts_with("application/") && media.ends_with("+json"))) {
    throw ApiError(http::status::unsupported_media_type, "unsupported-media-type",
                   "the body must be application/json");
  }
  const auto& body = request.message.body();
  return parse_json_message(body, "body");
}

rapidjson::Document parse_json_message(std::string_view text, std::string_view what) {
  rapidjson::Document doc;
  // 60.0 where an integer is expected is one, as the OpenAPI 3.1 contract reads it.
  if (auto error = core::parse_json(text, doc, {.whole_numbers_are_integers = true})) {
    // A field inside the message is named as such; the message as a whole by `what`.
    if (error->field != "body") throw invalid_field(std::move(error->field), error->message);
    throw ApiError(http::status::bad_request, "malformed-json",
                   "the " + std::string(what) + " " + error->message,
                   {{std::string(what), error->message}});
  }
  if (!doc.IsObject()) throw invalid_field(std::string(what), "must be a JSON object");
  return doc;
}

void reject_unknown_fields(const rapidjson::Value& object,
                           std::initializer_list<std::string_view> allowed) {
  for (const auto& member : object.GetObject()) {
    const std::string_view name(member.name.GetString(), member.name.GetStringLength());
    bool known = false;
    for (const auto a : allowed) known = known || a == name;
    if (!known) throw invalid_field(std::string(name), "unknown field");
  }
}

std::string required_string(const rapidjson::Value& object, const char* field,
                            std::size_t max_length) {
  const auto it = object.FindMember(field);
  if (it == object.MemberEnd()) throw invalid_field(field, "is required");
  if (!it->value.IsString()) throw invalid_field(field, "must be a string");
  std::string value(it->value.GetString(), it->value.GetStringLength());
  if (value.empty()) throw invalid_field(field, "must not be empty");
  if (core::utf8_length(value) > max_length) {
    throw invalid_field(field, "must be at most " + std::to_string(max_length) + " characters");
  }
  return value;
}

}  // namespace cauce::api
