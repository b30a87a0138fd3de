// Proves our broker really does transactions, which the write side relies on: a transactional
// producer's aborted writes are invisible to read_committed consumers (and only to them).
#include <memory>

#include <gtest/gtest.h>
#include <librdkafka/rdkafkacpp.h>

#include <cauce/core/kafka_admin.hpp>

#include "fixtures.hpp"

namespace cauce::testing {
namespace {

// The test broker's, with `settings`.
std::unique_ptr<RdKafka::Conf> make_conf(
    std::vector<std::pair<std::string, std::string>> settings) {
  settings.insert(settings.begin(),
                  {"bootstrap.servers", test_env("TEST_KAFKA_BOOTSTRAP_SERVERS")});
  return rdkafka_conf(settings);
}

void check(RdKafka::Error* raw) {
  const std::unique_ptr<RdKafka::Error> error(raw);
  if (error) throw std::runtime_error(error->str());
}

void produce(RdKafka::Producer& producer, const std::string& topic, const std::string& value) {
  const auto rc =
      producer.produce(topic, 0, RdKafka::Producer::RK_MSG_COPY, const_cast<char*>(value.data()),
                       value.size(), "k", 1, 0, nullptr);
  if (rc != RdKafka::ERR_NO_ERROR) throw std::runtime_error(RdKafka::err2str(rc));
}

// Every value on partition 0 of `topic`, read from the beginning until `last` arrives.
std::vector<std::string> read_all(const std::string& topic, const std::string& isolation,
                                  const std::string& last) {
  auto conf = make_conf({{"group.id", unique_name("g")},
                         {"isolation.level", isolation},
                         {"enable.auto.commit", "false"},
                         {"auto.offset.reset", "earliest"}});
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) throw std::runtime_error(err);
  std::unique_ptr<RdKafka::TopicPartition> partition(
      RdKafka::TopicPartition::create(topic, 0, RdKafka::Topic::OFFSET_BEGINNING));
  consumer->assign({partition.get()});
  std::vector<std::string> values;
  eventually(
      [&] {
        const std::unique_ptr<RdKafka::Message> message(consumer->consume(200));
        if (message->err() == RdKafka::ERR_NO_ERROR) {
          values.emplace_back(static_cast<const char*>(message->payload()), message->len());
        }
        return !values.empty() && values.back() == last;
      },
      30s, 0ms);
  consumer->close();
  return values;
}

TEST(TransactionsKafkaTest, AbortedTransactionsAreInvisibleToReadCommittedConsumers) {
  const auto kafka = test_kafka(1);
  core::KafkaAdmin(kafka).ensure_topics({{kafka.events_topic, {}}}, 1, 1);

  auto conf = make_conf({{"transactional.id", unique_name("tx")}, {"linger.ms", "1"}});
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  ASSERT_TRUE(producer) << err;
  check(producer->init_transactions(30000));

  check(producer->begin_transaction());
  produce(*producer, kafka.events_topic, "committed-1");
  check(producer->commit_transaction(30000));

  check(producer->begin_transaction());
  produce(*producer, kafka.events_topic, "aborted-1");
  produce(*producer, kafka.events_topic, "aborted-2");
  // Make sure the records reach the broker: abort alone would purge them from the queue.
  ASSERT_EQ(producer->flush(30000), RdKafka::ERR_NO_ERROR);
  check(producer->abort_transaction(30000));

  check(producer->begin_transaction());
  produce(*producer, kafka.events_topic, "committed-2");
  check(producer->commit_transaction(30000));

  EXPECT_EQ(read_all(kafka.events_topic, "read_committed", "committed-2"),
            (std::vector<std::string>{"committed-1", "committed-2"}));
  // The aborted records really were written: a read_uncommitted reader sees them.
  EXPECT_EQ(read_all(kafka.events_topic, "read_uncommitted", "committed-2"),
            (std::vector<std::string>{"committed-1", "aborted-1", "aborted-2", "committed-2"}));
}

TEST(TransactionsKafkaTest, ANewProducerWithTheSameTransactionalIdFencesTheOldOne) {
  const auto kafka = test_kafka(1);
  core::KafkaAdmin(kafka).ensure_topics({{kafka.events_topic, {}}}, 1, 1);
  const auto id = unique_name("tx");
  std::string err;
  auto old_conf = make_conf({{"transactional.id", id}});
  std::unique_ptr<RdKafka::Producer> old_producer(RdKafka::Producer::create(old_conf.get(), err));
  check(old_producer->init_transactions(30000));
  check(old_producer->begin_transaction());
  produce(*old_producer, kafka.events_topic, "zombie");

  auto new_conf = make_conf({{"transactional.id", id}});
  std::unique_ptr<RdKafka::Producer> new_producer(RdKafka::Producer::create(new_conf.get(), err));
  check(new_producer->init_transactions(30000));  // bumps the epoch: the old one is fenced
  check(new_producer->begin_transaction());
  produce(*new_producer, kafka.events_topic, "owner");
  check(new_producer->commit_transaction(30000));

  const std::unique_ptr<RdKafka::Error> zombie(old_producer->commit_transaction(30000));
  ASSERT_TRUE(zombie) << "the fenced producer committed";
  EXPECT_EQ(read_all(kafka.events_topic, "read_committed", "owner"),
            (std::vector<std::string>{"owner"}));
}

}  // namespace
}  // namespace cauce::testing
