#include <algorithm>
#include <atomic>
#include <thread>

#include <librdkafka/rdkafka.h>
#include <prometheus/counter.h>

#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>

namespace cauce::core {
namespace {

// cauce_kafka_errors_total while a KafkaErrorMetrics lives (librdkafka's threads read it).
std::atomic<prometheus::Family<prometheus::Counter>*> kafka_errors{nullptr};

const char* error_kind(RdKafka::ErrorCode err, bool fatal) {
  if (fatal) return "fatal";
  switch (err) {
    case RdKafka::ERR__TRANSPORT:
      return "transport";
    case RdKafka::ERR__ALL_BROKERS_DOWN:
      return "all_brokers_down";
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__MSG_TIMED_OUT:
    case RdKafka::ERR_REQUEST_TIMED_OUT:
      return "timed_out";
    case RdKafka::ERR__RESOLVE:
      return "resolve";
    case RdKafka::ERR__AUTHENTICATION:
    case RdKafka::ERR_SASL_AUTHENTICATION_FAILED:
    case RdKafka::ERR_TOPIC_AUTHORIZATION_FAILED:
    case RdKafka::ERR_GROUP_AUTHORIZATION_FAILED:
    case RdKafka::ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RdKafka::ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return "authentication";
    default:
      return "other";
  }
}

constexpr const char* kErrorKinds[] = {
    "transport", "all_brokers_down", "timed_out", "resolve", "authentication", "fatal", "other"};

// librdkafka's events (logs, client-level errors) as JSON log lines.
class LogEvents final : public RdKafka::EventCb {
 public:
  void event_cb(RdKafka::Event& event) override {
    static const Logger log("librdkafka");
    switch (event.type()) {
      case RdKafka::Event::EVENT_LOG: {
        const int level = event.severity();
        const LogLevel ours = level <= 3   ? LogLevel::kError
                              : level <= 5 ? LogLevel::kWarn
                                           : LogLevel::kDebug;
        log.write(ours, event.str(), {{"facility", event.fac()}});
        break;
      }
      case RdKafka::Event::EVENT_ERROR:
        // Transient broker-down errors are reported here too and retried by librdkafka itself.
        log.write(event.fatal() ? LogLevel::kError : LogLevel::kWarn, event.str(),
                  {{"error", RdKafka::err2str(event.err())}, {"fatal", event.fatal()}});
        if (auto* family = kafka_errors.load()) {
          family->Add({{"kind", error_kind(event.err(), event.fatal())}}).Increment();
        }
        break;
      default:
        break;
    }
  }
};

}  // namespace

KafkaSettings kafka_security_settings(const KafkaConfig& config) {
  if (config.security_protocol == "plaintext") return {};
  KafkaSettings out{{"security.protocol", config.security_protocol}};
  if (config.security_protocol.starts_with("sasl_")) {
    out.emplace_back("sasl.mechanism", config.sasl_mechanism);
    out.emplace_back("sasl.username", config.sasl_username);
    out.emplace_back("sasl.password", config.sasl_password.reveal());
  }
  if (config.security_protocol.ends_with("ssl")) {
    // The broker's name is checked against its certificate (librdkafka's default, said here).
    out.emplace_back("ssl.endpoint.identification.algorithm", "https");
    if (!config.ssl_ca_file.empty()) out.emplace_back("ssl.ca.location", config.ssl_ca_file);
    if (!config.ssl_certificate_file.empty()) {
      out.emplace_back("ssl.certificate.location", config.ssl_certificate_file);
      out.emplace_back("ssl.key.location", config.ssl_key_file);
    }
  }
  return out;
}

std::unique_ptr<RdKafka::Conf> kafka_conf(const KafkaConfig& config,
                                          const KafkaSettings& settings) {
  static LogEvents events;  // stateless; outlives every client
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  const auto set = [&](const std::string& key, const std::string& value) {
    if (conf->set(key, value, err) != RdKafka::Conf::CONF_OK) {
      throw ConfigError("kafka." + key, err);
    }
  };
  set("bootstrap.servers", config.bootstrap_servers);
  set("socket.connection.setup.timeout.ms", std::to_string(config.request_timeout_ms));
  if (conf->set("event_cb", &events, err) != RdKafka::Conf::CONF_OK) {
    throw ConfigError("kafka.event_cb", err);
  }
  for (const auto& [key, value] : kafka_security_settings(config)) set(key, value);
  for (const auto& [key, value] : settings) set(key, value);
  return conf;
}

std::unique_ptr<RdKafka::Conf> kafka_producer_conf(const KafkaConfig& config,
                                                   const KafkaSettings& settings) {
  KafkaSettings all{{"compression.type", config.compression}};
  all.insert(all.end(), settings.begin(), settings.end());
  return kafka_conf(config, all);
}

KafkaErrorMetrics::KafkaErrorMetrics(prometheus::Registry& registry) {
  auto& family =
      prometheus::BuildCounter()
          .Name("cauce_kafka_errors_total")
          .Help("Client-level errors librdkafka reported (it retries most itself), by kind")
          .Register(registry);
  for (const auto* kind : kErrorKinds) family.Add({{"kind", kind}});
  kafka_errors = &family;
}

KafkaErrorMetrics::~KafkaErrorMetrics() { kafka_errors = nullptr; }

void kafka_check(RdKafka::Error* raw, std::string_view what) {
  const std::unique_ptr<RdKafka::Error> error(raw);
  if (!error) return;
  throw KafkaError(std::string(what) + ": " + error->str(), error->is_retriable(),
                   error->is_fatal(), error->txn_requires_abort());
}

RdKafka::ErrorCode kafka_produce(RdKafka::Producer& producer, const std::string& topic,
                                 std::int32_t partition, std::string_view key,
                                 std::string_view value,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 void* opaque) {
  std::unique_ptr<RdKafka::Headers> h(RdKafka::Headers::create());
  for (const auto& [name, header_value] : headers) h->add(name, header_value);
  // librdkafka copies the payload (RK_MSG_COPY) and never writes through these pointers.
  const auto rc = producer.produce(
      topic, partition, RdKafka::Producer::RK_MSG_COPY,
      const_cast<char*>(value.data()),  // NOLINT(cppcoreguidelines-pro-type-const-cast)
      value.size(), key.data(), key.size(), 0, h.get(), opaque);
  if (rc == RdKafka::ERR_NO_ERROR) static_cast<void>(h.release());  // now owned by librdkafka
  return rc;
}

std::optional<std::string> kafka_header(RdKafka::Message& message, std::string_view name) {
  RdKafka::Headers* headers = message.headers();
  if (headers == nullptr) return std::nullopt;
  const auto header = headers->get_last(std::string(name));
  if (header.err() != RdKafka::ERR_NO_ERROR || header.value() == nullptr) return std::nullopt;
  return std::string(static_cast<const char*>(header.value()), header.value_size());
}

std::string kafka_payload(const RdKafka::Message& message) {
  if (message.payload() == nullptr) return {};
  return {static_cast<const char*>(message.payload()), message.len()};
}

std::string kafka_key(const RdKafka::Message& message) {
  if (message.key_pointer() == nullptr) return {};
  return {static_cast<const char*>(message.key_pointer()), message.key_len()};
}

KafkaSettings exactly_once_consumer_settings(const std::string& group) {
  return {{"group.id", group},
          {"enable.auto.commit", "false"},
          {"enable.auto.offset.store", "false"},
          {"isolation.level", "read_committed"},
          {"auto.offset.reset", "earliest"},
          {"session.timeout.ms", "6000"},
          {"heartbeat.interval.ms", "1500"},
          {"partition.assignment.strategy", "range"},
          {"fetch.wait.max.ms", "10"}};
}

std::int32_t kafka_key_partition(std::string_view key, int partitions) {
  // With a key, librdkafka's partitioner only hashes it (the topic handle is not used).
  return rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), partitions, nullptr,
                                          nullptr);
}

int kafka_partition_count(RdKafka::Handle& handle, const std::string& topic,
                          std::chrono::milliseconds timeout) {
  std::string err;
  std::unique_ptr<RdKafka::Topic> t(RdKafka::Topic::create(&handle, topic, nullptr, err));
  if (!t) throw DependencyError("kafka", "topic handle for " + topic + ": " + err, false);
  // A topic created a moment ago may not be in every broker's metadata yet: unknown and
  // leaderless answers are retried until `timeout`.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    RdKafka::Metadata* raw = nullptr;
    const auto rc = handle.metadata(false, t.get(), &raw,
                                    static_cast<int>(std::max<std::int64_t>(left.count(), 1)));
    const std::unique_ptr<RdKafka::Metadata> metadata(raw);
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw DependencyError("kafka", "metadata for " + topic + ": " + RdKafka::err2str(rc), true);
    }
    RdKafka::ErrorCode topic_error = RdKafka::ERR_UNKNOWN_TOPIC_OR_PART;
    for (const auto* info : *metadata->topics()) {
      if (info->topic() != topic) continue;
      topic_error = info->err();
      if (topic_error == RdKafka::ERR_NO_ERROR && !info->partitions()->empty()) {
        return static_cast<int>(info->partitions()->size());
      }
    }
    const bool transient = topic_error == RdKafka::ERR_UNKNOWN_TOPIC_OR_PART ||
                           topic_error == RdKafka::ERR_LEADER_NOT_AVAILABLE ||
                           topic_error == RdKafka::ERR_NO_ERROR;
    if (!transient ||
        std::chrono::steady_clock::now() + std::chrono::milliseconds(100) > deadline) {
      throw DependencyError("kafka",
                            "topic " + topic + " is not available (" +
                                RdKafka::err2str(topic_error) + "); run `cauce topics create`",
                            topic_error == RdKafka::ERR_LEADER_NOT_AVAILABLE);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace cauce::core
