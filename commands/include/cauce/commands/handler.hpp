#pragma once

// Deciding one command against the state of its partition, and folding the log back into that
// state. Pure: the command processor does the I/O around it.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/alert.hpp>
#include <cauce/commands/compact.hpp>
#include <cauce/commands/contact.hpp>
#include <cauce/commands/envelope.hpp>
#include <cauce/commands/import.hpp>
#include <cauce/commands/jobs.hpp>
#include <cauce/commands/report_schedule.hpp>
#include <cauce/commands/webhook.hpp>

namespace cauce::commands {

using AggregateState = std::variant<contact::State, alert::State, report::State, backup::State,
                                    report_schedule::State, webhook::State, import::State>;

// The aggregate types, numbered as AggregateState's alternatives.
enum class AggregateType : std::uint8_t {
  kContact,
  kAlert,
  kReport,
  kBackup,
  kReportSchedule,
  kWebhook,
  kImport
};
std::optional<AggregateType> aggregate_type(std::string_view name);

struct AggregateKey {
  Uuid id;
  AggregateType type = AggregateType::kContact;
  friend bool operator==(const AggregateKey&, const AggregateKey&) = default;
};

// What the log says a command did: enough to answer a retry exactly as the first time. Built
// from its events (applied) or from the outcomes topic (a remembered rejection). What the
// retry itself carries is not kept: its aggregate id (the request names it, or it is derived
// from the command id) and its call id (derived from the command id).
struct AppliedCommand {
  // Of the request hash and the aggregate id: a retry that does not match is a reused key.
  Digest request = 0;
  std::int64_t version = 0;
  std::int64_t offset = -1;  // of its last event in the partition; -1 when it appended none
  // Set for a remembered rejection: the command appended nothing and a retry answers this.
  std::optional<Rejection> rejection;
};

// The state of one partition's aggregates plus every command id applied to them (permanent
// deduplication: rebuilt from the log, not a time window). An interface so that a snapshotting
// store can replace the in-memory one.
class AggregateStore {
 public:
  virtual ~AggregateStore() = default;
  virtual const AggregateState* find(const AggregateKey& key) const = 0;
  virtual void put(const AggregateKey& key, AggregateState state) = 0;
  virtual std::optional<AppliedCommand> find_command(const Uuid& command_id) const = 0;
  virtual void record_command(const Uuid& command_id, const AppliedCommand& applied) = 0;
  virtual std::size_t aggregate_count() const = 0;
  virtual std::size_t command_count() const = 0;
  // Aggregates whose history holds an event this build cannot fold (a newer build's type or
  // schema_version, during a rolling upgrade or after a rollback): the first such event ("type
  // vN"), nullptr for the others. Commands on them are refused until a build that reads every
  // event decides them.
  virtual const std::string* unread(const AggregateKey& key) const = 0;
  virtual void mark_unread(const AggregateKey& key, std::string event) = 0;
  // Events folded without being read, of any aggregate type (one of a type this build does not
  // know has no key to mark). A store holding any is never snapshotted: the build that reads
  // them must fold them from the log.
  virtual std::int64_t unread_events() const = 0;
  virtual void count_unread_event() = 0;
};

// Every aggregate and command in fixed-size records (compact.hpp): about 150 bytes per contact
// with its command remembered, where strings took 960. Remembered rejections, which are rare,
// keep their text in a map of their own.
class MemoryAggregateStore final : public AggregateStore {
 public:
  struct KeyTraits {
    static std::uint64_t hash(const AggregateKey& key) {
      return key.id.hash() ^ static_cast<std::uint64_t>(key.type);
    }
  };
  struct IdTraits {
    static std::uint64_t hash(const Uuid& id) { return id.hash(); }
  };
  struct CommandRecord {
    Digest request = 0;
    std::int64_t version = 0;
    std::int64_t offset = -1;  // kRejected: its rejection is in rejections()
  };
  static constexpr std::int64_t kRejected = -2;
  using Aggregates = DenseMap<AggregateKey, AggregateState, KeyTraits>;
  using Commands = DenseMap<Uuid, CommandRecord, IdTraits>;
  using Rejections = DenseMap<Uuid, Rejection, IdTraits>;

  const AggregateState* find(const AggregateKey& key) const override;
  void put(const AggregateKey& key, AggregateState state) override;
  std::optional<AppliedCommand> find_command(const Uuid& command_id) const override;
  void record_command(const Uuid& command_id, const AppliedCommand& applied) override;
  std::size_t aggregate_count() const override { return aggregates_.size(); }
  std::size_t command_count() const override { return commands_.size(); }
  const std::string* unread(const AggregateKey& key) const override;
  void mark_unread(const AggregateKey& key, std::string event) override;
  std::int64_t unread_events() const override { return unread_events_; }
  void count_unread_event() override { ++unread_events_; }

  // For snapshots.
  const Aggregates& aggregates() const { return aggregates_; }
  const Commands& commands() const { return commands_; }
  const Rejections& rejections() const { return rejections_; }

 private:
  Aggregates aggregates_;
  Commands commands_;
  Rejections rejections_;
  // Never snapshotted: a processor holding any does not write snapshots (processor.cpp).
  DenseMap<AggregateKey, std::string, KeyTraits> unread_;
  std::int64_t unread_events_ = 0;
};

struct Outcome {
  ReplyOutcome kind = ReplyOutcome::kApplied;
  std::vector<NewEvent> events;
  std::optional<AggregateState> state_after;  // set when events were decided
  std::int64_t version = 0;                   // aggregate version after the command
  std::optional<std::string> call_id;
  std::optional<std::string> claimed_until;  // contact.claim: the claim's end (RFC 3339)
  std::optional<Rejection> rejection;
  std::optional<AppliedCommand> original;  // set when the command id was decided before
};

// Whether a rejection is remembered like a success, so that a retry answers it again instead
// of being decided anew: the command can be retried (its id is derived from an Idempotency-Key)
// and the rejection came from the state (404, 409, 412), not from the body ("invalid").
bool remembers_rejection(const CommandEnvelope& command, const Outcome& outcome);

// What a store records for a command: an applied one (`offset` of its last event, -1 until
// known or when it appended none) or a remembered rejection.
AppliedCommand remembered(const CommandEnvelope& command, const Outcome& outcome,
                          std::int64_t offset = -1);

// Puts what `outcome` decided for `command` into `store`: the aggregate's state after it (when
// it decided events) and the command, so that a retry answers the same.
void record(AggregateStore& store, const CommandEnvelope& command, const Outcome& outcome,
            std::int64_t offset = -1);

// Decides `command` against `store` without changing it. A command id decided before answers
// what it answered then (duplicate, the same rejection replayed, or key_reused when the request
// differs). Malformed data is a rejection ("invalid"), an unknown command type one of its own
// ("unknown_command", not remembered: a newer API sent it), never exceptions. On
// an aggregate with unread history (AggregateStore::unread) a wrong If-Match is a
// version_mismatch as usual and anything else an "unreadable_history" rejection, which is not
// remembered (the same command is decided again after the upgrade).
Outcome decide(const AggregateStore& store, const CommandEnvelope& command);

// The envelopes of an applied command's events, as the processor appends them: UUIDv7 ids,
// versions ending at `outcome.version`, time, actor, correlation and trace from the command, the
// command as their cause.
std::vector<EventEnvelope> event_envelopes(const CommandEnvelope& command, const Outcome& outcome);

// An event fold() could not read.
struct UnreadEvent {
  std::string event;   // its type and schema_version: "contact.nicknamed v1"
  std::string reason;  // what could not be read
  // Its type, schema_version or aggregate type is unknown to this build: a newer build wrote it
  // (a rolling upgrade), and once every process runs that build it is read. Otherwise it is
  // damaged: this build has a schema for it and its data does not fit; no upgrade reads it.
  bool newer = false;
};

// Folds one event of the log into `store` (state and the command it came from), upcast to the
// current schema version first. `offset` is the event's in its partition; `request_hash` comes
// from the record's header. An event whose envelope is sound but whose type, schema_version,
// data or aggregate type this build cannot read is never fatal: the aggregate takes the
// envelope's version (OCC stays exact), is marked unread (with what its refusals say), its
// command is remembered, and the event is returned (nullopt: folded). Throws
// std::invalid_argument for an envelope without valid ids.
std::optional<UnreadEvent> fold(AggregateStore& store, EventEnvelope event, std::int64_t offset,
                                const std::string& request_hash);

}  // namespace cauce::commands
