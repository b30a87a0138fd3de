#pragma once

// True high watermarks of partitions, for the processor's rebuilds (processor.cpp).

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <librdkafka/rdkafkacpp.h>

namespace cauce::commands {

// The true high watermark of a partition (read_uncommitted: an open transaction's records
// included, so that a rebuild waits for it instead of reading past it), for the processor's
// rebuilds. Found by the fault drill (scripts/drill), two ways not to ask:
//  - through one long-lived client that is never assigned anything: librdkafka finds the leader
//    in that client's metadata cache, which nothing refreshes for such a client, so after a
//    leader moved every query went to the old leader ("Not leader for partition") until
//    metadata.max.age.ms (15 min) expired the entry: partitions unready, every command a 503;
//  - with rd_kafka_query_watermark_offsets() at all while brokers fail: it sends two ListOffsets
//    requests whose callback state lives on the caller's stack and returns at the first error,
//    so the other request's late answer (or its timeout) writes into a stack frame that is gone
//    (librdkafka 2.0.2, src/rdkafka.c): both api,processor processes died of SIGSEGV in a
//    librdkafka thread after a broker was stalled for 20 s.
// So each query assigns the partition at its end to a fresh read_uncommitted consumer and takes
// the high watermark the fetch that reached the end carried (get_watermark_offsets(): cached, no
// request of its own). A fresh client looks the leader up anew.
class HighWatermarks {
 public:
  using ClientFactory = std::function<std::unique_ptr<RdKafka::KafkaConsumer>()>;

  // `make_client` makes a read_uncommitted consumer with enable.partition.eof; it may throw.
  explicit HighWatermarks(ClientFactory make_client);
  ~HighWatermarks();
  HighWatermarks(const HighWatermarks&) = delete;
  HighWatermarks& operator=(const HighWatermarks&) = delete;

  // The partition's high watermark; throws core::KafkaError (retryable) when none came within
  // `timeout_ms`. Safe from any number of threads (each query has a client of its own).
  std::int64_t query(const std::string& topic, std::int32_t partition, int timeout_ms);

  // How many clients were made so far.
  int clients_made() const;

 private:
  ClientFactory make_client_;
  mutable std::mutex mutex_;
  int clients_made_ = 0;
};

}  // namespace cauce::commands
