#pragma once

// Reading the read models (PostgreSQL, adapter behind this interface). Answers are JSON text in
// API.md's shape (snake_case, RFC 3339 UTC times), built by PostgreSQL itself.
//
// Lists are keyset-paginated: a page is asked for "after" the key of the last item of the
// previous page and answers with its own last key when more items follow. Keys are plain text
// here (an id, a version, "<time>|<id>"); the API wraps them into opaque cursors.

#include <cstdint>
#include <optional>
#include <string>

#include <cauce/core/postgres.hpp>

namespace cauce::projections {

struct PageRequest {
  int limit = 50;     // 1..500, checked by the caller
  std::string after;  // "" for the first page; else a key this class handed out
};

struct Page {
  std::string items;  // JSON array
  std::optional<std::string> next_key;
};

// Filters; "" means not filtered.
struct ContactFilter {
  std::string status;
  std::string assigned_to;
  std::string tag;
  std::string q;           // substring of name, phone or email, any case
  bool claimable = false;  // only active contacts nobody holds a live claim on
};

struct AlertFilter {
  std::string state;
  std::string level;
};

struct ReportFilter {
  std::string schedule_id;  // a UUID
  std::string status;
  std::string since;  // RFC 3339: requested at or after
};

struct ScheduleFilter {
  std::string status;  // active, paused
};

// Whether a page key has the shape the list hands out (else the cursor is bad input).
bool valid_id_key(const std::string& key);        // a UUID: contacts, alerts, backups
bool valid_calls_key(const std::string& key);     // "<RFC 3339 µs>|<UUID>"
bool valid_history_key(const std::string& key);   // a version number
bool valid_delivery_key(const std::string& key);  // a webhook delivery's id (an integer)
bool valid_row_key(const std::string& key);       // a row number: import errors

// A row's representation (JSON) and its version, the ETag.
struct Versioned {
  std::string json;
  std::int64_t version = 0;
};

class ReadModels {
 public:
  explicit ReadModels(core::PgPool& pool) : pool_(pool) {}

  // nullopt: no such row. Throws core::DependencyError when PostgreSQL is unreachable.
  std::optional<Versioned> contact(const std::string& id);
  Page contacts(const ContactFilter& filter, const PageRequest& page);
  // Newest first. nullopt: no such contact.
  std::optional<Page> calls(const std::string& contact_id, const PageRequest& page);
  // The contact's events as projected from the log, oldest first. nullopt: no such contact.
  std::optional<Page> history(const std::string& contact_id, const PageRequest& page);
  // Newest first.
  Page alerts(const AlertFilter& filter, const PageRequest& page);
  // One alert with its timeline (oldest first).
  std::optional<std::string> alert(const std::string& id);
  std::optional<std::string> report(const std::string& id);
  // Newest first (requested_at, then id); keys "<RFC 3339 µs>|<UUID>" as valid_calls_key takes.
  Page reports(const ReportFilter& filter, const PageRequest& page);
  // The newest report the filter lets through ("this morning's report"); nullopt: none.
  std::optional<std::string> latest_report(const ReportFilter& filter);
  // A schedule that is not deleted, with what its next slot is computed from (every, cron,
  // timezone, status, slots_from, last_slot_at); the API adds next_slot_at.
  std::optional<std::string> report_schedule(const std::string& id);
  // By id; deleted ones are not listed.
  Page report_schedules(const ScheduleFilter& filter, const PageRequest& page);
  // Newest first.
  Page backups(const PageRequest& page);
  // Webhooks (admin): one, and all of them by id (newest first for time-ordered ids). Never the
  // signing secret.
  std::optional<std::string> webhook(const std::string& id);
  Page webhooks(const PageRequest& page);
  // A webhook's deliveries, newest first. nullopt: no such webhook.
  std::optional<Page> webhook_deliveries(const std::string& webhook_id, const PageRequest& page);
  // One import's course (GET /v1/imports/{id}). nullopt: no such import.
  std::optional<std::string> import(const std::string& id);
  // Its rejected rows in row order. nullopt: no such import.
  std::optional<Page> import_errors(const std::string& id, const PageRequest& page);
  // The live dashboard's figures (GET /v1/stats) from the counters the read models' triggers
  // keep (infra/sql/0011_stats.sql): a few small tables and index ranges, never a whole one.
  std::string stats();
  // The query stats() runs, for EXPLAIN in tests.
  static const char* stats_sql();
  // The statements contact() ($1: the id) and contacts() ($1 status, $2 assigned_to, $3 tag,
  // $4 search text, $5 the id after which, $6 the rows wanted, $7 claimable only) run:
  // bench/reads runs the very same SQL under pgbench.
  static std::string contact_sql();
  static std::string contacts_sql();

 private:
  core::PgPool& pool_;
};

}  // namespace cauce::projections
