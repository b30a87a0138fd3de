#pragma once

// The command processor (role `processor`): the single writer of each partition of the event
// log. DESIGN §3.
//
// A consumer group on the commands topic; for every partition it owns:
//  1. a transactional producer with the id "<group>-<commands topic>-<partition>" is
//     initialised, which fences any earlier owner of that partition (its open transaction is
//     aborted, its later commits fail);
//  2. the partition's aggregates and every command id already applied are rebuilt from the
//     same partition of the events topic (read_committed);
//  3. commands are decided strictly in order, in batches; each batch is one Kafka transaction
//     holding its events, its replies and the consumed commands' offsets.
// A failed transaction is aborted, the state rebuilt from the log and the batch decided again.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <cauce/core/config.hpp>

namespace prometheus {
class Registry;
}

namespace cauce::commands {

struct ProcessorOptions {
  core::KafkaConfig kafka;
  core::CommandsConfig commands;  // commands.processor_group names the group
  // Empty: partitions come from the consumer group. Otherwise exactly these partitions are
  // owned, without a group (tools and tests); fencing works the same.
  std::vector<std::int32_t> static_partitions = {};
};

struct PartitionStatus {
  std::int32_t partition = 0;
  bool ready = false;   // state rebuilt, deciding commands
  bool fenced = false;  // another owner took the partition; this one appends nothing more
  std::size_t aggregates = 0;
  std::size_t commands = 0;  // command ids remembered for deduplication
  std::int64_t rebuilt_events = 0;
};

class CommandProcessor {
 public:
  CommandProcessor(ProcessorOptions options, prometheus::Registry& registry);
  ~CommandProcessor();  // stop()
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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::commands
