#include <algorithm>
#include <limits>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/log.hpp>
#include <cauce/projections/queries.hpp>

namespace cauce::projections {
namespace {

// Keyset bounds for a first page: no real id is the nil or the max UUID (ids are v7 or v8).
constexpr const char* kMinUuid = "00000000-0000-0000-0000-000000000000";
constexpr const char* kMaxUuid = "ffffffff-ffff-ffff-ffff-ffffffffffff";

const char* const kContactJson = R"(json_build_object(
    'id', c.id, 'name', c.name, 'phone', c.phone, 'email', c.email, 'tags', c.tags,
    'notes', c.notes, 'status', c.status, 'assigned_to', c.assigned_to,
    'calls_count', c.calls_count, 'last_call_at', rfc3339(c.last_call_at),
    'created_at', rfc3339(c.created_at), 'updated_at', rfc3339(c.updated_at),
    'claimed_by', CASE WHEN c.claimed_until > now() THEN c.claimed_by END,
    'claimed_until', CASE WHEN c.claimed_until > now() THEN rfc3339(c.claimed_until) END,
    'version', c.version)::text)";

const char* const kAlertJson = R"(json_build_object(
    'id', a.id, 'level', a.level, 'title', a.title, 'region', a.region, 'source', a.source,
    'details', a.details, 'state', a.state, 'resolution', a.resolution,
    'raised_at', rfc3339(a.raised_at), 'updated_at', rfc3339(a.updated_at),
    'closed_at', rfc3339(a.closed_at), 'version', a.version)::jsonb)";

// `%` and `_` in a user's search text are literal, not LIKE wildcards.
std::string like_escaped(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string lower_ascii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Rows of (key, json) with one row more than the page: the extra one says a next page exists.
Page page_of(const pqxx::result& rows, int limit) {
  const auto n = std::min<std::size_t>(rows.size(), static_cast<std::size_t>(limit));
  std::string items(1, '[');
  for (std::size_t i = 0; i < n; ++i) {
    if (i) items.push_back(',');
    items.append(rows[static_cast<int>(i)][1].c_str());
  }
  items.push_back(']');
  Page page{std::move(items), std::nullopt};
  if (rows.size() > n && n > 0) page.next_key = rows[static_cast<int>(n - 1)][0].c_str();
  return page;
}

std::optional<std::string> single(const pqxx::result& rows) {
  if (rows.empty() || rows[0][0].is_null()) return std::nullopt;
  return rows[0][0].as<std::string>();
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() <= 18 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool valid_id_key(const std::string& key) { return commands::is_uuid(key); }
bool valid_history_key(const std::string& key) { return all_digits(key); }
bool valid_row_key(const std::string& key) { return all_digits(key); }
bool valid_calls_key(const std::string& key) {
  const auto bar = key.find('|');
  if (bar == std::string::npos || !commands::is_uuid(key.substr(bar + 1))) return false;
  try {
    core::parse_utc_micros(key.substr(0, bar));
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

std::string ReadModels::contact_sql() {
  return std::string("SELECT ") + kContactJson +
         ", c.version FROM contacts c WHERE c.id = $1::uuid";
}

std::string ReadModels::contacts_sql() {
  return std::string("SELECT c.id::text, ") + kContactJson + R"( FROM contacts c
          WHERE ($1 = '' OR c.status = $1) AND ($2 = '' OR c.assigned_to = $2)
            AND ($3 = '' OR c.tags @> ARRAY[$3]::text[])
            AND ($4 = '' OR c.search LIKE '%' || $4 || '%')
            AND (NOT $7 OR (c.status = 'active' AND
                            (c.claimed_until IS NULL OR c.claimed_until <= now())))
            AND c.id > $5::uuid
          ORDER BY c.id LIMIT $6)";
}

// The hottest statements are prepared once per connection (planned once, not per request).
std::optional<Versioned> ReadModels::contact(const std::string& id) {
  static const auto sql = contact_sql();
  return pool_.with_connection([&](pqxx::connection& c) -> std::optional<Versioned> {
    c.prepare("read_contact", sql);  // no-op once this connection has it
    pqxx::nontransaction n(c);
    const auto rows = n.exec_prepared("read_contact", id);
    if (rows.empty()) return std::nullopt;
    return Versioned{rows[0][0].as<std::string>(), rows[0][1].as<std::int64_t>()};
  });
}

Page ReadModels::contacts(const ContactFilter& f, const PageRequest& page) {
  static const auto sql = contacts_sql();
  return pool_.with_connection([&](pqxx::connection& c) {
    c.prepare("read_contacts", sql);
    pqxx::nontransaction n(c);
    const auto rows = n.exec_prepared(
        "read_contacts", f.status, f.assigned_to, f.tag, like_escaped(lower_ascii(f.q)),
        page.after.empty() ? kMinUuid : page.after, page.limit + 1, f.claimable);
    return page_of(rows, page.limit);
  });
}

std::optional<Page> ReadModels::calls(const std::string& contact_id, const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) -> std::optional<Page> {
    pqxx::read_transaction txn(c);
    if (txn.exec_params("SELECT 1 FROM contacts WHERE id = $1::uuid", contact_id).empty()) {
      return std::nullopt;
    }
    std::string at = "infinity";
    std::string id = kMaxUuid;
    if (!page.after.empty()) {
      const auto bar = page.after.find('|');
      at = page.after.substr(0, bar);
      id = page.after.substr(bar + 1);
    }
    const auto rows = txn.exec_params(
        R"(SELECT rfc3339(k.occurred_at) || '|' || k.call_id, json_build_object(
             'call_id', k.call_id, 'outcome', k.outcome, 'duration_s', k.duration_s,
             'notes', k.notes, 'operator', k.operator, 'occurred_at', rfc3339(k.occurred_at),
             'version', k.version)::text
           FROM calls k
           WHERE k.contact_id = $1::uuid AND (k.occurred_at, k.call_id) < ($2::timestamptz, $3::uuid)
           ORDER BY k.occurred_at DESC, k.call_id DESC LIMIT $4)",
        contact_id, at, id, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

std::optional<Page> ReadModels::history(const std::string& contact_id, const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) -> std::optional<Page> {
    pqxx::read_transaction txn(c);
    if (txn.exec_params("SELECT 1 FROM contacts WHERE id = $1::uuid", contact_id).empty()) {
      return std::nullopt;
    }
    const auto rows = txn.exec_params(
        R"(SELECT e.version::text, json_build_object(
             'event_id', e.event_id, 'type', e.type, 'schema_version', e.schema_version,
             'aggregate_type', e.aggregate_type, 'aggregate_id', e.aggregate_id,
             'version', e.version, 'occurred_at', rfc3339(e.occurred_at),
             'command_id', e.command_id, 'correlation_id', e.correlation_id,
             'causation_id', e.causation_id, 'actor', e.actor, 'data', e.data,
             'position', e.partition || ':' || e."offset")::text
           FROM events e
           WHERE e.aggregate_type = 'contact' AND e.aggregate_id = $1::uuid AND e.version > $2
           ORDER BY e.version LIMIT $3)",
        contact_id, page.after.empty() ? std::string("0") : page.after, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

Page ReadModels::alerts(const AlertFilter& f, const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    const auto rows =
        n.exec_params(std::string("SELECT a.id::text, ") + kAlertJson + R"(::text FROM alerts a
          WHERE ($1 = '' OR a.state = $1) AND ($2 = '' OR a.level = $2) AND a.id < $3::uuid
          ORDER BY a.id DESC LIMIT $4)",
                      f.state, f.level, page.after.empty() ? kMaxUuid : page.after, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

std::optional<std::string> ReadModels::import(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    return single(n.exec_params(
        R"(SELECT json_build_object(
             'id', i.id, 'status', i.status, 'format', i.format, 'actor', i.actor,
             'rows_total', i.rows_total, 'accepted', i.accepted, 'rejected', i.rejected,
             'duplicates', i.duplicates, 'bytes', i.bytes, 'failure', i.failure,
             'started_at', rfc3339(i.started_at), 'updated_at', rfc3339(i.updated_at),
             'finished_at', rfc3339(i.finished_at), 'version', i.version)::text
           FROM imports i WHERE i.id = $1::uuid)",
        id));
  });
}

std::optional<Page> ReadModels::import_errors(const std::string& id, const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) -> std::optional<Page> {
    pqxx::read_transaction txn(c);
    if (txn.exec_params("SELECT 1 FROM imports WHERE id = $1::uuid", id).empty()) {
      return std::nullopt;
    }
    const auto rows = txn.exec_params(
        R"(SELECT e."row"::text, json_build_object(
             'row', e."row", 'field', e.field, 'message', e.message)::text
           FROM import_errors e
           WHERE e.import_id = $1::uuid AND e."row" > $2
           ORDER BY e."row" LIMIT $3)",
        id, page.after.empty() ? std::string("0") : page.after, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

const char* const kStats = R"(
  SELECT json_build_object(
    'alerts', json_build_object(
      'open_by_level', (
        SELECT json_object_agg(l.level, coalesce(s.n, 0) ORDER BY l.rank)
        FROM (VALUES ('info', 1), ('warning', 2), ('critical', 3)) AS l(level, rank)
        LEFT JOIN (SELECT level, sum(count) AS n FROM stats_open_alerts GROUP BY level) s
          ON s.level = l.level),
      'open_by_region', (
        SELECT coalesce(json_object_agg(region, n ORDER BY region), '{}')
        FROM (SELECT region, sum(count) AS n FROM stats_open_alerts GROUP BY region
              HAVING sum(count) > 0) r),
      'per_hour', (
        SELECT json_agg(json_build_object('hour', rfc3339(h.hour),
                                          'raised', coalesce(s.raised, 0),
                                          'closed', coalesce(s.closed, 0)) ORDER BY h.hour)
        FROM generate_series(date_trunc('hour', now(), 'UTC') - interval '23 hours',
                             date_trunc('hour', now(), 'UTC'), interval '1 hour') AS h(hour)
        LEFT JOIN stats_alert_hours s ON s.hour = h.hour),
      'time_to_acknowledge_s', (
        SELECT json_build_object(
                 'count', count(*),
                 'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
                 'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds))
        FROM alert_acks WHERE acknowledged_at > now() - interval '24 hours')),
    'calls_today', json_build_object(
      'day', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
      'by_operator', (
        SELECT coalesce(json_object_agg(operator, outcomes ORDER BY operator), '{}')
        FROM (SELECT operator, json_object_agg(outcome, count ORDER BY outcome) AS outcomes
              FROM stats_calls_day WHERE day = (now() AT TIME ZONE 'UTC')::date
              GROUP BY operator) o)),
    'contacts', json_build_object(
      'by_status', (
        SELECT json_object_agg(st.status, coalesce(s.count, 0) ORDER BY st.status)
        FROM (VALUES ('active'), ('archived')) AS st(status)
        LEFT JOIN stats_contacts s ON s.status = st.status),
      'claimed_now', (SELECT count(*) FROM contacts WHERE claimed_until > now()))
  )::text)";

const char* ReadModels::stats_sql() { return kStats; }

std::string ReadModels::stats() {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::read_transaction txn(c);  // one snapshot: the figures agree with each other
    return txn.exec(kStats)[0][0].as<std::string>();
  });
}

std::optional<std::string> ReadModels::alert(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    return single(n.exec_params(std::string("SELECT (") + kAlertJson + R"( || jsonb_build_object(
          'timeline', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                         'version', t.version, 'type', t.type,
                         'occurred_at', rfc3339(t.occurred_at), 'actor', t.actor,
                         'data', t.data) ORDER BY t.version), '[]')
                       FROM alert_timeline t WHERE t.alert_id = a.id)))::text
        FROM alerts a WHERE a.id = $1::uuid)",
                                id));
  });
}

namespace {

const char* const kReportJson = R"(json_build_object(
    'id', r.id, 'title', r.title, 'source_url', r.source_url, 'status', r.status,
    'round', r.round, 'attempts', r.attempts, 'errors', r.errors,
    'next_attempt_at', rfc3339(r.next_attempt_at), 'failure', r.failure,
    'source', CASE WHEN r.source_sha256 IS NOT NULL THEN json_build_object(
      'content_type', r.content_type, 'bytes', r.source_bytes, 'sha256', r.source_sha256)
      END,
    'pdf', CASE WHEN r.pdf_sha256 IS NOT NULL THEN json_build_object(
      'pages', r.pages, 'bytes', r.pdf_bytes, 'sha256', r.pdf_sha256) END,
    'requested_at', rfc3339(r.requested_at), 'updated_at', rfc3339(r.updated_at),
    'version', r.version,
    'pdf_url', CASE WHEN r.status = 'ready' THEN '/v1/reports/' || r.id || '/pdf' END,
    'schedule_id', r.schedule_id, 'slot_at', rfc3339(r.slot_at),
    'source_auth', r.source_auth)::text)";

const char* const kScheduleJson = R"(json_build_object(
    'id', s.id, 'title', s.title, 'source_url', s.source_url, 'every', s.every, 'cron', s.cron,
    'timezone', s.timezone, 'source_auth', s.source_auth, 'status', s.status,
    'slots_from', rfc3339(s.slots_from), 'last_slot_at', rfc3339(s.last_slot_at),
    'last_report_id', s.last_report_id, 'created_at', rfc3339(s.created_at),
    'updated_at', rfc3339(s.updated_at), 'version', s.version)::text)";

// The reports a filter lets through, newest first, after the keyset bound ($4, $5).
const char* const kReportsWhere = R"(
  WHERE ($1 = '' OR r.schedule_id = nullif($1, '')::uuid) AND ($2 = '' OR r.status = $2)
    AND ($3 = '' OR r.requested_at >= nullif($3, '')::timestamptz)
    AND (r.requested_at, r.id) < ($4::timestamptz, $5::uuid)
  ORDER BY r.requested_at DESC, r.id DESC)";

}  // namespace

std::optional<std::string> ReadModels::report(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    return single(n.exec_params(
        std::string("SELECT ") + kReportJson + " FROM reports r WHERE r.id = $1::uuid", id));
  });
}

Page ReadModels::reports(const ReportFilter& f, const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) {
    std::string at = "infinity";
    std::string id = kMaxUuid;
    if (!page.after.empty()) {
      const auto bar = page.after.find('|');
      at = page.after.substr(0, bar);
      id = page.after.substr(bar + 1);
    }
    pqxx::nontransaction n(c);
    const auto rows =
        n.exec_params(std::string("SELECT rfc3339(r.requested_at) || '|' || r.id, ") + kReportJson +
                          " FROM reports r" + kReportsWhere + " LIMIT $6",
                      f.schedule_id, f.status, f.since, at, id, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

// A schedule's latest report is the one of its latest slot: slots are requested in the order
// they fire only until a request is retried (then a later slot's report may be requested first).
// Read through reports_by_schedule (one schedule's reports), then sorted.
const char* const kLatestScheduledReport = R"(
  WHERE r.schedule_id = $1::uuid AND ($2 = '' OR r.status = $2)
    AND ($3 = '' OR r.requested_at >= nullif($3, '')::timestamptz)
  ORDER BY coalesce(r.slot_at, r.requested_at) DESC, r.id DESC LIMIT 1)";

std::optional<std::string> ReadModels::latest_report(const ReportFilter& f) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    if (!f.schedule_id.empty()) {
      return single(n.exec_params(
          std::string("SELECT ") + kReportJson + " FROM reports r" + kLatestScheduledReport,
          f.schedule_id, f.status, f.since));
    }
    return single(n.exec_params(
        std::string("SELECT ") + kReportJson + " FROM reports r" + kReportsWhere + " LIMIT 1",
        f.schedule_id, f.status, f.since, "infinity", kMaxUuid));
  });
}

std::optional<std::string> ReadModels::report_schedule(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    return single(n.exec_params(std::string("SELECT ") + kScheduleJson +
                                    " FROM report_schedules s WHERE s.id = $1::uuid"
                                    " AND s.status <> 'deleted'",
                                id));
  });
}

Page ReadModels::report_schedules(const ScheduleFilter& f, const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    const auto rows = n.exec_params(
        std::string("SELECT s.id::text, ") + kScheduleJson + R"( FROM report_schedules s
          WHERE s.status <> 'deleted' AND ($1 = '' OR s.status = $1) AND s.id > $2::uuid
          ORDER BY s.id LIMIT $3)",
        f.status, page.after.empty() ? kMinUuid : page.after, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

Page ReadModels::backups(const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    const auto rows = n.exec_params(
        R"(SELECT b.id::text, json_build_object(
             'id', b.id, 'status', b.status, 'size_bytes', b.size_bytes, 'sha256', b.sha256,
             'positions', b.positions, 'events', b.events, 'round', b.round,
             'attempts', b.attempts, 'errors', b.errors,
             'next_attempt_at', rfc3339(b.next_attempt_at), 'failure', b.failure,
             'requested_at', rfc3339(b.requested_at),
             'created_at', rfc3339(b.created_at), 'updated_at', rfc3339(b.updated_at),
             'copy', CASE WHEN b.copy_status IS NOT NULL THEN json_build_object(
               'status', b.copy_status, 'to', b.copy_to, 'directory', b.copy_directory,
               'sha256', b.copy_sha256, 'bytes', b.copy_bytes, 'attempts', b.copy_attempts,
               'error', b.copy_error, 'next_attempt_at', rfc3339(b.copy_next_attempt_at),
               'copied_at', rfc3339(b.copied_at)) END,
             'version', b.version)::text
           FROM backups b WHERE b.id < $1::uuid ORDER BY b.id DESC LIMIT $2)",
        page.after.empty() ? kMaxUuid : page.after, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

const char* const kWebhookJson = R"(json_build_object(
    'id', w.id, 'url', w.url, 'topics', w.topics, 'filters', w.filters, 'status', w.status,
    'disabled', CASE WHEN w.status = 'disabled' THEN json_build_object(
      'reason', w.disabled_reason, 'consecutive_failures', w.consecutive_failures,
      'last_error', w.last_error, 'at', rfc3339(w.disabled_at)) END,
    'created_at', rfc3339(w.created_at), 'updated_at', rfc3339(w.updated_at),
    'version', w.version)::text)";

bool valid_delivery_key(const std::string& key) {
  return valid_history_key(key);  // a positive integer, as versions are
}

std::optional<std::string> ReadModels::webhook(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    return single(n.exec_params(
        std::string("SELECT ") + kWebhookJson + " FROM webhooks w WHERE w.id = $1::uuid", id));
  });
}

Page ReadModels::webhooks(const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    const auto rows = n.exec_params(std::string("SELECT w.id::text, ") + kWebhookJson +
                                        " FROM webhooks w WHERE w.id < $1::uuid "
                                        "ORDER BY w.id DESC LIMIT $2",
                                    page.after.empty() ? kMaxUuid : page.after, page.limit + 1);
    return page_of(rows, page.limit);
  });
}

std::optional<Page> ReadModels::webhook_deliveries(const std::string& webhook_id,
                                                   const PageRequest& page) {
  return pool_.with_connection([&](pqxx::connection& c) -> std::optional<Page> {
    pqxx::read_transaction txn(c);
    if (txn.exec_params("SELECT 1 FROM webhooks WHERE id = $1::uuid", webhook_id).empty()) {
      return std::nullopt;
    }
    const auto rows = txn.exec_params(
        R"(SELECT d.id::text, json_build_object(
             'id', d.id, 'notification_id', d.notification_id, 'topic', d.topic,
             'type', d.type, 'aggregate_id', d.aggregate_id, 'version', d.version,
             'position', d.position, 'status', d.status, 'attempts', d.attempts,
             'response_code', d.response_code, 'error', d.error,
             'created_at', rfc3339(d.created_at), 'last_attempt_at', rfc3339(d.last_attempt_at),
             'next_attempt_at', rfc3339(d.next_attempt_at),
             'delivered_at', rfc3339(d.delivered_at))::text
           FROM webhook_deliveries d WHERE d.webhook_id = $1::uuid AND d.id < $2
           ORDER BY d.id DESC LIMIT $3)",
        webhook_id,
        page.after.empty() ? std::numeric_limits<std::int64_t>::max() : std::stoll(page.after),
        page.limit + 1);
    return page_of(rows, page.limit);
  });
}

}  // namespace cauce::projections
