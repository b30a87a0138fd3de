#include <cauce/commands/upcast.hpp>
#include <cauce/core/log.hpp>

#include "json_fields.hpp"

namespace cauce::commands {
namespace {

// contact.call_logged v1 -> v2: called_at_us (µs) -> called_at (RFC 3339).
std::string call_logged_v1_to_v2(std::string_view data) {
  auto d = json::parse(data);
  const auto micros = json::opt_int(d, "called_at_us");
  if (!micros) throw std::invalid_argument("contact.call_logged v1: called_at_us is required");
  d.RemoveMember("called_at_us");
  const auto text = core::format_utc_micros(*micros);
  d.AddMember("called_at", rapidjson::Value(text.c_str(), d.GetAllocator()), d.GetAllocator());
  rapidjson::StringBuffer buffer;
  json::Writer w(buffer);
  d.Accept(w);
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace

int current_schema_version(std::string_view event_type) {
  return event_type == "contact.call_logged" ? 2 : 1;
}

void upcast(EventEnvelope& event) {
  const int current = current_schema_version(event.type);
  if (event.schema_version > current || event.schema_version < 1) {
    throw std::invalid_argument(
        event.type + " schema_version " + std::to_string(event.schema_version) +
        " is unknown to this build (current: " + std::to_string(current) + ")");
  }
  if (event.type == "contact.call_logged" && event.schema_version == 1) {
    event.data = call_logged_v1_to_v2(event.data);
    event.schema_version = 2;
  }
}

}  // namespace cauce::commands
