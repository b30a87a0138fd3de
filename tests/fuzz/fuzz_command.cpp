// Fuzz target `command`: request body -> schema -> decide, and commands read back from Kafka.
//
// The command path, as the API and the processor run it, without I/O:
//
//   HTTP   byte 0 picks one of the eleven command schemas; the rest is the request body:
//          core::parse_json (the body's limits), SchemaRegistry::validate, and when the body
//          fits, the CommandEnvelope the API builds from it (as envelope_for in
//          api/src/command_routes.cpp), through its wire form (to_json, command_from_json) and
//          decided by commands::decide against a store holding one contact and one alert.
//   Kafka  the whole input as a record of cauce.commands: command_from_json, then decide.
//
// Parse errors, schema violations and rejections are fine outcomes. A finding is a crash, a
// sanitizer report, an exception other than the documented ones, or an inconsistency the log
// would keep forever: an accepted body whose envelope does not read back, or an applied command
// whose events the projector (projections::decode_record, fold_batch) or the processor's own
// rebuild (commands::fold) refuses. Those abort with a message naming the input's fate.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/commands/handler.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/core/json.hpp>
#include <cauce/projections/batch.hpp>

namespace {

using cauce::commands::AggregateStore;
using cauce::commands::CommandEnvelope;
using cauce::commands::MemoryAggregateStore;
using cauce::commands::Outcome;
using cauce::commands::ReplyOutcome;

struct CommandKind {
  const char* type;            // its body schema is "<type>.v1"
  const char* aggregate_type;  //
  bool creates;                // the aggregate id comes from the body's "id" or is new
};

// The command routes of api/src/command_routes.cpp.
constexpr CommandKind kCommands[] = {
    {"contact.register", "contact", true},  {"contact.update", "contact", false},
    {"contact.log_call", "contact", false}, {"contact.assign", "contact", false},
    {"contact.archive", "contact", false},  {"alert.raise", "alert", true},
    {"alert.acknowledge", "alert", false},  {"alert.escalate", "alert", false},
    {"alert.close", "alert", false},        {"report.request", "report", true},
    {"backup.request", "backup", true},
};
constexpr std::size_t kCommandCount = sizeof kCommands / sizeof kCommands[0];

constexpr std::int64_t kNow = 1'764'000'000'000'000;
const std::string kContact = "0195a0c4-1111-7000-8000-000000000001";
const std::string kAlert = "0195a0c4-2222-7000-8000-000000000002";
const std::string kNew = "0195a0c4-3333-7000-8000-000000000003";

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "FINDING: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

CommandEnvelope envelope(const std::string& type, const std::string& aggregate_type,
                         const std::string& aggregate_id, std::string data,
                         const std::string& name) {
  CommandEnvelope c;
  c.command_id = cauce::commands::uuid_from_name(name);
  c.type = type;
  c.aggregate_type = aggregate_type;
  c.aggregate_id = aggregate_id;
  c.issued_at_us = kNow;
  c.actor = "fuzz";
  c.correlation_id = "fuzz";
  c.request_hash = "hash";
  c.data = std::move(data);
  return c;
}

// One registered contact and one raised alert, so that the commands on existing aggregates get
// past "not found". decide() never changes the store.
const MemoryAggregateStore& store() {
  static const MemoryAggregateStore kStore = [] {
    MemoryAggregateStore s;
    for (const auto& c :
         {envelope("contact.register", "contact", kContact,
                   R"({"name":"Ana Lima","phone":"+351 912 345 678","tags":["vip"]})", "seed-1"),
          envelope("alert.raise", "alert", kAlert, R"({"level":"warning","title":"Pump 3"})",
                   "seed-2")}) {
      const auto out = cauce::commands::decide(s, c);
      if (out.kind != ReplyOutcome::kApplied) finding("seed command not applied", c.type);
      cauce::commands::record(s, c, out, 0);
    }
    return s;
  }();
  return kStore;
}

std::string json_text(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  value.Accept(w);
  return {buffer.GetString(), buffer.GetSize()};
}

// What every reader of the log must accept of an applied command's events.
void check_events(const CommandEnvelope& c, const Outcome& out) {
  if (out.kind != ReplyOutcome::kApplied) return;
  if (!out.state_after) finding("applied without a state", c.type);
  const auto events = cauce::commands::event_envelopes(c, out);
  std::vector<cauce::projections::LogRecord> records;
  MemoryAggregateStore rebuilt = store();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto value = cauce::commands::to_json(events[i]);
    try {
      records.push_back(cauce::projections::decode_record(0, static_cast<std::int64_t>(i), value));
    } catch (const std::invalid_argument& e) {
      finding("the projector refuses an event the processor writes", value + " -> " + e.what());
    }
    try {
      cauce::commands::fold(rebuilt, events[i], static_cast<std::int64_t>(i), c.request_hash);
    } catch (const std::invalid_argument& e) {
      finding("the processor cannot fold its own event", value + " -> " + e.what());
    }
  }
  try {
    static_cast<void>(cauce::projections::fold_batch(records));
  } catch (const std::invalid_argument& e) {
    finding("fold_batch refuses events the processor writes", c.data + " -> " + e.what());
  }
}

// The processor's side: a record of cauce.commands, from any producer.
void from_kafka(std::string_view record) {
  CommandEnvelope c;
  try {
    c = cauce::commands::command_from_json(record);
  } catch (const std::invalid_argument&) {
    return;  // not a command: the processor rejects the record
  }
  const auto out = cauce::commands::decide(store(), c);
  // Only a command the API could have sent promises events the projector can read: its body
  // fits its schema and its time is the API's clock (a year of four digits).
  const auto& schemas = cauce::commands::SchemaRegistry::instance();
  const auto schema = c.type + ".v1";
  if (c.issued_at_us < 0 || c.issued_at_us >= 253'402'300'800'000'000 ||
      !schemas.contains(schema) || schemas.validate_json(schema, c.data)) {
    return;
  }
  check_events(c, out);
}

// The API's side: one request body for the command `kind`.
void from_http(const CommandKind& kind, std::uint8_t selector, std::string_view body) {
  rapidjson::Document doc;
  if (body.empty()) {
    doc.SetObject();  // as the API: an empty body is {}
  } else if (cauce::core::parse_json(body, doc) || !doc.IsObject()) {
    return;  // 400
  }
  const std::string type = kind.type;
  if (cauce::commands::SchemaRegistry::instance().validate(type + ".v1", doc)) return;  // 400

  std::string aggregate_id = kind.aggregate_type == std::string_view("alert") ? kAlert : kContact;
  if (kind.creates) {
    aggregate_id = kNew;
    if (const auto it = doc.FindMember("id"); it != doc.MemberEnd()) {
      aggregate_id.assign(it->value.GetString(), it->value.GetStringLength());
      doc.RemoveMember(it);
    }
  }
  const auto name = "fuzz\n" + std::string(body);
  if (type == "contact.log_call") {
    const auto call_id = cauce::commands::uuid_from_name("call\n" + name);
    doc.AddMember("call_id", rapidjson::Value(call_id.c_str(), doc.GetAllocator()),
                  doc.GetAllocator());
  }
  auto c = envelope(type, kind.aggregate_type, aggregate_id, json_text(doc), name);
  // If-Match: none, the aggregate's version, or a stale one.
  switch (selector / kCommandCount % 3) {
    case 1:
      c.expected_version = 1;
      break;
    case 2:
      c.expected_version = 7;
      break;
    default:
      break;
  }
  const auto wire = cauce::commands::to_json(c);
  CommandEnvelope read_back;
  try {
    read_back = cauce::commands::command_from_json(wire);
  } catch (const std::invalid_argument& e) {
    finding("an accepted command does not read back from the log", wire + " -> " + e.what());
  }
  const auto out = cauce::commands::decide(store(), read_back);
  // The schema accepted the body, so the handler must be able to read it: an "invalid" rejection
  // of the body as a whole comes from reading it (handler.cpp's invalid_body), except an update
  // that changes nothing (the aggregate's own rule).
  if (out.kind == ReplyOutcome::kRejected && out.rejection->code == "invalid" &&
      out.rejection->field == "body" &&
      !out.rejection->message.starts_with("give at least one of")) {
    finding("a body the schema accepts is invalid to decide",
            wire + " -> " + out.rejection->field + ": " + out.rejection->message);
  }
  check_events(read_back, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  from_kafka(input);
  const auto selector = static_cast<std::uint8_t>(input[0]);
  from_http(kCommands[selector % kCommandCount], selector, input.substr(1));
  return 0;
}
