// A partition's leader moves (a broker of a cluster died, or came back and took its leadership
// again): the processor's rebuild must reach the new leader. Found by the fault drill
// (scripts/drill): after a SIGKILL of the broker leading most partitions, the processors'
// rebuilds kept asking the old leader its metadata cache named for high watermarks ("Not
// leader for partition") and every command was a 503 for minutes. librdkafka's mock cluster
// (fault injection only, DESIGN.md §7) moves the leader here; no broker is needed.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <librdkafka/rdkafkacpp.h>

#include <cauce/core/errors.hpp>

#include "fixtures.hpp"
#include "watermarks.hpp"

namespace cauce::testing {
namespace {

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

}  // namespace
}  // namespace cauce::testing
