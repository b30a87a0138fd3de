#include <algorithm>
#include <array>

#include <cauce/commands/contact.hpp>
#include <cauce/commands/rules.hpp>
#include <cauce/core/log.hpp>

#include "json_fields.hpp"

namespace cauce::commands::contact {
namespace {

constexpr std::array<std::string_view, 5> kOutcomes = {"answered", "no_answer", "busy", "voicemail",
                                                       "wrong_number"};
constexpr int kMaxCallSeconds = 24 * 60 * 60;

// Not found, If-Match and archived are checked before any field, in that order.
std::optional<Rejection> precheck(const State& state, const CommandContext& context) {
  if (!state.exists) return Rejection{"not_found", "id", "there is no such contact"};
  if (context.expected_version && *context.expected_version != state.version) {
    return Rejection{"version_mismatch", "If-Match",
                     "the contact is at version " + std::to_string(state.version)};
  }
  if (state.archived) {
    return Rejection{"conflict", "status", "the contact is archived; archived is final"};
  }
  return std::nullopt;
}

std::optional<Rejection> check_phone(const std::string& raw, std::string& normalized) {
  const auto phone = normalize_phone(raw);
  if (!phone) {
    return Rejection{"invalid", "phone",
                     "must be a phone number with its country code, e.g. +44 20 7946 0958"};
  }
  normalized = *phone;
  return std::nullopt;
}

std::optional<Rejection> check_email(const std::optional<std::string>& email) {
  if (email && !valid_email(*email)) {
    return Rejection{"invalid", "email", "must be an e-mail address like name@example.org"};
  }
  return std::nullopt;
}

std::optional<Rejection> check_notes(const std::optional<std::string>& notes) {
  return notes ? check_text("notes", *notes, kMaxNotesLength, true) : std::nullopt;
}

}  // namespace

Result decide(const State& state, const Register& c, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "a contact with this id exists"};
  Registered e{trim(c.name), "", c.email, c.tags, c.notes};
  if (auto r = check_text("name", c.name, kMaxNameLength)) return *r;
  if (auto r = check_phone(c.phone, e.phone)) return *r;
  if (auto r = check_email(c.email)) return *r;
  if (auto r = check_tags(c.tags)) return *r;
  if (auto r = check_notes(c.notes)) return *r;
  return std::vector<Event>{std::move(e)};
}

Result decide(const State& state, const Update& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (!c.name && !c.phone && !c.email && !c.tags && !c.notes) {
    return Rejection{"invalid", "body", "give at least one of name, phone, email, tags, notes"};
  }
  Updated e;
  if (c.name) {
    if (auto r = check_text("name", *c.name, kMaxNameLength)) return *r;
    if (auto name = trim(*c.name); digest(name) != state.name) e.name = std::move(name);
  }
  if (c.phone) {
    std::string phone;
    if (auto r = check_phone(*c.phone, phone)) return *r;
    if (digest(phone) != state.phone) e.phone = std::move(phone);
  }
  if (c.email) {
    if (auto r = check_email(c.email)) return *r;
    if (digest(c.email) != state.email) e.email = c.email;
  }
  if (c.tags) {
    if (auto r = check_tags(*c.tags)) return *r;
    if (digest(*c.tags) != state.tags) e.tags = c.tags;
  }
  if (c.notes) {
    if (auto r = check_notes(c.notes)) return *r;
    if (digest(c.notes) != state.notes) e.notes = c.notes;
  }
  if (!e.name && !e.phone && !e.email && !e.tags && !e.notes) return std::vector<Event>{};
  return std::vector<Event>{std::move(e)};
}

Result decide(const State& state, const LogCall& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (std::find(kOutcomes.begin(), kOutcomes.end(), c.outcome) == kOutcomes.end()) {
    return Rejection{"invalid", "outcome",
                     "must be answered, no_answer, busy, voicemail or wrong_number"};
  }
  if (c.duration_s < 0 || c.duration_s > kMaxCallSeconds) {
    return Rejection{"invalid", "duration_s", "must be 0 to 86400 seconds"};
  }
  if (auto r = check_notes(c.notes)) return *r;
  if (c.operator_name) {
    if (auto r = check_text("operator", *c.operator_name, kMaxOperatorLength)) return *r;
  }
  return std::vector<Event>{CallLogged{c.call_id, c.outcome, c.duration_s, c.notes, c.operator_name,
                                       context.issued_at_us}};
}

Result decide(const State& state, const Assign& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (auto r = check_text("operator", c.operator_name, kMaxOperatorLength)) return *r;
  const auto op = trim(c.operator_name);
  if (!state.assigned_to.empty() && state.assigned_to.view() == op) return std::vector<Event>{};
  return std::vector<Event>{Assigned{op, state.assigned_to.optional()}};
}

Result decide(const State& state, const Archive& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (c.reason) {
    if (auto r = check_text("reason", *c.reason, 1000, true)) return *r;
  }
  std::optional<std::string> claim_holder;
  if (state.claimed_at(context.issued_at_us)) claim_holder = std::string(state.claimed_by.view());
  return std::vector<Event>{Archived{c.reason, std::move(claim_holder)}};
}

Result decide(const State& state, const Claim& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (c.ttl_s < 1 || c.ttl_s > Claim::kMaxClaimSeconds) {
    return Rejection{"invalid", "ttl_s",
                     "must be 1 to " + std::to_string(Claim::kMaxClaimSeconds) + " seconds"};
  }
  if (context.actor.empty()) return Rejection{"invalid", "actor", "a claim needs a caller"};
  const auto now = context.issued_at_us;
  if (state.claimed_at(now) && state.claimed_by.view() != context.actor) {
    return Rejection{"conflict", "claimed_by",
                     "claimed by " + std::string(state.claimed_by.view()) + " until " +
                         core::format_utc_micros(state.claimed_until_us)};
  }
  return std::vector<Event>{Claimed{context.actor, now + c.ttl_s * 1'000'000}};
}

Result decide(const State& state, const Release&, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  // Nothing to release once the claim has lapsed (or was released): a retry changes nothing.
  if (!state.claimed_at(context.issued_at_us)) return std::vector<Event>{};
  if (state.claimed_by.view() != context.actor) {
    return Rejection{"conflict", "claimed_by",
                     "claimed by " + std::string(state.claimed_by.view()) + " until " +
                         core::format_utc_micros(state.claimed_until_us) +
                         "; only its holder releases it"};
  }
  return std::vector<Event>{Released{context.actor}};
}

State evolve(State state, const Event& event) {
  ++state.version;
  std::visit(
      [&state](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Registered>) {
          state.exists = true;
          state.name = digest(e.name);
          state.phone = digest(e.phone);
          state.email = digest(e.email);
          state.tags = digest(e.tags);
          state.notes = digest(e.notes);
        } else if constexpr (std::is_same_v<T, Updated>) {
          if (e.name) state.name = digest(*e.name);
          if (e.phone) state.phone = digest(*e.phone);
          if (e.email) state.email = digest(e.email);
          if (e.tags) state.tags = digest(*e.tags);
          if (e.notes) state.notes = digest(e.notes);
        } else if constexpr (std::is_same_v<T, CallLogged>) {
          ++state.calls_count;
        } else if constexpr (std::is_same_v<T, Assigned>) {
          state.assigned_to = Atom::of(e.operator_name);
        } else if constexpr (std::is_same_v<T, Archived>) {
          state.archived = true;
          state.claimed_by = Atom{};  // nobody calls an archived contact: its claim ends
          state.claimed_until_us = 0;
        } else if constexpr (std::is_same_v<T, Claimed>) {
          state.claimed_by = Atom::of(e.claimed_by);
          state.claimed_until_us = e.claimed_until_us;
        } else {
          static_assert(std::is_same_v<T, Released>);
          state.claimed_by = Atom{};
          state.claimed_until_us = 0;
        }
      },
      event);
  return state;
}

std::string event_type(const Event& event) {
  static constexpr std::array<const char*, 7> kTypes = {
      "contact.registered", "contact.updated", "contact.call_logged", "contact.assigned",
      "contact.archived",   "contact.claimed", "contact.released"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Registered>) {
            json::field(w, "name", e.name);
            json::field(w, "phone", e.phone);
            json::optional_field(w, "email", e.email);
            json::field(w, "tags", e.tags);
            json::optional_field(w, "notes", e.notes);
          } else if constexpr (std::is_same_v<T, Updated>) {
            json::optional_field(w, "name", e.name);
            json::optional_field(w, "phone", e.phone);
            json::optional_field(w, "email", e.email);
            json::optional_field(w, "tags", e.tags);
            json::optional_field(w, "notes", e.notes);
          } else if constexpr (std::is_same_v<T, CallLogged>) {
            json::field(w, "call_id", e.call_id);
            json::field(w, "outcome", e.outcome);
            json::field(w, "duration_s", std::int64_t{e.duration_s});
            json::optional_field(w, "notes", e.notes);
            json::optional_field(w, "operator", e.operator_name);
            json::field(w, "called_at", core::format_utc_micros(e.called_at_us));
          } else if constexpr (std::is_same_v<T, Assigned>) {
            json::field(w, "operator", e.operator_name);
            json::optional_field(w, "previous", e.previous);
          } else if constexpr (std::is_same_v<T, Archived>) {
            json::optional_field(w, "reason", e.reason);
            json::optional_field(w, "released_by", e.released_by);
          } else if constexpr (std::is_same_v<T, Claimed>) {
            json::field(w, "claimed_by", e.claimed_by);
            json::field(w, "claimed_until", core::format_utc_micros(e.claimed_until_us));
          } else {
            json::field(w, "released_by", e.released_by);
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "contact.registered") {
    return Registered{json::string(d, "name"), json::string(d, "phone"),
                      json::opt_string(d, "email"),
                      json::opt_strings(d, "tags").value_or(std::vector<std::string>{}),
                      json::opt_string(d, "notes")};
  }
  if (type == "contact.updated") {
    return Updated{json::opt_string(d, "name"), json::opt_string(d, "phone"),
                   json::opt_string(d, "email"), json::opt_strings(d, "tags"),
                   json::opt_string(d, "notes")};
  }
  if (type == "contact.call_logged") {
    return CallLogged{json::string(d, "call_id"),
                      json::string(d, "outcome"),
                      static_cast<int>(json::opt_int(d, "duration_s").value_or(0)),
                      json::opt_string(d, "notes"),
                      json::opt_string(d, "operator"),
                      core::parse_utc_micros(json::string(d, "called_at"))};
  }
  if (type == "contact.assigned") {
    return Assigned{json::string(d, "operator"), json::opt_string(d, "previous")};
  }
  if (type == "contact.archived") {
    return Archived{json::opt_string(d, "reason"), json::opt_string(d, "released_by")};
  }
  if (type == "contact.claimed") {
    return Claimed{json::string(d, "claimed_by"),
                   core::parse_utc_micros(json::string(d, "claimed_until"))};
  }
  if (type == "contact.released") return Released{json::string(d, "released_by")};
  throw std::invalid_argument("unknown contact event type " + std::string(type));
}

}  // namespace cauce::commands::contact
