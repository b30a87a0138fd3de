#pragma once

// Folding one batch of the event log into the rows it changes (pure: no I/O). The projector
// hands the result to PostgreSQL in one transaction; a batch holds events of many aggregates,
// several of one aggregate in version order.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cauce/commands/envelope.hpp>

namespace cauce::projections {

// One event as it sits in the log, already upcast to the current schema version.
struct LogRecord {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  commands::EventEnvelope event;
};

// Decodes the value of one record of the event topic: the envelope parsed with the
// storable-input rule, its ids checked, upcast to the current schema version and its data
// checked against that version's schema. Throws std::invalid_argument saying why the record is
// not a cauce event (a foreign producer's record, an unknown schema_version without an upcaster).
LogRecord decode_record(std::int32_t partition, std::int64_t offset, std::string_view value);

// One row of `calls` (COPYed: calls are most of a call centre's events).
struct CallRow {
  std::string call_id;
  std::string contact_id;
  std::string outcome;
  std::int64_t duration_s = 0;
  std::optional<std::string> notes;
  std::optional<std::string> operator_name;
  std::string occurred_at;  // RFC 3339
  std::int64_t version = 0;
};

// The rows a batch writes, each a JSON array of objects whose keys are the columns of the
// statement that takes it (jsonb_to_recordset). An empty array is "[]".
//
// Aggregates whose first event in the batch creates them (`created: true`) carry their whole
// folded row; the others carry a change (`first_version`..`version`) that applies only to a
// row still below `first_version` — the version guard that makes re-applying a no-op.
struct BatchRows {
  std::string events;            // every envelope with partition/offset
  std::string contacts;          // created rows and changes
  std::vector<CallRow> calls;    // one per contact.call_logged
  std::string alerts;            // created rows and changes
  std::string alert_timeline;    // one per alert event
  std::string reports;           // created rows and changes
  std::string backups;           // created rows and changes
  std::string report_schedules;  // created rows and changes
  std::string webhooks;          // created rows and changes
  std::string imports;           // created rows and changes
  std::string import_errors;     // one per rejected row of an import.rows_rejected
  std::string notifications;     // one per event, in log order
  std::size_t event_count = 0;
  // Event types this build does not project into a read model (still in `events`).
  std::vector<std::string> unprojected_types;
};

// The notification topic of an aggregate type: contact -> contacts, alert -> alerts, ...
std::string topic_of(const std::string& aggregate_type);

// Folds `records` (ordered by offset within each partition). Event data is trusted to fit its
// schema (the processor validates what it writes); a field of the wrong type throws
// std::invalid_argument naming the event. Without `log_rows`, `events` and `notifications`
// stay "[]" (the projector COPYs those rows straight from the records).
BatchRows fold_batch(const std::vector<LogRecord>& records, bool log_rows = true);

}  // namespace cauce::projections
