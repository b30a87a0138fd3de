// A partition's leader moves (a broker of a cluster died, or came back and took its leadership
// again): the processor's rebuild must reach the new leader. Found by the fault drill
// (scripts/drill): after a SIGKILL of the broker leading most partitions, the processors'
// rebuilds kept asking the old leader its metadata cache named for high watermarks ("Not
// leader for partition") and every command was a 503 for minutes. librdkafka's mock cluster
// (fault injection only, DESIGN.md §7) moves the leader here; no broker is needed.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <librdkafka/rdkafkacpp.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>

#include "fixtures.hpp"
#include "watermarks.hpp"

namespace cauce::testing {
namespace {

constexpr std::int16_t kOffsetFetch = 9;  // the Kafka protocol's ApiKey

commands::HighWatermarks::ClientFactory client_factory(rd_kafka_mock_cluster_t* mock) {
  return [bootstrap = std::string(rd_kafka_mock_cluster_bootstraps(mock))] {
    auto conf = rdkafka_conf({{"bootstrap.servers", bootstrap},
                              {"group.id", "watermarks"},
                              {"enable.auto.commit", "false"},
                              {"isolation.level", "read_uncommitted"}});
    std::string err;
    std::unique_ptr<RdKafka::KafkaConsumer> client(RdKafka::KafkaConsumer::create(conf.get(), err));
    if (!client) throw std::runtime_error(err);
    return client;
  };
}

TEST(LeaderMovesKafkaTest, TheHighWatermarkIsAskedOfTheNewLeaderAfterTheLeaderMoved) {
  std::string err;
  // Three mock brokers, run by the handle that creates them.
  auto mock_conf = rdkafka_conf({{"test.mock.num.brokers", "3"}});
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(mock_conf.get(), err));
  ASSERT_TRUE(producer) << err;
  rd_kafka_mock_cluster_t* mock = rd_kafka_handle_mock_cluster(producer->c_ptr());
  ASSERT_NE(mock, nullptr);
  const std::string topic = unique_name("leader-moves");
  ASSERT_EQ(rd_kafka_mock_topic_create(mock, topic.c_str(), 1, 3), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock, topic.c_str(), 0, 1),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int i = 0; i < 3; ++i) {
    std::string value = "v" + std::to_string(i);
    ASSERT_EQ(producer->produce(topic, 0, RdKafka::Producer::RK_MSG_COPY, value.data(),
                                value.size(), nullptr, 0, 0, nullptr),
              RdKafka::ERR_NO_ERROR);
  }
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);

  // Like the processor's: a client that is never assigned anything.
  commands::HighWatermarks watermarks(client_factory(mock));
  EXPECT_EQ(watermarks.query(topic, 0, 5000), 3);

  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock, topic.c_str(), 0, 2),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  // The first query after the move may still go to broker 1 and fail; a retry (the rebuild's,
  // within its backoff) must reach broker 2 long before metadata.max.age.ms (15 min).
  int failures = 0;
  EXPECT_TRUE(eventually(
      [&] {
        try {
          return watermarks.query(topic, 0, 5000) == 3;
        } catch (const core::DependencyError& e) {
          ++failures;
          EXPECT_TRUE(e.is_retryable()) << e.what();
          return false;
        }
      },
      std::chrono::seconds(20), std::chrono::milliseconds(100)))
      << failures << " queries failed after the leader moved";
  EXPECT_LE(failures, 3);
  EXPECT_EQ(watermarks.clients_made(), 1 + failures);
}

// The processor rebuilds its partitions on threads of their own, all asking one client.
TEST(LeaderMovesKafkaTest, ManyRebuildsAskAtOnceWhileTheLeadersMove) {
  std::string err;
  auto mock_conf = rdkafka_conf({{"test.mock.num.brokers", "3"}});
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(mock_conf.get(), err));
  ASSERT_TRUE(producer) << err;
  rd_kafka_mock_cluster_t* mock = rd_kafka_handle_mock_cluster(producer->c_ptr());
  const std::string topic = unique_name("leader-moves");
  constexpr int kPartitions = 6;
  ASSERT_EQ(rd_kafka_mock_topic_create(mock, topic.c_str(), kPartitions, 3),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  commands::HighWatermarks watermarks(client_factory(mock));
  std::atomic<bool> stop = false;
  std::atomic<int> answers = 0;
  std::vector<std::thread> rebuilds;
  for (int p = 0; p < kPartitions; ++p) {
    rebuilds.emplace_back([&, p] {
      while (!stop) {
        try {
          watermarks.query(topic, p, 2000);
          ++answers;
        } catch (const core::DependencyError&) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    });
  }
  for (int round = 0; round < 10; ++round) {
    for (int p = 0; p < kPartitions; ++p) {
      rd_kafka_mock_partition_set_leader(mock, topic.c_str(), p, 1 + (round + p) % 3);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  for (auto& t : rebuilds) t.join();
  EXPECT_GT(answers.load(), 0);
}

// Three mock brokers (run by `producer`, which creates them) with a topic of one partition, and
// an admin client of cauce's on them.
struct CoordinatorMoves {
  CoordinatorMoves() {
    std::string err;
    auto conf = rdkafka_conf({{"test.mock.num.brokers", "3"}});
    producer.reset(RdKafka::Producer::create(conf.get(), err));
    if (!producer) throw std::runtime_error(err);
    mock = rd_kafka_handle_mock_cluster(producer->c_ptr());
    if (rd_kafka_mock_topic_create(mock, topic.c_str(), 1, 3) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("mock topic " + topic);
    }
    core::KafkaConfig kafka;
    kafka.bootstrap_servers = rd_kafka_mock_cluster_bootstraps(mock);
    kafka.request_timeout_ms = 2000;
    admin = std::make_unique<core::KafkaAdmin>(kafka);
  }

  std::unique_ptr<RdKafka::Producer> producer;
  rd_kafka_mock_cluster_t* mock = nullptr;
  const std::string topic = unique_name("coordinator-moves");
  std::unique_ptr<core::KafkaAdmin> admin;
};

// The consumer group's coordinator moves (the drill's stalled broker lost its __consumer_offsets
// leaderships): the broker a rebuild asks for the group's stable committed offset answers
// NOT_COORDINATOR. librdkafka 2.0.2 then asks the asking handle's own consumer group to look its
// coordinator up again, without checking there is one: on the admin's producer handle that was a
// NULL dereference on rdk:main (SIGSEGV, both processors of the drill). The offsets are now asked
// through a consumer handle (core/src/kafka_admin.cpp); the answer comes once the broker gives one.
TEST(LeaderMovesKafkaTest, AStableCommittedOffsetIsAnsweredAfterNotCoordinator) {
  CoordinatorMoves cluster;
  auto* mock = cluster.mock;
  const auto& topic = cluster.topic;
  auto& admin = *cluster.admin;
  for (int round = 0; round < 3; ++round) {
    rd_kafka_mock_push_request_errors(mock, kOffsetFetch, 2, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
    EXPECT_EQ(admin.stable_committed_offset("processor", topic, 0, std::chrono::seconds(20)), -1)
        << "round " << round;  // nothing committed
  }
}

// The old coordinator keeps answering NOT_COORDINATOR after the group moved to another broker.
// librdkafka keeps the coordinator a handle found in a cache that a NOT_COORDINATOR answer does
// not clear (metadata.max.age.ms after its last use): the same handle would ask the old one until
// the timeout, every rebuild stuck (seen in a drill run with the first half of the fix).
TEST(LeaderMovesKafkaTest, AStableCommittedOffsetIsAskedOfTheNewCoordinator) {
  CoordinatorMoves cluster;
  auto* mock = cluster.mock;
  const auto& topic = cluster.topic;
  auto& admin = *cluster.admin;
  ASSERT_EQ(rd_kafka_mock_coordinator_set(mock, "group", "processor", 1),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(admin.stable_committed_offset("processor", topic, 0, std::chrono::seconds(20)), -1);
  // Broker 1 is no longer the coordinator and says so to every OffsetFetch from now on.
  for (int i = 0; i < 200; ++i) {
    rd_kafka_mock_broker_push_request_error_rtts(mock, 1, kOffsetFetch, 1,
                                                 RD_KAFKA_RESP_ERR_NOT_COORDINATOR, 0);
  }
  ASSERT_EQ(rd_kafka_mock_coordinator_set(mock, "group", "processor", 2),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(admin.stable_committed_offset("processor", topic, 0, std::chrono::seconds(10)), -1);
}

}  // namespace
}  // namespace cauce::testing
