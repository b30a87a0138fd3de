#include <algorithm>
#include <map>
#include <stdexcept>
#include <unordered_map>
#include <variant>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/schemas.hpp>
#include <cauce/commands/upcast.hpp>
#include <cauce/core/log.hpp>
#include <cauce/projections/batch.hpp>

namespace cauce::projections {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
// JSON values written as they are (error objects, backup positions), as one array.
struct RawArray {
  std::vector<std::string> items;
};
// One JSON object written as it is (a webhook's filters).
struct RawObject {
  std::string json;
};
using Value =
    std::variant<std::string, std::int64_t, std::vector<std::string>, RawArray, RawObject>;

// What a batch does to one read-model row: its whole row when the batch creates it, else the
// columns it sets (NULL in the statement = unchanged).
struct Change {
  std::string id;
  bool created = false;
  std::int64_t first_version = 0;
  std::int64_t version = 0;
  std::int64_t calls_added = 0;  // contacts only
  std::map<std::string, Value> set = {};
};

// Changes per aggregate, in order of first appearance (deterministic statements).
class Changes {
 public:
  Change& of(const commands::EventEnvelope& e) {
    auto [it, inserted] = index_.try_emplace(e.aggregate_id, changes_.size());
    if (inserted) changes_.push_back(Change{.id = e.aggregate_id, .first_version = e.version});
    auto& change = changes_[it->second];
    change.version = e.version;
    return change;
  }
  const std::vector<Change>& all() const { return changes_; }

 private:
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<Change> changes_;
};

void key(Writer& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}
void str(Writer& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
void field(Writer& w, std::string_view k, std::string_view v) {
  key(w, k);
  str(w, v);
}
void field(Writer& w, std::string_view k, std::int64_t v) {
  key(w, k);
  w.Int64(v);
}
void raw(Writer& w, std::string_view k, std::string_view json) {
  key(w, k);
  w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

// A JSON array being written.
class Rows {
 public:
  Rows() : writer_(buffer_) { writer_.StartArray(); }
  template <typename Fill>
  void add(Fill&& fill) {
    writer_.StartObject();
    fill(writer_);
    writer_.EndObject();
  }
  std::string finish() {
    writer_.EndArray();
    return {buffer_.GetString(), buffer_.GetSize()};
  }

 private:
  rapidjson::StringBuffer buffer_;
  Writer writer_;
};

template <typename Fill>
std::string json_object(Fill&& fill) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  fill(w);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

std::string changes_json(const Changes& changes) {
  Rows rows;
  for (const auto& c : changes.all()) {
    rows.add([&c](Writer& w) {
      field(w, "id", c.id);
      key(w, "created");
      w.Bool(c.created);
      field(w, "first_version", c.first_version);
      field(w, "version", c.version);
      field(w, "calls_added", c.calls_added);
      for (const auto& [column, value] : c.set) {
        key(w, column);
        std::visit(
            [&w](const auto& v) {
              using T = std::decay_t<decltype(v)>;
              if constexpr (std::is_same_v<T, std::string>) {
                str(w, v);
              } else if constexpr (std::is_same_v<T, std::int64_t>) {
                w.Int64(v);
              } else if constexpr (std::is_same_v<T, RawObject>) {
                w.RawValue(v.json.data(), v.json.size(), rapidjson::kObjectType);
              } else if constexpr (std::is_same_v<T, RawArray>) {
                w.StartArray();
                for (const auto& item : v.items) {
                  w.RawValue(item.data(), item.size(), rapidjson::kObjectType);
                }
                w.EndArray();
              } else {
                w.StartArray();
                for (const auto& s : v) str(w, s);
                w.EndArray();
              }
            },
            value);
      }
    });
  }
  return rows.finish();
}

// The event's data, with typed access that names the event when a field has the wrong type.
class Data {
 public:
  explicit Data(const commands::EventEnvelope& e) : event_(e) {
    doc_.Parse(e.data.data(), e.data.size());
    if (doc_.HasParseError() || !doc_.IsObject()) fail("", "is not a JSON object");
  }
  bool has(const char* k) const {
    const auto it = doc_.FindMember(k);
    return it != doc_.MemberEnd() && !it->value.IsNull();
  }
  std::string string(const char* k) const {
    const auto it = doc_.FindMember(k);
    if (it == doc_.MemberEnd() || !it->value.IsString()) fail(k, "must be a string");
    return {it->value.GetString(), it->value.GetStringLength()};
  }
  std::int64_t integer(const char* k) const {
    const auto it = doc_.FindMember(k);
    if (it == doc_.MemberEnd() || !it->value.IsInt64()) fail(k, "must be an integer");
    return it->value.GetInt64();
  }
  bool boolean(const char* k) const {
    const auto it = doc_.FindMember(k);
    if (it == doc_.MemberEnd() || !it->value.IsBool()) fail(k, "must be true or false");
    return it->value.GetBool();
  }
  // The JSON text of each item of an array member.
  std::vector<std::string> raw_items(const char* k) const {
    const auto it = doc_.FindMember(k);
    if (it == doc_.MemberEnd() || !it->value.IsArray()) fail(k, "must be an array");
    std::vector<std::string> out;
    for (const auto& item : it->value.GetArray()) {
      rapidjson::StringBuffer buffer;
      Writer w(buffer);
      item.Accept(w);
      out.emplace_back(buffer.GetString(), buffer.GetSize());
    }
    return out;
  }
  std::vector<std::string> strings(const char* k) const {
    const auto it = doc_.FindMember(k);
    if (it == doc_.MemberEnd() || !it->value.IsArray()) fail(k, "must be an array");
    std::vector<std::string> out;
    for (const auto& v : it->value.GetArray()) {
      if (!v.IsString()) fail(k, "must hold strings");
      out.emplace_back(v.GetString(), v.GetStringLength());
    }
    return out;
  }
  // The JSON text of an object member.
  std::string object_text(const char* k) const {
    const auto it = doc_.FindMember(k);
    if (it == doc_.MemberEnd() || !it->value.IsObject()) fail(k, "must be an object");
    rapidjson::StringBuffer buffer;
    Writer w(buffer);
    it->value.Accept(w);
    return {buffer.GetString(), buffer.GetSize()};
  }
  // Copies those of `keys` that are present (strings) into the change.
  void copy_strings(Change& c, std::initializer_list<const char*> keys) const {
    for (const auto* k : keys) {
      if (has(k)) c.set[k] = string(k);
    }
  }

 private:
  [[noreturn]] void fail(std::string_view k, std::string_view what) const {
    throw std::invalid_argument(event_.type + " " + event_.event_id + ": data" +
                                (k.empty() ? "" : "." + std::string(k)) + " " + std::string(what));
  }
  const commands::EventEnvelope& event_;
  rapidjson::Document doc_;
};

struct Folder {
  Changes contacts, alerts, reports, backups, schedules, webhooks, imports;
  std::vector<CallRow> calls;
  Rows timeline;
  Rows import_errors;
  std::vector<std::string> unprojected;

  void unprojected_type(const std::string& type) {
    if (std::find(unprojected.begin(), unprojected.end(), type) == unprojected.end()) {
      unprojected.push_back(type);
    }
  }

  void contact(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = contacts.of(e);
    c.set["updated_at"] = at;
    if (e.type == "contact.registered") {
      c.created = true;
      d.copy_strings(c, {"name", "phone", "email", "notes"});
      c.set["tags"] = d.strings("tags");
      c.set["status"] = std::string("active");
      c.set["created_at"] = at;
    } else if (e.type == "contact.updated") {
      d.copy_strings(c, {"name", "phone", "email", "notes"});
      if (d.has("tags")) c.set["tags"] = d.strings("tags");
    } else if (e.type == "contact.call_logged") {
      const auto called_at = d.string("called_at");
      ++c.calls_added;
      auto& last = c.set["last_call_at"];
      if (!std::holds_alternative<std::string>(last) || std::get<std::string>(last) < called_at) {
        last = called_at;  // RFC 3339 with a fixed width: text order is time order
      }
      calls.push_back(CallRow{
          .call_id = d.string("call_id"),
          .contact_id = e.aggregate_id,
          .outcome = d.string("outcome"),
          .duration_s = d.integer("duration_s"),
          .notes = d.has("notes") ? std::optional(d.string("notes")) : std::nullopt,
          .operator_name = d.has("operator") ? std::optional(d.string("operator")) : std::nullopt,
          .occurred_at = called_at,
          .version = e.version});
    } else if (e.type == "contact.assigned") {
      c.set["assigned_to"] = d.string("operator");
    } else if (e.type == "contact.archived") {
      c.set["status"] = std::string("archived");
      c.set["claimed_by"] = std::string();  // archiving ends a claim ("" clears)
      c.set["claimed_until"] = std::string();
    } else if (e.type == "contact.claimed") {
      c.set["claimed_by"] = d.string("claimed_by");
      c.set["claimed_until"] = d.string("claimed_until");
    } else if (e.type == "contact.released") {
      c.set["claimed_by"] = std::string();  // "" clears
      c.set["claimed_until"] = std::string();
    } else {
      unprojected_type(e.type);
    }
  }

  void alert(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = alerts.of(e);
    c.set["updated_at"] = at;
    if (e.type == "alert.raised") {
      c.created = true;
      d.copy_strings(c, {"level", "title", "region", "source", "details"});
      c.set["state"] = std::string("open");
      c.set["raised_at"] = at;
    } else if (e.type == "alert.acknowledged") {
      c.set["state"] = std::string("acknowledged");
      c.set["acknowledged_at"] = at;
    } else if (e.type == "alert.escalated") {
      c.set["level"] = d.string("to");
    } else if (e.type == "alert.closed") {
      c.set["state"] = std::string("closed");
      c.set["resolution"] = d.string("resolution");
      c.set["closed_at"] = at;
    } else if (e.type == "alert.deadline_missed") {
      // On the timeline only; the escalation that follows it (below critical) moves the level.
    } else {
      unprojected_type(e.type);
    }
    timeline.add([&](Writer& w) {
      field(w, "alert_id", e.aggregate_id);
      field(w, "version", e.version);
      field(w, "type", e.type);
      field(w, "occurred_at", at);
      field(w, "actor", e.actor);
      raw(w, "data", e.data);
    });
  }

  // The steps both jobs share: an attempt failed (its error appended, the next attempt's time
  // or none), the job failed, an operator retried it.
  static bool shared_job_step(const Data& d, const commands::EventEnvelope& e, Change& c,
                              const std::string& at) {
    const auto step = e.type.substr(e.type.find('.') + 1);
    if (step == "attempt_failed") {
      c.set["status"] = std::string(d.has("next_attempt_at") ? "retrying" : "failed");
      c.set["next_attempt_at"] = d.has("next_attempt_at") ? d.string("next_attempt_at") : "";
      auto& errors = c.set["new_errors"];
      if (!std::holds_alternative<RawArray>(errors)) errors = RawArray{};
      std::get<RawArray>(errors).items.push_back(json_object([&](Writer& w) {
        field(w, "attempt", d.integer("attempt"));
        field(w, "step", d.string("step"));
        field(w, "error", d.string("error"));
        key(w, "retryable");
        w.Bool(d.boolean("retryable"));
        field(w, "at", at);
      }));
    } else if (step == "failed") {
      c.set["status"] = std::string("failed");
      c.set["failure"] = d.string("reason");
      c.set["next_attempt_at"] = std::string();
    } else if (step == "retried") {
      c.set["status"] = std::string("requested");
      c.set["round"] = d.integer("round");
      c.set["attempts"] = std::int64_t{0};
      c.set["failure"] = std::string();
    } else {
      return false;
    }
    return true;
  }

  void report(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = reports.of(e);
    c.set["updated_at"] = at;
    if (e.type == "report.requested") {
      c.created = true;
      d.copy_strings(c, {"title", "source_url", "schedule_id", "slot_at", "source_auth"});
      c.set["status"] = std::string("requested");
      c.set["requested_at"] = at;
    } else if (e.type == "report.download_started") {
      c.set["status"] = std::string("downloading");
      c.set["attempts"] = d.integer("attempt");
      c.set["next_attempt_at"] = std::string();
    } else if (e.type == "report.downloaded") {
      c.set["status"] = std::string("downloaded");
      c.set["content_type"] = d.string("content_type");
      c.set["source_bytes"] = d.integer("bytes");
      c.set["source_sha256"] = d.string("sha256");
    } else if (e.type == "report.rendered") {
      c.set["status"] = std::string("ready");
      c.set["pages"] = d.integer("pages");
      c.set["pdf_bytes"] = d.integer("bytes");
      c.set["pdf_sha256"] = d.string("sha256");
    } else if (!shared_job_step(d, e, c, at)) {
      unprojected_type(e.type);
    }
  }

  void report_schedule(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = schedules.of(e);
    c.set["updated_at"] = at;
    // A change of the recurrence restarts the slots (slots_from); of anything else, it keeps
    // them (recurrence_changed false; absent in events written before it: true).
    const auto definition = [&](bool restarts_slots) {
      d.copy_strings(c, {"title", "source_url", "timezone"});
      // The whole definition: what it does not name is gone ("" clears).
      for (const auto* k : {"every", "cron", "source_auth"}) c.set[k] = d.has(k) ? d.string(k) : "";
      if (restarts_slots) c.set["slots_from"] = at;
    };
    if (e.type == "report_schedule.created") {
      c.created = true;
      definition(true);
      c.set["status"] = std::string("active");
      c.set["created_at"] = at;
    } else if (e.type == "report_schedule.changed") {
      definition(!d.has("recurrence_changed") || d.boolean("recurrence_changed"));
    } else if (e.type == "report_schedule.paused") {
      c.set["status"] = std::string("paused");
    } else if (e.type == "report_schedule.resumed") {
      c.set["status"] = std::string("active");
      c.set["slots_from"] = at;
    } else if (e.type == "report_schedule.deleted") {
      c.set["status"] = std::string("deleted");
    } else if (e.type == "report_schedule.triggered") {
      c.set["last_slot_at"] = d.string("slot_at");
      c.set["last_report_id"] = d.string("report_id");
    } else {
      unprojected_type(e.type);
    }
  }

  void backup(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = backups.of(e);
    c.set["updated_at"] = at;
    if (e.type == "backup.requested") {
      c.created = true;
      c.set["status"] = std::string("requested");
      c.set["requested_at"] = at;
    } else if (e.type == "backup.started") {
      c.set["status"] = std::string("running");
      c.set["attempts"] = d.integer("attempt");
      c.set["next_attempt_at"] = std::string();
    } else if (e.type == "backup.completed") {
      c.set["status"] = std::string("completed");
      c.set["created_at"] = at;
      c.set["size_bytes"] = d.integer("bytes");
      c.set["sha256"] = d.string("sha256");
      c.set["events"] = d.integer("events");
      c.set["positions"] = RawArray{d.raw_items("positions")};
      if (d.has("copy_to")) {
        c.set["copy_status"] = std::string("pending");
        c.set["copy_to"] = d.string("copy_to");
      }
    } else if (e.type == "backup.expired") {
      c.set["status"] = std::string("expired");
    } else if (e.type == "backup.copied") {
      // The copy's own course; the backup's status stays what it is ("" clears a column).
      c.set["copy_status"] = std::string("copied");
      c.set["copy_directory"] = d.string("directory");
      c.set["copy_sha256"] = d.string("sha256");
      c.set["copy_bytes"] = d.integer("bytes");
      c.set["copy_attempts"] = d.integer("attempt");
      c.set["copy_error"] = std::string();
      c.set["copy_next_attempt_at"] = std::string();
      c.set["copied_at"] = at;
    } else if (e.type == "backup.copy_attempt_failed") {
      const bool again = d.has("next_attempt_at");
      c.set["copy_status"] = std::string(again ? "pending" : "failed");
      c.set["copy_attempts"] = d.integer("attempt");
      c.set["copy_error"] = d.string("error");
      c.set["copy_next_attempt_at"] = again ? d.string("next_attempt_at") : std::string();
    } else if (!shared_job_step(d, e, c, at)) {
      unprojected_type(e.type);
    }
  }

  // A webhook's definition (never its secret: no event holds it) and whether it is active.
  void webhook(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = webhooks.of(e);
    c.set["updated_at"] = at;
    if (e.type == "webhook.registered") {
      c.created = true;
      c.set["url"] = d.string("url");
      c.set["topics"] = d.strings("topics");
      c.set["filters"] = RawObject{d.object_text("filters")};
      c.set["status"] = std::string("active");
      c.set["created_at"] = at;
    } else if (e.type == "webhook.disabled") {
      c.set["status"] = std::string("disabled");
      c.set["disabled_reason"] = d.string("reason");
      c.set["consecutive_failures"] = d.integer("consecutive_failures");
      c.set["last_error"] = d.has("last_error") ? d.string("last_error") : std::string();
      c.set["disabled_at"] = at;
    } else if (e.type == "webhook.enabled") {
      c.set["status"] = std::string("active");
      c.set["disabled_reason"] = std::string();  // "" clears
      c.set["last_error"] = std::string();
      c.set["disabled_at"] = std::string();
    }
  }

  // An import's course (api/README.md, imports): its counts as last reported, and one
  // import_errors row per rejected row.
  void import(const commands::EventEnvelope& e, const std::string& at) {
    const Data d(e);
    auto& c = imports.of(e);
    c.set["updated_at"] = at;
    const auto counts = [&] {
      for (const auto* k : {"rows_total", "accepted", "rejected", "duplicates"}) {
        c.set[k] = d.integer(k);
      }
    };
    if (e.type == "import.started") {
      c.created = true;
      c.set["status"] = std::string("running");
      c.set["format"] = d.string("format");
      c.set["actor"] = e.actor;
      c.set["started_at"] = at;
    } else if (e.type == "import.rows_rejected") {
      rapidjson::Document rows;
      rows.Parse(e.data.data(), e.data.size());
      if (!rows.IsObject() || !rows.HasMember("rows") || !rows["rows"].IsArray()) {
        throw std::invalid_argument(e.type + " " + e.event_id + ": data.rows must be an array");
      }
      for (const auto& row : rows["rows"].GetArray()) {
        if (!row.IsObject() || !row.HasMember("row") || !row["row"].IsInt64() ||
            !row.HasMember("field") || !row["field"].IsString() || !row.HasMember("message") ||
            !row["message"].IsString()) {
          throw std::invalid_argument(e.type + " " + e.event_id + ": data.rows malformed");
        }
        import_errors.add([&](Writer& w) {
          field(w, "import_id", e.aggregate_id);
          field(w, "row", row["row"].GetInt64());
          field(w, "field",
                std::string_view(row["field"].GetString(), row["field"].GetStringLength()));
          field(w, "message",
                std::string_view(row["message"].GetString(), row["message"].GetStringLength()));
        });
      }
    } else if (e.type == "import.progressed") {
      counts();
    } else if (e.type == "import.completed" || e.type == "import.failed") {
      counts();
      c.set["bytes"] = d.integer("bytes");
      c.set["status"] = std::string(e.type == "import.completed" ? "completed" : "failed");
      if (e.type == "import.failed") c.set["failure"] = d.string("reason");
      c.set["finished_at"] = at;
    } else {
      unprojected_type(e.type);
    }
  }
};

}  // namespace

LogRecord decode_record(std::int32_t partition, std::int64_t offset, std::string_view value) {
  LogRecord r;
  r.partition = partition;
  r.offset = offset;
  r.event = commands::event_from_json(value);
  const auto& e = r.event;
  for (const auto* id : {&e.event_id, &e.aggregate_id, &e.command_id, &e.causation_id}) {
    if (!commands::is_uuid(*id)) throw std::invalid_argument("an id is not a UUID");
  }
  commands::upcast(r.event);
  const auto schema = e.type + ".v" + std::to_string(e.schema_version);
  const auto& schemas = commands::SchemaRegistry::instance();
  if (!schemas.contains(schema)) throw std::invalid_argument("no schema " + schema);
  if (const auto v = schemas.validate_json(schema, e.data)) {
    throw std::invalid_argument(schema + ": " + v->field + " " + v->message);
  }
  return r;
}

std::string topic_of(const std::string& aggregate_type) { return aggregate_type + "s"; }

BatchRows fold_batch(const std::vector<LogRecord>& records, bool log_rows) {
  Folder folder;
  Rows events;
  Rows notifications;
  for (const auto& r : records) {
    const auto& e = r.event;
    const auto at = core::format_utc_micros(e.occurred_at_us);
    if (e.aggregate_type == "contact") {
      folder.contact(e, at);
    } else if (e.aggregate_type == "alert") {
      folder.alert(e, at);
    } else if (e.aggregate_type == "report") {
      folder.report(e, at);
    } else if (e.aggregate_type == "backup") {
      folder.backup(e, at);
    } else if (e.aggregate_type == "report_schedule") {
      folder.report_schedule(e, at);
    } else if (e.aggregate_type == "webhook") {
      folder.webhook(e, at);
    } else if (e.aggregate_type == "import") {
      folder.import(e, at);
    } else {
      folder.unprojected_type(e.type);
    }
    if (!log_rows) continue;
    events.add([&](Writer& w) {
      field(w, "partition", std::int64_t{r.partition});
      field(w, "offset", r.offset);
      field(w, "event_id", e.event_id);
      field(w, "type", e.type);
      field(w, "schema_version", std::int64_t{e.schema_version});
      field(w, "aggregate_type", e.aggregate_type);
      field(w, "aggregate_id", e.aggregate_id);
      field(w, "version", e.version);
      field(w, "occurred_at", at);
      field(w, "command_id", e.command_id);
      field(w, "correlation_id", e.correlation_id);
      field(w, "causation_id", e.causation_id);
      field(w, "actor", e.actor);
      raw(w, "data", e.data);
    });
    notifications.add([&](Writer& w) {
      field(w, "topic", topic_of(e.aggregate_type));
      field(w, "type", e.type);
      field(w, "aggregate_id", e.aggregate_id);
      field(w, "version", e.version);
      field(w, "position", commands::position_token(r.partition, r.offset));
    });
  }
  BatchRows out;
  out.events = events.finish();
  out.contacts = changes_json(folder.contacts);
  out.calls = std::move(folder.calls);
  out.alerts = changes_json(folder.alerts);
  out.alert_timeline = folder.timeline.finish();
  out.reports = changes_json(folder.reports);
  out.backups = changes_json(folder.backups);
  out.report_schedules = changes_json(folder.schedules);
  out.webhooks = changes_json(folder.webhooks);
  out.imports = changes_json(folder.imports);
  out.import_errors = folder.import_errors.finish();
  out.notifications = notifications.finish();
  out.event_count = records.size();
  out.unprojected_types = std::move(folder.unprojected);
  return out;
}

}  // namespace cauce::projections
