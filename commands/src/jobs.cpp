#include <cauce/commands/jobs.hpp>
#include <cauce/commands/rules.hpp>

#include "json_fields.hpp"

namespace cauce::commands::report {

Result decide(const State& state, const Request& c, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "a report with this id exists"};
  if (auto r = check_text("title", c.title, 200)) return *r;
  if (!valid_http_url(c.source_url)) {
    return Rejection{"invalid", "source_url", "must be an http:// or https:// URL"};
  }
  return std::vector<Event>{Requested{trim(c.title), c.source_url}};
}

State evolve(State state, const Event&) {
  ++state.version;
  state.exists = true;
  return state;
}

std::string event_type(const Event&) { return "report.requested"; }

std::string to_json(const Event& event) {
  const auto& e = std::get<Requested>(event);
  return json::object([&](json::Writer& w) {
    json::field(w, "title", e.title);
    json::field(w, "source_url", e.source_url);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  if (type != "report.requested") throw std::invalid_argument("unknown report event type");
  const auto d = json::parse(data);
  return Requested{json::string(d, "title"), json::string(d, "source_url")};
}

}  // namespace cauce::commands::report

namespace cauce::commands::backup {

Result decide(const State& state, const Request&, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "a backup with this id exists"};
  return std::vector<Event>{Requested{}};
}

State evolve(State state, const Event&) {
  ++state.version;
  state.exists = true;
  return state;
}

std::string event_type(const Event&) { return "backup.requested"; }

std::string to_json(const Event&) { return "{}"; }

Event event_from_json(std::string_view type, std::string_view data) {
  if (type != "backup.requested") throw std::invalid_argument("unknown backup event type");
  json::parse(data);
  return Requested{};
}

}  // namespace cauce::commands::backup
