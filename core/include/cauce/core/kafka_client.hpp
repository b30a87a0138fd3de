#pragma once

// Small helpers around the librdkafka C++ client, shared by the adapters that produce and
// consume (command processor, command bus, projector). Nothing outside those adapters includes
// this header.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>
#include <prometheus/registry.h>

#include <cauce/core/config.hpp>
#include <cauce/core/errors.hpp>

namespace cauce::core {

using KafkaSettings = std::vector<std::pair<std::string, std::string>>;

// librdkafka's properties for kafka.security_protocol and the SASL and TLS settings beside it
// (none for plaintext). Holds the SASL password: pass it to a client's configuration only.
KafkaSettings kafka_security_settings(const KafkaConfig& config);

// A client configuration: bootstrap servers and security from `config`, librdkafka's own log routed
// into our JSON log, then `settings`. Throws ConfigError naming the librdkafka property it refused.
std::unique_ptr<RdKafka::Conf> kafka_conf(const KafkaConfig& config, const KafkaSettings& settings);

// kafka_conf() for a producer: its batches compressed with `config.compression` (kafka.compression,
// zstd by default), then `settings`. Consumers decompress whatever codec a batch carries.
std::unique_ptr<RdKafka::Conf> kafka_producer_conf(const KafkaConfig& config,
                                                   const KafkaSettings& settings);

// While it lives, librdkafka's client-level errors of every client made with kafka_conf() are
// counted as cauce_kafka_errors_total{kind} in `registry` (kind: transport, all_brokers_down,
// timed_out, resolve, authentication, fatal, other). One per process; the registry outlives it.
class KafkaErrorMetrics {
 public:
  explicit KafkaErrorMetrics(prometheus::Registry& registry);
  ~KafkaErrorMetrics();
  KafkaErrorMetrics(const KafkaErrorMetrics&) = delete;
  KafkaErrorMetrics& operator=(const KafkaErrorMetrics&) = delete;
};

// A consumer group member that reads only committed records and never lets Kafka pick its
// positions: auto-commit and offset storing off, read_committed, eager (range) rebalances with
// a short session so a dead member's partitions move within seconds. The processor and the
// projector both consume this way.
KafkaSettings exactly_once_consumer_settings(const std::string& group);

// A failed transactional or client call, classified as librdkafka classifies it.
class KafkaError : public DependencyError {
 public:
  KafkaError(const std::string& message, bool retryable, bool fatal, bool abortable)
      : DependencyError("kafka", message, retryable), fatal_(fatal), abortable_(abortable) {}
  // The client is unusable (e.g. fenced by a newer producer with the same transactional id).
  bool is_fatal() const noexcept { return fatal_; }
  // The current transaction must be aborted before anything else.
  bool requires_abort() const noexcept { return abortable_; }

 private:
  bool fatal_;
  bool abortable_;
};

// Takes ownership of `error`; throws KafkaError when it is set.
void kafka_check(RdKafka::Error* error, std::string_view what);

// Produces one record; `headers` is handed to librdkafka on success. Returns librdkafka's
// immediate result (e.g. ERR__QUEUE_FULL); delivery is reported later through the dr_cb.
RdKafka::ErrorCode kafka_produce(RdKafka::Producer& producer, const std::string& topic,
                                 std::int32_t partition, std::string_view key,
                                 std::string_view value,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 void* opaque = nullptr);

// The value of the last header called `name`, if any.
std::optional<std::string> kafka_header(RdKafka::Message& message, std::string_view name);

std::string kafka_payload(const RdKafka::Message& message);
std::string kafka_key(const RdKafka::Message& message);  // "" when the record has none

// The partition a keyed record goes to with the murmur2 partitioners (Java clients' default,
// and what cauce's producers use): the same function librdkafka applies when producing.
std::int32_t kafka_key_partition(std::string_view key, int partitions);

// The partition count of `topic` as the broker reports it; throws DependencyError when the
// broker does not answer within `timeout` or the topic does not exist.
int kafka_partition_count(RdKafka::Handle& handle, const std::string& topic,
                          std::chrono::milliseconds timeout);

}  // namespace cauce::core
