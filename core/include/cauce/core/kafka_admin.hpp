#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::core {

struct TopicSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> configs;  // topic-level settings
};

// librdkafka's version, e.g. "2.0.2".
std::string kafka_client_version();

// cauce.commands, cauce.events (infinite retention, never compacted) and cauce.replies.
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

  // Creates each missing topic with `partitions` partitions; leaves an existing one alone when
  // its partition count matches and refuses (non-retryable DependencyError) when it does not.
  std::vector<EnsuredTopic> ensure_topics(const std::vector<TopicSpec>& topics, int partitions,
                                          int replication_factor);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::core
