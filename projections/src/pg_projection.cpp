#include "pg_projection.hpp"

#include <algorithm>
#include <set>

#include <pqxx/stream_to>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>

namespace cauce::projections {
namespace {

// Serialises the writers of `notifications` across projector processes from the moment they
// draw ids until they commit, so ids become visible in increasing order: a reader that has seen
// id N never later sees an id below N appear (Last-Event-ID resumes without a gap).
constexpr std::int64_t kNotificationLock = 0x636175636531;  // "cauce1"

const char* const kEnsureCheckpoints = R"(
  INSERT INTO projection_checkpoints (projection, topic, partition, next_offset)
  SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
  ON CONFLICT DO NOTHING)";

const char* const kLockCheckpoints = R"(
  SELECT partition, next_offset FROM projection_checkpoints
  WHERE projection = $1 AND topic = $2 AND partition = ANY($3::int[])
  ORDER BY partition FOR UPDATE)";

const char* const kReadCheckpoints = R"(
  SELECT partition, next_offset FROM projection_checkpoints
  WHERE projection = $1 AND topic = $2 AND partition = ANY($3::int[]))";

const char* const kSaveCheckpoints = R"(
  UPDATE projection_checkpoints c SET next_offset = x.next_offset, updated_at = now()
  FROM unnest($3::int[], $4::bigint[]) AS x(partition, next_offset)
  WHERE c.projection = $1 AND c.topic = $2 AND c.partition = x.partition)";

// Per connection: where a batch that repeats known call ids is COPYed before being merged (see
// write_calls).
const char* const kCreateIncoming = R"(
  CREATE TEMP TABLE IF NOT EXISTS incoming_calls (LIKE calls INCLUDING DEFAULTS)
    ON COMMIT DELETE ROWS)";

const std::vector<std::string> kEventColumns = {
    "partition",      "\"offset\"",   "event_id", "type",        "schema_version",
    "aggregate_type", "aggregate_id", "version",  "occurred_at", "command_id",
    "correlation_id", "causation_id", "actor",    "data"};

const std::vector<std::string> kNotificationColumns = {"topic", "type", "aggregate_id", "version",
                                                       "position"};

const char* const kContactColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, calls_added int,
    name text, phone text, email text, tags text[], notes text, status text, assigned_to text,
    last_call_at timestamptz, created_at timestamptz, updated_at timestamptz)";

const std::string kInsertContacts = std::string(R"(
  INSERT INTO contacts (id, name, phone, email, tags, notes, status, assigned_to, calls_count,
                        last_call_at, created_at, updated_at, version)
  SELECT id, name, phone, email, coalesce(tags, '{}'), notes, status, assigned_to, calls_added,
         last_call_at, created_at, updated_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                    kContactColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateContacts = std::string(R"(
  UPDATE contacts c SET
    name = coalesce(x.name, c.name), phone = coalesce(x.phone, c.phone),
    email = coalesce(x.email, c.email), tags = coalesce(x.tags, c.tags),
    notes = coalesce(x.notes, c.notes), status = coalesce(x.status, c.status),
    assigned_to = coalesce(x.assigned_to, c.assigned_to),
    calls_count = c.calls_count + x.calls_added,
    last_call_at = greatest(c.last_call_at, x.last_call_at),
    updated_at = x.updated_at, version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                    kContactColumns + R"()
  WHERE NOT x.created AND c.id = x.id AND c.version < x.first_version)";

const char* const kMergeCalls =
    "INSERT INTO calls SELECT * FROM incoming_calls ON CONFLICT DO NOTHING";

const std::vector<std::string> kCallColumns = {"call_id", "contact_id", "outcome",     "duration_s",
                                               "notes",   "operator",   "occurred_at", "version"};

const char* const kAlertColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, level text, title text,
    region text, source text, details text, state text, resolution text,
    raised_at timestamptz, updated_at timestamptz, closed_at timestamptz)";

const std::string kInsertAlerts = std::string(R"(
  INSERT INTO alerts (id, level, title, region, source, details, state, resolution, raised_at,
                      updated_at, closed_at, version)
  SELECT id, level, title, region, source, details, state, resolution, raised_at, updated_at,
         closed_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                  kAlertColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateAlerts = std::string(R"(
  UPDATE alerts a SET
    level = coalesce(x.level, a.level), state = coalesce(x.state, a.state),
    resolution = coalesce(x.resolution, a.resolution),
    closed_at = coalesce(x.closed_at, a.closed_at),
    updated_at = x.updated_at, version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                  kAlertColumns + R"()
  WHERE NOT x.created AND a.id = x.id AND a.version < x.first_version)";

const char* const kInsertTimeline = R"(
  INSERT INTO alert_timeline (alert_id, version, type, occurred_at, actor, data)
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
    alert_id uuid, version bigint, type text, occurred_at timestamptz, actor text, data jsonb)
  ON CONFLICT DO NOTHING)";

const char* const kJobColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, title text,
    source_url text, status text, requested_at timestamptz, updated_at timestamptz)";

const std::string kInsertReports = std::string(R"(
  INSERT INTO reports (id, title, source_url, status, requested_at, updated_at, version)
  SELECT id, title, source_url, status, requested_at, updated_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kJobColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateReports = std::string(R"(
  UPDATE reports r SET status = coalesce(x.status, r.status), updated_at = x.updated_at,
                       version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kJobColumns + R"()
  WHERE NOT x.created AND r.id = x.id AND r.version < x.first_version)";

const std::string kInsertBackups = std::string(R"(
  INSERT INTO backups (id, status, requested_at, updated_at, version)
  SELECT id, status, requested_at, updated_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kJobColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateBackups = std::string(R"(
  UPDATE backups b SET status = coalesce(x.status, b.status), updated_at = x.updated_at,
                       version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kJobColumns + R"()
  WHERE NOT x.created AND b.id = x.id AND b.version < x.first_version)";

std::string int_array(const std::vector<std::int64_t>& values) {
  std::string out(1, '{');
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    out.append(std::to_string(values[i]));
  }
  out.push_back('}');
  return out;
}

std::vector<std::int64_t> partitions_of(const std::vector<std::int32_t>& partitions) {
  return {partitions.begin(), partitions.end()};
}

// {"projection":…,"topic":…,"checkpoints":{"0":12,…},"last_notification_id":N}
std::string progress_payload(const std::string& projection, const std::string& topic,
                             const std::map<std::int32_t, std::int64_t>& checkpoints,
                             std::int64_t last_notification_id) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("projection");
  w.String(projection.c_str());
  w.Key("topic");
  w.String(topic.c_str());
  w.Key("checkpoints");
  w.StartObject();
  for (const auto& [partition, next] : checkpoints) {
    const auto key = std::to_string(partition);
    w.Key(key.c_str());
    w.Int64(next);
  }
  w.EndObject();
  w.Key("last_notification_id");
  w.Int64(last_notification_id);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

bool has_rows(const std::string& json_array) { return json_array.size() > 2; }

void copy_events(pqxx::transaction_base& txn, const char* table,
                 const std::vector<LogRecord>& records) {
  pqxx::stream_to out(txn, table, kEventColumns);
  for (const auto& r : records) {
    const auto& e = r.event;
    out << std::make_tuple(r.partition, r.offset, e.event_id, e.type, e.schema_version,
                           e.aggregate_type, e.aggregate_id, e.version,
                           core::format_utc_micros(e.occurred_at_us), e.command_id,
                           e.correlation_id, e.causation_id, e.actor, e.data);
  }
  out.complete();
}

void copy_calls(pqxx::transaction_base& txn, const char* table, const std::vector<CallRow>& calls) {
  if (calls.empty()) return;
  pqxx::stream_to out(txn, table, kCallColumns);
  for (const auto& c : calls) {
    out << std::make_tuple(
        c.call_id, c.contact_id, c.outcome, c.duration_s, c.notes ? c.notes->c_str() : nullptr,
        c.operator_name ? c.operator_name->c_str() : nullptr, c.occurred_at, c.version);
  }
  out.complete();
}

// The envelopes a batch adds to `events`: COPYed straight in (the raw limit). Only when that hits
// a unique key — an event id or an (aggregate, version) already there or twice in the batch,
// which only a foreign producer repeating records can cause — the repeats are dropped first,
// so they never block a partition nor reach the read models. Returns the records written.
std::vector<LogRecord> write_events(pqxx::work& txn, std::vector<LogRecord> records) {
  if (records.empty()) return records;
  try {
    pqxx::subtransaction direct(txn, "direct_copy");
    copy_events(direct, "events", records);
    direct.commit();
    return records;
  } catch (const pqxx::unique_violation&) {
    core::Logger("projector").warn("a batch repeats events already projected; dropping them");
  }
  std::string ids = "{";
  std::string aggregates = "{";
  for (std::size_t i = 0; i < records.size(); ++i) {
    ids += (i ? "," : "") + records[i].event.event_id;
    aggregates += (i ? "," : "") + records[i].event.aggregate_id;
  }
  ids += "}";
  aggregates += "}";
  std::set<std::string> known_ids;
  for (const auto& row :
       txn.exec_params("SELECT event_id::text FROM events WHERE event_id = ANY($1::uuid[])", ids)) {
    known_ids.insert(row[0].as<std::string>());
  }
  std::map<std::string, std::int64_t> stored_version;  // "<type>/<aggregate id>" -> version
  for (const auto& row :
       txn.exec_params("SELECT aggregate_type || '/' || aggregate_id, max(version) FROM events "
                       "WHERE aggregate_id = ANY($1::uuid[]) GROUP BY aggregate_type, aggregate_id",
                       aggregates)) {
    stored_version[row[0].as<std::string>()] = row[1].as<std::int64_t>();
  }
  std::vector<LogRecord> fresh;
  for (auto& r : records) {
    const auto& e = r.event;
    const auto aggregate = e.aggregate_type + "/" + e.aggregate_id;
    const auto it = stored_version.find(aggregate);
    const bool stale = it != stored_version.end() && e.version <= it->second;
    if (stale || !known_ids.insert(e.event_id).second) continue;
    stored_version[aggregate] = e.version;  // a later repeat in the batch is stale too
    fresh.push_back(std::move(r));
  }
  copy_events(txn, "events", fresh);
  return fresh;
}

// The batch's calls: COPYed straight in, merged (skipping known call ids) only when that fails.
void write_calls(pqxx::work& txn, const std::vector<CallRow>& calls) {
  if (calls.empty()) return;
  try {
    pqxx::subtransaction direct(txn, "direct_calls");
    copy_calls(direct, "calls", calls);
    direct.commit();
    return;
  } catch (const pqxx::unique_violation&) {
    core::Logger("projector").warn("a batch repeats known call ids; merging it");
  }
  copy_calls(txn, "incoming_calls", calls);
  txn.exec(kMergeCalls);
}

// Notifications in log order, ids drawn in that order; returns the last id. The caller holds
// the notification lock.
std::int64_t write_notifications(pqxx::work& txn, const std::vector<LogRecord>& records) {
  {
    pqxx::stream_to out(txn, "notifications", kNotificationColumns);
    for (const auto& r : records) {
      const auto& e = r.event;
      out << std::make_tuple(topic_of(e.aggregate_type), e.type, e.aggregate_id, e.version,
                             commands::position_token(r.partition, r.offset));
    }
    out.complete();
  }
  return txn.exec1("SELECT currval(pg_get_serial_sequence('notifications', 'id'))")[0]
      .as<std::int64_t>();
}

}  // namespace

PgProjection::PgProjection(std::string conninfo, std::string projection, std::string topic)
    : conninfo_(std::move(conninfo)),
      projection_(std::move(projection)),
      topic_(std::move(topic)) {}

pqxx::connection& PgProjection::connection() {
  if (!connection_) {
    auto c = core::connect_postgres(conninfo_);
    c->prepare("ensure_checkpoints", kEnsureCheckpoints);
    c->prepare("lock_checkpoints", kLockCheckpoints);
    c->prepare("read_checkpoints", kReadCheckpoints);
    c->prepare("save_checkpoints", kSaveCheckpoints);
    pqxx::nontransaction(*c).exec(kCreateIncoming);
    c->prepare("insert_contacts", kInsertContacts);
    c->prepare("update_contacts", kUpdateContacts);
    c->prepare("insert_alerts", kInsertAlerts);
    c->prepare("update_alerts", kUpdateAlerts);
    c->prepare("insert_timeline", kInsertTimeline);
    c->prepare("insert_reports", kInsertReports);
    c->prepare("update_reports", kUpdateReports);
    c->prepare("insert_backups", kInsertBackups);
    c->prepare("update_backups", kUpdateBackups);

    connection_ = std::move(c);
  }
  return *connection_;
}

std::map<std::int32_t, std::int64_t> PgProjection::load_checkpoints(
    const std::vector<std::int32_t>& partitions) {
  std::map<std::int32_t, std::int64_t> out;
  for (const auto p : partitions) out[p] = 0;
  try {
    pqxx::read_transaction txn(connection());
    const auto rows = txn.exec_prepared("read_checkpoints", projection_, topic_,
                                        int_array(partitions_of(partitions)));
    for (const auto& row : rows) out[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
    return out;
  } catch (const pqxx::broken_connection&) {
    connection_.reset();
    throw core::DependencyError("postgres", "connection to PostgreSQL lost", true);
  }
}

ApplyResult PgProjection::apply(const std::vector<LogRecord>& records,
                                const std::map<std::int32_t, std::int64_t>& passed) {
  ApplyResult result;
  if (records.empty() && passed.empty()) return result;
  std::vector<std::int32_t> partitions;
  auto note_partition = [&partitions](std::int32_t p) {
    if (std::find(partitions.begin(), partitions.end(), p) == partitions.end()) {
      partitions.push_back(p);
    }
  };
  for (const auto& r : records) note_partition(r.partition);
  for (const auto& [p, next] : passed) note_partition(p);
  std::sort(partitions.begin(), partitions.end());
  const auto partition_array = int_array(partitions_of(partitions));
  try {
    pqxx::work txn(connection());
    // A partition's checkpoint row is created once; after that the lock below is enough.
    if (!std::all_of(partitions.begin(), partitions.end(),
                     [this](std::int32_t p) { return ensured_.contains(p); })) {
      txn.exec_prepared("ensure_checkpoints", projection_, topic_, partition_array);
    }
    std::map<std::int32_t, std::int64_t> stored;
    for (const auto& row :
         txn.exec_prepared("lock_checkpoints", projection_, topic_, partition_array)) {
      stored[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
    }
    // Only what lies at or past the checkpoint: a redelivered record was applied already.
    std::vector<LogRecord> fresh;
    fresh.reserve(records.size());
    result.checkpoints = stored;
    for (const auto& r : records) {
      if (r.offset < stored[r.partition]) {
        ++result.already_applied;
        continue;
      }
      fresh.push_back(r);
      result.checkpoints[r.partition] = std::max(result.checkpoints[r.partition], r.offset + 1);
    }
    for (const auto& [p, next] : passed) {
      result.checkpoints[p] = std::max(result.checkpoints[p], next);
    }
    if (result.checkpoints == stored) {
      txn.commit();
      ensured_.insert(partitions.begin(), partitions.end());
      return result;
    }
    fresh = write_events(txn, std::move(fresh));
    const auto rows = fold_batch(fresh, false);
    write_calls(txn, rows.calls);
    const std::pair<const char*, const std::string*> statements[] = {
        {"insert_contacts", &rows.contacts},       {"update_contacts", &rows.contacts},
        {"insert_alerts", &rows.alerts},           {"update_alerts", &rows.alerts},
        {"insert_timeline", &rows.alert_timeline}, {"insert_reports", &rows.reports},
        {"update_reports", &rows.reports},         {"insert_backups", &rows.backups},
        {"update_backups", &rows.backups}};
    for (const auto& [name, json] : statements) {
      if (has_rows(*json)) txn.exec_prepared(name, *json);
    }
    std::int64_t last_id = 0;
    if (!fresh.empty()) {
      txn.exec_params("SELECT pg_advisory_xact_lock($1)", kNotificationLock);
      last_id = write_notifications(txn, fresh);
    }
    std::vector<std::int64_t> parts;
    std::vector<std::int64_t> nexts;
    for (const auto& [partition, next] : result.checkpoints) {
      parts.push_back(partition);
      nexts.push_back(next);
    }
    txn.exec_prepared("save_checkpoints", projection_, topic_, int_array(parts), int_array(nexts));
    txn.exec_params("SELECT pg_notify($1, $2)", kProgressChannel,
                    progress_payload(projection_, topic_, result.checkpoints, last_id));
    txn.commit();
    ensured_.insert(partitions.begin(), partitions.end());
    result.applied = fresh.size();
    result.unprojected_types = rows.unprojected_types;
    return result;
  } catch (const pqxx::broken_connection&) {
    connection_.reset();
    throw core::DependencyError("postgres", "connection to PostgreSQL lost", true);
  } catch (const pqxx::in_doubt_error&) {
    // The commit may or may not have happened: the checkpoint decides on the retry.
    connection_.reset();
    throw core::DependencyError("postgres", "PostgreSQL commit outcome unknown", true);
  }
}

std::int64_t PgProjection::prune_notifications(int retention_hours) {
  try {
    pqxx::work txn(connection());
    const auto r = txn.exec_params(
        "DELETE FROM notifications WHERE created_at < now() - make_interval(hours => $1)",
        retention_hours);
    txn.commit();
    return static_cast<std::int64_t>(r.affected_rows());
  } catch (const pqxx::broken_connection&) {
    connection_.reset();
    throw core::DependencyError("postgres", "connection to PostgreSQL lost", true);
  }
}

}  // namespace cauce::projections
