#include <gtest/gtest.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>

#include "fixtures.hpp"

namespace cauce::testing {
namespace {

TEST(TopicsKafkaTest, CreatesMissingTopicsAndLeavesExistingOnes) {
  const auto kafka = test_kafka(3);
  core::KafkaAdmin admin(kafka);
  const auto specs = core::cauce_topics(kafka);
  const auto first = admin.ensure_topics(specs, 3, 1);
  ASSERT_EQ(first.size(), 5u);
  for (const auto& t : first) EXPECT_EQ(t.state, core::TopicState::kCreated) << t.name;

  const auto second = admin.ensure_topics(specs, 3, 1);
  ASSERT_EQ(second.size(), 5u);
  for (const auto& t : second) {
    EXPECT_EQ(t.state, core::TopicState::kExisted) << t.name;
    EXPECT_EQ(t.partitions, 3);
  }
  const auto info = admin.describe(5s);
  EXPECT_EQ(info.partitions_by_topic.at(kafka.events_topic), 3);
  EXPECT_EQ(info.brokers, 1);
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
