#include <array>

#include <cauce/commands/import.hpp>
#include <cauce/core/json.hpp>

#include "json_fields.hpp"

namespace cauce::commands::import {
namespace {

std::optional<Rejection> check_counts(const Counts& c) {
  for (const auto& [field, value] :
       {std::pair{"rows_total", c.rows_total}, std::pair{"accepted", c.accepted},
        std::pair{"rejected", c.rejected}, std::pair{"duplicates", c.duplicates}}) {
    if (value < 0) return Rejection{"invalid", field, "must not be negative"};
  }
  if (c.accepted + c.rejected + c.duplicates > c.rows_total) {
    return Rejection{"invalid", "rows_total",
                     "accepted, rejected and duplicates add up to more than rows_total"};
  }
  return std::nullopt;
}

std::optional<Rejection> running(const State& s) {
  if (!s.exists) return Rejection{"not_found", "id", "there is no such import"};
  if (s.status != Status::kRunning) {
    return Rejection{"conflict", "status",
                     "the import is " + std::string(status_name(s.status)) + "; that is final"};
  }
  return std::nullopt;
}

std::optional<Rejection> check_bytes(std::int64_t bytes) {
  if (bytes < 0) return Rejection{"invalid", "bytes", "must not be negative"};
  return std::nullopt;
}

void write_counts(json::Writer& w, const Counts& c) {
  json::field(w, "rows_total", c.rows_total);
  json::field(w, "accepted", c.accepted);
  json::field(w, "rejected", c.rejected);
  json::field(w, "duplicates", c.duplicates);
}

Counts read_counts(const rapidjson::Value& d) {
  return Counts{json::integer(d, "rows_total"), json::integer(d, "accepted"),
                json::integer(d, "rejected"), json::integer(d, "duplicates")};
}

}  // namespace

std::string_view status_name(Status status) {
  switch (status) {
    case Status::kRunning:
      return "running";
    case Status::kCompleted:
      return "completed";
    case Status::kFailed:
      return "failed";
  }
  return "running";
}

std::string clip(std::string_view text, std::size_t max) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    // A character starts at every byte that is not a UTF-8 continuation byte.
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && chars++ == max) {
      return std::string(text.substr(0, i));
    }
  }
  return std::string(text);
}

Result decide(const State& s, const Start& c, const CommandContext&) {
  if (s.exists) return Rejection{"already_exists", "id", "an import with this id exists"};
  if (c.format != "csv" && c.format != "ndjson") {
    return Rejection{"invalid", "format", "must be csv or ndjson"};
  }
  return std::vector<Event>{Started{c.format}};
}

Result decide(const State& s, const RecordRejections& c, const CommandContext&) {
  if (auto r = running(s)) return *r;
  if (c.rows.empty() || c.rows.size() > kMaxRowsPerEvent) {
    return Rejection{"invalid", "rows",
                     "must hold 1 to " + std::to_string(kMaxRowsPerEvent) + " row errors"};
  }
  for (const auto& row : c.rows) {
    if (row.row < 1) return Rejection{"invalid", "rows", "row numbers start at 1"};
    if (row.field.empty() || core::utf8_length(row.field) > kMaxFieldLength ||
        row.message.empty() || core::utf8_length(row.message) > kMaxMessageLength) {
      return Rejection{"invalid", "rows", "a row error needs a field and a message within limits"};
    }
  }
  return std::vector<Event>{RowsRejected{c.rows}};
}

Result decide(const State& s, const RecordProgress& c, const CommandContext&) {
  if (auto r = running(s)) return *r;
  if (auto r = check_counts(c.counts)) return *r;
  return std::vector<Event>{Progressed{c.counts}};
}

Result decide(const State& s, const Complete& c, const CommandContext&) {
  if (auto r = running(s)) return *r;
  if (auto r = check_counts(c.counts)) return *r;
  if (auto r = check_bytes(c.bytes)) return *r;
  if (c.counts.accepted + c.counts.rejected + c.counts.duplicates != c.counts.rows_total) {
    return Rejection{"invalid", "rows_total",
                     "a completed import accounts for every row: accepted, rejected or duplicate"};
  }
  return std::vector<Event>{Completed{c.counts, c.bytes}};
}

Result decide(const State& s, const Fail& c, const CommandContext&) {
  if (auto r = running(s)) return *r;
  if (auto r = check_counts(c.counts)) return *r;
  if (auto r = check_bytes(c.bytes)) return *r;
  if (c.reason.empty() || core::utf8_length(c.reason) > kMaxReasonLength) {
    return Rejection{"invalid", "reason",
                     "must be 1 to " + std::to_string(kMaxReasonLength) + " characters"};
  }
  return std::vector<Event>{Failed{c.counts, c.bytes, c.reason}};
}

State evolve(State state, const Event& event) {
  ++state.version;
  std::visit(
      [&state](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Started>) {
          state.exists = true;
          state.status = Status::kRunning;
        } else if constexpr (std::is_same_v<T, Completed>) {
          state.status = Status::kCompleted;
        } else if constexpr (std::is_same_v<T, Failed>) {
          state.status = Status::kFailed;
        }
      },
      event);
  return state;
}

std::string event_type(const Event& event) {
  static constexpr std::array<const char*, 5> kTypes = {"import.started", "import.rows_rejected",
                                                        "import.progressed", "import.completed",
                                                        "import.failed"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Started>) {
            json::field(w, "format", e.format);
          } else if constexpr (std::is_same_v<T, RowsRejected>) {
            json::key(w, "rows");
            w.StartArray();
            for (const auto& row : e.rows) {
              w.StartObject();
              json::field(w, "row", row.row);
              json::field(w, "field", row.field);
              json::field(w, "message", row.message);
              w.EndObject();
            }
            w.EndArray();
          } else if constexpr (std::is_same_v<T, Progressed>) {
            write_counts(w, e.counts);
          } else if constexpr (std::is_same_v<T, Completed>) {
            write_counts(w, e.counts);
            json::field(w, "bytes", e.bytes);
          } else {
            write_counts(w, e.counts);
            json::field(w, "bytes", e.bytes);
            json::field(w, "reason", e.reason);
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "import.started") return Started{json::string(d, "format")};
  if (type == "import.rows_rejected") {
    const auto it = d.FindMember("rows");
    if (it == d.MemberEnd() || !it->value.IsArray()) {
      throw std::invalid_argument("rows must be an array");
    }
    RowsRejected out;
    for (const auto& row : it->value.GetArray()) {
      if (!row.IsObject()) throw std::invalid_argument("rows must hold objects");
      out.rows.push_back(RowError{json::integer(row, "row"), json::string(row, "field"),
                                  json::string(row, "message")});
    }
    return out;
  }
  if (type == "import.progressed") return Progressed{read_counts(d)};
  if (type == "import.completed") return Completed{read_counts(d), json::integer(d, "bytes")};
  if (type == "import.failed") {
    return Failed{read_counts(d), json::integer(d, "bytes"), json::string(d, "reason")};
  }
  throw std::invalid_argument("unknown import event type " + std::string(type));
}

}  // namespace cauce::commands::import
