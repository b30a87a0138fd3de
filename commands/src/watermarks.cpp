#include "watermarks.hpp"

#include <utility>

#include <cauce/core/kafka_client.hpp>

namespace cauce::commands {
namespace {

// A consumer that never subscribed leaves nothing behind: closed when its last user drops it.
std::shared_ptr<RdKafka::KafkaConsumer> shared_client(std::unique_ptr<RdKafka::KafkaConsumer> c) {
  return {c.release(), [](RdKafka::KafkaConsumer* client) {
            client->close();
            delete client;  // NOLINT(cppcoreguidelines-owning-memory): the deleter owns it
          }};
}

}  // namespace

HighWatermarks::HighWatermarks(ClientFactory make_client) : make_client_(std::move(make_client)) {
  client_ = shared_client(make_client_());
  clients_made_ = 1;
}

HighWatermarks::~HighWatermarks() = default;

std::int64_t HighWatermarks::query(const std::string& topic, std::int32_t partition,
                                   int timeout_ms) {
  std::shared_ptr<RdKafka::KafkaConsumer> client;
  {
    const std::lock_guard lock(mutex_);
    client = client_;
  }
  std::int64_t low = 0;
  std::int64_t high = 0;
  const auto rc = client->query_watermark_offsets(topic, partition, &low, &high, timeout_ms);
  if (rc == RdKafka::ERR_NO_ERROR) return high;
  // Another thread may have replaced it already (after its own failure): once is enough.
  std::unique_ptr<RdKafka::KafkaConsumer> fresh;
  try {
    fresh = make_client_();
  } catch (const std::exception&) {
    fresh.reset();  // keep the old one; the next failure tries again
  }
  if (fresh) {
    const std::lock_guard lock(mutex_);
    if (client_ == client) {
      client_ = shared_client(std::move(fresh));
      ++clients_made_;
    }
  }
  throw core::KafkaError(topic + " offsets: " + RdKafka::err2str(rc), true, false, false);
}

int HighWatermarks::clients_made() const {
  const std::lock_guard lock(mutex_);
  return clients_made_;
}

}  // namespace cauce::commands
