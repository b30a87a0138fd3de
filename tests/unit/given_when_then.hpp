#pragma once

// given(events...) folds events into a state; then_events / then_rejected check a decision.
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::testing {

template <typename State, typename Event>
State given(const std::vector<Event>& events) {
  State state;
  for (const auto& e : events) state = evolve(std::move(state), e);
  return state;
}

template <typename Result>
auto then_events(const Result& result) {
  using Events = std::variant_alternative_t<0, Result>;
  if (const auto* r = std::get_if<Rejection>(&result)) {
    ADD_FAILURE() << "rejected: " << r->code << " " << r->field << ": " << r->message;
    return Events{};
  }
  return std::get<Events>(result);
}

template <typename Result>
Rejection then_rejected(const Result& result) {
  if (!std::holds_alternative<Rejection>(result)) {
    ADD_FAILURE() << "accepted with " << std::get<0>(result).size() << " events";
    return {};
  }
  return std::get<Rejection>(result);
}

inline CommandContext at(std::int64_t issued_at_us = 1'700'000'000'000'000,
                         std::optional<std::int64_t> expected_version = std::nullopt,
                         std::string actor = "op1") {
  return {issued_at_us, expected_version, std::move(actor)};
}

}  // namespace cauce::commands::testing
