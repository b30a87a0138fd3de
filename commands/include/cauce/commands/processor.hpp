#pragma once

// The command processor (role `processor`): the single writer of each partition of the event
// log. DESIGN §3, with one transactional producer per processor (exactly-once v2, KIP-447).
//
// A consumer group on the commands topic. The processor keeps commands.transactions_in_flight
// lanes, each a committer thread with a transactional producer of id
// "<group>-<commands topic>-<commands.instance_id>-<lane>" (a fresh instance id per start when
// none is configured); lane k owns the partitions p with p % lanes == k, so several
// transactions are in flight while each partition's commands stay in order. For every
// partition it owns:
//  1. once no transaction holding an offset of the partition is open any more (the group's
//     stable committed offset), the partition's aggregates, every command id applied and every
//     remembered rejection are rebuilt from the same partition of the events and outcomes
//     topics, read_committed, up to their high watermarks (an open transaction is waited for);
//  2. its commands are decided strictly in order.
// The commands of a lane's ready partitions share transactions: a batch's events, replies,
// remembered rejections and the consumed commands' offsets commit together, the offsets sent
// with the consumer group's metadata so that a zombie (a member whose partitions moved) is
// fenced by the group generation. A failed transaction is aborted, its commands queued again
// and its partitions rebuilt from the log before they are decided again.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <cauce/commands/command_bus.hpp>
#include <cauce/core/config.hpp>

namespace prometheus {
class Registry;
}

namespace cauce::commands {

struct ProcessorOptions {
  core::KafkaConfig kafka;
  core::CommandsConfig commands;  // commands.processor_group names the group
  // Empty: partitions come from the consumer group. Otherwise exactly these partitions are
  // owned, without a group (tools and tests): then only a producer with the same
  // transactional id (the same commands.instance_id and lane) fences an earlier owner, so a
  // restart must keep commands.transactions_in_flight, or an earlier owner's lanes beyond the
  // new count are not fenced.
  std::vector<std::int32_t> static_partitions = {};
  // Fault injection for tests: called by a lane right before it commits a transaction; an
  // exception it throws is taken as the broker's answer to the commit (a core::KafkaError that
  // requires an abort: the transaction is aborted, its partitions rebuilt and its commands
  // decided again). Empty in production.
  std::function<void()> before_commit = {};
};

struct PartitionStatus {
  std::int32_t partition = 0;
  bool ready = false;   // state rebuilt, deciding commands
  bool fenced = false;  // another producer took this processor's transactional id: it appends
                        // nothing more
  std::size_t aggregates = 0;
  std::size_t commands = 0;  // command ids remembered for deduplication
  std::int64_t rebuilt_events = 0;
};

class CommandProcessor final : public LocalDecider {
 public:
  CommandProcessor(ProcessorOptions options, prometheus::Registry& registry);
  ~CommandProcessor() override;  // stop()
  CommandProcessor(const CommandProcessor&) = delete;
  CommandProcessor& operator=(const CommandProcessor&) = delete;

  // Joins the group (or takes the static partitions) and returns; partitions come up in the
  // background. Throws core::DependencyError when the client cannot be created.
  void start();
  // Finishes (or aborts) the open transactions and leaves the group. Idempotent.
  void stop();

  std::vector<PartitionStatus> status() const;
  // The group has told this processor which partitions are its own (possibly none) and has not
  // taken them back since. Before that, no command of any partition can be decided here.
  bool has_assignment() const;

  // The API's shorter path in this process (LocalDecider): a command of a partition this
  // processor owns joins its queue and the next shared transaction, which also sends the
  // partition's offset with the group metadata (a zombie stays fenced); its reply comes after
  // the commit. Commands queued for a partition that is released or when stopping are answered
  // nullopt.
  bool try_submit(const CommandEnvelope& command, Done done) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::commands
