#include <cstdio>
#include <ctime>

#include <cauce/commands/compact.hpp>
#include <cauce/commands/envelope.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/log.hpp>

#include "json_fields.hpp"

namespace cauce::commands {
namespace {

void raw_object(json::Writer& w, std::string_view key, std::string_view object_json) {
  json::key(w, key);
  w.RawValue(object_json.data(), object_json.size(), rapidjson::kObjectType);
}

std::string object_text(const rapidjson::Value& o, const char* key) {
  const auto it = o.FindMember(key);
  if (it == o.MemberEnd() || !it->value.IsObject()) {
    throw std::invalid_argument(std::string(key) + " must be an object");
  }
  rapidjson::StringBuffer buffer;
  json::Writer w(buffer);
  it->value.Accept(w);
  return {buffer.GetString(), buffer.GetSize()};
}

std::int64_t required_int(const rapidjson::Value& o, const char* key) {
  const auto v = json::opt_int(o, key);
  if (!v) throw std::invalid_argument(std::string(key) + " is required");
  return *v;
}

void trace_field(json::Writer& w, const core::TraceParent& trace) {
  if (!trace.empty()) json::field(w, "trace_parent", trace.text());
}

// An optional traceparent; a malformed one is no trace (W3C: ignored, the reader starts anew).
core::TraceParent trace_from(const rapidjson::Value& o) {
  const auto it = o.FindMember("trace_parent");
  if (it == o.MemberEnd() || !it->value.IsString()) return {};
  return core::TraceParent::parse({it->value.GetString(), it->value.GetStringLength()})
      .value_or(core::TraceParent{});
}

}  // namespace

const char* outcome_name(ReplyOutcome outcome) {
  switch (outcome) {
    case ReplyOutcome::kApplied:
      return "applied";
    case ReplyOutcome::kDuplicate:
      return "duplicate";
    case ReplyOutcome::kRejected:
      return "rejected";
    case ReplyOutcome::kKeyReused:
      return "key_reused";
  }
  return "rejected";
}
std::string position_token(std::int32_t partition, std::int64_t offset) {
  return std::to_string(partition) + ":" + std::to_string(offset);
}

std::string to_json(const CommandEnvelope& c) {
  return json::object([&](json::Writer& w) {
    json::field(w, "command_id", c.command_id);
    json::field(w, "type", c.type);
    json::field(w, "aggregate_type", c.aggregate_type);
    json::field(w, "aggregate_id", c.aggregate_id);
    json::optional_field(w, "expected_version", c.expected_version);
    json::field(w, "issued_at_us", c.issued_at_us);
    json::field(w, "actor", c.actor);
    json::field(w, "correlation_id", c.correlation_id);
    trace_field(w, c.trace_parent);
    json::field(w, "request_hash", c.request_hash);
    raw_object(w, "data", c.data);
  });
}

CommandEnvelope command_from_json(std::string_view text) {
  const auto d = json::parse(text);
  CommandEnvelope c;
  c.command_id = json::string(d, "command_id");
  c.type = json::string(d, "type");
  c.aggregate_type = json::string(d, "aggregate_type");
  c.aggregate_id = json::string(d, "aggregate_id");
  c.expected_version = json::opt_int(d, "expected_version");
  c.issued_at_us = required_int(d, "issued_at_us");
  c.actor = json::string(d, "actor");
  c.correlation_id = json::string(d, "correlation_id");
  c.trace_parent = trace_from(d);
  c.request_hash = json::opt_string(d, "request_hash").value_or("");
  c.data = object_text(d, "data");
  return c;
}

std::string to_json(const EventEnvelope& e) {
  return json::object([&](json::Writer& w) {
    json::field(w, "event_id", e.event_id);
    json::field(w, "type", e.type);
    json::field(w, "schema_version", std::int64_t{e.schema_version});
    json::field(w, "aggregate_type", e.aggregate_type);
    json::field(w, "aggregate_id", e.aggregate_id);
    json::field(w, "version", e.version);
    json::field(w, "occurred_at", core::format_utc_micros(e.occurred_at_us));
    json::field(w, "command_id", e.command_id);
    json::field(w, "correlation_id", e.correlation_id);
    json::field(w, "causation_id", e.causation_id);
    json::field(w, "actor", e.actor);
    trace_field(w, e.trace_parent);
    raw_object(w, "data", e.data);
  });
}

EventEnvelope event_from_json(std::string_view text) {
  const auto d = json::parse(text);
  EventEnvelope e;
  e.event_id = json::string(d, "event_id");
  e.type = json::string(d, "type");
  e.schema_version = static_cast<int>(required_int(d, "schema_version"));
  e.aggregate_type = json::string(d, "aggregate_type");
  e.aggregate_id = json::string(d, "aggregate_id");
  e.version = required_int(d, "version");
  e.occurred_at_us = core::parse_utc_micros(json::string(d, "occurred_at"));
  e.command_id = json::string(d, "command_id");
  e.correlation_id = json::string(d, "correlation_id");
  e.causation_id = json::string(d, "causation_id");
  e.actor = json::string(d, "actor");
  e.trace_parent = trace_from(d);
  e.data = object_text(d, "data");
  return e;
}

std::string to_json(const Reply& r) {
  return json::object([&](json::Writer& w) {
    json::field(w, "command_id", r.command_id);
    json::field(w, "outcome", outcome_name(r.outcome));
    json::field(w, "aggregate_id", r.aggregate_id);
    json::field(w, "version", r.version);
    json::field(w, "position", r.position);
    json::optional_field(w, "call_id", r.call_id);
    json::optional_field(w, "claimed_until", r.claimed_until);
    if (r.rejection) {
      json::key(w, "rejection");
      w.StartObject();
      json::field(w, "code", r.rejection->code);
      json::field(w, "field", r.rejection->field);
      json::field(w, "message", r.rejection->message);
      w.EndObject();
    }
    if (r.replayed) {
      json::key(w, "replayed");
      w.Bool(true);
    }
  });
}

Reply reply_from_json(std::string_view text) {
  const auto d = json::parse(text);
  Reply r;
  r.command_id = json::string(d, "command_id");
  const auto outcome = json::string(d, "outcome");
  if (outcome == "applied") {
    r.outcome = ReplyOutcome::kApplied;
  } else if (outcome == "duplicate") {
    r.outcome = ReplyOutcome::kDuplicate;
  } else if (outcome == "rejected") {
    r.outcome = ReplyOutcome::kRejected;
  } else if (outcome == "key_reused") {
    r.outcome = ReplyOutcome::kKeyReused;
  } else {
    throw std::invalid_argument("unknown reply outcome " + outcome);
  }
  r.aggregate_id = json::string(d, "aggregate_id");
  r.version = required_int(d, "version");
  r.position = json::opt_string(d, "position").value_or("");
  r.call_id = json::opt_string(d, "call_id");
  r.claimed_until = json::opt_string(d, "claimed_until");
  if (const auto it = d.FindMember("rejection"); it != d.MemberEnd() && it->value.IsObject()) {
    r.rejection = Rejection{json::string(it->value, "code"), json::string(it->value, "field"),
                            json::string(it->value, "message")};
  }
  if (const auto it = d.FindMember("replayed"); it != d.MemberEnd() && it->value.IsBool()) {
    r.replayed = it->value.GetBool();
  }
  return r;
}

namespace {

std::string format_uuid(std::string hex) {
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

char variant_nibble(char c) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const int v = (c >= 'a' ? c - 'a' + 10 : c - '0');
  return kDigits[8 | (v & 0x3)];
}

}  // namespace

std::string uuid_v7(std::int64_t unix_ms) {
  char ts[13];
  std::snprintf(ts, sizeof ts, "%012llx",
                static_cast<unsigned long long>(unix_ms) & 0xffffffffffffULL);
  std::string hex = std::string(ts) + core::random_hex(10);
  hex[12] = '7';
  hex[16] = variant_nibble(hex[16]);
  return format_uuid(hex);
}

std::string uuid_from_name(std::string_view name) {
  std::string hex = core::sha256_hex(name).substr(0, 32);
  hex[12] = '8';
  hex[16] = variant_nibble(hex[16]);
  return format_uuid(hex);
}

bool is_uuid(std::string_view text) { return Uuid::parse(text).has_value(); }

bool is_name_based_uuid(std::string_view text) { return is_uuid(text) && text[14] == '8'; }

}  // namespace cauce::commands
