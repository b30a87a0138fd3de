#pragma once

// Wire forms: the command on cauce.commands, the event envelope on cauce.events (DESIGN §3)
// and the reply on cauce.replies. JSON, snake_case.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <cauce/commands/domain.hpp>
#include <cauce/core/trace.hpp>

namespace cauce::commands {

struct CommandEnvelope {
  std::string command_id;      // UUID; derived from the Idempotency-Key when one is given
  std::string type;            // "contact.register"
  std::string aggregate_type;  // "contact"
  std::string aggregate_id;    // UUID
  std::optional<std::int64_t> expected_version;  // If-Match
  std::int64_t issued_at_us = 0;                 // the API's clock: the events' occurred_at
  std::string actor;                             // the API key's name
  std::string correlation_id;
  // The W3C traceparent of the span that sent it (the API's, or the worker's); none from an
  // older sender. The processor decides it in a child span, which its events carry.
  core::TraceParent trace_parent;
  std::string request_hash;  // sha256 of method, path and body: same key + other body = 422
  std::string data;          // JSON object: the validated body (+ ids the API chose)
};

struct EventEnvelope {
  std::string event_id;  // UUIDv7
  std::string type;
  int schema_version = 1;
  std::string aggregate_type;
  std::string aggregate_id;
  std::int64_t version = 0;
  std::int64_t occurred_at_us = 0;
  std::string command_id;
  std::string correlation_id;
  std::string causation_id;  // the command that caused it
  std::string actor;
  std::string data;  // JSON object
  // The span of the processor that decided the command (W3C traceparent): what a consumer that
  // acts on the event continues. None on events appended before traces were carried.
  core::TraceParent trace_parent;
};

enum class ReplyOutcome { kApplied, kDuplicate, kRejected, kKeyReused };

// "applied", "duplicate", "rejected", "key_reused": the reply's wire value and metric label.
const char* outcome_name(ReplyOutcome outcome);

struct Reply {
  std::string command_id;
  ReplyOutcome outcome = ReplyOutcome::kApplied;
  std::string aggregate_id;
  std::int64_t version = 0;  // the aggregate's version after the command
  std::string position;      // "<partition>:<offset>" of the last event, "" if none
  std::optional<std::string> call_id;
  std::optional<std::string> claimed_until;  // contact.claim: the claim's end (RFC 3339)
  std::optional<Rejection> rejection;
  bool replayed = false;  // a remembered rejection answered again (Idempotent-Replayed)
};

// Kafka record headers. Events carry their identity as headers too, so consumers can filter
// without parsing the value; commands carry where their reply goes.
namespace header {
inline constexpr const char* kType = "type";                            // events, commands
inline constexpr const char* kAggregateType = "aggregate_type";         // events, commands
inline constexpr const char* kAggregateId = "aggregate_id";             // events, commands
inline constexpr const char* kEventId = "event_id";                     // events
inline constexpr const char* kCommandId = "command_id";                 // events, commands, replies
inline constexpr const char* kRequestHash = "request_hash";             // events (deduplication)
inline constexpr const char* kTraceParent = "traceparent";              // events, commands (W3C)
inline constexpr const char* kReplyInstance = "reply_instance";         // commands, replies
inline constexpr const char* kReplyPartition = "reply_partition";       // commands
inline constexpr const char* kReplyToken = "reply_token";               // commands, replies
inline constexpr const char* kDeadLetterSource = "dead_letter_source";  // "<topic>:<p>:<offset>"
inline constexpr const char* kDeadLetterError = "dead_letter_error";    // why it was parked
}  // namespace header

// "<partition>:<offset>" of a record in cauce.events: the opaque position token clients get.
std::string position_token(std::int32_t partition, std::int64_t offset);

std::string to_json(const CommandEnvelope& command);
std::string to_json(const EventEnvelope& event);
std::string to_json(const Reply& reply);
// Throw std::invalid_argument naming what is wrong.
CommandEnvelope command_from_json(std::string_view json);
EventEnvelope event_from_json(std::string_view json);
Reply reply_from_json(std::string_view json);

// UUIDv7 (RFC 9562) for a Unix time in milliseconds, random bits from the OS.
std::string uuid_v7(std::int64_t unix_ms);
// A name-based UUID (version 8, SHA-256 of the name): the same name always gives the same id.
std::string uuid_from_name(std::string_view name);
bool is_uuid(std::string_view text);

// A UUID of version 8: how the API derives a command id from an Idempotency-Key, so a command
// that a client can retry.
bool is_name_based_uuid(std::string_view text);

}  // namespace cauce::commands
