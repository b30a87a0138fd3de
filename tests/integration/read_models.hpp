#pragma once

// Helpers for the read-side tests: a synthetic event log written straight to a test's event
// topic (valid envelopes, as the processor would write them, some in an old schema version), a
// reference fold of a log computed here independently of projections/, and the read models as
// PostgreSQL holds them, both rendered as the same comparable text.

#include <cstdint>
#include <string>
#include <vector>

#include <cauce/core/config.hpp>

#include "event_log.hpp"
#include "fixtures.hpp"

namespace cauce::testing {

struct SyntheticLog {
  int contacts = 10;
  int calls_per_contact = 3;  // every other call is written as contact.call_logged v1
  int alerts = 5;
  int garbage = 0;  // records on the topic that are not events (must be skipped)
};

// Produces the events (idempotent producer, key = aggregate id, per-aggregate order kept) and
// returns how many event records it wrote.
std::size_t write_synthetic_log(const core::KafkaConfig& kafka, const SyntheticLog& log);

// Produces these records again (same key and value), as a misbehaving foreign producer would.
void write_again(const core::KafkaConfig& kafka, const std::vector<LoggedEvent>& records);

// One envelope of a hand-made event (poison events and the like), as the processor would write it.
std::string synthetic_envelope(const std::string& aggregate_type, const std::string& aggregate_id,
                               std::int64_t version, const std::string& type, int schema_version,
                               const std::string& data, const std::string& occurred_at = "");

// Produces (key, value) records as they are, outside any transaction (like `kcat -P`).
void write_records(const core::KafkaConfig& kafka,
                   const std::vector<std::pair<std::string, std::string>>& records);

// Like write_records, each on the partition cauce's processor appends its key's events to (the
// partition of the aggregate's commands: murmur2 of the key over kafka.partitions), as another
// build of cauce would write them.
void write_records_on_cauce_partitions(
    const core::KafkaConfig& kafka,
    const std::vector<std::pair<std::string, std::string>>& records);

// `text` without the lines starting with `prefix`.
std::string without_lines(const std::string& text, const std::string& prefix);

// What the read models must hold after folding `events` once: one line per contact, call and
// alert, sorted, plus counts — the same rendering as read_models_text().
std::string reference_fold(const std::vector<LoggedEvent>& events);
std::string read_models_text(const TempDatabase& db);

// Sum of next_offset over the projection's checkpoints; the number of rows of a table.
std::int64_t checkpoint_sum(const TempDatabase& db);
std::int64_t row_count(const TempDatabase& db, const std::string& table);

// The sum of the end offsets of the event topic's partitions (what checkpoint_sum reaches when
// the projection has caught up, transaction markers included).
std::int64_t log_end_sum(const core::KafkaConfig& kafka);

}  // namespace cauce::testing
