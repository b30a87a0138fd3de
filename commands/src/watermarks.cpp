#include "watermarks.hpp"

#include <chrono>
#include <utility>
#include <vector>

#include <cauce/core/kafka_client.hpp>

namespace cauce::commands {

HighWatermarks::HighWatermarks(ClientFactory make_client) : make_client_(std::move(make_client)) {}

HighWatermarks::~HighWatermarks() = default;

std::int64_t HighWatermarks::query(const std::string& topic, std::int32_t partition,
                                   int timeout_ms) {
  auto client = make_client_();
  {
    const std::lock_guard lock(mutex_);
    ++clients_made_;
  }
  const std::unique_ptr<RdKafka::TopicPartition> tp(
      RdKafka::TopicPartition::create(topic, partition, RdKafka::Topic::OFFSET_END));
  std::vector<RdKafka::TopicPartition*> list{tp.get()};
  const auto assigned = client->assign(list);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string last_error = RdKafka::err2str(assigned);
  while (assigned == RdKafka::ERR_NO_ERROR && std::chrono::steady_clock::now() < deadline) {
    const std::unique_ptr<RdKafka::Message> message(client->consume(100));
    if (message->err() == RdKafka::ERR__PARTITION_EOF && message->partition() == partition) {
      // The fetch that reached the end carried the partition's high watermark (the client is
      // read_uncommitted: the true one, not the last stable offset).
      std::int64_t low = 0;
      std::int64_t high = -1;
      if (client->get_watermark_offsets(topic, partition, &low, &high) == RdKafka::ERR_NO_ERROR &&
          high >= 0) {
        client->close();
        return high;
      }
    } else if (message->err() != RdKafka::ERR_NO_ERROR &&
               message->err() != RdKafka::ERR__TIMED_OUT) {
      last_error = message->errstr();
    }
  }
  client->close();
  throw core::KafkaError(topic + " offsets: no high watermark within " +
                             std::to_string(timeout_ms) + " ms (" + last_error + ")",
                         true, false, false);
}

int HighWatermarks::clients_made() const {
  const std::lock_guard lock(mutex_);
  return clients_made_;
}

}  // namespace cauce::commands
