// Fuzz target `event`: decode_record and fold_batch of one record of cauce.events.
//
// The projector's decoding of a record of cauce.events, which any producer can write. The input is
// the record's value: projections::decode_record, and when it decodes, projections::fold_batch of
// that one record.
//
// std::invalid_argument from either is a fine outcome (the projector parks the record). A
// finding is a crash, a sanitizer report, another exception type, or a decoded record the
// projector would choke on later: its envelope does not read back the same (to_json, then
// decode_record again), or fold_batch's rows are not JSON (PostgreSQL's jsonb_to_recordset
// takes them).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/projections/batch.hpp>

namespace {

using cauce::projections::LogRecord;

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "FINDING: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

void check_json_rows(const std::string& rows, const char* name) {
  rapidjson::Document d;
  d.Parse(rows.data(), rows.size());
  if (d.HasParseError() || !d.IsArray()) finding("fold_batch rows are not a JSON array", name);
}

void fold(const LogRecord& record) {
  cauce::projections::BatchRows rows;
  try {
    rows = cauce::projections::fold_batch({record});
  } catch (const std::invalid_argument&) {
    return;  // data of the wrong type: the projector parks the record
  }
  check_json_rows(rows.events, "events");
  check_json_rows(rows.contacts, "contacts");
  check_json_rows(rows.alerts, "alerts");
  check_json_rows(rows.alert_timeline, "alert_timeline");
  check_json_rows(rows.reports, "reports");
  check_json_rows(rows.backups, "backups");
  check_json_rows(rows.imports, "imports");
  check_json_rows(rows.import_errors, "import_errors");
  check_json_rows(rows.notifications, "notifications");
  if (rows.event_count != 1) finding("fold_batch did not count the event", record.event.type);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  LogRecord record;
  try {
    record = cauce::projections::decode_record(3, 41, value);
  } catch (const std::invalid_argument&) {
    return 0;  // not a cauce event
  }
  // The envelope as the projector stores and forwards it reads back as the same event.
  const auto again = cauce::commands::to_json(record.event);
  try {
    const auto reread = cauce::projections::decode_record(3, 41, again);
    if (reread.event.occurred_at_us != record.event.occurred_at_us ||
        reread.event.version != record.event.version || reread.event.data != record.event.data) {
      finding("a decoded event reads back differently", again);
    }
  } catch (const std::invalid_argument& e) {
    finding("a decoded event does not read back", again + " -> " + e.what());
  }
  fold(record);
  return 0;
}
