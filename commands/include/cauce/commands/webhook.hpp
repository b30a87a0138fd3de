#pragma once

// The Webhook aggregate (issue 16, part 7): an admin registers a URL that receives the
// notifications of some stream topics, signed; the delivery worker disables it after too many
// failures in a row, an admin enables it again. The signing secret is never part of it (nor of
// any event): the API keeps it in PostgreSQL (api/README.md "Webhooks").

#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::webhook {

enum class Status { kActive, kDisabled };
std::string_view status_name(Status status);

// The topics a webhook may take: the notification topics of the event stream.
const std::set<std::string>& topics();

// What a webhook's deliveries are narrowed to, as the streams' filters (api/README.md
// "targeted streams"): alerts of `min_level` or above, alerts of one of `region`, contacts
// assigned to or claimed by `assigned_to` (an actor's name: a webhook has no "me").
struct Filters {
  std::optional<std::string> min_level;
  std::optional<std::vector<std::string>> region;
  std::optional<std::string> assigned_to;
  friend bool operator==(const Filters&, const Filters&) = default;
};

struct Register {
  std::string url;
  std::vector<std::string> topics;
  Filters filters;
};
// The delivery worker's (actor system:webhooks): `consecutive_failures` attempts in a row failed.
struct Disable {
  std::string reason;
  std::int64_t consecutive_failures = 0;
  std::optional<std::string> last_error;
};
struct Enable {};

struct Registered {
  std::string url;
  std::vector<std::string> topics;
  Filters filters;
  friend bool operator==(const Registered&, const Registered&) = default;
};
struct Disabled {
  std::string reason;
  std::int64_t consecutive_failures = 0;
  std::optional<std::string> last_error;
  friend bool operator==(const Disabled&, const Disabled&) = default;
};
struct Enabled {
  friend bool operator==(const Enabled&, const Enabled&) = default;
};
using Event = std::variant<Registered, Disabled, Enabled>;

struct State {
  bool exists = false;
  std::int64_t version = 0;
  Status status = Status::kActive;
};
using Result = std::variant<std::vector<Event>, Rejection>;

// The rules of a registration's fields (the API checks them before the command is sent; the
// aggregate again): an http(s) URL, 1 to 4 distinct topics of topics(), and each filter valid and
// on a topic the webhook takes. nullopt when they hold; else the rejection naming the field
// ("url", "topics", "filters.min_level", "filters.region", "filters.assigned_to").
std::optional<Rejection> check_registration(const Register& command);

// The commands' bodies (webhook.register, webhook.disable); throw std::invalid_argument.
Register register_from_json(std::string_view data);
Disable disable_from_json(std::string_view data);

Result decide(const State& state, const Register& command, const CommandContext& context);
Result decide(const State& state, const Disable& command, const CommandContext& context);
Result decide(const State& state, const Enable& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::webhook
