#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <cauce/core/config.hpp>
#include <cauce/core/errors.hpp>

namespace cauce::core {

struct TopicSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> configs;  // topic-level settings
};

// librdkafka's version, e.g. "2.0.2".
std::string kafka_client_version();

// cauce.commands, cauce.events (infinite retention, never compacted), cauce.replies,
// cauce.outcomes (compacted) and cauce.dead-letters.
std::vector<TopicSpec> cauce_topics(const KafkaConfig& config);

enum class TopicState { kCreated, kExisted };

struct EnsuredTopic {
  std::string name;
  TopicState state = TopicState::kExisted;
  int partitions = 0;
};

struct ClusterInfo {
  int brokers = 0;
  std::map<std::string, int> partitions_by_topic;
};

// Topic management and reachability checks over librdkafka's admin API. Errors are
// DependencyError: retryable when the broker is unreachable, not retryable when the cluster
// disagrees with us (a topic with a different partition count).
class KafkaAdmin {
 public:
  explicit KafkaAdmin(const KafkaConfig& config);
  ~KafkaAdmin();
  KafkaAdmin(const KafkaAdmin&) = delete;
  KafkaAdmin& operator=(const KafkaAdmin&) = delete;

  // One metadata request: brokers and every topic's partition count.
  ClusterInfo describe(std::chrono::milliseconds timeout) const;

  // Creates each missing topic with `partitions` partitions and min.insync.replicas =
  // min(kafka.min_insync_replicas, replication_factor) unless its spec sets it; leaves an
  // existing one alone when its partition count matches and refuses (non-retryable
  // DependencyError) when it does not.
  std::vector<EnsuredTopic> ensure_topics(const std::vector<TopicSpec>& topics, int partitions,
                                          int replication_factor);

  // The settings set on `topic` itself (DescribeConfigs entries whose source is the topic's
  // dynamic config), not the broker's defaults.
  std::map<std::string, std::string> topic_overrides(const std::string& topic) const;

  // The offset `group` has committed for `topic`/`partition` (-1 when none), asked with
  // require_stable (KIP-447): the broker answers only once no open transaction holds an offset
  // for it, so every transaction that consumed from the partition before is finished (committed
  // or aborted). Waits and asks again while one is open; throws a retryable DependencyError when
  // `timeout` passes first, the broker cannot be reached or `give_up` (checked between tries)
  // says so.
  std::int64_t stable_committed_offset(const std::string& group, const std::string& topic,
                                       std::int32_t partition, std::chrono::milliseconds timeout,
                                       const std::function<bool()>& give_up = {}) const;

  // Per partition 0..partitions-1 of `topic`: the offset of the first record whose timestamp is
  // at or after `time` (the broker's time index: ListOffsets, what offsetsForTimes asks), or
  // the partition's end when no record is that recent.
  std::map<std::int32_t, std::int64_t> offsets_for_time(
      const std::string& topic, int partitions, std::chrono::system_clock::time_point time) const;
  // Per partition: the high watermark (the offset the next record will get).
  std::map<std::int32_t, std::int64_t> end_offsets(const std::string& topic, int partitions) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::core
