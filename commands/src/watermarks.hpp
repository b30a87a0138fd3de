#pragma once

// The true high watermark of one partition, for the processor's rebuilds (processor.cpp).

#include <cstdint>
#include <string>

#include <librdkafka/rdkafkacpp.h>

namespace cauce::commands {

// Asks the partition's leader for its high watermark through `client`. librdkafka finds the
// leader in the client's metadata cache, and nothing refreshes that cache for a client that
// neither subscribes nor is assigned partitions (the processor's watermarks client): after the
// leader moved (its broker died, or came back and took the leadership again) every query would
// go to the old leader and fail ("Not leader for partition") until metadata.max.age.ms (15 min)
// expired the entry. So a failed query asks for the topic's metadata, which refreshes the cache,
// before throwing: the caller's next try reaches the new leader. Throws core::KafkaError
// (retryable) when the query fails.
std::int64_t high_watermark(RdKafka::Handle& client, const std::string& topic,
                            std::int32_t partition, int timeout_ms);

}  // namespace cauce::commands
