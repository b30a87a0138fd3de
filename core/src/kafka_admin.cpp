#include <algorithm>
#include <array>
#include <mutex>
#include <string_view>
#include <thread>

#include <librdkafka/rdkafka.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>

namespace cauce::core {
namespace {

// RAII for librdkafka's C handles.
template <typename T, void (*Destroy)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept {
    if (p != nullptr) Destroy(p);
  }
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, Deleter<rd_kafka_t, rd_kafka_destroy>>;
using ConfHandle =
    std::unique_ptr<rd_kafka_conf_t, Deleter<rd_kafka_conf_t, rd_kafka_conf_destroy>>;
using QueueHandle =
    std::unique_ptr<rd_kafka_queue_t, Deleter<rd_kafka_queue_t, rd_kafka_queue_destroy>>;
using EventHandle =
    std::unique_ptr<rd_kafka_event_t, Deleter<rd_kafka_event_t, rd_kafka_event_destroy>>;
using NewTopicHandle =
    std::unique_ptr<rd_kafka_NewTopic_t, Deleter<rd_kafka_NewTopic_t, rd_kafka_NewTopic_destroy>>;
using PartitionListHandle = std::unique_ptr<
    rd_kafka_topic_partition_list_t,
    Deleter<rd_kafka_topic_partition_list_t, rd_kafka_topic_partition_list_destroy>>;
using GroupOffsetsHandle = std::unique_ptr<
    rd_kafka_ListConsumerGroupOffsets_t,
    Deleter<rd_kafka_ListConsumerGroupOffsets_t, rd_kafka_ListConsumerGroupOffsets_destroy>>;
using ConfigResourceHandle =
    std::unique_ptr<rd_kafka_ConfigResource_t,
                    Deleter<rd_kafka_ConfigResource_t, rd_kafka_ConfigResource_destroy>>;
using AdminOptionsHandle =
    std::unique_ptr<rd_kafka_AdminOptions_t,
                    Deleter<rd_kafka_AdminOptions_t, rd_kafka_AdminOptions_destroy>>;

// A consumer handle that never joined its group: nothing to leave or commit on close.
void destroy_without_close(rd_kafka_t* rk) {
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

void destroy_metadata(const rd_kafka_metadata_t* md) { rd_kafka_metadata_destroy(md); }
using MetadataHandle = std::unique_ptr<const rd_kafka_metadata_t,
                                       Deleter<const rd_kafka_metadata_t, destroy_metadata>>;

void route_log(const rd_kafka_t* /*rk*/, int level, const char* facility, const char* message) {
  static const Logger log("librdkafka");
  const LogLevel ours = level <= 3   ? LogLevel::kError
                        : level <= 5 ? LogLevel::kWarn
                                     : LogLevel::kDebug;
  log.write(ours, message, {{"facility", facility}, {"syslog_level", level}});
}

// Which of cauce's settings a refusal by the brokers (or a TLS file librdkafka could not load)
// points at; empty when the error is not one.
std::string refused_settings(int err, std::string_view reason) {
  if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
    return "kafka.sasl_username, kafka.sasl_password_file, kafka.sasl_mechanism";
  }
  if (reason.find("ssl.ca.location") != std::string_view::npos) return "kafka.ssl_ca_file";
  if (reason.find("ssl.certificate.location") != std::string_view::npos) {
    return "kafka.ssl_certificate_file";
  }
  if (reason.find("ssl.key.location") != std::string_view::npos) return "kafka.ssl_key_file";
  // A broker certificate that does not verify (unknown CA, expired, another name). Other TLS
  // errors (a reset or an EOF mid-handshake while a broker restarts) are outages, retried.
  if (reason.find("certificate verify failed") != std::string_view::npos) {
    return "kafka.ssl_ca_file, kafka.bootstrap_servers (the name the certificate is for)";
  }
  // A plaintext client at a TLS listener is seen as a closed connection, and librdkafka says
  // which setting it suspects; a TLS client at a plaintext listener gets no TLS record back.
  if (reason.find("security.protocol") != std::string_view::npos ||
      reason.find("wrong version number") != std::string_view::npos) {
    return "kafka.security_protocol";
  }
  return {};
}

void set(rd_kafka_conf_t* conf, const char* key, const std::string& value) {
  std::array<char, 512> err{};
  if (rd_kafka_conf_set(conf, key, value.c_str(), err.data(), err.size()) != RD_KAFKA_CONF_OK) {
    throw ConfigError(std::string("kafka.") + key, err.data());
  }
}

}  // namespace

std::string kafka_client_version() { return rd_kafka_version_str(); }

std::vector<TopicSpec> cauce_topics(const KafkaConfig& config) {
  return {
      {config.commands_topic, {{"cleanup.policy", "delete"}, {"retention.ms", "604800000"}}},
      {config.events_topic,
       {{"cleanup.policy", "delete"}, {"retention.ms", "-1"}, {"retention.bytes", "-1"}}},
      {config.replies_topic, {{"cleanup.policy", "delete"}, {"retention.ms", "86400000"}}},
      // Keyed by command id: the latest outcome of each is kept for good, like the events.
      {config.outcomes_topic, {{"cleanup.policy", "compact"}, {"retention.ms", "-1"}}},
      // Keyed by "<partition>/<chunk>" and "<partition>/manifest": the latest snapshot stays.
      {config.snapshots_topic, {{"cleanup.policy", "compact"}, {"retention.ms", "-1"}}},
      {config.dead_letters_topic,
       {{"cleanup.policy", "delete"}, {"retention.ms", "2592000000"}}},  // 30 days
      // Keyed by job id: every job that failed for good (attempts exhausted or permanent).
      {config.jobs_dlq_topic, {{"cleanup.policy", "delete"}, {"retention.ms", "-1"}}},
  };
}

struct KafkaAdmin::Impl {
  int request_timeout_ms = 5000;
  int min_insync_replicas = 2;
  // The last refusal librdkafka reported (its thread writes, describe() reads), until a request
  // succeeds again.
  std::mutex mutex;
  std::string refusal;
  std::string refused;  // the settings it points at

  static void on_error(rd_kafka_t* /*rk*/, int err, const char* reason, void* opaque) {
    auto settings = refused_settings(err, reason);
    if (settings.empty()) return;
    auto* self = static_cast<Impl*>(opaque);
    const std::lock_guard lock(self->mutex);
    self->refusal = reason;
    self->refused = std::move(settings);
  }
  std::string bootstrap_servers;
  KafkaSettings security;  // kafka_security_settings(): every handle connects the same way
  // ListConsumerGroupOffsets only: a consumer handle with a group of its own, created at first
  // use. librdkafka 2.0.2 (and later, librdkafka issue #5040) handles an OffsetFetch answer
  // NOT_COORDINATOR by asking the handle's own consumer group to look its coordinator up again:
  // rd_kafka_cgrp_op(rk->rk_cgrp, ..., COORD_QUERY) in rd_kafka_handle_OffsetFetch(), with no
  // check that there is one. On a producer handle such as `rk` rk_cgrp is NULL and rdk:main dies
  // of SIGSEGV: the crash of both processors in the fault drill's stalled broker, whose group
  // coordinators moved while a rebuild asked for a stable committed offset. This handle's group
  // ("cauce-admin-offsets") is never joined (no subscribe, no assignment); the coordinator query
  // goes to it and the request fails with NOT_COORDINATOR.
  // The admin request takes the queried group's coordinator from the handle's coordinator cache,
  // which a NOT_COORDINATOR answer does not clear and which keeps an entry while it is used
  // (metadata.max.age.ms after its last use): asked again, the same handle asks the old
  // coordinator for as long as the caller retries (the drill: every rebuild stuck). So a
  // coordinator error or a timeout replaces the handle (replace_offsets_handle); a fresh one
  // looks the coordinator up. Callers hold a shared_ptr: a request in flight keeps its handle.
  std::mutex offsets_mutex;
  std::shared_ptr<rd_kafka_t> offsets_rk;

  std::shared_ptr<rd_kafka_t> offsets_handle() {
    const std::lock_guard lock(offsets_mutex);
    if (offsets_rk) return offsets_rk;
    ConfHandle conf(rd_kafka_conf_new());
    set(conf.get(), "bootstrap.servers", bootstrap_servers);
    for (const auto& [key, value] : security) set(conf.get(), key.c_str(), value);
    set(conf.get(), "client.id", "cauce-admin");
    set(conf.get(), "group.id", "cauce-admin-offsets");  // see offsets_rk
    set(conf.get(), "enable.auto.commit", "false");
    set(conf.get(), "enable.auto.offset.store", "false");
    set(conf.get(), "socket.connection.setup.timeout.ms", "2000");
    set(conf.get(), "reconnect.backoff.max.ms", "1000");
    rd_kafka_conf_set_log_cb(conf.get(), route_log);
    std::array<char, 512> err{};
    rd_kafka_t* fresh = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err.data(), err.size());
    if (fresh == nullptr) {
      throw DependencyError("kafka", std::string("librdkafka: ") + err.data(), false);
    }
    static_cast<void>(conf.release());  // rd_kafka_new took ownership
    offsets_rk = std::shared_ptr<rd_kafka_t>(fresh, destroy_without_close);
    return offsets_rk;
  }

  // The next offsets_handle() makes a fresh handle, unless another caller replaced `failed`.
  void replace_offsets_handle(const std::shared_ptr<rd_kafka_t>& failed) {
    const std::lock_guard lock(offsets_mutex);
    if (offsets_rk == failed) offsets_rk.reset();
  }

  KafkaHandle rk;  // last: destroyed first, while on_error's state is still there
};

KafkaAdmin::KafkaAdmin(const KafkaConfig& config) : impl_(std::make_unique<Impl>()) {
  impl_->request_timeout_ms = config.request_timeout_ms;
  impl_->min_insync_replicas = config.min_insync_replicas;
  impl_->bootstrap_servers = config.bootstrap_servers;
  impl_->security = kafka_security_settings(config);
  ConfHandle conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", config.bootstrap_servers);
  set(conf.get(), "client.id", "cauce-admin");
  set(conf.get(), "socket.connection.setup.timeout.ms", "2000");
  set(conf.get(), "reconnect.backoff.max.ms", "1000");
  for (const auto& [key, value] : impl_->security) set(conf.get(), key.c_str(), value);
  rd_kafka_conf_set_log_cb(conf.get(), route_log);
  rd_kafka_conf_set_error_cb(conf.get(), &Impl::on_error);
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  std::array<char, 512> err{};
  impl_->rk.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err.data(), err.size()));
  if (!impl_->rk) {
    // A TLS file that does not load (not PEM, a key that does not match) is refused here.
    const auto settings = refused_settings(RD_KAFKA_RESP_ERR_NO_ERROR, err.data());
    if (!settings.empty()) throw ConfigError(settings, err.data());
    throw DependencyError("kafka", std::string("librdkafka: ") + err.data(), false);
  }
  static_cast<void>(conf.release());  // rd_kafka_new took ownership
}

KafkaAdmin::~KafkaAdmin() = default;

ClusterInfo KafkaAdmin::describe(std::chrono::milliseconds timeout) const {
  const rd_kafka_metadata_t* raw = nullptr;
  const auto rc =
      rd_kafka_metadata(impl_->rk.get(), 1, nullptr, &raw, static_cast<int>(timeout.count()));
  MetadataHandle md(raw);
  rd_kafka_poll(impl_->rk.get(), 0);  // serves on_error (librdkafka queues errors for a poll)
  const std::lock_guard lock(impl_->mutex);
  if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (!impl_->refused.empty()) {
      throw RefusedError("kafka", "Kafka refused the connection: " + impl_->refusal,
                         impl_->refused);
    }
    throw DependencyError(
        "kafka", std::string("Kafka metadata request failed: ") + rd_kafka_err2str(rc), true);
  }
  impl_->refusal.clear();
  impl_->refused.clear();
  ClusterInfo info;
  info.brokers = md->broker_cnt;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& topic = md->topics[i];
    if (topic.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      info.partitions_by_topic[topic.topic] = topic.partition_cnt;
    }
  }
  return info;
}

std::vector<EnsuredTopic> KafkaAdmin::ensure_topics(const std::vector<TopicSpec>& topics,
                                                    int partitions, int replication_factor) {
  const auto timeout = std::chrono::milliseconds(impl_->request_timeout_ms);
  std::vector<EnsuredTopic> out;
  std::vector<NewTopicHandle> to_create;
  const ClusterInfo before = describe(timeout);
  for (const auto& spec : topics) {
    const auto it = before.partitions_by_topic.find(spec.name);
    if (it == before.partitions_by_topic.end()) {
      std::array<char, 512> err{};
      NewTopicHandle topic(rd_kafka_NewTopic_new(spec.name.c_str(), partitions, replication_factor,
                                                 err.data(), err.size()));
      if (!topic) throw ConfigError("kafka", "topic " + spec.name + ": " + err.data());
      bool sets_min_insync = false;
      for (const auto& [key, value] : spec.configs) {
        rd_kafka_NewTopic_set_config(topic.get(), key.c_str(), value.c_str());
        sets_min_insync = sets_min_insync || key == "min.insync.replicas";
      }
      if (!sets_min_insync) {
        const auto min_insync = std::min(impl_->min_insync_replicas, replication_factor);
        rd_kafka_NewTopic_set_config(topic.get(), "min.insync.replicas",
                                     std::to_string(min_insync).c_str());
      }
      to_create.push_back(std::move(topic));
      continue;
    }
    if (it->second != partitions) {
      throw DependencyError(
          "kafka",
          "topic " + spec.name + " exists with " + std::to_string(it->second) +
              " partitions but kafka.partitions is " + std::to_string(partitions) +
              "; a topic's partition count is fixed at creation (per-aggregate order depends "
              "on it): set kafka.partitions=" +
              std::to_string(it->second) + " or use new topic names",
          false);
    }
    out.push_back({spec.name, TopicState::kExisted, it->second});
  }
  if (to_create.empty()) return out;

  std::vector<rd_kafka_NewTopic_t*> raw;
  for (const auto& t : to_create) raw.push_back(t.get());
  AdminOptionsHandle options(
      rd_kafka_AdminOptions_new(impl_->rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  std::array<char, 512> err{};
  rd_kafka_AdminOptions_set_request_timeout(options.get(), impl_->request_timeout_ms, err.data(),
                                            err.size());
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), impl_->request_timeout_ms, err.data(),
                                              err.size());
  QueueHandle queue(rd_kafka_queue_new(impl_->rk.get()));
  rd_kafka_CreateTopics(impl_->rk.get(), raw.data(), raw.size(), options.get(), queue.get());
  EventHandle event(rd_kafka_queue_poll(queue.get(), impl_->request_timeout_ms * 2));
  if (!event) throw DependencyError("kafka", "CreateTopics got no answer in time", true);
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw DependencyError(
        "kafka", std::string("CreateTopics failed: ") + rd_kafka_event_error_string(event.get()),
        true);
  }
  std::size_t count = 0;
  const auto* results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
  bool raced = false;
  for (std::size_t i = 0; i < count; ++i) {
    const auto code = rd_kafka_topic_result_error(results[i]);
    const std::string name = rd_kafka_topic_result_name(results[i]);
    if (code == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      raced = true;  // created concurrently by someone else: verify below
    } else if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* message = rd_kafka_topic_result_error_string(results[i]);
      throw DependencyError("kafka",
                            "creating topic " + name + " failed: " +
                                (message != nullptr ? message : rd_kafka_err2str(code)),
                            code == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    } else {
      out.push_back({name, TopicState::kCreated, partitions});
    }
  }
  if (raced) return ensure_topics(topics, partitions, replication_factor);
  return out;
}

std::map<std::string, std::string> KafkaAdmin::topic_overrides(const std::string& topic) const {
  ConfigResourceHandle resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  AdminOptionsHandle options(
      rd_kafka_AdminOptions_new(impl_->rk.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  std::array<char, 512> err{};
  rd_kafka_AdminOptions_set_request_timeout(options.get(), impl_->request_timeout_ms, err.data(),
                                            err.size());
  QueueHandle queue(rd_kafka_queue_new(impl_->rk.get()));
  rd_kafka_ConfigResource_t* requested = resource.get();
  rd_kafka_DescribeConfigs(impl_->rk.get(), &requested, 1, options.get(), queue.get());
  EventHandle event(rd_kafka_queue_poll(queue.get(), impl_->request_timeout_ms * 2));
  if (!event) throw DependencyError("kafka", "DescribeConfigs got no answer in time", true);
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw DependencyError(
        "kafka", std::string("DescribeConfigs failed: ") + rd_kafka_event_error_string(event.get()),
        true);
  }
  std::size_t resources = 0;
  const auto* described = rd_kafka_DescribeConfigs_result_resources(
      rd_kafka_event_DescribeConfigs_result(event.get()), &resources);
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i < resources; ++i) {
    const auto code = rd_kafka_ConfigResource_error(described[i]);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // A topic created a moment ago may not be known to the broker asked yet.
      throw DependencyError(
          "kafka",
          "describing topic " + topic + ": " + rd_kafka_ConfigResource_error_string(described[i]),
          code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    }
    std::size_t entries = 0;
    const auto* configs = rd_kafka_ConfigResource_configs(described[i], &entries);
    for (std::size_t j = 0; j < entries; ++j) {
      const char* value = rd_kafka_ConfigEntry_value(configs[j]);
      if (rd_kafka_ConfigEntry_source(configs[j]) == RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG &&
          value != nullptr) {
        out.emplace(rd_kafka_ConfigEntry_name(configs[j]), value);
      }
    }
  }
  return out;
}

std::int64_t KafkaAdmin::stable_committed_offset(const std::string& group, const std::string& topic,
                                                 std::int32_t partition,
                                                 std::chrono::milliseconds timeout,
                                                 const std::function<bool()>& give_up) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(20);
  for (;;) {
    const auto handle = impl_->offsets_handle();  // not impl_->rk: see Impl::offsets_rk
    rd_kafka_t* const rk = handle.get();
    PartitionListHandle wanted(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(wanted.get(), topic.c_str(), partition);
    GroupOffsetsHandle request(rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), wanted.get()));
    auto* raw_request = request.get();
    AdminOptionsHandle options(
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS));
    std::array<char, 512> err{};
    rd_kafka_AdminOptions_set_request_timeout(options.get(), impl_->request_timeout_ms, err.data(),
                                              err.size());
    if (rd_kafka_error_t* e = rd_kafka_AdminOptions_set_require_stable_offsets(options.get(), 1)) {
      const std::string message = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      throw DependencyError("kafka", "require_stable_offsets: " + message, false);
    }
    QueueHandle queue(rd_kafka_queue_new(rk));
    rd_kafka_ListConsumerGroupOffsets(rk, &raw_request, 1, options.get(), queue.get());
    EventHandle event(rd_kafka_queue_poll(queue.get(), impl_->request_timeout_ms * 2));
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR__TIMED_OUT;
    std::string message = "no answer in time";
    if (event) {
      code = rd_kafka_event_error(event.get());
      if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
        message = rd_kafka_event_error_string(event.get());
      } else {
        std::size_t groups = 0;
        const auto* results = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(event.get()), &groups);
        if (groups != 1) throw DependencyError("kafka", "ListConsumerGroupOffsets: no group", true);
        if (const auto* e = rd_kafka_group_result_error(results[0])) {
          code = rd_kafka_error_code(e);
          message = rd_kafka_error_string(e);
        } else {
          const auto* offsets = rd_kafka_group_result_partitions(results[0]);
          if (offsets == nullptr || offsets->cnt != 1) {
            throw DependencyError("kafka", "ListConsumerGroupOffsets: no partition", true);
          }
          code = offsets->elems[0].err;
          message = rd_kafka_err2str(code);
          if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
            return offsets->elems[0].offset < 0 ? -1 : offsets->elems[0].offset;
          }
        }
      }
    }
    // UNSTABLE_OFFSET_COMMIT: a transaction holding an offset of this partition is still open.
    // A coordinator that moved or does not answer: ask the next time through a fresh handle.
    if (code == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
        code == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE ||
        code == RD_KAFKA_RESP_ERR__TIMED_OUT) {
      impl_->replace_offsets_handle(handle);
    }
    if (give_up && give_up()) {
      throw DependencyError("kafka", "stopped waiting for a stable committed offset", true);
    }
    if (std::chrono::steady_clock::now() + pause >= deadline) {
      throw DependencyError("kafka",
                            "committed offset of " + topic + "/" + std::to_string(partition) +
                                " not stable in time: " + message,
                            true);
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(500));
  }
}

std::map<std::int32_t, std::int64_t> KafkaAdmin::offsets_for_time(
    const std::string& topic, int partitions, std::chrono::system_clock::time_point time) const {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch());
  PartitionListHandle list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = ms.count();
  }
  const auto rc =
      rd_kafka_offsets_for_times(impl_->rk.get(), list.get(), impl_->request_timeout_ms);
  if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw DependencyError("kafka", std::string("offsets for a time: ") + rd_kafka_err2str(rc),
                          true);
  }
  std::map<std::int32_t, std::int64_t> out;
  std::map<std::int32_t, std::int64_t> ends;
  for (int i = 0; i < list->cnt; ++i) {
    const auto& tp = list->elems[i];
    if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw DependencyError("kafka",
                            "offsets for a time, partition " + std::to_string(tp.partition) + ": " +
                                rd_kafka_err2str(tp.err),
                            true);
    }
    if (tp.offset < 0) {  // nothing at or after the time: start at the end
      if (ends.empty()) ends = end_offsets(topic, partitions);
      out[tp.partition] = ends[tp.partition];
    } else {
      out[tp.partition] = tp.offset;
    }
  }
  return out;
}

std::map<std::int32_t, std::int64_t> KafkaAdmin::end_offsets(const std::string& topic,
                                                             int partitions) const {
  std::map<std::int32_t, std::int64_t> out;
  for (int p = 0; p < partitions; ++p) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    const auto rc = rd_kafka_query_watermark_offsets(impl_->rk.get(), topic.c_str(), p, &low, &high,
                                                     impl_->request_timeout_ms);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw DependencyError("kafka", std::string("end offsets: ") + rd_kafka_err2str(rc), true);
    }
    out[p] = high;
  }
  return out;
}

}  // namespace cauce::core
