#pragma once

// `cauce events tail|dump` (api/src/events_cli.cpp).

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>

#include <cauce/core/config.hpp>

namespace cauce::api {

struct EventFilter {
  std::set<std::string> types;  // empty: every type
  std::string aggregate;        // empty: every aggregate
};

// Prints each new event of the log (from its end, read_committed) as one JSON line
// {"position","timestamp_ms","event"} (coloured on a terminal) until `stop`.
int events_tail(const core::KafkaConfig& kafka, const EventFilter& filter,
                const std::atomic<bool>& stop);

// Prints the events written in [from_time, to_time) (the broker's time index; without them, the
// whole log up to its end now) as JSON lines, then returns (130 when `stop` cut it short).
int events_dump(const core::KafkaConfig& kafka, const EventFilter& filter,
                std::optional<std::chrono::system_clock::time_point> from_time,
                std::optional<std::chrono::system_clock::time_point> to_time,
                const std::atomic<bool>& stop);

}  // namespace cauce::api
