#pragma once

// Reads a test's event topic the way any analytics consumer would (a plain read_committed
// consumer, no cauce code in the way) and checks every event against schemas/.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/config.hpp>

namespace cauce::testing {

struct TopicRecord {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};

struct LoggedEvent : TopicRecord {
  commands::EventEnvelope envelope;
};

// Every committed record of `topic` (kafka.partitions partitions), read to its current end.
std::vector<TopicRecord> read_topic(const core::KafkaConfig& kafka, const std::string& topic);

// Every committed record of the events topic, all partitions, read to their current end.
// A record that is not an event envelope throws, unless `skip_foreign` (tests that write
// garbage on purpose).
std::vector<LoggedEvent> read_event_log(const core::KafkaConfig& kafka, bool skip_foreign = false);

// What is wrong with the events: each record's envelope against envelope.v1, its data against
// "<type>.v1" (e.g. contact.registered.v1), and its headers (traceparent included) against its
// envelope. Empty: fine.
std::vector<std::string> schema_problems(const std::vector<LoggedEvent>& events);

// The events a command produced.
std::vector<LoggedEvent> events_of_command(const std::vector<LoggedEvent>& events,
                                           const std::string& command_id);

}  // namespace cauce::testing
