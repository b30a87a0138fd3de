#pragma once

// The API's side of the write path: puts a command on the commands topic (key = aggregate id)
// and hands back the processor's reply from the replies topic.
//
// Replies are routed per instance: every command names this instance and a reply partition
// (a hash of the instance id); the bus reads only that partition (read_committed, from its end
// at start) and keeps replies whose instance header is its own. No reply within the timeout
// (or a command Kafka would not take) completes the send with an error; the command is then
// applied once or not at all, and a retry with the same command id tells which.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/config.hpp>

namespace prometheus {
class Registry;
}

namespace cauce::commands {

enum class SendError {
  kTimeout,      // no reply in time: the outcome is unknown (applied once or not at all)
  kUnavailable,  // Kafka refused or could not take the command
};

using SendResult = std::variant<Reply, SendError>;
using SendCallback = std::function<void(SendResult)>;

// A processor in the same process, which may decide a command without the round trip through
// the commands and replies topics (DESIGN §3's shorter in-process path).
class LocalDecider {
 public:
  using Done = std::function<void(std::optional<Reply>)>;
  virtual ~LocalDecider() = default;
  // Takes `command` when this process owns and decides its partition: `done` then runs exactly
  // once, with the reply after the transaction holding the command's outcome committed, or
  // with nullopt when it cannot be decided here after all (the partition moved, stopping).
  // false (and `done` never runs) when it is not taken.
  virtual bool try_submit(const CommandEnvelope& command, Done done) = 0;
};

struct BusOptions {
  core::KafkaConfig kafka;
  core::CommandsConfig commands;
};

class CommandBus {
 public:
  CommandBus(BusOptions options, prometheus::Registry& registry);
  ~CommandBus();  // stop()
  CommandBus(const CommandBus&) = delete;
  CommandBus& operator=(const CommandBus&) = delete;

  // Creates the clients and positions the reply reader; throws core::DependencyError when the
  // broker does not answer within the request timeout.
  void start();
  // Completes every pending send with kUnavailable. Idempotent.
  void stop();

  // Never blocks on the network. `done` runs exactly once, on the bus thread or (for an
  // immediate failure) on the caller's.
  void send(const CommandEnvelope& command, SendCallback done);

  // Commands whose partition `local` takes go to it instead of the commands topic (nullptr: all
  // through the topic). `local` must stop (answering what it holds) before this bus is
  // destroyed, and stay alive while it is set.
  void set_local(LocalDecider* local);

  const std::string& instance_id() const;
  std::int32_t reply_partition() const;
  std::size_t pending() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::commands
