#include "pg_projection.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <pqxx/stream_to>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/json.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>

namespace cauce::projections {
namespace {

// Serialises the writers of `notifications` across projector processes from the moment they
// draw ids until they commit, so ids become visible in increasing order: a reader that has seen
// id N never later sees an id below N appear (Last-Event-ID resumes without a gap).
constexpr std::int64_t kNotificationLock = 0x636175636531;  // "cauce1"
// Serialises the dropping of replaced read-model generations across processes.
constexpr std::int64_t kDropLock = 0x636175636533;  // "cauce3"

const char* const kEnsureCheckpoints = R"(
  INSERT INTO projection_checkpoints (projection, topic, partition, next_offset)
  SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
  ON CONFLICT DO NOTHING)";

const char* const kLockCheckpoints = R"(
  SELECT partition, next_offset, retired, current_schema() FROM projection_checkpoints
  WHERE projection = $1 AND topic = $2 AND partition = ANY($3::int[])
  ORDER BY partition FOR UPDATE)";

const char* const kReadCheckpoints = R"(
  SELECT partition, next_offset FROM projection_checkpoints
  WHERE projection = $1 AND topic = $2 AND partition = ANY($3::int[]))";

const char* const kSaveCheckpoints = R"(
  UPDATE projection_checkpoints c SET next_offset = x.next_offset, updated_at = now()
  FROM unnest($3::int[], $4::bigint[]) AS x(partition, next_offset)
  WHERE c.projection = $1 AND c.topic = $2 AND c.partition = x.partition)";

const char* const kEnsureMarks = R"(
  INSERT INTO notification_marks (topic, partition, next_offset)
  SELECT $1, p, 0 FROM unnest($2::int[]) AS p
  ON CONFLICT DO NOTHING)";

const char* const kLockMarks = R"(
  SELECT partition, next_offset FROM notification_marks
  WHERE topic = $1 AND partition = ANY($2::int[])
  ORDER BY partition FOR UPDATE)";

const char* const kSaveMarks = R"(
  UPDATE notification_marks m SET next_offset = x.next_offset
  FROM unnest($2::int[], $3::bigint[]) AS x(partition, next_offset)
  WHERE m.topic = $1 AND m.partition = x.partition)";

// Per connection: where a batch that repeats known call ids is COPYed before being merged (see
// write_calls).
const char* const kCreateIncoming = R"(
  CREATE TEMP TABLE IF NOT EXISTS incoming_calls (LIKE calls INCLUDING DEFAULTS)
    ON COMMIT DELETE ROWS)";

const std::vector<std::string> kEventColumns = {
    "partition",      "\"offset\"",   "event_id", "type",        "schema_version",
    "aggregate_type", "aggregate_id", "version",  "occurred_at", "command_id",
    "correlation_id", "causation_id", "actor",    "data"};

const std::vector<std::string> kNotificationColumns = {
    "topic", "type", "aggregate_id", "version", "position", "level", "region", "people"};

// claimed_by, claimed_until: "" clears them (a release), NULL leaves them.
const char* const kContactColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, calls_added int,
    name text, phone text, email text, tags text[], notes text, status text, assigned_to text,
    last_call_at timestamptz, created_at timestamptz, updated_at timestamptz, claimed_by text,
    claimed_until text)";

const std::string kInsertContacts = std::string(R"(
  INSERT INTO contacts (id, name, phone, email, tags, notes, status, assigned_to, calls_count,
                        last_call_at, created_at, updated_at, version, claimed_by, claimed_until)
  SELECT id, name, phone, email, coalesce(tags, '{}'), notes, status, assigned_to, calls_added,
         last_call_at, created_at, updated_at, version, nullif(claimed_by, ''),
         nullif(claimed_until, '')::timestamptz
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
    claimed_by = CASE WHEN x.claimed_by IS NULL THEN c.claimed_by ELSE nullif(x.claimed_by, '') END,
    claimed_until = CASE WHEN x.claimed_until IS NULL THEN c.claimed_until
                         ELSE nullif(x.claimed_until, '')::timestamptz END,
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
    raised_at timestamptz, updated_at timestamptz, closed_at timestamptz,
    acknowledged_at timestamptz)";

const std::string kInsertAlerts = std::string(R"(
  INSERT INTO alerts (id, level, title, region, source, details, state, resolution, raised_at,
                      updated_at, closed_at, version, acknowledged_at)
  SELECT id, level, title, region, source, details, state, resolution, raised_at, updated_at,
         closed_at, version, acknowledged_at
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                  kAlertColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateAlerts = std::string(R"(
  UPDATE alerts a SET
    level = coalesce(x.level, a.level), state = coalesce(x.state, a.state),
    resolution = coalesce(x.resolution, a.resolution),
    closed_at = coalesce(x.closed_at, a.closed_at),
    acknowledged_at = coalesce(x.acknowledged_at, a.acknowledged_at),
    updated_at = x.updated_at, version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                  kAlertColumns + R"()
  WHERE NOT x.created AND a.id = x.id AND a.version < x.first_version)";

const char* const kInsertTimeline = R"(
  INSERT INTO alert_timeline (alert_id, version, type, occurred_at, actor, data)
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
    alert_id uuid, version bigint, type text, occurred_at timestamptz, actor text, data jsonb)
  ON CONFLICT DO NOTHING)";

// A report's or backup's row: the whole row when the batch creates it, else the columns the
// batch sets (NULL = unchanged); `new_errors` are appended to `errors`.
const char* const kReportColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, title text,
    source_url text, status text, requested_at timestamptz, updated_at timestamptz,
    round integer, attempts integer, new_errors jsonb, next_attempt_at text,
    content_type text, source_bytes bigint, source_sha256 text, pages integer, pdf_bytes bigint,
    pdf_sha256 text, failure text, schedule_id uuid, slot_at timestamptz, source_auth text)";

// next_attempt_at: "" clears it, NULL leaves it.
const std::string kInsertReports = std::string(R"(
  INSERT INTO reports (id, title, source_url, status, requested_at, updated_at, version, round,
                       attempts, errors, next_attempt_at, content_type, source_bytes,
                       source_sha256, pages, pdf_bytes, pdf_sha256, failure, schedule_id, slot_at,
                       source_auth)
  SELECT id, title, source_url, status, requested_at, updated_at, version, coalesce(round, 0),
         coalesce(attempts, 0), coalesce(new_errors, '[]'),
         nullif(next_attempt_at, '')::timestamptz, content_type, source_bytes, source_sha256,
         pages, pdf_bytes, pdf_sha256, nullif(failure, ''), schedule_id, slot_at, source_auth
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kReportColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateReports = std::string(R"(
  UPDATE reports r SET status = coalesce(x.status, r.status), updated_at = x.updated_at,
    version = x.version, round = coalesce(x.round, r.round),
    attempts = coalesce(x.attempts, r.attempts),
    errors = r.errors || coalesce(x.new_errors, '[]'),
    next_attempt_at = CASE WHEN x.next_attempt_at IS NULL THEN r.next_attempt_at
                           ELSE nullif(x.next_attempt_at, '')::timestamptz END,
    content_type = coalesce(x.content_type, r.content_type),
    source_bytes = coalesce(x.source_bytes, r.source_bytes),
    source_sha256 = coalesce(x.source_sha256, r.source_sha256),
    pages = coalesce(x.pages, r.pages), pdf_bytes = coalesce(x.pdf_bytes, r.pdf_bytes),
    pdf_sha256 = coalesce(x.pdf_sha256, r.pdf_sha256),
    failure = CASE WHEN x.failure IS NULL THEN r.failure ELSE nullif(x.failure, '') END
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kReportColumns + R"()
  WHERE NOT x.created AND r.id = x.id AND r.version < x.first_version)";

const char* const kWebhookColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, url text, topics text[],
    filters jsonb, status text, disabled_reason text, consecutive_failures integer,
    last_error text, disabled_at text, created_at timestamptz, updated_at timestamptz)";

const std::string kInsertWebhooks = std::string(R"(
  INSERT INTO webhooks (id, url, topics, filters, status, disabled_reason, consecutive_failures,
                        last_error, disabled_at, created_at, updated_at, version)
  SELECT id, url, topics, coalesce(filters, '{}'), status, nullif(disabled_reason, ''),
         consecutive_failures, nullif(last_error, ''), nullif(disabled_at, '')::timestamptz,
         created_at, updated_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                    kWebhookColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

// "" clears a text column, NULL leaves it.
const std::string kUpdateWebhooks = std::string(R"(
  UPDATE webhooks w SET status = coalesce(x.status, w.status), updated_at = x.updated_at,
    version = x.version,
    disabled_reason = CASE WHEN x.disabled_reason IS NULL THEN w.disabled_reason
                           ELSE nullif(x.disabled_reason, '') END,
    consecutive_failures = coalesce(x.consecutive_failures, w.consecutive_failures),
    last_error = CASE WHEN x.last_error IS NULL THEN w.last_error
                      ELSE nullif(x.last_error, '') END,
    disabled_at = CASE WHEN x.disabled_at IS NULL THEN w.disabled_at
                       ELSE nullif(x.disabled_at, '')::timestamptz END
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                    kWebhookColumns + R"()
  WHERE NOT x.created AND w.id = x.id AND w.version < x.first_version)";

// The copy's columns (0016): copy_error and copy_next_attempt_at "" clears, NULL leaves.
const char* const kBackupColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, status text,
    requested_at timestamptz, updated_at timestamptz, created_at timestamptz, round integer,
    attempts integer, new_errors jsonb, next_attempt_at text, size_bytes bigint, sha256 text,
    positions jsonb, events bigint, failure text, copy_status text, copy_to text,
    copy_directory text, copy_sha256 text, copy_bytes bigint, copy_attempts integer,
    copy_error text, copy_next_attempt_at text, copied_at timestamptz)";

const std::string kInsertBackups = std::string(R"(
  INSERT INTO backups (id, status, requested_at, updated_at, version, created_at, round,
                       attempts, errors, next_attempt_at, size_bytes, sha256, positions, events,
                       failure, copy_status, copy_to, copy_directory, copy_sha256, copy_bytes,
                       copy_attempts, copy_error, copy_next_attempt_at, copied_at)
  SELECT id, status, requested_at, updated_at, version, created_at, coalesce(round, 0),
         coalesce(attempts, 0), coalesce(new_errors, '[]'),
         nullif(next_attempt_at, '')::timestamptz, size_bytes, sha256, positions, events,
         nullif(failure, ''), copy_status, copy_to, copy_directory, copy_sha256, copy_bytes,
         coalesce(copy_attempts, 0), nullif(copy_error, ''),
         nullif(copy_next_attempt_at, '')::timestamptz, copied_at
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kBackupColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateBackups = std::string(R"(
  UPDATE backups b SET status = coalesce(x.status, b.status), updated_at = x.updated_at,
    version = x.version, created_at = coalesce(x.created_at, b.created_at),
    round = coalesce(x.round, b.round), attempts = coalesce(x.attempts, b.attempts),
    errors = b.errors || coalesce(x.new_errors, '[]'),
    next_attempt_at = CASE WHEN x.next_attempt_at IS NULL THEN b.next_attempt_at
                           ELSE nullif(x.next_attempt_at, '')::timestamptz END,
    size_bytes = coalesce(x.size_bytes, b.size_bytes), sha256 = coalesce(x.sha256, b.sha256),
    positions = coalesce(x.positions, b.positions), events = coalesce(x.events, b.events),
    failure = CASE WHEN x.failure IS NULL THEN b.failure ELSE nullif(x.failure, '') END,
    copy_status = coalesce(x.copy_status, b.copy_status),
    copy_to = coalesce(x.copy_to, b.copy_to),
    copy_directory = coalesce(x.copy_directory, b.copy_directory),
    copy_sha256 = coalesce(x.copy_sha256, b.copy_sha256),
    copy_bytes = coalesce(x.copy_bytes, b.copy_bytes),
    copy_attempts = coalesce(x.copy_attempts, b.copy_attempts),
    copy_error = CASE WHEN x.copy_error IS NULL THEN b.copy_error
                      ELSE nullif(x.copy_error, '') END,
    copy_next_attempt_at = CASE WHEN x.copy_next_attempt_at IS NULL THEN b.copy_next_attempt_at
                                ELSE nullif(x.copy_next_attempt_at, '')::timestamptz END,
    copied_at = coalesce(x.copied_at, b.copied_at)
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kBackupColumns + R"()
  WHERE NOT x.created AND b.id = x.id AND b.version < x.first_version)";

// A report schedule's row. every, cron, source_auth: "" clears them (a change's definition
// leaves them out), NULL leaves them.
const char* const kScheduleColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, title text, source_url text,
    every text, cron text, timezone text, source_auth text, status text, slots_from timestamptz,
    last_slot_at timestamptz, last_report_id uuid, created_at timestamptz,
    updated_at timestamptz)";

const std::string kInsertSchedules = std::string(R"(
  INSERT INTO report_schedules (id, title, source_url, every, cron, timezone, source_auth, status,
                                slots_from, last_slot_at, last_report_id, created_at, updated_at,
                                version)
  SELECT id, title, source_url, nullif(every, ''), nullif(cron, ''), timezone,
         nullif(source_auth, ''), status, slots_from, last_slot_at, last_report_id, created_at,
         updated_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                     kScheduleColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateSchedules = std::string(R"(
  UPDATE report_schedules s SET
    title = coalesce(x.title, s.title), source_url = coalesce(x.source_url, s.source_url),
    every = CASE WHEN x.every IS NULL THEN s.every ELSE nullif(x.every, '') END,
    cron = CASE WHEN x.cron IS NULL THEN s.cron ELSE nullif(x.cron, '') END,
    timezone = coalesce(x.timezone, s.timezone),
    source_auth = CASE WHEN x.source_auth IS NULL THEN s.source_auth
                       ELSE nullif(x.source_auth, '') END,
    status = coalesce(x.status, s.status), slots_from = coalesce(x.slots_from, s.slots_from),
    last_slot_at = coalesce(x.last_slot_at, s.last_slot_at),
    last_report_id = coalesce(x.last_report_id, s.last_report_id),
    updated_at = x.updated_at, version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                     kScheduleColumns + R"()
  WHERE NOT x.created AND s.id = x.id AND s.version < x.first_version)";

// An import's row (api/README.md, imports): the whole row when the batch starts it, else the
// columns the batch sets (NULL = unchanged); failure and finished_at are set once, at the end.
const char* const kImportColumns = R"(
    id uuid, created boolean, first_version bigint, version bigint, status text, format text,
    actor text, rows_total bigint, accepted bigint, rejected bigint, duplicates bigint,
    bytes bigint, failure text, started_at timestamptz, updated_at timestamptz,
    finished_at timestamptz)";

const std::string kInsertImports = std::string(R"(
  INSERT INTO imports (id, status, format, actor, rows_total, accepted, rejected, duplicates,
                       bytes, failure, started_at, updated_at, finished_at, version)
  SELECT id, status, format, actor, coalesce(rows_total, 0), coalesce(accepted, 0),
         coalesce(rejected, 0), coalesce(duplicates, 0), coalesce(bytes, 0), failure,
         started_at, updated_at, finished_at, version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kImportColumns + R"()
  WHERE created
  ON CONFLICT (id) DO NOTHING)";

const std::string kUpdateImports = std::string(R"(
  UPDATE imports i SET status = coalesce(x.status, i.status),
    rows_total = coalesce(x.rows_total, i.rows_total), accepted = coalesce(x.accepted, i.accepted),
    rejected = coalesce(x.rejected, i.rejected), duplicates = coalesce(x.duplicates, i.duplicates),
    bytes = coalesce(x.bytes, i.bytes), failure = coalesce(x.failure, i.failure),
    finished_at = coalesce(x.finished_at, i.finished_at), updated_at = x.updated_at,
    version = x.version
  FROM jsonb_to_recordset($1::jsonb) AS x()") +
                                   kImportColumns + R"()
  WHERE NOT x.created AND i.id = x.id AND i.version < x.first_version)";

// Row errors are keyed by (import, row): a batch applied again inserts nothing twice.
const char* const kInsertImportErrors = R"(
  INSERT INTO import_errors (import_id, "row", field, message)
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
    import_id uuid, "row" bigint, field text, message text)
  ON CONFLICT DO NOTHING)";

const char* const kAnyOpenParked = R"(
  SELECT EXISTS (SELECT 1 FROM parked_events
                 WHERE projection = $1 AND topic = $2 AND resolved_at IS NULL))";

const char* const kOpenParkedAggregates = R"(
  SELECT DISTINCT aggregate_id::text FROM parked_events
  WHERE projection = $1 AND topic = $2 AND resolved_at IS NULL
    AND aggregate_id = ANY($3::uuid[]))";

const char* const kCountOpenParked = R"(
  SELECT count(*) FROM parked_events WHERE projection = $1 AND topic = $2 AND resolved_at IS NULL)";

const char* const kPark = R"(
  INSERT INTO parked_events (projection, topic, partition, "offset", event_id, type,
                             aggregate_type, aggregate_id, record, error, sqlstate)
  VALUES ($1, $2, $3, $4, nullif($5, '')::uuid, nullif($6, ''), nullif($7, ''),
          nullif($8, '')::uuid, $9, $10, nullif($11, ''))
  ON CONFLICT (projection, topic, partition, "offset") DO NOTHING)";

// The parked event asked for and, when it has an aggregate, every open one of that aggregate,
// in log order (locked: two retries of one aggregate do not interleave).
const char* const kLockParkedChain = R"(
  SELECT p.id, p.partition, p."offset", p.record, p.resolved_at IS NOT NULL
  FROM parked_events p JOIN parked_events asked ON asked.id = $1
  WHERE p.id = asked.id
     OR (asked.aggregate_id IS NOT NULL AND p.resolved_at IS NULL
         AND p.projection = asked.projection AND p.topic = asked.topic
         AND p.aggregate_id = asked.aggregate_id)
  ORDER BY p.partition, p."offset"
  FOR UPDATE OF p)";

const char* const kResolveParked = R"(
  UPDATE parked_events SET resolution = $2, resolved_at = now(), resolved_by = $3,
                           attempts = attempts + (CASE WHEN $2 = 'retried' THEN 1 ELSE 0 END),
                           last_attempt_at = now()
  WHERE id = $1 AND resolved_at IS NULL)";

const char* const kParkedAttemptFailed = R"(
  UPDATE parked_events SET attempts = attempts + 1, last_attempt_at = now(), error = $2,
                           sqlstate = nullif($3, '')
  WHERE id = $1)";

const char* const kListParked = R"(
  SELECT id, partition, "offset", event_id::text, type, aggregate_type, aggregate_id::text, error,
         sqlstate, attempts,
         to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
         to_char(last_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
         resolution,
         to_char(resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), resolved_by
  FROM parked_events
  WHERE projection = $1 AND topic = $2 AND ($3 OR resolved_at IS NULL) AND id > $4
    AND ($6::bigint = 0 OR id = $6::bigint)
  ORDER BY id LIMIT $5)";

// SQLSTATE classes that say the data is at fault, not the server: waiting will not help.
bool is_data_sqlstate(std::string_view state) {
  for (const std::string_view data_class : {"22", "23", "2F", "38", "39", "42", "44", "54", "P0"}) {
    if (state.starts_with(data_class)) return true;
  }
  return false;
}

// PostgreSQL messages may quote the refused value; keep what is stored and logged storable.
std::string storable(std::string text) {
  for (auto& c : text) {
    if (c == '\0') c = '?';
  }
  if (core::storable_text_problem(text)) {
    for (auto& c : text) {
      if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    }
  }
  return text;
}

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

}  // namespace

std::string progress_payload(const std::string& projection, const std::string& topic,
                             const std::string& schema,
                             const std::map<std::int32_t, std::int64_t>& checkpoints,
                             std::int64_t last_notification_id, bool switched) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("projection");
  w.String(projection.c_str());
  w.Key("topic");
  w.String(topic.c_str());
  w.Key("schema");
  w.String(schema.c_str());
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
  if (switched) {
    w.Key("switch");
    w.Bool(true);
  }
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

std::int64_t notify_from_generation(pqxx::dbtransaction& txn, const std::string& schema,
                                    const std::string& topic,
                                    const std::map<std::int32_t, std::int64_t>& checkpoints) {
  std::vector<std::int64_t> partition_list;
  std::vector<std::int64_t> next_list;
  for (const auto& [partition, next] : checkpoints) {
    partition_list.push_back(partition);
    next_list.push_back(next);
  }
  const auto parts = int_array(partition_list);
  const auto nexts = int_array(next_list);
  // Lock order as in a batch: the marks (by partition), then the notification-id lock.
  txn.exec_params(kEnsureMarks, topic, parts);
  txn.exec_params("SELECT 1 FROM notification_marks WHERE topic = $1 ORDER BY partition FOR UPDATE",
                  topic);
  txn.exec_params("SELECT pg_advisory_xact_lock($1)", kNotificationLock);
  // The same rows write_notifications() makes: topic = aggregate type + "s" (topic_of()), the
  // position token "partition:offset" (commands::position_token()).
  const auto last =
      txn.exec_params1(
             "WITH written AS ("
             "  INSERT INTO notifications "
             "    (topic, type, aggregate_id, version, position, level, region, people) "
             "  SELECT e.aggregate_type || 's', e.type, e.aggregate_id, e.version, "
             "         e.partition || ':' || e.\"offset\", a.level, a.region, "
             "         NULLIF(ARRAY(SELECT DISTINCT p FROM unnest(ARRAY["
             "           c.assigned_to, "
             "           CASE WHEN c.claimed_until > e.occurred_at THEN c.claimed_by END, "
             "           CASE e.type WHEN 'contact.assigned' THEN e.data->>'previous' "
             "                       WHEN 'contact.released' THEN e.data->>'released_by' "
             "                       WHEN 'contact.archived' THEN e.data->>'released_by' END"
             "         ]) p WHERE p IS NOT NULL), '{}') "
             "  FROM " +
                 txn.quote_name(schema) + ".events e " + "  LEFT JOIN " + txn.quote_name(schema) +
                 ".alerts a ON e.aggregate_type = 'alert' AND a.id = e.aggregate_id "
                 "  LEFT JOIN " +
                 txn.quote_name(schema) +
                 ".contacts c ON e.aggregate_type = 'contact' AND c.id = e.aggregate_id "
                 "  JOIN notification_marks m ON m.topic = $1 AND m.partition = e.partition "
                 "  WHERE e.\"offset\" >= m.next_offset "
                 "  ORDER BY e.partition, e.\"offset\" RETURNING id) "
                 "SELECT coalesce(max(id), 0) FROM written",
             topic)[0]
          .as<std::int64_t>();
  txn.exec_params(
      "UPDATE notification_marks m SET next_offset = greatest(m.next_offset, x.next_offset) "
      "FROM unnest($2::int[], $3::bigint[]) AS x(partition, next_offset) "
      "WHERE m.topic = $1 AND m.partition = x.partition",
      topic, parts, nexts);
  return last;
}

std::vector<std::string> drop_replaced_generations(pqxx::connection& connection) {
  std::vector<std::string> dropped;
  pqxx::work txn(connection);
  // One dropper at a time, never stuck behind a long reader (pg_dump, a backup's snapshot).
  if (!txn.exec_params1("SELECT pg_try_advisory_xact_lock($1)", kDropLock)[0].as<bool>()) {
    return dropped;
  }
  txn.exec("SET LOCAL lock_timeout = '2s'");
  const auto due = txn.exec(R"(
    SELECT id, old_schema FROM replays
    WHERE status = 'switched' AND dropped_at IS NULL AND drop_after <= now()
      AND old_schema IS DISTINCT FROM (SELECT schema FROM read_model_live)
    UNION ALL
    SELECT id, schema FROM replays
    WHERE status = 'abandoned' AND dropped_at IS NULL
      AND schema IS DISTINCT FROM (SELECT schema FROM read_model_live))");
  for (const auto& row : due) {
    const auto schema = row[1].as<std::string>();
    txn.exec("DROP SCHEMA IF EXISTS " + txn.quote_name(schema) + " CASCADE");
    txn.exec_params("UPDATE replays SET dropped_at = now(), updated_at = now() WHERE id = $1",
                    row[0].as<std::string>());
    dropped.push_back(schema);
  }
  txn.commit();
  return dropped;
}

namespace {

bool has_rows(const std::string& json_array) { return json_array.size() > 2; }

void copy_events(pqxx::dbtransaction& txn, const char* table,
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

void copy_calls(pqxx::dbtransaction& txn, const char* table, const std::vector<CallRow>& calls) {
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
std::vector<LogRecord> write_events(pqxx::dbtransaction& txn, std::vector<LogRecord> records) {
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
void write_calls(pqxx::dbtransaction& txn, const std::vector<CallRow>& calls) {
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

// A PostgreSQL array literal of texts: {"a","b\"c"}.
std::string text_array(const std::vector<std::string>& values) {
  std::string out(1, '{');
  for (const auto& v : values) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (const char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string uuid_array(const std::set<std::string>& ids) {
  return text_array(std::vector<std::string>(ids.begin(), ids.end()));
}

// What stream filters look at (NotificationHub's StreamFilter), read from the rows the batch
// has just written: the state of each aggregate as of the batch.
struct FilterAttributes {
  struct Alert {
    std::string level;
    std::optional<std::string> region;
  };
  struct Contact {
    std::optional<std::string> assigned_to;
    std::optional<std::string> claimed_by;
    std::int64_t claimed_until_us = 0;
  };
  std::map<std::string, Alert> alerts;
  std::map<std::string, Contact> contacts;
};

std::optional<std::string> optional_text(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<std::string>();
}

FilterAttributes filter_attributes(pqxx::dbtransaction& txn,
                                   const std::vector<LogRecord>& records) {
  std::set<std::string> alert_ids;
  std::set<std::string> contact_ids;
  for (const auto& r : records) {
    if (r.event.aggregate_type == "alert") alert_ids.insert(r.event.aggregate_id);
    if (r.event.aggregate_type == "contact") contact_ids.insert(r.event.aggregate_id);
  }
  FilterAttributes out;
  if (!alert_ids.empty()) {
    for (const auto& row :
         txn.exec_params("SELECT id::text, level, region FROM alerts WHERE id = ANY($1::uuid[])",
                         uuid_array(alert_ids))) {
      out.alerts[row[0].as<std::string>()] = {row[1].as<std::string>(), optional_text(row[2])};
    }
  }
  if (!contact_ids.empty()) {
    for (const auto& row : txn.exec_params(
             "SELECT id::text, assigned_to, claimed_by, "
             "       coalesce((extract(epoch FROM claimed_until) * 1000000)::bigint, 0) "
             "FROM contacts WHERE id = ANY($1::uuid[])",
             uuid_array(contact_ids))) {
      out.contacts[row[0].as<std::string>()] = {optional_text(row[1]), optional_text(row[2]),
                                                row[3].as<std::int64_t>()};
    }
  }
  return out;
}

// The actors a contact's notification concerns: whom it is assigned to and who holds a claim
// live at the event's time, and whom a reassignment, a release or an archive took it from.
std::vector<std::string> people_of(const commands::EventEnvelope& e,
                                   const FilterAttributes::Contact& contact) {
  std::vector<std::string> people;
  auto add = [&people](std::string person) {
    if (!person.empty() && std::find(people.begin(), people.end(), person) == people.end()) {
      people.push_back(std::move(person));
    }
  };
  if (contact.assigned_to) add(*contact.assigned_to);
  if (contact.claimed_by && contact.claimed_until_us > e.occurred_at_us) add(*contact.claimed_by);
  const char* taken_from = e.type == "contact.assigned" ? "previous"
                           : e.type == "contact.released" || e.type == "contact.archived"
                               ? "released_by"
                               : nullptr;
  if (taken_from != nullptr) {
    rapidjson::Document data;
    data.Parse(e.data.c_str(), e.data.size());
    if (data.IsObject() && data.HasMember(taken_from) && data[taken_from].IsString()) {
      add(data[taken_from].GetString());
    }
  }
  return people;
}

// Notifications in log order, ids drawn in that order, with what stream filters look at
// (`attributes`, read before the caller took the notification lock); returns the last id. The
// caller holds the notification lock.
std::int64_t write_notifications(pqxx::dbtransaction& txn, const std::vector<LogRecord>& records,
                                 const FilterAttributes& attributes) {
  {
    pqxx::stream_to out(txn, "notifications", kNotificationColumns);
    for (const auto& r : records) {
      const auto& e = r.event;
      const char* level = nullptr;
      const char* region = nullptr;
      std::string people;
      if (const auto a = attributes.alerts.find(e.aggregate_id); a != attributes.alerts.end()) {
        level = a->second.level.c_str();
        if (a->second.region) region = a->second.region->c_str();
      } else if (const auto c = attributes.contacts.find(e.aggregate_id);
                 c != attributes.contacts.end()) {
        if (const auto list = people_of(e, c->second); !list.empty()) people = text_array(list);
      }
      out << std::make_tuple(topic_of(e.aggregate_type), e.type, e.aggregate_id, e.version,
                             commands::position_token(r.partition, r.offset), level, region,
                             people.empty() ? nullptr : people.c_str());
    }
    out.complete();
  }
  return txn.exec1("SELECT currval(pg_get_serial_sequence('notifications', 'id'))")[0]
      .as<std::int64_t>();
}

// One debug line per event a committed batch applied or parked, with the trace its command
// came in (schemas/README.md: `trace_parent`), so a request is followed into the read model.
void log_traced(const std::vector<LogRecord>& applied, const std::vector<ParkedRecord>& parked) {
  if (!core::log_enabled(core::LogLevel::kDebug)) return;
  static const core::Logger log("projector");
  for (const auto& r : applied) {
    const auto& e = r.event;
    log.debug("event applied", {{"event_id", e.event_id},
                                {"type", e.type},
                                {"command_id", e.command_id},
                                {"partition", r.partition},
                                {"offset", r.offset},
                                {"trace_id", e.trace_parent.trace_id()},
                                {"span_id", e.trace_parent.span_id()}});
  }
  for (const auto& p : parked) {
    const core::TraceParent none;
    const auto& trace = p.event ? p.event->trace_parent : none;
    log.debug("event parked", {{"partition", p.partition},
                               {"offset", p.offset},
                               {"error", p.error},
                               {"command_id", p.event ? p.event->command_id : ""},
                               {"trace_id", trace.trace_id()},
                               {"span_id", trace.span_id()}});
  }
}

}  // namespace

ParkedRecord ParkedRecord::of(const LogRecord& record, std::string error, std::string sqlstate) {
  ParkedRecord p;
  p.partition = record.partition;
  p.offset = record.offset;
  p.value = commands::to_json(record.event);
  p.error = std::move(error);
  p.sqlstate = std::move(sqlstate);
  p.event = record.event;
  p.aggregate_id = record.event.aggregate_id;
  return p;
}

PgProjection::PgProjection(std::string conninfo, std::string projection, std::string topic,
                           std::string schema)
    : conninfo_(std::move(conninfo)),
      projection_(std::move(projection)),
      topic_(std::move(topic)),
      pinned_schema_(std::move(schema)) {}

pqxx::connection& PgProjection::connection() {
  if (!connection_) {
    auto c = core::connect_postgres(conninfo_);
    {
      pqxx::nontransaction n(*c);
      const auto schema = pinned_schema_.empty()
                              ? n.exec1("SELECT schema FROM read_model_live")[0].as<std::string>()
                              : pinned_schema_;
      n.exec("SET search_path TO " + n.quote_name(schema) + ", public");
      current_schema_ = schema;
    }
    ensured_.clear();
    c->prepare("ensure_checkpoints", kEnsureCheckpoints);
    c->prepare("lock_checkpoints", kLockCheckpoints);
    c->prepare("read_checkpoints", kReadCheckpoints);
    c->prepare("save_checkpoints", kSaveCheckpoints);
    c->prepare("ensure_marks", kEnsureMarks);
    c->prepare("lock_marks", kLockMarks);
    c->prepare("save_marks", kSaveMarks);
    pqxx::nontransaction(*c).exec(kCreateIncoming);
    c->prepare("insert_contacts", kInsertContacts);
    c->prepare("update_contacts", kUpdateContacts);
    c->prepare("insert_alerts", kInsertAlerts);
    c->prepare("update_alerts", kUpdateAlerts);
    c->prepare("insert_timeline", kInsertTimeline);
    c->prepare("insert_reports", kInsertReports);
    c->prepare("update_reports", kUpdateReports);
    c->prepare("insert_webhooks", kInsertWebhooks);
    c->prepare("update_webhooks", kUpdateWebhooks);
    c->prepare("insert_backups", kInsertBackups);
    c->prepare("update_backups", kUpdateBackups);
    c->prepare("insert_schedules", kInsertSchedules);
    c->prepare("update_schedules", kUpdateSchedules);
    c->prepare("insert_imports", kInsertImports);
    c->prepare("update_imports", kUpdateImports);
    c->prepare("insert_import_errors", kInsertImportErrors);
    c->prepare("any_open_parked", kAnyOpenParked);
    c->prepare("open_parked_aggregates", kOpenParkedAggregates);
    c->prepare("count_open_parked", kCountOpenParked);
    c->prepare("park", kPark);
    c->prepare("lock_parked_chain", kLockParkedChain);
    c->prepare("resolve_parked", kResolveParked);
    c->prepare("parked_attempt_failed", kParkedAttemptFailed);
    c->prepare("list_parked", kListParked);

    connection_ = std::move(c);
  }
  return *connection_;
}

pqxx::connection& PgProjection::live_connection() {
  if (pinned_schema_.empty() && connection_) {
    // Following the live generation: after a switch, start over on a connection to the new one.
    bool moved = false;
    {
      pqxx::read_transaction check(*connection_);
      moved =
          check.exec1("SELECT schema FROM read_model_live")[0].as<std::string>() != current_schema_;
    }
    if (moved) connection_.reset();
  }
  return connection();
}

void PgProjection::hold_live(pqxx::dbtransaction& txn) const {
  if (!pinned_schema_.empty()) return;
  // FOR SHARE: a switch (FOR UPDATE) waits for this transaction, or this one sees its result.
  if (txn.exec1("SELECT schema FROM read_model_live FOR SHARE")[0].as<std::string>() !=
      current_schema_) {
    throw GenerationSwitched();
  }
}

std::map<std::int32_t, std::int64_t> PgProjection::load_checkpoints(
    const std::vector<std::int32_t>& partitions) {
  std::map<std::int32_t, std::int64_t> out;
  for (const auto p : partitions) out[p] = 0;
  return guarded([&] {
    pqxx::read_transaction txn(live_connection());
    const auto rows = txn.exec_prepared("read_checkpoints", projection_, topic_,
                                        int_array(partitions_of(partitions)));
    for (const auto& row : rows) out[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
    return out;
  });
}

ApplyResult PgProjection::apply(const std::vector<LogRecord>& records,
                                const std::vector<ParkedRecord>& parked,
                                const std::map<std::int32_t, std::int64_t>& ends) {
  ApplyResult result;
  if (records.empty() && parked.empty() && ends.empty()) return result;
  std::vector<std::int32_t> partitions;
  auto note_partition = [&partitions](std::int32_t p) {
    if (std::find(partitions.begin(), partitions.end(), p) == partitions.end()) {
      partitions.push_back(p);
    }
  };
  for (const auto& r : records) note_partition(r.partition);
  for (const auto& p : parked) note_partition(p.partition);
  for (const auto& [p, end] : ends) note_partition(p);
  std::sort(partitions.begin(), partitions.end());
  const auto partition_array = int_array(partitions_of(partitions));
  bool moved = false;
  auto out = guarded([&] {
    pqxx::work txn(connection());
    // A partition's checkpoint row is created once; after that the lock below is enough.
    if (!std::all_of(partitions.begin(), partitions.end(),
                     [this](std::int32_t p) { return ensured_.contains(p); })) {
      txn.exec_prepared("ensure_checkpoints", projection_, topic_, partition_array);
    }
    std::map<std::int32_t, std::int64_t> stored;
    bool retired = false;
    for (const auto& row :
         txn.exec_prepared("lock_checkpoints", projection_, topic_, partition_array)) {
      stored[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
      // current_schema() is public once the generation was dropped (then the views answer).
      retired = retired || row[2].as<bool>() || row[3].as<std::string>() != current_schema_;
    }
    if (retired) {
      // A switch retired this generation (possibly while the batch waited for the lock), or the
      // replaced generation is gone already: nothing written.
      txn.abort();
      moved = true;
      return result;
    }
    // Only what lies at or past the checkpoint: a redelivered record was applied already.
    result.checkpoints = stored;
    auto advance = [&result](std::int32_t partition, std::int64_t offset) {
      result.checkpoints[partition] = std::max(result.checkpoints[partition], offset + 1);
    };
    std::vector<LogRecord> fresh;
    fresh.reserve(records.size());
    for (const auto& r : records) {
      if (r.offset < stored[r.partition]) {
        ++result.already_applied;
        continue;
      }
      fresh.push_back(r);
      advance(r.partition, r.offset);
    }
    std::vector<ParkedRecord> to_park;
    for (const auto& p : parked) {
      if (p.offset < stored[p.partition]) continue;
      to_park.push_back(p);
      advance(p.partition, p.offset);
    }
    for (const auto& [partition, end] : ends) advance(partition, end - 1);
    if (result.checkpoints == stored) {
      txn.commit();
      ensured_.insert(partitions.begin(), partitions.end());
      return result;
    }
    fresh = hold_back_parked_aggregates(txn, std::move(fresh), to_park);
    for (const auto& p : to_park) park(txn, p);
    result.parked = to_park.size();
    if (!to_park.empty()) result.first_parked = to_park.front();
    // The live generation notifies; one being built by a replay does not (its switch writes what
    // it has past the marks, in the transaction that makes it live, holding these checkpoints:
    // a batch that waited for it finds its generation live here).
    const bool live =
        pinned_schema_.empty() ||
        txn.exec1("SELECT schema FROM read_model_live")[0].as<std::string>() == pinned_schema_;
    // What the debug log says once committed (a copy only when someone reads it).
    const auto traced =
        core::log_enabled(core::LogLevel::kDebug) ? fresh : std::vector<LogRecord>{};
    auto written = write_records(txn, std::move(fresh), live ? Notify::kFromMarks : Notify::kNone);
    std::vector<std::int64_t> parts;
    std::vector<std::int64_t> nexts;
    for (const auto& [partition, next] : result.checkpoints) {
      parts.push_back(partition);
      nexts.push_back(next);
    }
    txn.exec_prepared("save_checkpoints", projection_, topic_, int_array(parts), int_array(nexts));
    txn.exec_params("SELECT pg_notify($1, $2)", kProgressChannel,
                    progress_payload(projection_, topic_, current_schema_, result.checkpoints,
                                     written.last_notification_id));
    txn.commit();
    ensured_.insert(partitions.begin(), partitions.end());
    log_traced(traced, to_park);
    result.applied = written.applied;
    result.unprojected_types = std::move(written.unprojected_types);
    return result;
  });
  if (moved) {
    const auto from = current_schema_;
    connection_.reset();  // the next one follows read_model_live
    throw ReadModelMoved("read model generation " + from + " was switched away from");
  }
  return out;
}

PgProjection::Written PgProjection::write_records(pqxx::dbtransaction& txn,
                                                  std::vector<LogRecord> fresh, Notify notify) {
  Written out;
  fresh = write_events(txn, std::move(fresh));
  BatchRows rows;
  try {
    rows = fold_batch(fresh, false);
  } catch (const std::invalid_argument& e) {
    throw core::DataError(std::string("an event does not fold: ") + e.what());
  }
  write_calls(txn, rows.calls);
  const std::pair<const char*, const std::string*> statements[] = {
      {"insert_contacts", &rows.contacts},
      {"update_contacts", &rows.contacts},
      {"insert_alerts", &rows.alerts},
      {"update_alerts", &rows.alerts},
      {"insert_timeline", &rows.alert_timeline},
      {"insert_reports", &rows.reports},
      {"update_reports", &rows.reports},
      {"insert_backups", &rows.backups},
      {"update_backups", &rows.backups},
      {"insert_schedules", &rows.report_schedules},
      {"update_schedules", &rows.report_schedules},
      {"insert_webhooks", &rows.webhooks},
      {"update_webhooks", &rows.webhooks},
      {"insert_imports", &rows.imports},
      {"update_imports", &rows.imports},
      {"insert_import_errors", &rows.import_errors}};
  for (const auto& [name, json] : statements) {
    if (has_rows(*json)) txn.exec_prepared(name, *json);
  }
  const auto notifying = notify == Notify::kAll         ? fresh
                         : notify == Notify::kFromMarks ? unnotified(txn, fresh)
                                                        : std::vector<LogRecord>{};
  if (!notifying.empty()) {
    const auto attributes = filter_attributes(txn, notifying);  // outside the serialised part
    txn.exec_params("SELECT pg_advisory_xact_lock($1)", kNotificationLock);
    out.last_notification_id = write_notifications(txn, notifying, attributes);
  }
  out.applied = fresh.size();
  out.unprojected_types = std::move(rows.unprojected_types);
  return out;
}

std::vector<LogRecord> PgProjection::unnotified(pqxx::dbtransaction& txn,
                                                const std::vector<LogRecord>& fresh) {
  std::map<std::int32_t, std::int64_t> last;  // partition -> last offset in the batch
  for (const auto& r : fresh) last[r.partition] = std::max(last[r.partition], r.offset);
  std::vector<std::int64_t> partitions;
  for (const auto& [p, offset] : last) partitions.push_back(p);
  const auto partition_array = int_array(partitions);
  std::map<std::int32_t, std::int64_t> marks;
  auto lock = [&] {
    marks.clear();
    for (const auto& row : txn.exec_prepared("lock_marks", topic_, partition_array)) {
      marks[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
    }
  };
  lock();
  if (marks.size() < partitions.size()) {
    txn.exec_prepared("ensure_marks", topic_, partition_array);
    lock();
  }
  std::vector<LogRecord> out;
  for (const auto& r : fresh) {
    const auto mark = marks.find(r.partition);
    if (mark != marks.end() && r.offset >= mark->second) out.push_back(r);
  }
  std::vector<std::int64_t> parts;
  std::vector<std::int64_t> nexts;
  for (auto& [p, mark] : marks) {
    if (last[p] >= mark) {
      mark = last[p] + 1;
      parts.push_back(p);
      nexts.push_back(mark);
    }
  }
  if (!parts.empty()) txn.exec_prepared("save_marks", topic_, int_array(parts), int_array(nexts));
  return out;
}

std::vector<LogRecord> PgProjection::hold_back_parked_aggregates(pqxx::dbtransaction& txn,
                                                                 std::vector<LogRecord> fresh,
                                                                 std::vector<ParkedRecord>& park) {
  if (fresh.empty()) return fresh;
  // Parked in this batch: what comes after it in its partition waits behind it.
  std::map<std::string, std::pair<std::int32_t, std::int64_t>> parked_here;
  for (const auto& p : park) {
    if (!p.aggregate_id.empty()) parked_here.try_emplace(p.aggregate_id, p.partition, p.offset);
  }
  // Parked by an earlier batch (behind the checkpoint): everything of that aggregate waits.
  std::set<std::string> parked_before;
  if (txn.exec_prepared1("any_open_parked", projection_, topic_)[0].as<bool>()) {
    std::string ids = "{";
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      ids += (i ? "," : "") + fresh[i].event.aggregate_id;
    }
    ids += "}";
    for (const auto& row : txn.exec_prepared("open_parked_aggregates", projection_, topic_, ids)) {
      parked_before.insert(row[0].as<std::string>());
    }
  }
  if (parked_here.empty() && parked_before.empty()) return fresh;
  std::vector<LogRecord> go_on;
  for (auto& r : fresh) {
    const auto& id = r.event.aggregate_id;
    const auto here = parked_here.find(id);
    const bool behind = parked_before.contains(id) ||
                        (here != parked_here.end() && here->second.first == r.partition &&
                         here->second.second < r.offset);
    if (behind) {
      park.push_back(ParkedRecord::of(r, "held back: an earlier event of aggregate " + id +
                                             " is parked; retry that one first"));
    } else {
      go_on.push_back(std::move(r));
    }
  }
  return go_on;
}

void PgProjection::park(pqxx::dbtransaction& txn, const ParkedRecord& p) {
  const auto* e = p.event ? &*p.event : nullptr;
  txn.exec_prepared("park", projection_, topic_, p.partition, p.offset,
                    e ? e->event_id : std::string(), e ? e->type : std::string(),
                    e ? e->aggregate_type : std::string(), p.aggregate_id,
                    pqxx::binarystring(p.value), storable(p.error), p.sqlstate);
}

std::int64_t PgProjection::open_parked() {
  return guarded([&] {
    pqxx::read_transaction txn(live_connection());
    return txn.exec_prepared1("count_open_parked", projection_, topic_)[0].as<std::int64_t>();
  });
}

double PgProjection::replay_progress() {
  return guarded([&] {
    pqxx::read_transaction txn(live_connection());
    const auto r = txn.exec_params(
        "SELECT progress FROM public.replays WHERE projection = $1 AND status = 'building' "
        "ORDER BY created_at DESC LIMIT 1",
        projection_);
    return r.empty() ? 0.0 : r[0][0].as<double>();
  });
}

RetryResult PgProjection::retry_parked(std::int64_t id, const std::string& actor) {
  return following_switches([&] {
    RetryResult result;
    pqxx::work txn(live_connection());
    hold_live(txn);
    const auto chain = txn.exec_prepared("lock_parked_chain", id);
    if (chain.empty()) return result;  // kNotFound
    std::int64_t first_open = 0;
    for (const auto& row : chain) {
      if (row[4].as<bool>()) {
        if (row[0].as<std::int64_t>() == id) result.outcome = RetryResult::Outcome::kResolved;
        continue;
      }
      if (first_open == 0) first_open = row[0].as<std::int64_t>();
    }
    if (result.outcome == RetryResult::Outcome::kResolved) return result;
    if (first_open != id) {
      result.outcome = RetryResult::Outcome::kBehindAnother;
      result.blocking_id = first_open;
      return result;
    }
    // In log order, each in a savepoint: stop before the first that still fails.
    for (const auto& row : chain) {
      const auto parked_id = row[0].as<std::int64_t>();
      const auto value = pqxx::binarystring(row[3]).str();
      std::string error;
      std::string sqlstate;
      try {
        pqxx::subtransaction attempt(txn, "retry_parked");
        auto record = decode_record(row[1].as<std::int32_t>(), row[2].as<std::int64_t>(), value);
        write_records(attempt, {std::move(record)}, Notify::kAll);
        attempt.exec_prepared("resolve_parked", parked_id, "retried", actor);
        attempt.commit();
        ++result.applied;
        continue;
      } catch (const pqxx::sql_error& e) {
        if (!is_data_sqlstate(e.sqlstate())) throw;
        error = e.what();
        sqlstate = e.sqlstate();
      } catch (const std::invalid_argument& e) {
        error = e.what();
      } catch (const core::DataError& e) {
        error = e.what();
        sqlstate = e.sqlstate();
      }
      txn.exec_prepared("parked_attempt_failed", parked_id, storable(error), sqlstate);
      if (parked_id == id) {
        result.outcome = RetryResult::Outcome::kFailed;
        result.error = storable(error);
      }
      break;
    }
    txn.commit();
    if (result.applied > 0) result.outcome = RetryResult::Outcome::kApplied;
    return result;
  });
}

bool PgProjection::skip_parked(std::int64_t id, const std::string& actor) {
  return following_switches([&] {
    pqxx::work txn(live_connection());
    hold_live(txn);
    const auto r = txn.exec_prepared("resolve_parked", id, "skipped", actor);
    txn.commit();
    return r.affected_rows() == 1;
  });
}

std::vector<ParkedEvent> PgProjection::list_parked(bool all, std::int64_t after_id, int limit,
                                                   std::optional<std::int64_t> only_id) {
  return guarded([&] {
    pqxx::read_transaction txn(live_connection());
    const auto rows = txn.exec_prepared("list_parked", projection_, topic_, all, after_id, limit,
                                        only_id.value_or(0));
    std::vector<ParkedEvent> out;
    for (const auto& row : rows) {
      auto text = [&row](int i) {
        return row[i].is_null() ? std::nullopt : std::optional(row[i].as<std::string>());
      };
      ParkedEvent e;
      e.id = row[0].as<std::int64_t>();
      e.projection = projection_;
      e.partition = row[1].as<std::int32_t>();
      e.offset = row[2].as<std::int64_t>();
      e.event_id = text(3);
      e.type = text(4);
      e.aggregate_type = text(5);
      e.aggregate_id = text(6);
      e.error = row[7].as<std::string>();
      e.sqlstate = text(8);
      e.attempts = row[9].as<std::int32_t>();
      e.parked_at = row[10].as<std::string>();
      e.last_attempt_at = row[11].as<std::string>();
      e.resolution = text(12);
      e.resolved_at = text(13);
      e.resolved_by = text(14);
      out.push_back(std::move(e));
    }
    return out;
  });
}

template <typename Fn>
auto PgProjection::guarded(Fn&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const pqxx::broken_connection&) {
    connection_.reset();
    throw core::DependencyError("postgres", "connection to PostgreSQL lost", true);
  } catch (const pqxx::in_doubt_error&) {
    // The commit may or may not have happened: the checkpoint decides on the retry.
    connection_.reset();
    throw core::DependencyError("postgres", "PostgreSQL commit outcome unknown", true);
  } catch (const pqxx::sql_error& e) {
    if (is_data_sqlstate(e.sqlstate())) throw core::DataError(storable(e.what()), e.sqlstate());
    // Busy, shutting down, out of resources, a serialization failure: try again later, on a
    // new connection (the server may have closed this one).
    connection_.reset();
    throw core::DependencyError(
        "postgres", "PostgreSQL: " + storable(e.what()) + " (" + e.sqlstate() + ")", true);
  }
}

template <typename Fn>
auto PgProjection::following_switches(Fn&& body) -> decltype(body()) {
  for (int attempt = 1;; ++attempt) {
    try {
      return guarded(body);
    } catch (const GenerationSwitched&) {
      // Switches are minutes apart at the least: a third in a row is not a race any more.
      if (attempt == 3) throw;
      connection_.reset();
    }
  }
}

std::vector<std::string> PgProjection::drop_replaced_generations() {
  return guarded([&] { return projections::drop_replaced_generations(connection()); });
}

std::int64_t PgProjection::prune_notifications(int retention_hours) {
  return guarded([&] {
    pqxx::work txn(connection());
    const auto r = txn.exec_params1(
        "WITH gone AS (DELETE FROM notifications "
        "              WHERE created_at < now() - make_interval(hours => $1) RETURNING id), "
        "     marked AS (UPDATE notification_retention "
        "                SET pruned_through = greatest(pruned_through, (SELECT max(id) FROM gone)))"
        "SELECT count(*) FROM gone",
        retention_hours);
    txn.commit();
    return r[0].as<std::int64_t>();
  });
}

}  // namespace cauce::projections
