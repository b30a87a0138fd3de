#include "import_rows.hpp"

#include <algorithm>
#include <cstring>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/api/problem.hpp>
#include <cauce/commands/envelope.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/json.hpp>

namespace cauce::api {
namespace {

using commands::import::RowError;

// The columns a CSV header may name: the fields of POST /v1/contacts.
constexpr std::string_view kColumns[] = {"id", "name", "phone", "email", "tags", "notes"};
constexpr const char* kColumnList = "id, name, phone, email, tags, notes";

RowError row_error(std::int64_t row, std::string_view field, std::string_view message) {
  // A member without a name (NDJSON's {"": 1}) is no field to point at: the row is at fault.
  if (field.empty()) {
    return row_error(row, "row", "a member with an empty name: " + std::string(message));
  }
  return RowError{row, commands::import::clip(field, commands::import::kMaxFieldLength),
                  commands::import::clip(message, commands::import::kMaxMessageLength)};
}

ApiError bad_header(std::string message) {
  return ApiError(http::status::bad_request, "invalid-import", "the CSV header: " + message,
                  {{"header", std::move(message)}});
}

std::string lower_trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A validated body -> the row: its id taken out (the aggregate's id), its JSON as the command's
// data, or the schema's objection.
ImportRow finish_row(rapidjson::Document& doc, std::int64_t number) {
  ImportRow row;
  row.number = number;
  if (const auto violation =
          commands::SchemaRegistry::instance().validate("contact.register.v1", doc)) {
    row.error = row_error(number, violation->field, violation->message);
    return row;
  }
  if (const auto it = doc.FindMember("id"); it != doc.MemberEnd()) {
    row.contact_id.assign(it->value.GetString(), it->value.GetStringLength());
    doc.RemoveMember(it);
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  doc.Accept(w);
  row.data.assign(buffer.GetString(), buffer.GetSize());
  if (row.contact_id.empty()) row.contact_id = derived_contact_id(row.data, number);
  return row;
}

}  // namespace

std::string_view format_name(ImportFormat format) {
  return format == ImportFormat::kCsv ? "csv" : "ndjson";
}

std::string derived_contact_id(std::string_view data, std::int64_t number) {
  return commands::uuid_from_name("import-row\n" + core::sha256_hex(data) + "\n" +
                                  std::to_string(number));
}

RowReader::RowReader(ImportFormat format, RowLimits limits) : format_(format), limits_(limits) {}

void RowReader::feed(std::string_view bytes, std::vector<ImportRow>& out) {
  // The first three bytes say whether a byte order mark leads: UTF-8's is dropped, UTF-16's
  // refused (the text is not UTF-8).
  if (seen_ < 3) {
    const auto take = std::min<std::size_t>(bytes.size(), 3 - seen_);
    lead_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    seen_ += take;
    if (seen_ < 3) return;
    std::string_view lead = lead_;
    if (lead.starts_with("\xEF\xBB\xBF")) {
      lead.remove_prefix(3);
    } else if (lead.starts_with("\xFF\xFE") || lead.starts_with("\xFE\xFF")) {
      throw ApiError(http::status::bad_request, "invalid-import",
                     "the file is UTF-16 (its byte order mark says so); send it as UTF-8",
                     {{"body", "must be UTF-8 text"}});
    }
    const std::string first(lead);
    lead_.clear();
    if (format_ == ImportFormat::kCsv) {
      feed_csv(first, out);
    } else {
      feed_ndjson(first, out);
    }
  }
  seen_ += bytes.size();
  if (format_ == ImportFormat::kCsv) {
    feed_csv(bytes, out);
  } else {
    feed_ndjson(bytes, out);
  }
}

void RowReader::finish(std::vector<ImportRow>& out) {
  if (seen_ < 3 && !lead_.empty()) {
    // A body of one or two bytes: no byte order mark to look for.
    seen_ = 3;
    const auto first = std::move(lead_);
    lead_.clear();
    if (format_ == ImportFormat::kCsv) {
      feed_csv(first, out);
    } else {
      feed_ndjson(first, out);
    }
  }
  if (format_ == ImportFormat::kNdjson) {
    if (!line_.empty() || line_too_long_) end_line(out);
    return;
  }
  if (state_ == State::kQuoted) {
    note(fields_.size() < columns_.size() ? columns_[fields_.size()] : "row",
         "a quoted field is not closed before the end of the file");
  }
  if (state_ != State::kFieldStart || !fields_.empty() || !field_.empty() || quoted_) {
    end_field();
    end_record(out);
  }
  if (!header_done_) {
    throw bad_header(
        "the file is empty: a CSV import starts with a header row naming contact "
        "fields (" +
        std::string(kColumnList) + ")");
  }
}

void RowReader::note(std::string_view field, std::string message) {
  if (!problem_) problem_ = row_error(record_number_ + 1, field, message);
}

void RowReader::end_field() {
  ++field_count_;
  if (field_count_ > limits_.max_columns) {
    note("row", "has more than " + std::to_string(limits_.max_columns) + " columns");
  } else if (record_bytes_ <= limits_.max_row_bytes) {
    fields_.push_back(std::move(field_));
  }
  field_.clear();
  state_ = State::kFieldStart;
}

void RowReader::feed_csv(std::string_view bytes, std::vector<ImportRow>& out) {
  for (const char c : bytes) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') continue;
    }
    if (++record_bytes_ == limits_.max_row_bytes + 1) {
      note("row", "is longer than " + std::to_string(limits_.max_row_bytes) + " bytes");
    }
    const bool keep = record_bytes_ <= limits_.max_row_bytes;
    switch (state_) {
      case State::kFieldStart:
        if (c == '"') {
          quoted_ = true;
          state_ = State::kQuoted;
        } else if (c == ',') {
          end_field();
        } else if (c == '\n' || c == '\r') {
          skip_lf_ = c == '\r';
          end_field();
          end_record(out);
        } else {
          if (keep) field_.push_back(c);
          state_ = State::kUnquoted;
        }
        break;
      case State::kUnquoted:
        if (c == ',') {
          end_field();
        } else if (c == '\n' || c == '\r') {
          skip_lf_ = c == '\r';
          end_field();
          end_record(out);
        } else if (keep) {
          field_.push_back(c);  // a quote inside an unquoted field is taken as it is
        }
        break;
      case State::kQuoted:
        if (c == '"') {
          state_ = State::kQuoteInQuoted;
        } else if (keep) {
          field_.push_back(c);  // commas and line breaks included
        }
        break;
      case State::kQuoteInQuoted:
        if (c == '"') {
          if (keep) field_.push_back('"');
          state_ = State::kQuoted;
        } else if (c == ',') {
          end_field();
        } else if (c == '\n' || c == '\r') {
          skip_lf_ = c == '\r';
          end_field();
          end_record(out);
        } else {
          note(fields_.size() < columns_.size() ? columns_[fields_.size()] : "row",
               "has text after its closing quote (a quote inside a quoted field is doubled: \"\")");
          if (keep) field_.push_back(c);
          state_ = State::kUnquoted;
        }
        break;
    }
  }
}

void RowReader::end_record(std::vector<ImportRow>& out) {
  ++record_number_;
  const bool blank = fields_.size() == 1 && fields_.front().empty() && !quoted_ && !problem_;
  if (!header_done_) {
    take_header();
  } else if (!blank) {
    out.push_back(csv_row());
  }
  fields_.clear();
  field_.clear();
  quoted_ = false;
  record_bytes_ = 0;
  field_count_ = 0;
  problem_.reset();
  state_ = State::kFieldStart;
}

void RowReader::take_header() {
  if (problem_) throw bad_header(problem_->message);
  std::vector<std::string> columns;
  bool any_known = false;
  for (const auto& raw : fields_) {
    if (const auto problem = core::storable_text_problem(raw)) {
      throw bad_header("is not UTF-8 text (" + *problem + ")");
    }
    auto name = lower_trimmed(raw);
    const bool known =
        std::find(std::begin(kColumns), std::end(kColumns), name) != std::end(kColumns);
    any_known = any_known || known;
    columns.push_back(std::move(name));
  }
  if (!any_known) {
    throw bad_header("names no contact field; the first row must name columns among " +
                     std::string(kColumnList));
  }
  for (std::size_t i = 0; i < columns.size(); ++i) {
    const auto& name = columns[i];
    if (std::find(std::begin(kColumns), std::end(kColumns), name) == std::end(kColumns)) {
      throw bad_header("column " + std::to_string(i + 1) + " (\"" +
                       commands::import::clip(name, 50) +
                       "\") is not a contact field; the columns are " + kColumnList);
    }
    if (std::find(columns.begin(), columns.begin() + static_cast<std::ptrdiff_t>(i), name) !=
        columns.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw bad_header("column \"" + name + "\" appears twice");
    }
  }
  for (const auto* required : {"name", "phone"}) {
    if (std::find(columns.begin(), columns.end(), required) == columns.end()) {
      throw bad_header(std::string("has no \"") + required +
                       "\" column (name and phone are required)");
    }
  }
  columns_ = std::move(columns);
  header_done_ = true;
}

ImportRow RowReader::csv_row() const {
  const auto number = record_number_;
  ImportRow row;
  row.number = number;
  if (problem_) {
    row.error = problem_;
    row.error->row = number;
    return row;
  }
  if (fields_.size() > columns_.size()) {
    row.error = row_error(number, "row",
                          "has " + std::to_string(fields_.size()) + " columns; the header has " +
                              std::to_string(columns_.size()));
    return row;
  }
  rapidjson::Document doc;
  doc.SetObject();
  auto& a = doc.GetAllocator();
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    const auto& value = fields_[i];
    const auto& column = columns_[i];
    if (value.empty()) continue;  // an empty cell is an absent field
    if (const auto problem = core::storable_text_problem(value)) {
      row.error = row_error(number, column, *problem);
      return row;
    }
    rapidjson::Value name(column.c_str(), static_cast<rapidjson::SizeType>(column.size()), a);
    if (column == "tags") {
      // Tags are separated by ';' within the cell (the comma separates cells).
      rapidjson::Value tags(rapidjson::kArrayType);
      std::string_view rest = value;
      while (!rest.empty()) {
        const auto semi = rest.find(';');
        const auto tag = trimmed(rest.substr(0, semi));
        if (!tag.empty()) {
          tags.PushBack(
              rapidjson::Value(tag.data(), static_cast<rapidjson::SizeType>(tag.size()), a), a);
        }
        if (semi == std::string_view::npos) break;
        rest.remove_prefix(semi + 1);
      }
      if (tags.Empty()) continue;
      doc.AddMember(name, tags, a);
    } else {
      doc.AddMember(
          name, rapidjson::Value(value.c_str(), static_cast<rapidjson::SizeType>(value.size()), a),
          a);
    }
  }
  return finish_row(doc, number);
}

void RowReader::feed_ndjson(std::string_view bytes, std::vector<ImportRow>& out) {
  while (!bytes.empty()) {
    const auto newline = bytes.find('\n');
    const auto piece = bytes.substr(0, newline);
    if (!line_too_long_) {
      if (line_.size() + piece.size() > limits_.max_row_bytes) {
        line_too_long_ = true;
        line_.clear();
      } else {
        line_.append(piece);
      }
    }
    if (newline == std::string_view::npos) return;
    end_line(out);
    bytes.remove_prefix(newline + 1);
  }
}

void RowReader::end_line(std::vector<ImportRow>& out) {
  const auto number = ++line_number_;
  const bool too_long = line_too_long_;
  std::string line = std::move(line_);
  line_.clear();
  line_too_long_ = false;
  if (too_long) {
    ImportRow row;
    row.number = number;
    row.error = row_error(number, "row",
                          "is longer than " + std::to_string(limits_.max_row_bytes) + " bytes");
    out.push_back(std::move(row));
    return;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (std::all_of(line.begin(), line.end(),
                  [](char c) { return c == ' ' || c == '\t' || c == '\r'; })) {
    return;  // a blank line is not a row
  }
  rapidjson::Document doc;
  if (const auto error = core::parse_json(line, doc, {.whole_numbers_are_integers = true})) {
    ImportRow row;
    row.number = number;
    row.error = row_error(number, error->field == "body" ? "row" : error->field, error->message);
    out.push_back(std::move(row));
    return;
  }
  if (!doc.IsObject()) {
    ImportRow row;
    row.number = number;
    row.error = row_error(number, "row", "must be a JSON object");
    out.push_back(std::move(row));
    return;
  }
  out.push_back(finish_row(doc, number));
}

}  // namespace cauce::api
