#pragma once

// Deciding one command against the state of its partition, and folding the log back into that
// state. Pure: the command processor does the I/O around it.

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include <cauce/commands/alert.hpp>
#include <cauce/commands/contact.hpp>
#include <cauce/commands/envelope.hpp>
#include <cauce/commands/jobs.hpp>

namespace cauce::commands {

using AggregateState = std::variant<contact::State, alert::State, report::State, backup::State>;

// What the log says a command did: enough to answer a retry exactly as the first time. Built
// from its events (applied) or from the outcomes topic (a remembered rejection).
struct AppliedCommand {
  std::string request_hash;
  std::string aggregate_id;
  std::int64_t version = 0;
  std::string position;
  std::optional<std::string> call_id;
  // Set for a remembered rejection: the command appended nothing and a retry answers this.
  std::optional<Rejection> rejection;
};

// The state of one partition's aggregates plus every command id applied to them (permanent
// deduplication: rebuilt from the log, not a time window). An interface so that a snapshotting
// store can replace the in-memory one.
class AggregateStore {
 public:
  virtual ~AggregateStore() = default;
  // Keys are "<aggregate_type>/<aggregate_id>".
  virtual const AggregateState* find(const std::string& key) const = 0;
  virtual void put(const std::string& key, AggregateState state) = 0;
  virtual const AppliedCommand* find_command(const std::string& command_id) const = 0;
  virtual void record_command(const std::string& command_id, AppliedCommand applied) = 0;
  virtual std::size_t aggregate_count() const = 0;
  virtual std::size_t command_count() const = 0;
};

class MemoryAggregateStore final : public AggregateStore {
 public:
  const AggregateState* find(const std::string& key) const override;
  void put(const std::string& key, AggregateState state) override;
  const AppliedCommand* find_command(const std::string& command_id) const override;
  void record_command(const std::string& command_id, AppliedCommand applied) override;
  std::size_t aggregate_count() const override { return aggregates_.size(); }
  std::size_t command_count() const override { return commands_.size(); }

  // For snapshots: every aggregate and every remembered command, in no particular order.
  const std::unordered_map<std::string, AggregateState>& aggregates() const { return aggregates_; }
  const std::unordered_map<std::string, AppliedCommand>& commands() const { return commands_; }

 private:
  std::unordered_map<std::string, AggregateState> aggregates_;
  std::unordered_map<std::string, AppliedCommand> commands_;
};

std::string store_key(std::string_view aggregate_type, std::string_view aggregate_id);

struct Outcome {
  ReplyOutcome kind = ReplyOutcome::kApplied;
  std::vector<NewEvent> events;
  std::optional<AggregateState> state_after;  // set when events were decided
  std::int64_t version = 0;                   // aggregate version after the command
  std::optional<std::string> call_id;
  std::optional<Rejection> rejection;
  const AppliedCommand* original = nullptr;  // set when the command id was decided before
};

// Whether a rejection is remembered like a success, so that a retry answers it again instead
// of being decided anew: the command can be retried (its id is derived from an Idempotency-Key)
// and the rejection came from the state (404, 409, 412), not from the body ("invalid").
bool remembers_rejection(const CommandEnvelope& command, const Outcome& outcome);

// What a store records for a command: an applied one (`position` of its last event, "" until
// known) or a remembered rejection.
AppliedCommand remembered(const CommandEnvelope& command, const Outcome& outcome,
                          std::string position = "");

// Decides `command` against `store` without changing it. A command id decided before answers
// what it answered then (duplicate, the same rejection replayed, or key_reused when the request
// differs). Unknown types and malformed data are
// rejections ("invalid"), never exceptions.
Outcome decide(const AggregateStore& store, const CommandEnvelope& command);

// The envelopes of an applied command's events, as the processor appends them: UUIDv7 ids,
// versions ending at `outcome.version`, time, actor and correlation from the command, the
// command as their cause.
std::vector<EventEnvelope> event_envelopes(const CommandEnvelope& command, const Outcome& outcome);

// Folds one event of the log into `store` (state and the command it came from), upcast to the
// current schema version first. `position` is "<partition>:<offset>"; `request_hash` comes
// from the record's header.
void fold(AggregateStore& store, EventEnvelope event, const std::string& position,
          const std::string& request_hash);

}  // namespace cauce::commands
