#pragma once

// Reading an import's body row by row (POST /v1/imports): CSV (RFC 4180: quoted fields with
// commas, quotes and line breaks inside, CRLF or LF line ends, a UTF-8 byte order mark) or
// NDJSON (one JSON object per line). Bytes come in pieces of any size; each complete row turns
// into a contact.register body checked against its schema, or into a row error. Memory is
// bounded by the row-size cap, whatever the body's size. Pure: no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cauce/commands/import.hpp>

namespace cauce::api {

enum class ImportFormat { kCsv, kNdjson };
std::string_view format_name(ImportFormat format);

struct RowLimits {
  std::size_t max_row_bytes = 64 * 1024;  // a longer row is a row error (and skipped whole)
  std::size_t max_columns = 64;           // a CSV row with more is a row error
};

// One data row: a contact to register, or why not.
struct ImportRow {
  std::int64_t number = 0;  // CSV: the record's number, the header being 1; NDJSON: the line's
  std::string contact_id;   // the row's `id`, or derived from its content and number
  std::string data;         // the contact.register body (without `id`), JSON
  std::optional<commands::import::RowError> error;  // set: the row is rejected
};

// The contact id of a row without one: a name-based UUID of the row's content (its body as
// registered) and its number, so that the same file posted again names the same contacts.
std::string derived_contact_id(std::string_view data, std::int64_t number);

class RowReader {
 public:
  RowReader(ImportFormat format, RowLimits limits = {});

  // Takes the next bytes of the body and appends the rows they complete to `out`. Throws
  // ApiError (400) for a problem of the file as a whole, before any row is produced: a CSV
  // header that names no contact field, an unknown or repeated column, a header missing name or
  // phone, a header that is not UTF-8 or too long, a UTF-16 file.
  void feed(std::string_view bytes, std::vector<ImportRow>& out);
  // The body ended: the last row if it had no line end; an empty CSV (no header) is a 400.
  void finish(std::vector<ImportRow>& out);

  // Whether the header (CSV) has been read: rows can follow.
  bool started() const { return format_ == ImportFormat::kNdjson || header_done_; }

 private:
  void feed_csv(std::string_view bytes, std::vector<ImportRow>& out);
  void feed_ndjson(std::string_view bytes, std::vector<ImportRow>& out);
  void end_field();
  void end_record(std::vector<ImportRow>& out);
  void take_header();
  void end_line(std::vector<ImportRow>& out);
  ImportRow csv_row() const;
  void note(std::string_view field, std::string message);

  const ImportFormat format_;
  const RowLimits limits_;
  std::uint64_t seen_ = 0;  // body bytes so far (byte order marks are looked for at the start)
  std::string lead_;        // the first bytes until the byte order mark question is settled
  bool header_done_ = false;
  std::vector<std::string> columns_;  // the header's, lower case

  // The record being read.
  enum class State { kFieldStart, kUnquoted, kQuoted, kQuoteInQuoted };
  State state_ = State::kFieldStart;
  bool skip_lf_ = false;  // a CR ended the record; an LF right after it belongs to it
  std::vector<std::string> fields_;
  std::string field_;
  bool quoted_ = false;  // the record has a quoted field (then it is not a blank line)
  std::size_t record_bytes_ = 0;
  std::size_t field_count_ = 0;
  std::optional<commands::import::RowError> problem_;  // the record's first
  std::int64_t record_number_ = 0;

  // NDJSON: the line being read.
  std::string line_;
  std::int64_t line_number_ = 0;
  bool line_too_long_ = false;
};

}  // namespace cauce::api
