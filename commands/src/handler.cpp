#include <cauce/commands/handler.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/commands/upcast.hpp>
#include <cauce/core/log.hpp>

#include "json_fields.hpp"

namespace cauce::commands {
namespace {

Rejection invalid_body(const std::string& message) { return Rejection{"invalid", "body", message}; }

// A command type (or aggregate type) this build does not know. Only cauce's API sends commands,
// so it comes from a newer API during a rolling upgrade: not the client's fault.
class UnknownCommand : public std::invalid_argument {
 public:
  explicit UnknownCommand(const std::string& type)
      : std::invalid_argument("unknown command type " + type), type_(type) {}
  const std::string& type() const noexcept { return type_; }

 private:
  std::string type_;
};

// Decides with the aggregate's own decide(), then folds the events into a copy of the state.
template <typename State, typename Result>
Outcome finish(State state, const Result& result) {
  Outcome out;
  if (const auto* rejection = std::get_if<Rejection>(&result)) {
    out.kind = ReplyOutcome::kRejected;
    out.rejection = *rejection;
    out.version = state.version;
    return out;
  }
  for (const auto& event : std::get<0>(result)) {
    const auto type = event_type(event);
    out.events.push_back(NewEvent{type, current_schema_version(type), to_json(event)});
    if constexpr (std::is_same_v<State, contact::State>) {
      if (const auto* call = std::get_if<contact::CallLogged>(&event)) out.call_id = call->call_id;
      if (const auto* claim = std::get_if<contact::Claimed>(&event)) {
        out.claimed_until = core::format_utc_micros(claim->claimed_until_us);
      }
    }
    state = evolve(std::move(state), event);
  }
  out.version = state.version;
  out.state_after = std::move(state);
  return out;
}

// A log_call's call id is derived from its command id (the API puts it in the data), so a
// retry carries the one the first call got.
std::optional<std::string> call_id_of(const CommandEnvelope& c) {
  try {
    return json::opt_string(json::parse(c.data), "call_id");
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

// A repeated claim answers the claim its caller holds now (its first answer's, unless renewed
// since); nullopt when it holds none any more.
std::optional<std::string> claim_of(const AggregateStore& store, const CommandEnvelope& c) {
  const auto id = Uuid::parse(c.aggregate_id);
  if (!id) return std::nullopt;
  const auto* state = store.find(AggregateKey{*id, AggregateType::kContact});
  const auto* contact = state != nullptr ? std::get_if<contact::State>(state) : nullptr;
  if (contact == nullptr || contact->claimed_by.view() != c.actor ||
      !contact->claimed_at(c.issued_at_us)) {
    return std::nullopt;
  }
  return core::format_utc_micros(contact->claimed_until_us);
}

// A fresh state of `type`, before its first event.
AggregateState new_state(AggregateType type) {
  switch (type) {
    case AggregateType::kContact:
      return contact::State{};
    case AggregateType::kAlert:
      return alert::State{};
    case AggregateType::kReport:
      return report::State{};
    case AggregateType::kBackup:
      return backup::State{};
    case AggregateType::kReportSchedule:
      return report_schedule::State{};
    case AggregateType::kWebhook:
      return webhook::State{};
    case AggregateType::kImport:
      return import::State{};
  }
  throw std::logic_error("aggregate type out of range");
}

std::int64_t version_of(const AggregateState& state) {
  return std::visit([](const auto& s) { return s.version; }, state);
}

// A command on an aggregate whose history holds `unread` (an event this build cannot fold, and
// why: what AggregateStore::mark_unread kept): its state here may lack what that event did, so
// only the version, which is exact, is checked.
Outcome refuse_unread(const AggregateState& state, const std::string& unread,
                      const CommandContext& ctx) {
  Outcome out;
  out.kind = ReplyOutcome::kRejected;
  out.version = version_of(state);
  if (ctx.expected_version && *ctx.expected_version != out.version) {
    out.rejection = Rejection{"version_mismatch", "If-Match",
                              "the aggregate is at version " + std::to_string(out.version)};
  } else {
    out.rejection = Rejection{"unreadable_history", "id", "its history holds " + unread};
  }
  return out;
}

template <typename State>
State current_or_new(const AggregateState* current) {
  if (current != nullptr) {
    if (const auto* s = std::get_if<State>(current)) return *s;
  }
  return State{};
}

Outcome decide_contact(const contact::State& s, const CommandEnvelope& c, const rapidjson::Value& d,
                       const CommandContext& ctx) {
  using namespace contact;
  if (c.type == "contact.register") {
    return finish(s,
                  decide(s,
                         Register{json::string(d, "name"), json::string(d, "phone"),
                                  json::opt_string(d, "email"),
                                  json::opt_strings(d, "tags").value_or(std::vector<std::string>{}),
                                  json::opt_string(d, "notes")},
                         ctx));
  }
  if (c.type == "contact.update") {
    return finish(s, decide(s,
                            Update{json::opt_string(d, "name"), json::opt_string(d, "phone"),
                                   json::opt_string(d, "email"), json::opt_strings(d, "tags"),
                                   json::opt_string(d, "notes")},
                            ctx));
  }
  if (c.type == "contact.log_call") {
    return finish(s, decide(s,
                            LogCall{json::string(d, "call_id"), json::string(d, "outcome"),
                                    static_cast<int>(json::opt_int(d, "duration_s").value_or(-1)),
                                    json::opt_string(d, "notes"), json::opt_string(d, "operator")},
                            ctx));
  }
  if (c.type == "contact.assign")
    return finish(s, decide(s, Assign{json::string(d, "operator")}, ctx));
  if (c.type == "contact.archive")
    return finish(s, decide(s, Archive{json::opt_string(d, "reason")}, ctx));
  if (c.type == "contact.claim") {
    return finish(
        s, decide(s, Claim{json::opt_int(d, "ttl_s").value_or(Claim::kDefaultClaimSeconds)}, ctx));
  }
  if (c.type == "contact.release") return finish(s, decide(s, Release{}, ctx));
  throw UnknownCommand(c.type);
}

Outcome decide_alert(const alert::State& s, const CommandEnvelope& c, const rapidjson::Value& d,
                     const CommandContext& ctx) {
  using namespace alert;
  if (c.type == "alert.raise") {
    return finish(s, decide(s,
                            Raise{json::string(d, "level"), json::string(d, "title"),
                                  json::opt_string(d, "region"), json::opt_string(d, "source"),
                                  json::opt_string(d, "details")},
                            ctx));
  }
  if (c.type == "alert.acknowledge")
    return finish(s, decide(s, Acknowledge{json::opt_string(d, "note")}, ctx));
  if (c.type == "alert.escalate")
    return finish(s, decide(s, Escalate{json::string(d, "level")}, ctx));
  if (c.type == "alert.close")
    return finish(s, decide(s, Close{json::string(d, "resolution")}, ctx));
  if (c.type == "alert.miss_deadline") {
    return finish(s, decide(s,
                            MissDeadline{json::string(d, "level"),
                                         core::parse_utc_micros(json::string(d, "deadline_at"))},
                            ctx));
  }
  throw UnknownCommand(c.type);
}

job::RecordFailure record_failure(const rapidjson::Value& d) {
  const auto next = json::opt_string(d, "next_attempt_at");
  return job::RecordFailure{json::integer(d, "attempt"), json::string(d, "step"),
                            json::string(d, "error"), json::boolean(d, "retryable"),
                            next ? std::optional(core::parse_utc_micros(*next)) : std::nullopt};
}

// The workers' commands (report.start_download, ...) carry the attempt they report on.
Outcome decide_report(const report::State& s, const CommandEnvelope& c, const rapidjson::Value& d,
                      const CommandContext& ctx) {
  using namespace report;
  if (c.type == "report.request") {
    return finish(s, decide(s,
                            Request{json::string(d, "title"), json::string(d, "source_url"),
                                    std::nullopt, std::nullopt, std::nullopt},
                            ctx));
  }
  if (c.type == "report.request_scheduled") {
    const auto slot = json::string(d, "slot_at");
    return finish(s, decide(s,
                            Request{json::string(d, "title"), json::string(d, "source_url"),
                                    json::opt_string(d, "source_auth"),
                                    json::string(d, "schedule_id"), core::parse_utc_micros(slot)},
                            ctx));
  }
  if (c.type == "report.start_download") {
    return finish(s, decide(s, StartDownload{json::integer(d, "attempt")}, ctx));
  }
  if (c.type == "report.record_download") {
    return finish(s,
                  decide(s,
                         RecordDownload{json::integer(d, "attempt"), json::integer(d, "bytes"),
                                        json::string(d, "sha256"), json::string(d, "content_type")},
                         ctx));
  }
  if (c.type == "report.record_render") {
    return finish(s, decide(s,
                            RecordRender{json::integer(d, "attempt"), json::integer(d, "pages"),
                                         json::integer(d, "bytes"), json::string(d, "sha256")},
                            ctx));
  }
  if (c.type == "report.record_failure") return finish(s, decide(s, record_failure(d), ctx));
  if (c.type == "report.retry") return finish(s, decide(s, Retry{}, ctx));
  throw UnknownCommand(c.type);
}

Outcome decide_backup(const backup::State& s, const CommandEnvelope& c, const rapidjson::Value& d,
                      const CommandContext& ctx) {
  using namespace backup;
  if (c.type == "backup.request") return finish(s, decide(s, Request{}, ctx));
  if (c.type == "backup.start")
    return finish(s, decide(s, Start{json::integer(d, "attempt")}, ctx));
  if (c.type == "backup.record_completion") {
    return finish(
        s, decide(s,
                  RecordCompletion{json::integer(d, "attempt"), json::integer(d, "bytes"),
                                   json::string(d, "sha256"), json::integers(d, "positions"),
                                   json::integer(d, "events"), json::opt_string(d, "copy_to")},
                  ctx));
  }
  if (c.type == "backup.record_failure") return finish(s, decide(s, record_failure(d), ctx));
  if (c.type == "backup.record_copy") {
    return finish(s, decide(s,
                            RecordCopy{json::integer(d, "attempt"), json::string(d, "directory"),
                                       json::integer(d, "bytes"), json::string(d, "sha256")},
                            ctx));
  }
  if (c.type == "backup.record_copy_failure") {
    const auto next = json::opt_string(d, "next_attempt_at");
    return finish(s, decide(s,
                            RecordCopyFailure{
                                json::integer(d, "attempt"), json::string(d, "error"),
                                next ? std::optional(core::parse_utc_micros(*next)) : std::nullopt},
                            ctx));
  }
  if (c.type == "backup.retry") return finish(s, decide(s, Retry{}, ctx));
  if (c.type == "backup.expire") return finish(s, decide(s, Expire{}, ctx));
  throw UnknownCommand(c.type);
}

// PATCH's source_auth: absent (unchanged), null (removed) or a name.
std::optional<std::optional<std::string>> nullable_string(const rapidjson::Value& o,
                                                          const char* k) {
  const auto it = o.FindMember(k);
  if (it == o.MemberEnd()) return std::nullopt;
  if (it->value.IsNull()) return std::optional<std::string>{};
  return json::opt_string(o, k);
}

Outcome decide_report_schedule(const report_schedule::State& s, const CommandEnvelope& c,
                               const rapidjson::Value& d, const CommandContext& ctx) {
  using namespace report_schedule;
  if (c.type == "report_schedule.create") {
    return finish(
        s, decide(s,
                  Create{json::string(d, "title"), json::string(d, "source_url"),
                         json::opt_string(d, "every"), json::opt_string(d, "cron"),
                         json::opt_string(d, "timezone"), json::opt_string(d, "source_auth")},
                  ctx));
  }
  if (c.type == "report_schedule.update") {
    std::optional<bool> paused;
    if (const auto it = d.FindMember("paused"); it != d.MemberEnd() && !it->value.IsNull()) {
      paused = json::boolean(d, "paused");
    }
    return finish(s, decide(s,
                            Update{json::opt_string(d, "title"), json::opt_string(d, "source_url"),
                                   json::opt_string(d, "every"), json::opt_string(d, "cron"),
                                   json::opt_string(d, "timezone"),
                                   nullable_string(d, "source_auth"), paused},
                            ctx));
  }
  if (c.type == "report_schedule.delete") return finish(s, decide(s, Delete{}, ctx));
  if (c.type == "report_schedule.trigger") {
    return finish(s, decide(s,
                            Trigger{core::parse_utc_micros(json::string(d, "slot_at")),
                                    json::integer(d, "revision"), json::string(d, "report_id")},
                            ctx));
  }
  throw UnknownCommand(c.type);
}

// Registration by an admin (POST /v1/webhooks), disabling by the delivery worker, enabling by an
// admin (POST /v1/webhooks/{id}/enable).
Outcome decide_webhook(const webhook::State& s, const CommandEnvelope& c,
                       const CommandContext& ctx) {
  using namespace webhook;
  if (c.type == "webhook.register") return finish(s, decide(s, register_from_json(c.data), ctx));
  if (c.type == "webhook.disable") return finish(s, decide(s, disable_from_json(c.data), ctx));
  if (c.type == "webhook.enable") return finish(s, decide(s, Enable{}, ctx));
  throw UnknownCommand(c.type);
}

// The import session's commands (api/src/imports.cpp): an import's course, never a client's.
import::Counts counts_of(const rapidjson::Value& d){
    return import::Counts{json::integer(d, "rows_total"), json::integer(d, "accepted"),
                          json::integer(d, "rejected"), json::integer(d, "duplicates")};
}  // namespace

Outcome decide_import(const import::State& s, const CommandEnvelope& c, const rapidjson::Value& d,
                      const CommandContext& ctx) {
  using namespace import;
  if (c.type == "import.start") return finish(s, decide(s, Start{json::string(d, "format")}, ctx));
  if (c.type == "import.record_rejections") {
    const auto it = d.FindMember("rows");
    if (it == d.MemberEnd() || !it->value.IsArray()) {
      throw std::invalid_argument("rows must be an array");
    }
    RecordRejections command;
    for (const auto& row : it->value.GetArray()) {
      if (!row.IsObject()) throw std::invalid_argument("rows must hold objects");
      command.rows.push_back(RowError{json::integer(row, "row"), json::string(row, "field"),
                                      json::string(row, "message")});
    }
    return finish(s, decide(s, command, ctx));
  }
  if (c.type == "import.record_progress") {
    return finish(s, decide(s, RecordProgress{counts_of(d)}, ctx));
  }
  if (c.type == "import.complete") {
    return finish(s, decide(s, Complete{counts_of(d), json::integer(d, "bytes")}, ctx));
  }
  if (c.type == "import.fail") {
    return finish(
        s,
        decide(s, Fail{counts_of(d), json::integer(d, "bytes"), json::string(d, "reason")}, ctx));
  }
  throw UnknownCommand(c.type);
}

}  // namespace cauce::commands

std::optional<AggregateType> aggregate_type(std::string_view name) {
  if (name == "contact") return AggregateType::kContact;
  if (name == "alert") return AggregateType::kAlert;
  if (name == "report") return AggregateType::kReport;
  if (name == "backup") return AggregateType::kBackup;
  if (name == "import") return AggregateType::kImport;
  if (name == "report_schedule") return AggregateType::kReportSchedule;
  if (name == "webhook") return AggregateType::kWebhook;
  return std::nullopt;
}

const AggregateState* MemoryAggregateStore::find(const AggregateKey& key) const {
  return aggregates_.find(key);
}

void MemoryAggregateStore::put(const AggregateKey& key, AggregateState state) {
  if (state.index() != static_cast<std::size_t>(key.type)) {
    throw std::logic_error("aggregate state of another type than its key");
  }
  aggregates_.insert_or_assign(key, std::move(state));
}

const std::string* MemoryAggregateStore::unread(const AggregateKey& key) const {
  return unread_.find(key);
}

void MemoryAggregateStore::mark_unread(const AggregateKey& key, std::string event) {
  if (unread_.find(key) == nullptr) unread_.insert_or_assign(key, std::move(event));
}

std::optional<AppliedCommand> MemoryAggregateStore::find_command(const Uuid& command_id) const {
  const auto* record = commands_.find(command_id);
  if (record == nullptr) return std::nullopt;
  AppliedCommand out{record->request, record->version, record->offset, std::nullopt};
  if (record->offset == kRejected) {
    out.offset = -1;
    if (const auto* rejection = rejections_.find(command_id)) out.rejection = *rejection;
  }
  return out;
}

void MemoryAggregateStore::record_command(const Uuid& command_id, const AppliedCommand& applied) {
  commands_.insert_or_assign(
      command_id,
      CommandRecord{applied.request, applied.version,
                    applied.rejection ? kRejected : std::max<std::int64_t>(applied.offset, -1)});
  if (applied.rejection) rejections_.insert_or_assign(command_id, *applied.rejection);
}

bool remembers_rejection(const CommandEnvelope& command, const Outcome& outcome) {
  return outcome.kind == ReplyOutcome::kRejected && !outcome.original &&
         outcome.rejection.has_value() && outcome.rejection->code != "invalid" &&
         outcome.rejection->code != "too_early" && !refused_until_upgrade(*outcome.rejection) &&
         is_name_based_uuid(command.command_id);
}

AppliedCommand remembered(const CommandEnvelope& command, const Outcome& outcome,
                          std::int64_t offset) {
  AppliedCommand out{digest(command.request_hash, command.aggregate_id), outcome.version, offset,
                     std::nullopt};
  if (outcome.kind == ReplyOutcome::kRejected) out.rejection = outcome.rejection;
  return out;
}

void record(AggregateStore& store, const CommandEnvelope& command, const Outcome& outcome,
            std::int64_t offset) {
  if (outcome.state_after) {
    store.put(AggregateKey{Uuid::from(command.aggregate_id, "aggregate_id"),
                           aggregate_type(command.aggregate_type).value()},
              *outcome.state_after);
  }
  store.record_command(Uuid::from(command.command_id, "command_id"),
                       remembered(command, outcome, offset));
}

Outcome decide(const AggregateStore& store, const CommandEnvelope& c) {
  const auto command_id = Uuid::parse(c.command_id);
  if (auto seen = command_id ? store.find_command(*command_id) : std::nullopt) {
    Outcome out;
    if (seen->request != digest(c.request_hash, c.aggregate_id)) {
      out.kind = ReplyOutcome::kKeyReused;
    } else if (seen->rejection) {
      out.kind = ReplyOutcome::kRejected;
      out.rejection = seen->rejection;
    } else {
      out.kind = ReplyOutcome::kDuplicate;
    }
    out.version = seen->version;
    if (out.kind == ReplyOutcome::kDuplicate && c.type == "contact.log_call") {
      out.call_id = call_id_of(c);
    }
    if (out.kind == ReplyOutcome::kDuplicate && c.type == "contact.claim") {
      out.claimed_until = claim_of(store, c);
    }
    out.original = std::move(seen);
    return out;
  }
  // Records on the commands topic may come from any producer: ids must be what the event
  // schema promises before anything is decided.
  for (const auto& [field, value] :
       {std::pair{"aggregate_id", &c.aggregate_id}, std::pair{"command_id", &c.command_id}}) {
    if (!is_uuid(*value)) {
      Outcome out;
      out.kind = ReplyOutcome::kRejected;
      out.rejection = Rejection{"invalid", field, "must be a UUID"};
      return out;
    }
  }
  const CommandContext ctx{c.issued_at_us, c.expected_version, c.actor};
  try {
    const auto type = aggregate_type(c.aggregate_type);
    if (!type) throw UnknownCommand(c.type);
    const AggregateKey key{Uuid::from(c.aggregate_id, "aggregate_id"), *type};
    const auto* current = store.find(key);
    if (const auto* unread = store.unread(key))
      return refuse_unread(current != nullptr ? *current : new_state(*type), *unread, ctx);
    const auto d = json::parse(c.data);
    if (*type == AggregateType::kContact) {
      return decide_contact(current_or_new<contact::State>(current), c, d, ctx);
    }
    if (*type == AggregateType::kAlert)
      return decide_alert(current_or_new<alert::State>(current), c, d, ctx);
    if (*type == AggregateType::kReport) {
      return decide_report(current_or_new<report::State>(current), c, d, ctx);
    }
    if (*type == AggregateType::kReportSchedule) {
      return decide_report_schedule(current_or_new<report_schedule::State>(current), c, d, ctx);
    }
    if (*type == AggregateType::kWebhook) {
      return decide_webhook(current_or_new<webhook::State>(current), c, ctx);
    }
    if (*type == AggregateType::kImport) {
      return decide_import(current_or_new<import::State>(current), c, d, ctx);
    }
    return decide_backup(current_or_new<backup::State>(current), c, d, ctx);
  } catch (const UnknownCommand& e) {
    Outcome out;
    out.kind = ReplyOutcome::kRejected;
    out.rejection = Rejection{"unknown_command", "type",
                              e.type() +
                                  " is unknown to this version of cauce's command processor; "
                                  "retry once every process runs the newer version"};
    return out;
  } catch (const std::invalid_argument& e) {
    Outcome out;
    out.kind = ReplyOutcome::kRejected;
    out.rejection = invalid_body(e.what());
    return out;
  }
}

std::vector<EventEnvelope> event_envelopes(const CommandEnvelope& command, const Outcome& outcome) {
  std::vector<EventEnvelope> out;
  out.reserve(outcome.events.size());
  auto version = outcome.version - static_cast<std::int64_t>(outcome.events.size());
  for (const auto& event : outcome.events) {
    EventEnvelope& e = out.emplace_back();
    e.event_id = uuid_v7(command.issued_at_us / 1000);
    e.type = event.type;
    e.schema_version = event.schema_version;
    e.aggregate_type = command.aggregate_type;
    e.aggregate_id = command.aggregate_id;
    e.version = ++version;
    e.occurred_at_us = command.issued_at_us;
    e.command_id = command.command_id;
    e.correlation_id = command.correlation_id;
    e.causation_id = command.command_id;
    e.actor = command.actor;
    e.trace_parent = command.trace_parent;
    e.data = event.data;
  }
  return out;
}

std::optional<UnreadEvent> fold(AggregateStore& store, EventEnvelope e, std::int64_t offset,
                                const std::string& request_hash) {
  const auto command_id = Uuid::from(e.command_id, "command_id");
  const auto aggregate_id = Uuid::from(e.aggregate_id, "aggregate_id");
  const auto event_name = e.type + " v" + std::to_string(e.schema_version);
  // Whether this build has a schema for the event as written (before upcasting).
  const bool known =
      SchemaRegistry::instance().contains(e.type + ".v" + std::to_string(e.schema_version));
  const auto type = aggregate_type(e.aggregate_type);
  std::optional<UnreadEvent> unread;
  if (!type) {
    unread = UnreadEvent{event_name, "unknown aggregate type " + e.aggregate_type, true};
  } else {
    const AggregateKey key{aggregate_id, *type};
    const auto* current = store.find(key);
    // The aggregate's own evolve() (found by argument-dependent lookup) over its state so far.
    const auto evolved = [&](auto initial, const auto& event) -> AggregateState {
      return evolve(current_or_new<decltype(initial)>(current), event);
    };
    AggregateState next;
    try {
      upcast(e);
      switch (*type) {
        case AggregateType::kContact:
          next = evolved(contact::State{}, contact::event_from_json(e.type, e.data));
          break;
        case AggregateType::kAlert:
          next = evolved(alert::State{}, alert::event_from_json(e.type, e.data));
          break;
        case AggregateType::kReport:
          next = evolved(report::State{}, report::event_from_json(e.type, e.data));
          break;
        case AggregateType::kBackup:
          next = evolved(backup::State{}, backup::event_from_json(e.type, e.data));
          break;
        case AggregateType::kReportSchedule:
          next =
              evolved(report_schedule::State{}, report_schedule::event_from_json(e.type, e.data));
          break;
        case AggregateType::kWebhook:
          next = evolved(webhook::State{}, webhook::event_from_json(e.type, e.data));
          break;
        case AggregateType::kImport:
          next = evolved(import::State{}, import::event_from_json(e.type, e.data));
          break;
      }
    } catch (const std::invalid_argument& error) {
      // What it did is unknown here, but not where it leaves the aggregate's version.
      unread = UnreadEvent{event_name, error.what(), !known};
      next = current != nullptr ? *current : new_state(*type);
      std::visit([&](auto& s) { s.version = e.version; }, next);
      store.mark_unread(
          key, unread->newer
                   ? event_name +
                         ", which this version of cauce cannot read; retry once every process "
                         "runs the newer version"
                   : event_name + ", which does not fit its schema (" + unread->reason +
                         "): no version of cauce reads it; an operator must look (cauce events "
                         "dump --aggregate=" +
                         e.aggregate_id + ")");
    }
    store.put(key, std::move(next));
  }
  if (unread) store.count_unread_event();
  store.record_command(command_id, AppliedCommand{digest(request_hash, e.aggregate_id), e.version,
                                                  offset, std::nullopt});
  return unread;
}

}  // namespace cauce::commands
