#include <array>
#include <set>

#include <cauce/commands/rules.hpp>
#include <cauce/commands/webhook.hpp>
#include <cauce/core/json.hpp>

#include "json_fields.hpp"

namespace cauce::commands::webhook {
namespace {

constexpr std::size_t kMaxRegions = 100;
constexpr std::size_t kMaxLabel = 100;

// An actor or a region: 1 to 100 characters, not blank, no control characters (as API keys'
// actors and regions, api/src/key_routes.cpp).
bool valid_label(std::string_view text) {
  if (text.empty() || core::utf8_length(text) > kMaxLabel) return false;
  bool printable = false;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
    if (u != ' ') printable = true;
  }
  return printable;
}

bool is_level(std::string_view level) {
  return level == "info" || level == "warning" || level == "critical";
}

Filters filters_from(const rapidjson::Value& d) {
  Filters f;
  const auto it = d.FindMember("filters");
  if (it == d.MemberEnd() || it->value.IsNull()) return f;
  if (!it->value.IsObject()) throw std::invalid_argument("filters must be an object");
  const auto& o = it->value;
  f.min_level = json::opt_string(o, "min_level");
  f.region = json::opt_strings(o, "region");
  f.assigned_to = json::opt_string(o, "assigned_to");
  return f;
}

void write_filters(json::Writer& w, const Filters& f) {
  json::key(w, "filters");
  w.StartObject();
  json::optional_field(w, "min_level", f.min_level);
  if (f.region) json::field(w, "region", *f.region);
  json::optional_field(w, "assigned_to", f.assigned_to);
  w.EndObject();
}

std::optional<Rejection> exists(const State& state, const CommandContext& context) {
  if (!state.exists) return Rejection{"not_found", "id", "there is no such webhook"};
  if (context.expected_version && *context.expected_version != state.version) {
    return Rejection{"version_mismatch", "If-Match",
                     "the webhook is at version " + std::to_string(state.version)};
  }
  return std::nullopt;
}

}  // namespace

std::string_view status_name(Status status) {
  return status == Status::kActive ? "active" : "disabled";
}

const std::set<std::string>& topics() {
  static const std::set<std::string> names = {"contacts", "alerts", "reports", "backups"};
  return names;
}

std::optional<Rejection> check_registration(const Register& c) {
  if (!valid_http_url(c.url)) {
    return Rejection{"invalid", "url",
                     "must be an http:// or https:// URL with a host (and a port up to 65535)"};
  }
  if (c.topics.empty() || c.topics.size() > topics().size()) {
    return Rejection{"invalid", "topics",
                     "must name 1 to 4 topics (alerts, backups, contacts, "
                     "reports)"};
  }
  std::set<std::string> seen;
  for (const auto& t : c.topics) {
    if (!topics().contains(t)) {
      return Rejection{"invalid", "topics",
                       "\"" + t + "\" is not a topic (alerts, backups, contacts, reports)"};
    }
    if (!seen.insert(t).second) return Rejection{"invalid", "topics", "names \"" + t + "\" twice"};
  }
  const auto needs = [&seen](const char* field, const char* topic) -> std::optional<Rejection> {
    if (seen.contains(topic)) return std::nullopt;
    return Rejection{"invalid", field,
                     std::string("filters topic ") + topic + ", which this webhook does not take"};
  };
  const auto& f = c.filters;
  if (f.min_level) {
    if (!is_level(*f.min_level)) {
      return Rejection{"invalid", "filters.min_level", "must be info, warning or critical"};
    }
    if (auto r = needs("filters.min_level", "alerts")) return r;
  }
  if (f.region) {
    if (f.region->empty() || f.region->size() > kMaxRegions) {
      return Rejection{"invalid", "filters.region", "must name 1 to 100 regions"};
    }
    std::set<std::string> regions;
    for (const auto& r : *f.region) {
      if (!valid_label(r)) {
        return Rejection{"invalid", "filters.region",
                         "must hold region names of 1 to 100 characters, not blank, without "
                         "control characters"};
      }
      if (!regions.insert(r).second) {
        return Rejection{"invalid", "filters.region", "names \"" + r + "\" twice"};
      }
    }
    if (auto r = needs("filters.region", "alerts")) return r;
  }
  if (f.assigned_to) {
    if (!valid_label(*f.assigned_to)) {
      return Rejection{"invalid", "filters.assigned_to",
                       "must be an actor's name: 1 to 100 characters, not blank, without control "
                       "characters"};
    }
    if (auto r = needs("filters.assigned_to", "contacts")) return r;
  }
  return std::nullopt;
}

Register register_from_json(std::string_view data) {
  const auto d = json::parse(data);
  const auto topics = json::opt_strings(d, "topics");
  if (!topics) throw std::invalid_argument("topics is required");
  return Register{json::string(d, "url"), *topics, filters_from(d)};
}

Disable disable_from_json(std::string_view data) {
  const auto d = json::parse(data);
  return Disable{json::string(d, "reason"), json::integer(d, "consecutive_failures"),
                 json::opt_string(d, "last_error")};
}

Result decide(const State& state, const Register& c, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "a webhook with this id exists"};
  if (auto r = check_registration(c)) return *r;
  return std::vector<Event>{Registered{c.url, c.topics, c.filters}};
}

Result decide(const State& state, const Disable& c, const CommandContext& context) {
  if (auto r = exists(state, context)) return *r;
  if (state.status == Status::kDisabled) {
    return Rejection{"conflict", "state", "the webhook is disabled already"};
  }
  if (auto r = check_text("reason", c.reason, 1000)) return *r;
  if (c.consecutive_failures < 0) {
    return Rejection{"invalid", "consecutive_failures", "must not be negative"};
  }
  if (c.last_error) {
    if (auto r = check_text("last_error", *c.last_error, 1000)) return *r;
  }
  return std::vector<Event>{Disabled{c.reason, c.consecutive_failures, c.last_error}};
}

Result decide(const State& state, const Enable&, const CommandContext& context) {
  if (auto r = exists(state, context)) return *r;
  if (state.status == Status::kActive) {
    return Rejection{"conflict", "state", "the webhook is active already"};
  }
  return std::vector<Event>{Enabled{}};
}

State evolve(State state, const Event& event) {
  ++state.version;
  std::visit(
      [&state](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Registered>) {
          state.exists = true;
          state.status = Status::kActive;
        } else if constexpr (std::is_same_v<T, Disabled>) {
          state.status = Status::kDisabled;
        } else {
          static_assert(std::is_same_v<T, Enabled>);
          state.status = Status::kActive;
        }
      },
      event);
  return state;
}

std::string event_type(const Event& event) {
  static constexpr std::array<const char*, 3> kTypes = {"webhook.registered", "webhook.disabled",
                                                        "webhook.enabled"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Registered>) {
            json::field(w, "url", e.url);
            json::field(w, "topics", e.topics);
            write_filters(w, e.filters);
          } else if constexpr (std::is_same_v<T, Disabled>) {
            json::field(w, "reason", e.reason);
            json::field(w, "consecutive_failures", e.consecutive_failures);
            json::optional_field(w, "last_error", e.last_error);
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "webhook.registered") {
    const auto topics = json::opt_strings(d, "topics");
    if (!topics) throw std::invalid_argument("topics is required");
    return Registered{json::string(d, "url"), *topics, filters_from(d)};
  }
  if (type == "webhook.disabled") {
    return Disabled{json::string(d, "reason"), json::integer(d, "consecutive_failures"),
                    json::opt_string(d, "last_error")};
  }
  if (type == "webhook.enabled") return Enabled{};
  throw std::invalid_argument("unknown webhook event type " + std::string(type));
}

}  // namespace cauce::commands::webhook
