#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>

namespace cauce::commands {
namespace {

using Clock = std::chrono::steady_clock;

const core::Logger& log() {
  static const core::Logger logger("command_bus");
  return logger;
}

std::string default_instance_id() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return std::string(host.data()) + "-" + std::to_string(getpid()) + "-" + core::random_hex(4);
}

// FNV-1a: the same instance id always maps to the same reply partition.
std::uint32_t stable_hash(std::string_view text) {
  std::uint32_t h = 2166136261U;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619U;
  }
  return h;
}

}  // namespace

struct CommandBus::Impl final : public RdKafka::DeliveryReportCb {
  Impl(BusOptions o, prometheus::Registry& registry)
      : options(std::move(o)),
        instance(options.commands.instance_id.empty() ? default_instance_id()
                                                      : options.commands.instance_id),
        results(prometheus::BuildCounter()
                    .Name("cauce_command_sends_total")
                    .Help("Commands the API sent, by how their wait ended")
                    .Register(registry)),
        replied(results.Add({{"result", "reply"}})),
        timed_out(results.Add({{"result", "timeout"}})),
        unavailable(results.Add({{"result", "unavailable"}})),
        local_sends(prometheus::BuildCounter()
                        .Name("cauce_command_local_total")
                        .Help("Commands handed to the processor in this process instead of the "
                              "commands topic")
                        .Register(registry)
                        .Add({})),
        round_trip(
            prometheus::BuildHistogram()
                .Name("cauce_command_round_trip_seconds")
                .Help("From sending a command to receiving its reply")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02,
                                                                 0.05, 0.1, 0.2, 0.5, 1, 2, 5})) {}

  struct Pending {
    Clock::time_point sent;
    Clock::time_point deadline;
    SendCallback done;
  };

  BusOptions options;
  std::string instance;
  std::int32_t reply_partition = 0;
  std::unique_ptr<RdKafka::Producer> producer;
  std::unique_ptr<RdKafka::KafkaConsumer> replies;
  std::atomic<LocalDecider*> local{nullptr};

  mutable std::mutex mutex;
  // Ordered by token, which is the order of the deadlines (one timeout for all) up to the
  // microseconds between taking a token and inserting it: expiry looks only at the front.
  std::map<std::uint64_t, Pending> pending;
  std::atomic<std::uint64_t> next_token{1};
  std::atomic<bool> running{false};
  std::thread thread;

  prometheus::Family<prometheus::Counter>& results;
  prometheus::Counter& replied;
  prometheus::Counter& timed_out;
  prometheus::Counter& unavailable;
  prometheus::Counter& local_sends;
  prometheus::Histogram& round_trip;

  // A command Kafka could not take (e.g. the broker stayed down past message.timeout.ms).
  void dr_cb(RdKafka::Message& message) override {
    if (message.err() == RdKafka::ERR_NO_ERROR) return;
    const auto token = reinterpret_cast<std::uintptr_t>(message.msg_opaque());
    log().warn("command not delivered", {{"error", message.errstr()}});
    complete(token, SendError::kUnavailable);
  }

  void complete(std::uint64_t token, SendResult result) {
    std::optional<Pending> p;
    {
      const std::lock_guard lock(mutex);
      const auto it = pending.find(token);
      if (it == pending.end()) return;  // already answered (reply after a timeout, ...)
      p = std::move(it->second);
      pending.erase(it);
    }
    if (const auto* error = std::get_if<SendError>(&result)) {
      (*error == SendError::kTimeout ? timed_out : unavailable).Increment();
    } else {
      replied.Increment();
      round_trip.Observe(std::chrono::duration<double>(Clock::now() - p->sent).count());
    }
    p->done(std::move(result));
  }

  void expire(Clock::time_point now) {
    std::vector<std::uint64_t> expired;
    {
      const std::lock_guard lock(mutex);
      for (auto it = pending.begin(); it != pending.end() && it->second.deadline <= now; ++it) {
        expired.push_back(it->first);
      }
    }
    for (const auto token : expired) complete(token, SendError::kTimeout);
  }

  void loop() {
    auto next_sweep = Clock::now();
    while (running) {
      producer->poll(0);
      const std::unique_ptr<RdKafka::Message> message(replies->consume(10));
      if (message->err() == RdKafka::ERR_NO_ERROR) on_reply(*message);
      const auto now = Clock::now();
      if (now >= next_sweep) {
        expire(now);
        next_sweep = now + std::chrono::milliseconds(10);
      }
    }
  }

  void on_reply(RdKafka::Message& message) {
    if (core::kafka_header(message, header::kReplyInstance) != instance) return;
    const auto token_text = core::kafka_header(message, header::kReplyToken);
    if (!token_text) return;
    std::uint64_t token = 0;
    try {
      token = std::stoull(*token_text);
    } catch (const std::exception&) {
      return;
    }
    try {
      complete(token, reply_from_json(core::kafka_payload(message)));
    } catch (const std::invalid_argument& e) {
      log().error("unreadable reply", {{"error", e.what()}});
      complete(token, SendError::kUnavailable);
    }
  }
};

CommandBus::CommandBus(BusOptions options, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

CommandBus::~CommandBus() { stop(); }

void CommandBus::start() {
  auto& i = *impl_;
  const auto timeout = std::chrono::milliseconds(i.options.kafka.request_timeout_ms);
  auto producer_conf = core::kafka_producer_conf(
      i.options.kafka,
      {{"enable.idempotence", "true"},
       {"acks", "all"},
       {"linger.ms", "1"},
       {"partitioner", "murmur2_random"},  // what Java clients use for keys
       {"message.timeout.ms", std::to_string(i.options.commands.reply_timeout_ms)}});
  std::string err;
  if (producer_conf->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(&i), err) !=
      RdKafka::Conf::CONF_OK) {
    throw core::ConfigError("kafka.dr_cb", err);
  }
  i.producer.reset(RdKafka::Producer::create(producer_conf.get(), err));
  if (!i.producer) throw core::DependencyError("kafka", "command producer: " + err, false);

  const int partitions =
      core::kafka_partition_count(*i.producer, i.options.kafka.replies_topic, timeout);
  i.reply_partition =
      static_cast<std::int32_t>(stable_hash(i.instance) % static_cast<std::uint32_t>(partitions));

  auto consumer_conf = core::kafka_conf(i.options.kafka, {{"group.id", "cauce-api-replies"},
                                                          {"enable.auto.commit", "false"},
                                                          {"isolation.level", "read_committed"},
                                                          {"fetch.wait.max.ms", "10"}});
  i.replies.reset(RdKafka::KafkaConsumer::create(consumer_conf.get(), err));
  if (!i.replies) throw core::DependencyError("kafka", "reply consumer: " + err, false);
  // From the current end: every reply to a command sent from now on lies beyond it. Just after
  // the topics were created the partition may still be electing its leader: retry briefly.
  std::int64_t low = 0;
  std::int64_t high = 0;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto rc =
        i.replies->query_watermark_offsets(i.options.kafka.replies_topic, i.reply_partition, &low,
                                           &high, static_cast<int>(timeout.count()));
    if (rc == RdKafka::ERR_NO_ERROR) break;
    if (Clock::now() >= deadline) {
      throw core::DependencyError("kafka", "replies topic offsets: " + RdKafka::err2str(rc), true);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::unique_ptr<RdKafka::TopicPartition> tp(
      RdKafka::TopicPartition::create(i.options.kafka.replies_topic, i.reply_partition, high));
  i.replies->assign({tp.get()});

  i.running = true;
  i.thread = std::thread([impl = impl_.get()] { impl->loop(); });
  log().info("command bus started",
             {{"instance", i.instance}, {"reply_partition", i.reply_partition}});
}

void CommandBus::stop() {
  auto& i = *impl_;
  if (!i.running.exchange(false)) return;
  i.thread.join();
  std::vector<std::uint64_t> tokens;
  {
    const std::lock_guard lock(i.mutex);
    for (const auto& [token, p] : i.pending) tokens.push_back(token);
  }
  for (const auto token : tokens) i.complete(token, SendError::kUnavailable);
  i.replies->close();
  i.producer->flush(1000);
}

void CommandBus::send(const CommandEnvelope& command, SendCallback done) {
  auto& i = *impl_;
  if (!i.running) {
    done(SendError::kUnavailable);
    return;
  }
  const auto token = i.next_token.fetch_add(1);
  const auto now = Clock::now();
  {
    std::unique_lock lock(i.mutex);
    // Checked again under the lock: a stop() that began after the check above has collected
    // (or will collect) the pending sends under this lock, and must not miss this one, whose
    // caller would otherwise wait forever.
    if (!i.running) {
      lock.unlock();
      done(SendError::kUnavailable);
      return;
    }
    i.pending.emplace(
        token,
        Impl::Pending{now, now + std::chrono::milliseconds(i.options.commands.reply_timeout_ms),
                      std::move(done)});
  }
  if (auto* local = i.local.load();
      local != nullptr &&
      local->try_submit(command, [impl = impl_.get(), token](std::optional<Reply> reply) {
        impl->complete(token, reply ? SendResult(std::move(*reply)) : SendError::kUnavailable);
      })) {
    i.local_sends.Increment();
    return;
  }
  std::vector<std::pair<std::string, std::string>> headers = {
      {header::kType, command.type},
      {header::kAggregateType, command.aggregate_type},
      {header::kAggregateId, command.aggregate_id},
      {header::kCommandId, command.command_id},
      {header::kReplyInstance, i.instance},
      {header::kReplyPartition, std::to_string(i.reply_partition)},
      {header::kReplyToken, std::to_string(token)}};
  if (!command.trace_parent.empty()) {
    headers.emplace_back(header::kTraceParent, command.trace_parent.text());
  }
  const auto rc =
      core::kafka_produce(*i.producer, i.options.kafka.commands_topic, RdKafka::Topic::PARTITION_UA,
                          command.aggregate_id, to_json(command), headers,
                          reinterpret_cast<void*>(static_cast<std::uintptr_t>(token)));
  if (rc != RdKafka::ERR_NO_ERROR) {
    log().warn("command not queued", {{"error", RdKafka::err2str(rc)},
                                      {"command_id", command.command_id},
                                      {"trace_id", command.trace_parent.trace_id()},
                                      {"span_id", command.trace_parent.span_id()}});
    i.complete(token, SendError::kUnavailable);
  }
}

void CommandBus::set_local(LocalDecider* local) { impl_->local = local; }

const std::string& CommandBus::instance_id() const { return impl_->instance; }
std::int32_t CommandBus::reply_partition() const { return impl_->reply_partition; }
std::size_t CommandBus::pending() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->pending.size();
}

}  // namespace cauce::commands
