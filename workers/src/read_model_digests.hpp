#pragma once

// The digests of the read models a backup records and a restore compares (workers/README.md
// "Backups"), shared by backup.cpp and the test that runs them against PostgreSQL.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <pqxx/pqxx>

namespace cauce::workers {

// The read-model tables a restore must reproduce, each with the order that makes its digest
// canonical and the columns left out (positions in the old log, which a restore renumbers).
struct DigestedTable {
  const char* name;
  const char* excluded;    // "- 'column'" terms
  std::int64_t since = 0;  // the migration that created it (a backup before it has none)
};
inline constexpr DigestedTable kDigestedTables[] = {
    {"events", "- 'partition' - 'offset'"},
    {"contacts", ""},
    {"calls", ""},
    {"alerts", ""},
    {"alert_timeline", ""},
    {"reports", ""},
    {"backups", ""},
    {"report_schedules", "", 13},
    {"imports", "", 15},
    {"import_errors", "", 15},
};

// The columns of digested tables that a migration added (infra/sql): a backup's manifest gives
// its database's schema version, and the restore, migrated to this build's, leaves out what came
// after it (those columns' values did not exist in the backup's rows). Add a line here with any
// migration that adds a column to a table above.
struct AddedColumn {
  std::int64_t version;  // the migration
  const char* table;
  const char* column;
};
// One migration per line (kept so by hand).
// clang-format off
inline constexpr AddedColumn kAddedColumns[] = {
    {7, "reports", "round"}, {7, "reports", "next_attempt_at"}, {7, "reports", "content_type"},
    {7, "reports", "source_bytes"}, {7, "reports", "source_sha256"}, {7, "reports", "pages"},
    {7, "reports", "pdf_bytes"}, {7, "reports", "pdf_sha256"}, {7, "reports", "failure"},
    {7, "backups", "round"}, {7, "backups", "attempts"}, {7, "backups", "errors"},
    {7, "backups", "next_attempt_at"}, {7, "backups", "events"}, {7, "backups", "failure"},
    {9, "contacts", "claimed_by"}, {9, "contacts", "claimed_until"},
    {11, "alerts", "acknowledged_at"},
    {13, "reports", "schedule_id"}, {13, "reports", "slot_at"}, {13, "reports", "source_auth"},
    {16, "backups", "copy_status"}, {16, "backups", "copy_to"}, {16, "backups", "copy_directory"},
    {16, "backups", "copy_sha256"}, {16, "backups", "copy_bytes"}, {16, "backups", "copy_attempts"},
    {16, "backups", "copy_error"}, {16, "backups", "copy_next_attempt_at"},
    {16, "backups", "copied_at"},
};
// clang-format on

struct TableDigest {
  std::int64_t rows = 0;
  std::string md5;
};

// Row count and the sum of the rows' 64-bit hashes (the first 16 hex digits of the md5 of each
// row's JSON, without the columns migrations after `schema_version` added): equal digests, equal
// tables, in constant memory whatever the table's size.
inline std::map<std::string, TableDigest> table_digests(pqxx::transaction_base& txn,
                                                        std::int64_t schema_version) {
  std::map<std::string, TableDigest> out;
  for (const auto& t : kDigestedTables) {
    if (t.since > schema_version) continue;
    std::string excluded = t.excluded;
    for (const auto& added : kAddedColumns) {
      if (added.version > schema_version && std::string_view(added.table) == t.name) {
        excluded += std::string(" - '") + added.column + "'";
      }
    }
    const auto row =
        txn.exec1("SELECT count(*), coalesce(sum(('x' || substr(md5((to_jsonb(t) " + excluded +
                  ")::text), 1, 16))::bit(64)::bigint::numeric), 0)::text FROM " + t.name + " t");
    out[t.name] = TableDigest{row[0].as<std::int64_t>(), row[1].as<std::string>()};
  }
  return out;
}

}  // namespace cauce::workers
