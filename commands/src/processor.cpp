// The Kafka adapter around decide()/fold(): one thread polls the commands consumer and hands
// each record to the worker of its partition; each worker owns a transactional producer and
// the partition's state. See processor.hpp for the protocol.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cauce/commands/handler.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/backoff.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>

namespace cauce::commands {
namespace {

using Clock = std::chrono::steady_clock;
using MessagePtr = std::unique_ptr<RdKafka::Message>;

const core::Logger& log() {
  static const core::Logger logger("processor");
  return logger;
}

constexpr std::size_t kPauseBacklog = 20000;  // records queued for one worker: pause fetching
constexpr std::size_t kResumeBacklog = 2000;
constexpr int kTransactionTimeoutMs = 30000;

// Label values stay bounded whatever arrives on the topic.
std::string metric_type(const std::string& type) {
  static const std::set<std::string> kKnown = {
      "contact.register", "contact.update", "contact.log_call",  "contact.assign",
      "contact.archive",  "alert.raise",    "alert.acknowledge", "alert.escalate",
      "alert.close",      "report.request", "backup.request"};
  return kKnown.contains(type) ? type : "unknown";
}

struct Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : commands(prometheus::BuildCounter()
                     .Name("cauce_commands_total")
                     .Help("Commands decided by the processor, by type and outcome")
                     .Register(registry)),
        transactions(prometheus::BuildCounter()
                         .Name("cauce_processor_transactions_total")
                         .Help("Kafka transactions of the processor, by result")
                         .Register(registry)),
        committed(transactions.Add({{"result", "committed"}})),
        aborted(transactions.Add({{"result", "aborted"}})),
        batch_commands(
            prometheus::BuildHistogram()
                .Name("cauce_processor_batch_commands")
                .Help("Commands per processor transaction")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 5, 10, 20, 50, 100, 200, 500,
                                                                 1000, 5000})),
        transaction_seconds(
            prometheus::BuildHistogram()
                .Name("cauce_processor_transaction_duration_seconds")
                .Help("From the first produce to the commit of one batch")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02,
                                                                 0.05, 0.1, 0.2, 0.5, 1, 2, 5})),
        partitions(prometheus::BuildGauge()
                       .Name("cauce_processor_partitions")
                       .Help("Partitions of the commands topic this process decides")
                       .Register(registry)
                       .Add({})),
        rebuilt_events(prometheus::BuildCounter()
                           .Name("cauce_processor_rebuilt_events_total")
                           .Help("Events read back from the log to rebuild aggregate state")
                           .Register(registry)
                           .Add({})),
        dead_letters(prometheus::BuildCounter()
                         .Name("cauce_processor_dead_letters_total")
                         .Help("Records on the commands topic that were not commands, parked on "
                               "the dead-letters topic")
                         .Register(registry)
                         .Add({})) {}

  prometheus::Family<prometheus::Counter>& commands;
  prometheus::Family<prometheus::Counter>& transactions;
  prometheus::Counter& committed;
  prometheus::Counter& aborted;
  prometheus::Histogram& batch_commands;
  prometheus::Histogram& transaction_seconds;
  prometheus::Gauge& partitions;
  prometheus::Counter& rebuilt_events;
  prometheus::Counter& dead_letters;
};

// Where one produced record landed; filled by the delivery report during flush().
struct DeliverySlot {
  std::int64_t offset = -1;
  RdKafka::ErrorCode error = RdKafka::ERR__IN_PROGRESS;
};

// Delivery reports of the current batch's events. A record's opaque is its batch generation and
// index, never a pointer: reports of an aborted batch that arrive later are recognised as stale
// and dropped instead of writing into memory that is gone. Used on the worker thread only
// (reports are served by flush()/poll() there).
class DeliveryReports final : public RdKafka::DeliveryReportCb {
 public:
  void begin_batch() {
    ++generation_;
    slots_.clear();
  }

  // A slot for the next produced record; pass the result as the record's opaque.
  void* track() {
    slots_.emplace_back();
    const auto key = (generation_ << 32U) | static_cast<std::uint64_t>(slots_.size() - 1);
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(key));
  }

  std::size_t size() const { return slots_.size(); }
  const DeliverySlot& operator[](std::size_t index) const { return slots_[index]; }

  void dr_cb(RdKafka::Message& message) override {
    const auto key =
        static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(message.msg_opaque()));
    if (key == 0 || (key >> 32U) != generation_) return;  // a reply, or a stale report
    const auto index = static_cast<std::size_t>(key & 0xffffffffU);
    if (index >= slots_.size()) return;
    slots_[index].offset = message.offset();
    slots_[index].error = message.err();
  }

 private:
  std::uint64_t generation_ = 0;  // starts at 1 with the first batch: a key is never 0
  std::vector<DeliverySlot> slots_;
};

// Where a command's reply goes (absent for commands written by other tools).
struct ReplyTo {
  std::int32_t partition = 0;
  std::string instance;
  std::string token;
};

// Absent when the record names no reply or a partition the replies topic does not have (a
// reply that could never be produced must not block the partition).
std::optional<ReplyTo> reply_to(RdKafka::Message& message, int reply_partitions) {
  const auto partition = core::kafka_header(message, header::kReplyPartition);
  const auto instance = core::kafka_header(message, header::kReplyInstance);
  const auto token = core::kafka_header(message, header::kReplyToken);
  if (!partition || !instance || !token) return std::nullopt;
  std::int32_t p = -1;
  const auto [end, ec] =
      std::from_chars(partition->data(), partition->data() + partition->size(), p);
  if (ec != std::errc{} || end != partition->data() + partition->size() || p < 0 ||
      p >= reply_partitions) {
    log().warn("command names no valid reply partition; no reply sent",
               {{"reply_partition", *partition}, {"offset", message.offset()}});
    return std::nullopt;
  }
  return ReplyTo{p, *instance, *token};
}

// One owned partition: its producer, its state and its queue of commands.
class PartitionWorker {
 public:
  PartitionWorker(const ProcessorOptions& options, std::int32_t partition, Metrics& metrics,
                  RdKafka::KafkaConsumer& consumer)
      : options_(options), partition_(partition), metrics_(metrics), consumer_(consumer) {
    thread_ = std::thread([this] { run(); });
  }

  ~PartitionWorker() { stop_and_join(); }
  PartitionWorker(const PartitionWorker&) = delete;
  PartitionWorker& operator=(const PartitionWorker&) = delete;

  void push(MessagePtr message) {
    {
      const std::lock_guard lock(mutex_);
      inbox_.push_back(std::move(message));
    }
    wake_.notify_one();
  }

  std::size_t backlog() const {
    const std::lock_guard lock(mutex_);
    return inbox_.size();
  }

  // The open transaction is finished or aborted; queued commands are left to the next owner.
  void stop_and_join() {
    stopping_ = true;
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  PartitionStatus status() const {
    const std::lock_guard lock(status_mutex_);
    return status_;
  }

 private:
  // Claims the partition, rebuilds its state, then decides batches until stopped. Transient
  // failures (a leader moving, the broker away) start over after a pause; being fenced ends
  // the worker for good.
  void run() {
    // Taken from the inbox and not committed yet: kept across a restart of the loop below, so a
    // failure between taking a batch and committing it never skips those commands.
    std::vector<MessagePtr> pending;
    while (!stopping_) {
      try {
        if (!producer_ && !init_producer()) break;
        if (reply_partitions_ == 0) {
          // Also learns the leaders now rather than in the first transaction.
          const std::chrono::milliseconds timeout(options_.kafka.request_timeout_ms);
          core::kafka_partition_count(*producer_, options_.kafka.events_topic, timeout);
          reply_partitions_ =
              core::kafka_partition_count(*producer_, options_.kafka.replies_topic, timeout);
          dead_letter_partitions_ =
              core::kafka_partition_count(*producer_, options_.kafka.dead_letters_topic, timeout);
          if (core::kafka_partition_count(*producer_, options_.kafka.outcomes_topic, timeout) <=
              partition_) {
            reply_partitions_ = 0;  // learnt again on the next attempt
            throw std::runtime_error(
                "the outcomes topic has fewer partitions than the commands "
                "topic; run `cauce topics create`");
          }
        }
        rebuild();
        set_ready(true);
        worker_failing_.cleared("partition worker recovered");
        log().info("partition ready", {{"partition", partition_},
                                       {"aggregates", store_->aggregate_count()},
                                       {"commands", store_->command_count()}});
        backoff_.reset();
        while (!stopping_) {
          if (pending.empty()) pending = take_batch();
          if (pending.empty()) continue;
          if (process_until_committed(pending)) pending.clear();
        }
      } catch (const core::KafkaError& e) {
        if (e.is_fatal()) {
          mark_fenced(e.what());
          break;
        }
        worker_failing_.failing(
            "partition worker failed; starting over (logged once until it "
            "recovers)",
            {{"partition", partition_}, {"error", e.what()}});
      } catch (const std::exception& e) {
        worker_failing_.failing(
            "partition worker failed; starting over (logged once until it "
            "recovers)",
            {{"partition", partition_}, {"error", e.what()}});
      }
      set_ready(false);
      pause_before_retry();
    }
    set_ready(false);
    if (producer_) producer_->flush(1000);
  }

  // Capped, jittered backoff that a stop interrupts.
  void pause_before_retry() {
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, backoff_.next(), [&] { return stopping_.load(); });
  }

  std::string transactional_id() const {
    return options_.commands.processor_group + "-" + options_.kafka.commands_topic + "-" +
           std::to_string(partition_);
  }

  // Creates the producer and claims the transactional id; retries while the broker is away.
  bool init_producer() {
    auto conf = core::kafka_conf(
        options_.kafka, {{"transactional.id", transactional_id()},
                         {"transaction.timeout.ms", std::to_string(kTransactionTimeoutMs)},
                         {"message.timeout.ms", std::to_string(kTransactionTimeoutMs)},
                         {"linger.ms", "0"},
                         // The broker answers CONCURRENT_TRANSACTIONS for a moment after each
                         // commit; the default 100 ms backoff would add that to every batch.
                         {"retry.backoff.ms", "10"},
                         {"partitioner", "murmur2_random"}});
    std::string err;
    if (conf->set("dr_cb", &deliveries_, err) != RdKafka::Conf::CONF_OK) {
      throw std::runtime_error(err);
    }
    producer_.reset(RdKafka::Producer::create(conf.get(), err));
    if (!producer_) throw core::KafkaError("producer: " + err, false, true, false);
    while (!stopping_) {
      try {
        core::kafka_check(producer_->init_transactions(5000), "init_transactions");
        claim_failing_.cleared("partition claimed");
        return true;
      } catch (const core::KafkaError& e) {
        if (e.is_fatal()) throw;
        claim_failing_.failing("cannot claim the partition yet, retrying",
                               {{"partition", partition_}, {"error", e.what()}});
        pause_before_retry();
      }
    }
    return false;
  }

  // Reads this partition's remembered rejections and then its event log from the start
  // (read_committed) into a fresh store. Runs after init_transactions, so no transaction of an
  // earlier owner is still open. Events come second: they win over any outcome of the same id.
  void rebuild() {
    const auto started = Clock::now();
    auto store = std::make_unique<MemoryAggregateStore>();
    const auto rejections = read_partition(options_.kafka.outcomes_topic, [&](RdKafka::Message& m) {
      auto reply = reply_from_json(core::kafka_payload(m));
      if (reply.outcome != ReplyOutcome::kRejected || !reply.rejection) return;
      store->record_command(reply.command_id,
                            AppliedCommand{core::kafka_header(m, header::kRequestHash).value_or(""),
                                           reply.aggregate_id, reply.version, "", std::nullopt,
                                           std::move(reply.rejection)});
    });
    const auto events = read_partition(options_.kafka.events_topic, [&](RdKafka::Message& m) {
      fold(*store, event_from_json(core::kafka_payload(m)), position_token(partition_, m.offset()),
           core::kafka_header(m, header::kRequestHash).value_or(""));
    });
    store_ = std::move(store);
    metrics_.rebuilt_events.Increment(static_cast<double>(events));
    {
      const std::lock_guard lock(status_mutex_);
      status_.rebuilt_events += events;
    }
    update_counts();
    log().info(
        "state rebuilt from the log",
        {{"partition", partition_},
         {"events", events},
         {"remembered_rejections", rejections},
         {"ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
  }

  // Hands every committed record of this partition of `topic` to `apply`, from the start to the
  // end it has now; returns how many were applied. A record `apply` cannot take is logged and
  // skipped: rebuilding never stops on one.
  std::int64_t read_partition(const std::string& topic,
                              const std::function<void(RdKafka::Message&)>& apply) {
    auto conf = core::kafka_conf(options_.kafka,
                                 {{"group.id", options_.commands.processor_group + "-rebuild"},
                                  {"enable.auto.commit", "false"},
                                  {"enable.partition.eof", "true"},
                                  {"isolation.level", "read_committed"},
                                  {"fetch.max.bytes", "52428800"}});
    std::string err;
    std::unique_ptr<RdKafka::KafkaConsumer> reader(RdKafka::KafkaConsumer::create(conf.get(), err));
    if (!reader) throw core::KafkaError("rebuild consumer: " + err, false, false, false);
    std::unique_ptr<RdKafka::TopicPartition> tp(
        RdKafka::TopicPartition::create(topic, partition_, RdKafka::Topic::OFFSET_BEGINNING));
    std::int64_t low = 0;
    std::int64_t high = 0;
    const auto rc = reader->query_watermark_offsets(topic, partition_, &low, &high,
                                                    options_.kafka.request_timeout_ms);
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::KafkaError(topic + " offsets: " + RdKafka::err2str(rc), true, false, false);
    }
    reader->assign({tp.get()});
    std::int64_t applied = 0;
    while (!stopping_ && high > low) {  // an empty partition has nothing to read
      const MessagePtr message(reader->consume(500));
      if (message->err() == RdKafka::ERR__PARTITION_EOF) break;
      if (message->err() == RdKafka::ERR__TIMED_OUT) continue;
      if (message->err() != RdKafka::ERR_NO_ERROR) {
        log().warn("rebuild read error",
                   {{"topic", topic}, {"partition", partition_}, {"error", message->errstr()}});
        continue;
      }
      try {
        apply(*message);
        ++applied;
      } catch (const std::exception& e) {
        log().error("unreadable record skipped while rebuilding", {{"topic", topic},
                                                                   {"partition", partition_},
                                                                   {"offset", message->offset()},
                                                                   {"error", e.what()}});
      }
    }
    reader->close();
    return applied;
  }

  // Waits for the first command, then lingers briefly so that a batch can fill.
  std::vector<MessagePtr> take_batch() {
    const auto max = static_cast<std::size_t>(options_.commands.batch_max);
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(100),
                   [&] { return stopping_ || !inbox_.empty(); });
    if (stopping_ || inbox_.empty()) return {};
    if (inbox_.size() < max && options_.commands.linger_ms > 0) {
      wake_.wait_for(lock, std::chrono::milliseconds(options_.commands.linger_ms),
                     [&] { return stopping_ || inbox_.size() >= max; });
    }
    std::vector<MessagePtr> batch;
    const auto n = std::min(max, inbox_.size());
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(inbox_.front()));
      inbox_.pop_front();
    }
    return batch;
  }

  // true once the batch is committed; false when stopping first (the batch stays uncommitted
  // for the partition's next owner). Throws when the worker must start over (the caller keeps
  // the batch and decides it again after the rebuild).
  bool process_until_committed(const std::vector<MessagePtr>& batch) {
    for (int attempt = 1; !stopping_ || attempt == 1; ++attempt) {
      try {
        process(batch);
        backoff_.reset();
        return true;
      } catch (const core::KafkaError& e) {
        if (e.is_fatal()) throw;
        metrics_.aborted.Increment();
        log().warn("transaction failed; aborting and deciding the batch again",
                   {{"partition", partition_}, {"attempt", attempt}, {"error", e.what()}});
        try {
          core::kafka_check(producer_->abort_transaction(kTransactionTimeoutMs),
                            "abort_transaction");
        } catch (const core::KafkaError& abort_error) {
          if (abort_error.is_fatal()) throw;
          log().warn("abort failed", {{"partition", partition_}, {"error", abort_error.what()}});
        }
        // The in-memory state saw the aborted decisions: rebuild it from what was committed.
        pause_before_retry();
        rebuild();
      }
    }
    return false;
  }

  struct Decided {
    std::optional<CommandEnvelope> command;  // nullopt: the record was not a command
    std::optional<ReplyTo> reply_to;
    Outcome outcome;
    std::size_t first_slot = 0;
    std::size_t slots = 0;
    std::string position;
  };

  void process(const std::vector<MessagePtr>& batch) {
    const auto started = Clock::now();
    core::kafka_check(producer_->begin_transaction(), "begin_transaction");
    deliveries_.begin_batch();
    parked_in_batch_ = 0;
    std::vector<Decided> decided;
    decided.reserve(batch.size());
    for (const auto& message : batch) {
      Decided d;
      d.reply_to = reply_to(*message, reply_partitions_);
      try {
        d.command = command_from_json(core::kafka_payload(*message));
        foreign_records_.cleared("commands decode again");
      } catch (const std::exception& e) {
        // A foreign producer's record: rejected (with a reply where it names one), committed
        // past, never a crash or a stall; logged once per run of such records.
        foreign_records_.failing(
            "not a command; rejected and parked on the dead-letters topic",
            {{"partition", partition_}, {"offset", message->offset()}, {"error", e.what()}});
        park(*message, e.what());
        d.outcome.kind = ReplyOutcome::kRejected;
        d.outcome.rejection = Rejection{"invalid", "body", "not a valid command envelope"};
        decided.push_back(std::move(d));
        continue;
      }
      d.outcome = decide(*store_, *d.command);
      if (remembers_rejection(*d.command, d.outcome)) {
        remember_rejection(*d.command, d.outcome);
        // At once, so that a repeat later in this batch answers the same.
        store_->record_command(d.command->command_id, remembered(*d.command, d.outcome));
      }
      if (d.outcome.kind == ReplyOutcome::kApplied && !d.outcome.events.empty()) {
        d.first_slot = deliveries_.size();
        d.slots = d.outcome.events.size();
        append_events(*d.command, d.outcome);
        store_->put(store_key(d.command->aggregate_type, d.command->aggregate_id),
                    *d.outcome.state_after);
        // Remembered at once, so that a repeat later in this batch is a duplicate.
        store_->record_command(d.command->command_id, remembered(*d.command, d.outcome));
      }
      decided.push_back(std::move(d));
    }

    // The consumed commands' offsets join the transaction while the events are in flight
    // (two round trips to the coordinators that overlap the events' delivery).
    std::vector<RdKafka::TopicPartition*> offsets;
    std::unique_ptr<RdKafka::TopicPartition> next(RdKafka::TopicPartition::create(
        options_.kafka.commands_topic, partition_, batch.back()->offset() + 1));
    offsets.push_back(next.get());
    std::unique_ptr<RdKafka::ConsumerGroupMetadata> group(consumer_.groupMetadata());
    core::kafka_check(
        producer_->send_offsets_to_transaction(offsets, group.get(), kTransactionTimeoutMs),
        "send_offsets_to_transaction");

    // Offsets of the events, for the position tokens in the replies.
    if (deliveries_.size() > 0) {
      producer_->flush(kTransactionTimeoutMs);
      for (std::size_t i = 0; i < deliveries_.size(); ++i) {
        const auto& slot = deliveries_[i];
        if (slot.error != RdKafka::ERR_NO_ERROR) {
          throw core::KafkaError(
              std::string("event not delivered: ") + RdKafka::err2str(slot.error), true,
              slot.error == RdKafka::ERR__FENCED, true);
        }
      }
    }
    for (auto& d : decided) {
      if (d.slots > 0) {
        d.position = position_token(partition_, deliveries_[d.first_slot + d.slots - 1].offset);
        store_->record_command(d.command->command_id,
                               remembered(*d.command, d.outcome, d.position));
      }
      send_reply(d);
    }

    core::kafka_check(producer_->commit_transaction(kTransactionTimeoutMs), "commit_transaction");

    metrics_.committed.Increment();
    metrics_.dead_letters.Increment(static_cast<double>(parked_in_batch_));
    metrics_.batch_commands.Observe(static_cast<double>(batch.size()));
    metrics_.transaction_seconds.Observe(
        std::chrono::duration<double>(Clock::now() - started).count());
    for (const auto& d : decided) {
      metrics_.commands
          .Add({{"type", metric_type(d.command ? d.command->type : "")},
                {"outcome", outcome_name(d.outcome.kind)}})
          .Increment();
    }
    update_counts();
  }

  void append_events(const CommandEnvelope& command, const Outcome& outcome) {
    for (const auto& envelope : event_envelopes(command, outcome)) {
      const auto rc = core::kafka_produce(*producer_, options_.kafka.events_topic, partition_,
                                          command.aggregate_id, to_json(envelope),
                                          {{header::kType, envelope.type},
                                           {header::kAggregateType, envelope.aggregate_type},
                                           {header::kAggregateId, envelope.aggregate_id},
                                           {header::kEventId, envelope.event_id},
                                           {header::kCommandId, envelope.command_id},
                                           {header::kRequestHash, command.request_hash}},
                                          deliveries_.track());
      if (rc != RdKafka::ERR_NO_ERROR) {
        throw core::KafkaError(std::string("produce event: ") + RdKafka::err2str(rc), true,
                               rc == RdKafka::ERR__FENCED || rc == RdKafka::ERR__FATAL, true);
      }
    }
  }

  // The rejection joins the transaction on the outcomes topic (key = command id, same
  // partition), where rebuild() finds it again.
  void remember_rejection(const CommandEnvelope& command, const Outcome& outcome) {
    Reply reply;
    reply.command_id = command.command_id;
    reply.outcome = ReplyOutcome::kRejected;
    reply.aggregate_id = command.aggregate_id;
    reply.version = outcome.version;
    reply.rejection = outcome.rejection;
    const auto rc = core::kafka_produce(
        *producer_, options_.kafka.outcomes_topic, partition_, command.command_id, to_json(reply),
        {{header::kCommandId, command.command_id}, {header::kRequestHash, command.request_hash}});
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::KafkaError(std::string("produce outcome: ") + RdKafka::err2str(rc), true,
                             rc == RdKafka::ERR__FENCED || rc == RdKafka::ERR__FATAL, true);
    }
  }

  // A record that is not a command goes, as it came (key, value, headers) plus where it came
  // from and why, to the dead-letters topic in the same transaction that commits past it.
  void park(RdKafka::Message& message, const std::string& error) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (const auto* original = message.headers()) {
      for (const auto& h : original->get_all()) {
        headers.emplace_back(h.key(),
                             std::string(static_cast<const char*>(h.value()), h.value_size()));
      }
    }
    headers.emplace_back(header::kDeadLetterSource, options_.kafka.commands_topic + ":" +
                                                        std::to_string(partition_) + ":" +
                                                        std::to_string(message.offset()));
    headers.emplace_back(header::kDeadLetterError, error.substr(0, 1000));
    const auto rc = core::kafka_produce(
        *producer_, options_.kafka.dead_letters_topic, partition_ % dead_letter_partitions_,
        core::kafka_key(message), core::kafka_payload(message), headers);
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::KafkaError(std::string("produce dead letter: ") + RdKafka::err2str(rc), true,
                             rc == RdKafka::ERR__FENCED || rc == RdKafka::ERR__FATAL, true);
    }
    ++parked_in_batch_;
  }

  void send_reply(const Decided& d) {
    if (!d.reply_to) return;
    Reply reply;
    reply.outcome = d.outcome.kind;
    reply.version = d.outcome.version;
    reply.call_id = d.outcome.call_id;
    reply.rejection = d.outcome.rejection;
    if (d.command) {
      reply.command_id = d.command->command_id;
      reply.aggregate_id = d.command->aggregate_id;
    }
    if (d.outcome.kind == ReplyOutcome::kApplied) reply.position = d.position;
    if (d.outcome.original != nullptr) {
      // A repeat answers what the first decision answered.
      reply.aggregate_id = d.outcome.original->aggregate_id;
      reply.position = d.outcome.original->position;
      reply.replayed = d.outcome.kind == ReplyOutcome::kRejected;
    }
    const auto rc = core::kafka_produce(*producer_, options_.kafka.replies_topic,
                                        d.reply_to->partition, reply.command_id, to_json(reply),
                                        {{header::kReplyInstance, d.reply_to->instance},
                                         {header::kReplyToken, d.reply_to->token},
                                         {header::kCommandId, reply.command_id}});
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::KafkaError(std::string("produce reply: ") + RdKafka::err2str(rc), true,
                             rc == RdKafka::ERR__FENCED || rc == RdKafka::ERR__FATAL, true);
    }
  }

  void set_ready(bool ready) {
    const std::lock_guard lock(status_mutex_);
    status_.ready = ready;
  }

  void mark_fenced(const std::string& error) {
    log().warn("fenced: another processor owns this partition now; appending nothing more",
               {{"partition", partition_}, {"error", error}});
    const std::lock_guard lock(status_mutex_);
    status_.fenced = true;
  }

  void update_counts() {
    const std::lock_guard lock(status_mutex_);
    status_.aggregates = store_->aggregate_count();
    status_.commands = store_->command_count();
  }

  const ProcessorOptions& options_;
  const std::int32_t partition_;
  Metrics& metrics_;
  RdKafka::KafkaConsumer& consumer_;

  DeliveryReports deliveries_;
  std::unique_ptr<RdKafka::Producer> producer_;
  std::unique_ptr<AggregateStore> store_;
  int reply_partitions_ = 0;  // of the replies topic; learnt once the producer exists
  int dead_letter_partitions_ = 1;
  std::size_t parked_in_batch_ = 0;  // dead letters in the open transaction

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<MessagePtr> inbox_;
  std::atomic<bool> stopping_{false};
  core::Backoff backoff_{std::chrono::milliseconds(100), std::chrono::milliseconds(5000)};
  core::ConditionLog claim_failing_{log()};
  core::ConditionLog worker_failing_{log()};
  core::ConditionLog foreign_records_{log()};

  mutable std::mutex status_mutex_;
  PartitionStatus status_{partition_};

  std::thread thread_;  // last: started once everything above exists
};

}  // namespace

struct CommandProcessor::Impl final : public RdKafka::RebalanceCb {
  Impl(ProcessorOptions o, prometheus::Registry& registry)
      : options(std::move(o)), metrics(registry) {}

  ProcessorOptions options;
  Metrics metrics;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::map<std::int32_t, std::unique_ptr<PartitionWorker>> workers;  // poll thread only
  std::set<std::int32_t> paused;
  mutable std::mutex workers_mutex;  // guards `workers` against status() readers
  std::atomic<bool> running{false};
  std::atomic<bool> assignment_known{false};
  std::thread poller;

  void rebalance_cb(RdKafka::KafkaConsumer* c, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override {
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      c->assign(partitions);
      take(partitions);
      assignment_known = true;
    } else {
      assignment_known = false;
      release_all();
      c->unassign();
    }
  }

  void take(const std::vector<RdKafka::TopicPartition*>& partitions) {
    const std::lock_guard lock(workers_mutex);
    for (const auto* tp : partitions) {
      workers.insert_or_assign(tp->partition(), std::make_unique<PartitionWorker>(
                                                    options, tp->partition(), metrics, *consumer));
      log().info("partition assigned", {{"partition", tp->partition()}});
    }
    metrics.partitions.Set(static_cast<double>(workers.size()));
  }

  void release_all() {
    std::map<std::int32_t, std::unique_ptr<PartitionWorker>> released;
    {
      const std::lock_guard lock(workers_mutex);
      released.swap(workers);
    }
    for (auto& [partition, worker] : released) {
      worker->stop_and_join();
      log().info("partition released", {{"partition", partition}});
    }
    paused.clear();
    metrics.partitions.Set(0);
  }

  void poll_loop() {
    auto last_error_log = Clock::now() - std::chrono::hours(1);
    while (running) {
      MessagePtr message(consumer->consume(100));
      switch (message->err()) {
        case RdKafka::ERR_NO_ERROR: {
          const std::lock_guard lock(workers_mutex);
          const auto it = workers.find(message->partition());
          if (it != workers.end()) it->second->push(std::move(message));
          break;
        }
        case RdKafka::ERR__TIMED_OUT:
        case RdKafka::ERR__PARTITION_EOF:
          break;
        default:
          if (Clock::now() - last_error_log > std::chrono::seconds(10)) {
            last_error_log = Clock::now();
            log().warn("commands consumer error", {{"error", message->errstr()}});
          }
      }
      apply_backpressure();
    }
  }

  // A worker far behind (e.g. still rebuilding) stops its partition's fetching for a while.
  void apply_backpressure() {
    const std::lock_guard lock(workers_mutex);
    for (const auto& [partition, worker] : workers) {
      const auto backlog = worker->backlog();
      const bool is_paused = paused.contains(partition);
      const bool should_pause = !is_paused && backlog > kPauseBacklog;
      const bool should_resume = is_paused && backlog < kResumeBacklog;
      if (!should_pause && !should_resume) continue;
      std::unique_ptr<RdKafka::TopicPartition> tp(
          RdKafka::TopicPartition::create(options.kafka.commands_topic, partition));
      std::vector<RdKafka::TopicPartition*> list{tp.get()};
      if (is_paused) {
        consumer->resume(list);
        paused.erase(partition);
      } else {
        consumer->pause(list);
        paused.insert(partition);
      }
    }
  }
};

CommandProcessor::CommandProcessor(ProcessorOptions options, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

CommandProcessor::~CommandProcessor() { stop(); }

void CommandProcessor::start() {
  auto& o = impl_->options;
  auto conf =
      core::kafka_conf(o.kafka, core::exactly_once_consumer_settings(o.commands.processor_group));
  std::string err;
  if (o.static_partitions.empty() &&
      conf->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(impl_.get()), err) !=
          RdKafka::Conf::CONF_OK) {
    throw core::ConfigError("kafka.rebalance_cb", err);
  }
  impl_->consumer.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!impl_->consumer) throw core::DependencyError("kafka", "commands consumer: " + err, false);
  if (o.static_partitions.empty()) {
    const auto rc = impl_->consumer->subscribe({o.kafka.commands_topic});
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::DependencyError("kafka", "subscribe: " + RdKafka::err2str(rc), true);
    }
  } else {
    std::vector<std::unique_ptr<RdKafka::TopicPartition>> owned;
    std::vector<RdKafka::TopicPartition*> list;
    for (const auto p : o.static_partitions) {
      owned.emplace_back(RdKafka::TopicPartition::create(o.kafka.commands_topic, p));
      list.push_back(owned.back().get());
    }
    impl_->consumer->assign(list);
    impl_->take(list);
    impl_->assignment_known = true;
  }
  impl_->running = true;
  impl_->poller = std::thread([impl = impl_.get()] { impl->poll_loop(); });
  log().info("processor started", {{"group", o.commands.processor_group},
                                   {"topic", o.kafka.commands_topic},
                                   {"static_partitions", o.static_partitions.size()}});
}

void CommandProcessor::stop() {
  if (!impl_->running.exchange(false)) return;
  impl_->poller.join();
  impl_->release_all();
  impl_->consumer->close();
  impl_->consumer.reset();
  log().info("processor stopped");
}

bool CommandProcessor::has_assignment() const { return impl_->assignment_known; }

std::vector<PartitionStatus> CommandProcessor::status() const {
  const std::lock_guard lock(impl_->workers_mutex);
  std::vector<PartitionStatus> out;
  for (const auto& [partition, worker] : impl_->workers) out.push_back(worker->status());
  return out;
}

}  // namespace cauce::commands
