#include <map>
#include <set>

#include <gtest/gtest.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>

#include "fixtures.hpp"

namespace cauce::testing {
namespace {

TEST(TopicsKafkaTest, CreatesMissingTopicsAndLeavesExistingOnes) {
  const auto kafka = test_kafka(3);
  core::KafkaAdmin admin(kafka);
  const auto specs = core::cauce_topics(kafka);
  const auto first = admin.ensure_topics(specs, 3, 1);
  ASSERT_EQ(first.size(), 7u);
  for (const auto& t : first) EXPECT_EQ(t.state, core::TopicState::kCreated) << t.name;

  const auto second = admin.ensure_topics(specs, 3, 1);
  ASSERT_EQ(second.size(), 7u);
  for (const auto& t : second) {
    EXPECT_EQ(t.state, core::TopicState::kExisted) << t.name;
    EXPECT_EQ(t.partitions, 3);
  }
  const auto info = admin.describe(5s);
  EXPECT_EQ(info.partitions_by_topic.at(kafka.events_topic), 3);
  EXPECT_EQ(info.brokers, 1);
}

// Each topic carries its own min.insync.replicas (the broker's default may be 1), capped at its
// replication factor: one broker here, so 1, set on the topic itself.
TEST(TopicsKafkaTest, NewTopicsCarryTheirOwnMinInsyncReplicas) {
  auto kafka = test_kafka(1);
  ASSERT_EQ(kafka.min_insync_replicas, 2);
  core::KafkaAdmin admin(kafka);
  admin.ensure_topics(core::cauce_topics(kafka), 1, 1);
  for (const auto& topic : core::cauce_topics(kafka)) {
    std::map<std::string, std::string> overrides;
    // Until the broker's config handler knows the topic just created.
    ASSERT_TRUE(eventually([&] {
      try {
        overrides = admin.topic_overrides(topic.name);
        return true;
      } catch (const core::DependencyError& e) {
        if (!e.is_retryable()) throw;
        return false;
      }
    })) << topic.name;
    ASSERT_TRUE(overrides.contains("min.insync.replicas")) << topic.name;
    EXPECT_EQ(overrides.at("min.insync.replicas"), "1") << topic.name;
    EXPECT_EQ(overrides.at("cleanup.policy"), topic.configs.front().second) << topic.name;
  }
}

TEST(TopicsKafkaTest, AMismatchedPartitionCountIsRefusedNotRetried) {
  const auto kafka = test_kafka(2);
  core::KafkaAdmin admin(kafka);
  admin.ensure_topics(core::cauce_topics(kafka), 2, 1);
  try {
    admin.ensure_topics(core::cauce_topics(kafka), 5, 1);
    FAIL() << "mismatch accepted";
  } catch (const core::DependencyError& e) {
    EXPECT_FALSE(e.is_retryable());
    EXPECT_NE(std::string(e.what()).find("exists with 2 partitions"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(admin.describe(5s).partitions_by_topic.at(kafka.commands_topic), 2);
}

// The in-process path decides a command in the partition it computes; it must be the one the
// producer's partitioner picks, or an aggregate's events would split across partitions.
TEST(TopicsKafkaTest, KeyPartitionIsTheOneTheProducerPicks) {
  const auto kafka = test_kafka(12);
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), 12, 1);
  auto conf = core::kafka_conf(kafka, {{"partitioner", "murmur2_random"}, {"linger.ms", "5"}});
  struct Recorder : RdKafka::DeliveryReportCb {
    std::vector<std::pair<std::string, std::int32_t>> seen;
    void dr_cb(RdKafka::Message& m) override {
      if (m.err() == RdKafka::ERR_NO_ERROR) seen.emplace_back(*m.key(), m.partition());
    }
  } recorder;
  std::string err;
  ASSERT_EQ(conf->set("dr_cb", &recorder, err), RdKafka::Conf::CONF_OK);
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  ASSERT_TRUE(producer) << err;
  for (int i = 0; i < 300; ++i) {
    const auto key = i % 2 == 0 ? commands::uuid_v7(1'700'000'000'000 + i)
                                : commands::uuid_from_name("key " + std::to_string(i));
    ASSERT_EQ(core::kafka_produce(*producer, kafka.commands_topic, RdKafka::Topic::PARTITION_UA,
                                  key, "{}", {}),
              RdKafka::ERR_NO_ERROR);
  }
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);
  ASSERT_EQ(recorder.seen.size(), 300u);
  std::set<std::int32_t> used;
  for (const auto& [key, partition] : recorder.seen) {
    EXPECT_EQ(core::kafka_key_partition(key, 12), partition) << key;
    used.insert(partition);
  }
  EXPECT_EQ(used.size(), 12u);
}

TEST(TopicsKafkaTest, AnUnreachableBrokerIsARetryableErrorNotAHang) {
  core::KafkaConfig nowhere;
  nowhere.bootstrap_servers = "127.0.0.1:1";
  core::KafkaAdmin admin(nowhere);
  try {
    admin.describe(500ms);
    FAIL() << "metadata from a closed port";
  } catch (const core::DependencyError& e) {
    EXPECT_TRUE(e.is_retryable());
    EXPECT_EQ(e.dependency(), "kafka");
  }
}

}  // namespace
}  // namespace cauce::testing
