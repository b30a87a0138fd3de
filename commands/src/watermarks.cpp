#include "watermarks.hpp"

#include <memory>

#include <cauce/core/kafka_client.hpp>

namespace cauce::commands {

std::int64_t high_watermark(RdKafka::Handle& client, const std::string& topic,
                            std::int32_t partition, int timeout_ms) {
  std::int64_t low = 0;
  std::int64_t high = 0;
  const auto rc = client.query_watermark_offsets(topic, partition, &low, &high, timeout_ms);
  if (rc == RdKafka::ERR_NO_ERROR) return high;
  // A metadata request naming the topic updates the client's cache with the current leaders
  // (whatever its answer, the error below is what the caller retries on).
  std::string err;
  const std::unique_ptr<RdKafka::Topic> handle(
      RdKafka::Topic::create(&client, topic, nullptr, err));
  if (handle) {
    RdKafka::Metadata* raw = nullptr;
    static_cast<void>(client.metadata(false, handle.get(), &raw, timeout_ms));
    const std::unique_ptr<RdKafka::Metadata> metadata(raw);
  }
  throw core::KafkaError(topic + " offsets: " + RdKafka::err2str(rc), true, false, false);
}

}  // namespace cauce::commands
