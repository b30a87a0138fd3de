#pragma once

// True high watermarks of partitions, for the processor's rebuilds (processor.cpp).

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <librdkafka/rdkafkacpp.h>

namespace cauce::commands {

// Asks partitions' leaders for their high watermarks through one read_uncommitted client shared
// by every rebuild thread. librdkafka finds a partition's leader in the client's metadata cache,
// and nothing refreshes that cache for a client that neither subscribes nor is assigned
// partitions: after a leader moved (its broker died, or came back and took the leadership again)
// every query would go to the old leader and fail ("Not leader for partition") until
// metadata.max.age.ms (15 min) expired the entry, and the processor's partitions would stay
// unready, every command a 503 (found by the fault drill, scripts/drill). So a failed query
// replaces the client with a fresh one, which asks the cluster for the current leaders: the
// caller's next try (its rebuild retries with backoff) reaches the new leader. (A fresh client
// rather than a metadata request on the old one: a client per failure is simple to reason about,
// and the drill crashed, in librdkafka, while that first fix was in; the crash turned out to be
// elsewhere, infra/README.md "The fault drill", but the simpler path stayed.)
class HighWatermarks {
 public:
  using ClientFactory = std::function<std::unique_ptr<RdKafka::KafkaConsumer>()>;

  // `make_client` makes the (read_uncommitted) client; it may throw.
  explicit HighWatermarks(ClientFactory make_client);
  ~HighWatermarks();
  HighWatermarks(const HighWatermarks&) = delete;
  HighWatermarks& operator=(const HighWatermarks&) = delete;

  // The partition's high watermark; throws core::KafkaError (retryable) when the query fails,
  // after replacing the client. Safe from any number of threads.
  std::int64_t query(const std::string& topic, std::int32_t partition, int timeout_ms);

  // How many clients were made so far (the first included).
  int clients_made() const;

 private:
  ClientFactory make_client_;
  mutable std::mutex mutex_;
  std::shared_ptr<RdKafka::KafkaConsumer> client_;
  int clients_made_ = 0;
};

}  // namespace cauce::commands
