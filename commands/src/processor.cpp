// The Kafka adapter around decide()/fold(): one thread polls the commands consumer and queues
// each record for its partition; each lane (a committer thread with its own transactional
// producer) decides the commands of its ready partitions in shared transactions, several lanes
// keeping several transactions in flight; a rebuild thread per partition restores its state.
// See processor.hpp for the protocol.

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
#include <variant>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/handler.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/commands/snapshot.hpp>
#include <cauce/core/backoff.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>

#include "watermarks.hpp"

namespace cauce::commands {
namespace {

using Clock = std::chrono::steady_clock;
using MessagePtr = std::unique_ptr<RdKafka::Message>;

const core::Logger& log() {
  static const core::Logger logger("processor");
  return logger;
}

constexpr std::size_t kPauseBacklog = 20000;  // queued for one partition: pause its fetching
constexpr std::size_t kResumeBacklog = 2000;
// Also how long a crashed processor's open transaction can hold the rebuild of the partitions
// it had (unless it comes back with the same instance id and aborts it at once).
constexpr int kTransactionTimeoutMs = 30000;
// Each call inside a transaction gets at most this long, so that a slow batch fails (and is
// retried) well before the broker aborts the transaction and bumps the producer's epoch.
constexpr int kCallTimeoutMs = 5000;

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
        events(prometheus::BuildCounter()
                   .Name("cauce_events_appended_total")
                   .Help("Events appended to the event log in committed transactions, by type")
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
        snapshots(prometheus::BuildCounter()
                      .Name("cauce_processor_snapshots_total")
                      .Help("Partition snapshots written, loaded, or found unusable on rebuild")
                      .Register(registry)),
        snapshots_written(snapshots.Add({{"result", "written"}})),
        snapshots_loaded(snapshots.Add({{"result", "loaded"}})),
        snapshots_invalid(snapshots.Add({{"result", "invalid"}})),
        unread_events(prometheus::BuildCounter()
                          .Name("cauce_processor_unread_events_total")
                          .Help("Events a rebuild could not fold (a newer build's type or "
                                "schema_version): their aggregates keep the events' versions "
                                "and refuse commands until the upgrade")
                          .Register(registry)
                          .Add({})),
        dead_letters(prometheus::BuildCounter()
                         .Name("cauce_processor_dead_letters_total")
                         .Help("Records on the commands topic that were not commands, parked on "
                               "the dead-letters topic")
                         .Register(registry)
                         .Add({})) {}

  prometheus::Family<prometheus::Counter>& commands;
  prometheus::Family<prometheus::Counter>& events;
  prometheus::Family<prometheus::Counter>& transactions;
  prometheus::Counter& committed;
  prometheus::Counter& aborted;
  prometheus::Histogram& batch_commands;
  prometheus::Histogram& transaction_seconds;
  prometheus::Gauge& partitions;
  prometheus::Counter& rebuilt_events;
  prometheus::Family<prometheus::Counter>& snapshots;
  prometheus::Counter& snapshots_written;
  prometheus::Counter& snapshots_loaded;
  prometheus::Counter& snapshots_invalid;
  prometheus::Counter& unread_events;
  prometheus::Counter& dead_letters;
};

// Where one produced record landed; filled by the delivery report during flush().
struct DeliverySlot {
  std::int64_t offset = -1;
  RdKafka::ErrorCode error = RdKafka::ERR__IN_PROGRESS;
};

// Delivery reports of the current batch's events. A record's opaque is its batch generation and
// index, never a pointer: reports of an aborted batch that arrive later are recognised as stale
// and dropped instead of writing into memory that is gone. Used on the committer thread only
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
std::optional<ReplyTo> reply_to(RdKafka::Message& message, int reply_partitions,
                                core::ConditionLog& bad_reply_partition) {
  const auto partition = core::kafka_header(message, header::kReplyPartition);
  const auto instance = core::kafka_header(message, header::kReplyInstance);
  const auto token = core::kafka_header(message, header::kReplyToken);
  if (!partition || !instance || !token) return std::nullopt;
  std::int32_t p = -1;
  const auto [end, ec] =
      std::from_chars(partition->data(), partition->data() + partition->size(), p);
  if (ec != std::errc{} || end != partition->data() + partition->size() || p < 0 ||
      p >= reply_partitions) {
    bad_reply_partition.failing(
        "command names no valid reply partition; no reply sent (logged once per run of such "
        "records)",
        {{"reply_partition", *partition}, {"offset", message.offset()}});
    return std::nullopt;
  }
  bad_reply_partition.cleared("commands name valid reply partitions again");
  return ReplyTo{p, *instance, *token};
}

// A command handed over by the API in this process (no record on the commands topic).
struct LocalCommand {
  CommandEnvelope command;
  LocalDecider::Done done;
};

// One queued command: a record of the commands topic or a local one.
using Item = std::variant<MessagePtr, LocalCommand>;

// One partition of the commands topic this processor owns: its queue of commands and the state
// of its aggregates.
struct Owned {
  explicit Owned(std::int32_t p) : partition(p), status{p} {}

  const std::int32_t partition;
  // Guarded by the processor's mutex.
  std::deque<Item> inbox;  // not decided yet, in arrival order
  bool ready = false;      // state rebuilt: the committer may decide its commands
  // The commands topic offset committed for this partition (from the rebuild, then after each
  // commit): sent again by a transaction holding only local commands, so that the group
  // generation still fences a zombie.
  std::int64_t next_offset = 0;
  PartitionStatus status;  // counts; ready and fenced are filled in by status()
  // Written by the rebuild thread while !ready, used by the committer thread while ready.
  std::unique_ptr<MemoryAggregateStore> store;
  // Committer: the offset after the partition's last committed event, and events since the
  // last snapshot (both start from the rebuild).
  std::int64_t events_end = 0;
  std::int64_t events_since_snapshot = 0;
  std::atomic<bool> cancelled{false};  // released: a running rebuild gives up
  std::thread rebuilder;               // joined before the next rebuild and on release
};

// A batch's commands of one partition.
struct Slice {
  Owned* owned = nullptr;
  std::vector<Item> items;
  std::int64_t next_offset = -1;  // past the last record of the topic among `items`
};

// The local commands among `items`, answered with nullopt (they cannot be decided here).
void drop_local(std::deque<Item>& items) {
  for (auto& item : items) {
    if (auto* local = std::get_if<LocalCommand>(&item)) local->done(std::nullopt);
  }
  items.clear();
}

// One transactional producer and the committer thread that decides and commits with it. A
// processor runs commands.transactions_in_flight of them: lane k owns the partitions p with
// p % lanes == k, so that while one lane's transaction commits another decides and sends its
// next batch, and every partition's commands stay in one lane, in order.
struct Lane {
  explicit Lane(std::size_t i) : index(i) {}

  const std::size_t index;
  std::string transactional_id;
  std::thread thread;
  bool in_flight = false;  // guarded by the processor's mutex: holds a batch (pointers into
                           // the owned partitions)
  // The lane's thread only.
  DeliveryReports deliveries;
  std::unique_ptr<RdKafka::Producer> producer;
  int reply_partitions = 0;  // of the replies topic; learnt once the producer exists
  int dead_letter_partitions = 1;
  std::size_t parked_in_batch = 0;  // dead letters in the open transaction
  std::size_t next_start = 0;       // round robin over partitions when a batch is full
  core::Backoff backoff{std::chrono::milliseconds(100), std::chrono::milliseconds(5000)};
  core::ConditionLog claim_failing{log()};
  core::ConditionLog committer_failing{log()};
  core::ConditionLog foreign_records{log()};
  core::ConditionLog snapshot_failing{log()};
  core::ConditionLog bad_reply_partition{log()};
  std::unique_ptr<RdKafka::Producer> snapshots_producer;
};

}  // namespace

// One consumer (the poll thread) hands records to the queues of the partitions this processor
// owns; each lane's committer thread decides the commands of its ready partitions in shared
// transactions of its own producer; a rebuild thread per partition restores its state after
// each assignment or abort.
struct CommandProcessor::Impl final : public RdKafka::RebalanceCb {
  Impl(ProcessorOptions o, prometheus::Registry& registry)
      : options(std::move(o)), metrics(registry), admin(options.kafka) {}

  ProcessorOptions options;
  Metrics metrics;
  core::KafkaAdmin admin;  // stable committed offsets before a rebuild
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::unique_ptr<HighWatermarks> watermarks;  // read_uncommitted: true high watermarks
  bool stable_id = false;                      // from commands.instance_id (else fresh per start)
  std::atomic<bool> running{false};
  std::atomic<bool> assignment_known{false};
  std::atomic<int> commands_partitions{0};  // learnt by the committer; 0: no local path yet
  std::thread poller;

  mutable std::mutex mutex;
  std::condition_variable wake;  // commands to decide, a partition ready, a batch done, stop
  std::map<std::int32_t, std::unique_ptr<Owned>> owned;
  bool holding = false;  // a revocation is waiting: take no new batch
  bool fenced = false;   // another producer took the transactional id: append nothing more
  std::set<std::string> unread_logged;  // "type vN" of unread events already logged

  std::set<std::int32_t> paused;  // poll thread only

  // One per transaction in flight (commands.transactions_in_flight).
  std::vector<std::unique_ptr<Lane>> lanes;

  // --- assignment (poll thread) -----------------------------------------------------------

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
    const std::lock_guard lock(mutex);
    for (const auto* tp : partitions) {
      if (owned.contains(tp->partition())) continue;  // listed twice
      auto o = std::make_unique<Owned>(tp->partition());
      start_rebuild(*o);
      owned.insert_or_assign(tp->partition(), std::move(o));
      log().info("partition assigned", {{"partition", tp->partition()}});
    }
    metrics.partitions.Set(static_cast<double>(owned.size()));
    holding = false;
  }

  // Waits for the batch in flight to commit or abort (its offsets belong to the generation
  // that is ending), then drops every partition's queue and state.
  void release_all() {
    std::map<std::int32_t, std::unique_ptr<Owned>> released;
    {
      std::unique_lock lock(mutex);
      holding = true;
      wake.notify_all();
      wake.wait(lock, [&] {
        return std::none_of(lanes.begin(), lanes.end(), [](const auto& l) { return l->in_flight; });
      });
      released.swap(owned);
    }
    {
      const std::lock_guard lock(mutex);  // a rebuild waiting to retry sees it at once
      for (auto& [partition, o] : released) o->cancelled = true;
    }
    wake.notify_all();
    for (auto& [partition, o] : released) {
      if (o->rebuilder.joinable()) o->rebuilder.join();
      drop_local(o->inbox);
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
          bool wake_committer = false;
          {
            const std::lock_guard lock(mutex);
            const auto it = owned.find(message->partition());
            if (it != owned.end()) {
              it->second->inbox.emplace_back(std::move(message));
              wake_committer = it->second->ready;
            }
          }
          if (wake_committer) wake.notify_all();
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

  // A partition far behind (e.g. still rebuilding) stops its fetching for a while.
  void apply_backpressure() {
    std::vector<std::pair<std::int32_t, bool>> changes;  // partition, pause
    {
      const std::lock_guard lock(mutex);
      for (const auto& [partition, o] : owned) {
        const auto backlog = o->inbox.size();
        const bool is_paused = paused.contains(partition);
        if (!is_paused && backlog > kPauseBacklog) changes.emplace_back(partition, true);
        if (is_paused && backlog < kResumeBacklog) changes.emplace_back(partition, false);
      }
    }
    for (const auto& [partition, pause] : changes) {
      std::unique_ptr<RdKafka::TopicPartition> tp(
          RdKafka::TopicPartition::create(options.kafka.commands_topic, partition));
      std::vector<RdKafka::TopicPartition*> list{tp.get()};
      if (pause) {
        consumer->pause(list);
        paused.insert(partition);
      } else {
        consumer->resume(list);
        paused.erase(partition);
      }
    }
  }

  // --- rebuilding a partition's state (one thread per partition) ---------------------------

  // Caller holds `mutex`; `o.rebuilder` has finished (or never ran).
  void start_rebuild(Owned& o) {
    o.ready = false;
    o.rebuilder = std::thread([this, &o] { rebuild_loop(o); });
  }

  void rebuild_loop(Owned& o) {
    core::Backoff retry(std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
    core::ConditionLog failing(log());
    while (!o.cancelled && running) {
      try {
        std::int64_t committed_offset = 0;
        std::int64_t events_end = 0;
        std::int64_t replayed = 0;
        auto store = rebuild(o, committed_offset, events_end, replayed);
        const std::lock_guard lock(mutex);
        if (o.cancelled || fenced) return;
        o.store = std::move(store);
        o.events_end = events_end;
        // A long replay is snapshotted at the partition's next commit, so that the next
        // takeover is short.
        o.events_since_snapshot = replayed;
        o.next_offset = std::max(o.next_offset, committed_offset);
        o.ready = true;
        o.status.aggregates = o.store->aggregate_count();
        o.status.commands = o.store->command_count();
        failing.cleared("partition rebuilt");
        wake.notify_all();
        return;
      } catch (const std::exception& e) {
        failing.failing("cannot rebuild the partition's state yet; retrying",
                        {{"partition", o.partition}, {"error", e.what()}});
      }
      std::unique_lock lock(mutex);
      wake.wait_for(lock, retry.next(), [&] { return o.cancelled || !running; });
    }
  }

  // The partition's latest usable snapshot, its remembered rejections and then the events after
  // the snapshot (read_committed), into a fresh store. First, no transaction that consumed from
  // this commands partition may still be open (a zombie's, from before the partition moved
  // here): the stable committed offset says so, and every event such a transaction appended is
  // in the log by then. Then each topic is read to its true high watermark, so a transaction
  // still open on it is waited for rather than read past. Events come last: they win over any
  // outcome of the same command id.
  std::unique_ptr<MemoryAggregateStore> rebuild(Owned& o, std::int64_t& committed_offset,
                                                std::int64_t& events_end, std::int64_t& replayed) {
    const auto started = Clock::now();
    const auto committed = admin.stable_committed_offset(
        options.commands.processor_group, options.kafka.commands_topic, o.partition,
        std::chrono::milliseconds(2 * kTransactionTimeoutMs),
        [&] { return o.cancelled || !running; });
    committed_offset = std::max<std::int64_t>(committed, 0);
    auto snapshot = load_snapshot(o);
    const std::int64_t from = snapshot ? snapshot->events_end : 0;
    auto store = snapshot ? std::move(snapshot->store) : std::make_unique<MemoryAggregateStore>();
    const auto rejections =
        read_partition(o, options.kafka.outcomes_topic, [&](RdKafka::Message& m) {
          auto reply = reply_from_json(core::kafka_payload(m));
          if (reply.outcome != ReplyOutcome::kRejected || !reply.rejection) return;
          store->record_command(
              Uuid::from(reply.command_id, "command_id"),
              AppliedCommand{digest(core::kafka_header(m, header::kRequestHash).value_or(""),
                                    reply.aggregate_id),
                             reply.version, -1, std::move(reply.rejection)});
        });
    const auto events = read_partition(
        o, options.kafka.events_topic,
        [&](RdKafka::Message& m) {
          const auto unread = fold(*store, event_from_json(core::kafka_payload(m)), m.offset(),
                                   core::kafka_header(m, header::kRequestHash).value_or(""));
          if (unread) note_unread(o, m.offset(), *unread);
        },
        from, &events_end);
    replayed = events;
    metrics.rebuilt_events.Increment(static_cast<double>(events));
    {
      const std::lock_guard lock(mutex);
      o.status.rebuilt_events += events;
    }
    log().info(
        "state rebuilt from the log",
        {{"partition", o.partition},
         {"events", events},
         {"from_snapshot", snapshot.has_value()},
         {"from_offset", from},
         {"remembered_rejections", rejections},
         {"aggregates", store->aggregate_count()},
         {"ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
    return store;
  }

  // An event the rebuild could not fold (fold() kept its version): counted, and logged once per
  // type and schema_version in this process, not once per event.
  void note_unread(const Owned& o, std::int64_t offset, const UnreadEvent& unread) {
    metrics.unread_events.Increment();
    {
      const std::lock_guard lock(mutex);
      if (!unread_logged.insert(unread.event).second) return;
    }
    log().write(
        unread.newer ? core::LogLevel::kWarn : core::LogLevel::kError,
        unread.newer
            ? "events this build cannot read: their aggregates keep the events' versions and "
              "refuse commands until every process runs a build that reads them; the partition "
              "is not snapshotted meanwhile (logged once per event type)"
            : "damaged events: this build knows their type and schema_version but their data "
              "does not fit; their aggregates keep the events' versions and refuse commands, and "
              "no upgrade reads them (logged once per event type)",
        {{"event", unread.event},
         {"partition", o.partition},
         {"offset", offset},
         {"error", unread.reason}});
  }

  struct LoadedSnapshot {
    std::unique_ptr<MemoryAggregateStore> store;
    std::int64_t events_end = 0;  // the events it covers end here
  };

  std::string snapshot_key(std::int32_t partition, std::string_view what) const {
    return std::to_string(partition) + "/" + std::string(what);
  }

  // The partition's latest complete snapshot: its manifest and the chunks written before it.
  // A snapshot that does not load (missing chunk, checksum, format) is skipped with a warning
  // and the whole log is replayed instead.
  std::optional<LoadedSnapshot> load_snapshot(const Owned& o) {
    std::map<std::string, std::string> chunks;   // as of the latest manifest
    std::map<std::string, std::string> pending;  // written after it (an unfinished snapshot)
    std::optional<std::string> manifest;
    const auto manifest_key = snapshot_key(o.partition, "manifest");
    read_partition(o, options.kafka.snapshots_topic, [&](RdKafka::Message& m) {
      auto key = core::kafka_key(m);
      if (key == manifest_key) {
        for (auto& [k, v] : pending) chunks.insert_or_assign(k, std::move(v));
        pending.clear();
        manifest = core::kafka_payload(m);
      } else if (key.starts_with(snapshot_key(o.partition, ""))) {
        pending.insert_or_assign(std::move(key), core::kafka_payload(m));
      }
    });
    if (!manifest) return std::nullopt;
    try {
      const auto m = snapshot_manifest_from_json(*manifest);
      if (m.format != kSnapshotFormat) {
        throw std::invalid_argument("format " + std::to_string(m.format) + " is not " +
                                    std::to_string(kSnapshotFormat));
      }
      std::string bytes;
      for (std::int64_t i = 0; i < m.chunks; ++i) {
        const auto it = chunks.find(snapshot_key(o.partition, std::to_string(i)));
        if (it == chunks.end())
          throw std::invalid_argument("chunk " + std::to_string(i) + " missing");
        bytes += it->second;
      }
      if (core::sha256_hex(bytes) != m.sha256) throw std::invalid_argument("checksum mismatch");
      LoadedSnapshot loaded{decode_snapshot(bytes), m.events_end};
      metrics.snapshots_loaded.Increment();
      return loaded;
    } catch (const std::exception& e) {
      metrics.snapshots_invalid.Increment();
      log().warn("snapshot not usable; replaying the partition's whole log instead",
                 {{"partition", o.partition}, {"error", e.what()}});
      return std::nullopt;
    }
  }

  // Committer thread, right after a commit: the store holds exactly the committed decisions up
  // to `events_end`. Chunks first, then the manifest naming them; written without a transaction
  // (a snapshot is derived data: one that is cut short fails its checksum and is not used).
  void write_snapshot(Lane& l, Owned& o) {
    const auto started = Clock::now();
    if (!l.snapshots_producer) {
      auto conf = core::kafka_producer_conf(options.kafka, {{"enable.idempotence", "true"},
                                                            {"acks", "all"},
                                                            {"linger.ms", "5"},
                                                            {"message.max.bytes", "1000000"}});
      std::string err;
      l.snapshots_producer.reset(RdKafka::Producer::create(conf.get(), err));
      if (!l.snapshots_producer)
        throw core::KafkaError("snapshot producer: " + err, true, false, false);
    }
    const auto bytes = encode_snapshot(*o.store);
    constexpr std::size_t kChunk = 512 * 1024;
    SnapshotManifest m;
    m.format = kSnapshotFormat;
    m.chunks = static_cast<std::int64_t>((bytes.size() + kChunk - 1) / kChunk);
    m.bytes = static_cast<std::int64_t>(bytes.size());
    m.sha256 = core::sha256_hex(bytes);
    m.events_end = o.events_end;
    m.aggregates = static_cast<std::int64_t>(o.store->aggregate_count());
    m.commands = static_cast<std::int64_t>(o.store->command_count());
    const auto produce = [&](const std::string& key, std::string_view value) {
      for (int tries = 0;; ++tries) {
        const auto rc = core::kafka_produce(*l.snapshots_producer, options.kafka.snapshots_topic,
                                            o.partition, key, value, {});
        if (rc == RdKafka::ERR_NO_ERROR) return;
        if (rc != RdKafka::ERR__QUEUE_FULL || tries > 100) {
          throw core::KafkaError("produce snapshot: " + RdKafka::err2str(rc), true, false, false);
        }
        l.snapshots_producer->poll(10);
      }
    };
    for (std::int64_t i = 0; i < m.chunks; ++i) {
      produce(snapshot_key(o.partition, std::to_string(i)),
              std::string_view(bytes).substr(static_cast<std::size_t>(i) * kChunk, kChunk));
    }
    produce(snapshot_key(o.partition, "manifest"), to_json(m));
    l.snapshots_producer->poll(0);
    metrics.snapshots_written.Increment();
    log().info(
        "snapshot written",
        {{"partition", o.partition},
         {"events_end", m.events_end},
         {"aggregates", m.aggregates},
         {"bytes", m.bytes},
         {"ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
  }

  std::int64_t high_watermark(const std::string& topic, std::int32_t partition) {
    return watermarks->query(topic, partition, options.kafka.request_timeout_ms);
  }

  // Hands every committed record of the partition of `topic` to `apply`, from the start until
  // the reader's end of partition reaches the high watermark (a read_committed reader stops
  // before an open transaction: it waits until that one is committed or aborted). Returns how
  // many were applied. A record `apply` cannot take is logged and skipped.
  // `from`: the first offset to read; `end` (if given) is set to the offset reading ended at.
  std::int64_t read_partition(const Owned& o, const std::string& topic,
                              const std::function<void(RdKafka::Message&)>& apply,
                              std::int64_t from = 0, std::int64_t* end = nullptr) {
    auto conf = core::kafka_conf(options.kafka,
                                 {{"group.id", options.commands.processor_group + "-rebuild"},
                                  {"enable.auto.commit", "false"},
                                  {"enable.partition.eof", "true"},
                                  {"isolation.level", "read_committed"},
                                  {"fetch.wait.max.ms", "50"},
                                  {"fetch.max.bytes", "52428800"}});
    std::string err;
    std::unique_ptr<RdKafka::KafkaConsumer> reader(RdKafka::KafkaConsumer::create(conf.get(), err));
    if (!reader) throw core::KafkaError("rebuild consumer: " + err, false, false, false);
    auto high = high_watermark(topic, o.partition);
    if (end != nullptr) *end = std::max(high, from);
    std::int64_t applied = 0;
    if (high <= from) return applied;  // nothing (more) to read
    core::ConditionLog read_errors(log());
    std::unique_ptr<RdKafka::TopicPartition> tp(RdKafka::TopicPartition::create(
        topic, o.partition, from > 0 ? from : RdKafka::Topic::OFFSET_BEGINNING));
    reader->assign({tp.get()});
    while (!o.cancelled && running) {
      const MessagePtr message(reader->consume(200));
      if (message->err() == RdKafka::ERR__PARTITION_EOF) {
        if (message->offset() >= high) break;
        continue;  // an open transaction ahead: its end moves the reader on
      }
      if (message->err() == RdKafka::ERR__TIMED_OUT) continue;
      if (message->err() != RdKafka::ERR_NO_ERROR) {
        read_errors.failing(
            "rebuild read error (logged once until records arrive again)",
            {{"topic", topic}, {"partition", o.partition}, {"error", message->errstr()}});
        continue;
      }
      read_errors.cleared("rebuild reads again");
      try {
        apply(*message);
        ++applied;
      } catch (const std::exception& e) {
        log().error("unreadable record skipped while rebuilding", {{"topic", topic},
                                                                   {"partition", o.partition},
                                                                   {"offset", message->offset()},
                                                                   {"error", e.what()}});
      }
    }
    reader->close();
    if (o.cancelled || !running) throw std::runtime_error("rebuild cancelled");
    return applied;
  }

  // --- deciding and committing (the committer thread) --------------------------------------

  void commit_loop(Lane& l) {
    while (running) {
      try {
        if (!l.producer && !init_producer(l)) break;
        if (l.reply_partitions == 0) learn_partition_counts(l);
        l.committer_failing.cleared("committer recovered");
        for (;;) {
          auto batch = take_batch(l);
          if (batch.empty()) {
            if (!running || is_fenced()) break;
            continue;
          }
          run_batch(l, batch);
        }
        if (is_fenced()) break;  // another lane was fenced: this processor decides nothing more
      } catch (const core::KafkaError& e) {
        if (e.is_fatal()) {
          mark_fenced(l, e.what());
          break;
        }
        l.committer_failing.failing(
            "committer failed; starting over (logged once until it recovers)",
            {{"error", e.what()}});
      } catch (const std::exception& e) {
        l.committer_failing.failing(
            "committer failed; starting over (logged once until it recovers)",
            {{"error", e.what()}});
      }
      pause_before_retry(l);
    }
    if (l.producer) l.producer->flush(1000);
    if (l.snapshots_producer) l.snapshots_producer->flush(5000);
  }

  bool is_fenced() const {
    const std::lock_guard lock(mutex);
    return fenced;
  }

  void pause_before_retry(Lane& l) {
    std::unique_lock lock(mutex);
    wake.wait_for(lock, l.backoff.next(), [&] { return !running.load(); });
  }

  // Creates the producer and claims the transactional id (an earlier producer with the same id
  // is fenced and its open transaction aborted); retries while the broker is away.
  bool init_producer(Lane& l) {
    auto conf = core::kafka_producer_conf(
        options.kafka, {{"transactional.id", l.transactional_id},
                        {"transaction.timeout.ms", std::to_string(kTransactionTimeoutMs)},
                        {"message.timeout.ms", std::to_string(kCallTimeoutMs)},
                        {"linger.ms", "0"},
                        // The broker answers CONCURRENT_TRANSACTIONS for a moment after each
                        // commit; the default 100 ms backoff would add that to every batch.
                        {"retry.backoff.ms", "10"},
                        {"partitioner", "murmur2_random"}});
    std::string err;
    if (conf->set("dr_cb", &l.deliveries, err) != RdKafka::Conf::CONF_OK) {
      throw std::runtime_error(err);
    }
    l.producer.reset(RdKafka::Producer::create(conf.get(), err));
    if (!l.producer) throw core::KafkaError("producer: " + err, false, true, false);
    while (running) {
      try {
        core::kafka_check(l.producer->init_transactions(5000), "init_transactions");
        l.claim_failing.cleared("transactional id claimed");
        return true;
      } catch (const core::KafkaError& e) {
        if (e.is_fatal()) throw;
        l.claim_failing.failing("cannot claim the transactional id yet, retrying",
                                {{"transactional_id", l.transactional_id}, {"error", e.what()}});
        pause_before_retry(l);
      }
    }
    return false;
  }

  // The API's shorter path: queues `command` for its partition when this processor owns it.
  bool try_submit(const CommandEnvelope& command, LocalDecider::Done done) {
    const int partitions = commands_partitions.load();
    if (partitions <= 0 || !running) return false;
    const auto partition = core::kafka_key_partition(command.aggregate_id, partitions);
    {
      const std::lock_guard lock(mutex);
      if (holding || fenced) return false;
      const auto it = owned.find(partition);
      if (it == owned.end() || it->second->inbox.size() >= kPauseBacklog) return false;
      it->second->inbox.emplace_back(LocalCommand{command, std::move(done)});
      if (!it->second->ready) return true;
    }
    wake.notify_all();
    return true;
  }

  void learn_partition_counts(Lane& l) {
    const std::chrono::milliseconds timeout(options.kafka.request_timeout_ms);
    core::kafka_partition_count(*l.producer, options.kafka.events_topic, timeout);
    l.dead_letter_partitions =
        core::kafka_partition_count(*l.producer, options.kafka.dead_letters_topic, timeout);
    const int outcomes =
        core::kafka_partition_count(*l.producer, options.kafka.outcomes_topic, timeout);
    const int commands =
        core::kafka_partition_count(*l.producer, options.kafka.commands_topic, timeout);
    commands_partitions = commands;
    const int snapshots =
        core::kafka_partition_count(*l.producer, options.kafka.snapshots_topic, timeout);
    if (outcomes < commands || snapshots < commands) {
      throw std::runtime_error(
          "the outcomes or snapshots topic has fewer partitions than the commands topic; "
          "run `cauce topics create`");
    }
    l.reply_partitions =
        core::kafka_partition_count(*l.producer, options.kafka.replies_topic, timeout);
  }

  // Waits for commands of ready partitions, lingers (commands.linger_ms) so that the batch can
  // fill, and takes up to batch_max of them (whole queues, partitions in turn). Empty when stopping
  // or holding for a revocation.
  std::vector<Slice> take_batch(Lane& l) {
    const auto max = static_cast<std::size_t>(options.commands.batch_max);
    std::unique_lock lock(mutex);
    const auto mine = [&](const Owned& o) {
      return static_cast<std::size_t>(o.partition) % lanes.size() == l.index;
    };
    const auto queued = [&] {
      std::size_t n = 0;
      for (const auto& [p, o] : owned) n += o->ready && mine(*o) ? o->inbox.size() : 0;
      return n;
    };
    const auto stop = [&] { return !running || holding || fenced; };
    wake.wait_for(lock, std::chrono::milliseconds(100),
                  [&] { return !running || fenced || (!holding && queued() > 0); });
    if (stop() || queued() == 0) return {};
    if (options.commands.linger_ms > 0 && queued() < max) {
      wake.wait_for(lock, std::chrono::milliseconds(options.commands.linger_ms),
                    [&] { return stop() || queued() >= max; });
      if (stop()) return {};
    }
    std::vector<Slice> batch;
    std::size_t taken = 0;
    std::vector<Owned*> order;
    for (const auto& [p, o] : owned) {
      if (mine(*o)) order.push_back(o.get());
    }
    l.next_start = order.empty() ? 0 : (l.next_start + 1) % order.size();
    for (std::size_t i = 0; i < order.size() && taken < max; ++i) {
      Owned* o = order[(l.next_start + i) % order.size()];
      if (!o->ready || o->inbox.empty()) continue;
      Slice& slice = batch.emplace_back();
      slice.owned = o;
      slice.next_offset = o->next_offset;
      while (!o->inbox.empty() && taken < max) {
        if (const auto* record = std::get_if<MessagePtr>(&o->inbox.front())) {
          slice.next_offset = (*record)->offset() + 1;
        }
        slice.items.push_back(std::move(o->inbox.front()));
        o->inbox.pop_front();
        ++taken;
      }
    }
    l.in_flight = !batch.empty();
    return batch;
  }

  // Decides and commits one batch. On a failure the transaction is aborted, the batch's
  // commands go back to the front of their queues and their partitions are rebuilt from the
  // log (their in-memory state saw decisions that were never committed): decided again later,
  // never skipped, never acknowledged twice.
  void run_batch(Lane& l, std::vector<Slice>& batch) {
    const auto started = Clock::now();
    std::vector<Decided> decided;
    try {
      decided = process(l, batch);
    } catch (const std::exception& e) {
      metrics.aborted.Increment();
      const auto* kafka_error = dynamic_cast<const core::KafkaError*>(&e);
      const bool fatal = kafka_error != nullptr && kafka_error->is_fatal();
      log().warn("transaction failed; aborting, rebuilding its partitions and deciding again",
                 {{"partitions", batch.size()}, {"error", e.what()}});
      if (fatal && stable_id) {
        // Possibly another process started with the same instance id: do not fence it back.
        finish_batch(l, nullptr, &batch);
        throw;
      }
      if (fatal) {
        // The id is this start's own, so no other process holds it: the broker bumped the
        // epoch (e.g. a transaction that outlived its timeout). A new producer claims it again.
        l.producer.reset();
        l.reply_partitions = 0;
      } else {
        abort_open_transaction(l);
      }
      finish_batch(l, nullptr, &batch);
      pause_before_retry(l);
      if (!l.producer) throw std::runtime_error("the producer starts over");
      return;
    }
    l.backoff.reset();
    after_commit(l, batch, decided, started);  // before finish_batch: the partitions stay owned
    finish_batch(l, &batch, nullptr);
  }

  // Ends the batch in flight: `done` committed, or `failed`: its commands are queued again and
  // its partitions rebuilt.
  void finish_batch(Lane& l, std::vector<Slice>* done, std::vector<Slice>* failed) {
    std::vector<Owned*> rebuild_these;
    std::deque<Item> unanswered;  // local commands of a failed batch once fenced
    {
      const std::lock_guard lock(mutex);
      if (failed == nullptr) {
        for (auto& slice : *done) slice.owned->next_offset = slice.next_offset;
      } else if (fenced) {
        // Another lane was fenced meanwhile: nothing here is decided any more, so the local
        // commands are answered now (503) instead of waiting in a queue nobody takes.
        for (auto& slice : *failed) {
          for (auto& item : slice.items) unanswered.push_back(std::move(item));
        }
      } else {
        for (auto& slice : *failed) {
          auto& inbox = slice.owned->inbox;
          for (auto it = slice.items.rbegin(); it != slice.items.rend(); ++it) {
            inbox.push_front(std::move(*it));
          }
          slice.owned->ready = false;
          rebuild_these.push_back(slice.owned);
        }
      }
    }
    drop_local(unanswered);
    for (Owned* o : rebuild_these) {
      if (o->rebuilder.joinable()) o->rebuilder.join();  // finished: the partition was ready
    }
    const std::lock_guard lock(mutex);
    for (Owned* o : rebuild_these) {
      if (!o->cancelled && !holding && !fenced) start_rebuild(*o);
    }
    l.in_flight = false;
    wake.notify_all();
  }

  struct Decided {
    Owned* owned = nullptr;
    std::optional<CommandEnvelope> command;  // nullopt: the record was not a command
    std::optional<ReplyTo> reply_to;         // a record's reply goes to the replies topic
    LocalDecider::Done* local = nullptr;     // a local command's reply goes here
    Outcome outcome;
    std::size_t first_slot = 0;
    std::size_t slots = 0;
    std::string position;
  };

  std::vector<Decided> process(Lane& l, std::vector<Slice>& batch) {
    core::kafka_check(l.producer->begin_transaction(), "begin_transaction");
    l.deliveries.begin_batch();
    l.parked_in_batch = 0;
    std::vector<Decided> decided;
    std::size_t commands = 0;
    for (auto& slice : batch) {
      for (auto& item : slice.items) {
        if (auto* record = std::get_if<MessagePtr>(&item)) {
          decided.push_back(decide_record(l, *slice.owned, **record));
        } else {
          auto& local = std::get<LocalCommand>(item);
          decided.push_back(decide_command(l, *slice.owned, local.command));
          decided.back().local = &local.done;
        }
      }
      commands += slice.items.size();
    }

    // The consumed commands' offsets join the transaction while the events are in flight
    // (round trips to the coordinators that overlap the events' delivery).
    std::vector<std::unique_ptr<RdKafka::TopicPartition>> owned_offsets;
    std::vector<RdKafka::TopicPartition*> offsets;
    // A slice of local commands only sends the partition's offset again: the broker still
    // checks the group generation, so a processor that lost the partition appends nothing.
    for (const auto& slice : batch) {
      owned_offsets.emplace_back(RdKafka::TopicPartition::create(
          options.kafka.commands_topic, slice.owned->partition, slice.next_offset));
      offsets.push_back(owned_offsets.back().get());
    }
    std::unique_ptr<RdKafka::ConsumerGroupMetadata> group(consumer->groupMetadata());
    core::kafka_check(l.producer->send_offsets_to_transaction(offsets, group.get(), kCallTimeoutMs),
                      "send_offsets_to_transaction");

    // Offsets of the events, for the position tokens in the replies.
    if (l.deliveries.size() > 0) {
      l.producer->flush(kCallTimeoutMs);
      for (std::size_t i = 0; i < l.deliveries.size(); ++i) {
        const auto& slot = l.deliveries[i];
        if (slot.error != RdKafka::ERR_NO_ERROR) {
          throw core::KafkaError(
              std::string("event not delivered: ") + RdKafka::err2str(slot.error), true,
              slot.error == RdKafka::ERR__FENCED, true);
        }
      }
    }
    for (auto& d : decided) {
      if (d.slots > 0) {
        d.position =
            position_token(d.owned->partition, l.deliveries[d.first_slot + d.slots - 1].offset);
        d.owned->store->record_command(
            Uuid::from(d.command->command_id, "command_id"),
            remembered(*d.command, d.outcome, l.deliveries[d.first_slot + d.slots - 1].offset));
      }
      if (d.local == nullptr) send_reply(l, d);
    }

    commit(l);
    return decided;
  }

  // A commit that fails with a retriable error (a timeout, say) may have landed: it is asked
  // again rather than aborted (librdkafka answers the outcome once it knows it).
  void commit(Lane& l) {
    if (options.before_commit) options.before_commit();
    for (int attempt = 1;; ++attempt) {
      try {
        core::kafka_check(l.producer->commit_transaction(kCallTimeoutMs), "commit_transaction");
        return;
      } catch (const core::KafkaError& e) {
        if (e.is_fatal() || e.requires_abort() || !e.is_retryable() || attempt >= 5) throw;
        log().warn("commit outcome unknown; asking again",
                   {{"attempt", attempt}, {"error", e.what()}});
      }
    }
  }

  // After the commit: answers, metrics, snapshots. Nothing here may throw or requeue: the batch
  // is decided for good.
  void after_commit(Lane& l, std::vector<Slice>& batch, std::vector<Decided>& decided,
                    Clock::time_point started) noexcept {
    std::size_t commands = 0;
    for (const auto& slice : batch) commands += slice.items.size();
    for (auto& d : decided) {
      if (d.local == nullptr) continue;
      try {
        (*d.local)(make_reply(d));
      } catch (const std::exception& e) {
        log().error("answering a local command failed", {{"error", e.what()}});
      }
    }

    metrics.committed.Increment();
    metrics.dead_letters.Increment(static_cast<double>(l.parked_in_batch));
    metrics.batch_commands.Observe(static_cast<double>(commands));
    metrics.transaction_seconds.Observe(
        std::chrono::duration<double>(Clock::now() - started).count());
    for (const auto& d : decided) {
      metrics.commands
          .Add({{"type", metric_type(d.command ? d.command->type : "")},
                {"outcome", outcome_name(d.outcome.kind)}})
          .Increment();
      if (d.slots == 0) continue;
      log().debug("command appended", {{"command_id", d.command->command_id},
                                       {"events", d.slots},
                                       {"position", d.position},
                                       {"trace_id", d.command->trace_parent.trace_id()},
                                       {"span_id", d.command->trace_parent.span_id()}});
      for (const auto& e : d.outcome.events) {
        metrics.events.Add({{"type", e.type}}).Increment();  // our aggregates' types: bounded
      }
    }
    for (const auto& d : decided) {
      if (d.slots == 0) continue;
      d.owned->events_end =
          std::max(d.owned->events_end, l.deliveries[d.first_slot + d.slots - 1].offset + 1);
      d.owned->events_since_snapshot += static_cast<std::int64_t>(d.slots);
    }
    const auto every = options.commands.snapshot_every_events;
    for (const auto& slice : batch) {
      Owned& o = *slice.owned;
      if (every <= 0 || o.events_since_snapshot < every) continue;
      // A snapshot would hide unread events from the build that can read them: it must fold
      // them from the log.
      if (o.store->unread_events() > 0) continue;
      o.events_since_snapshot = 0;
      try {
        write_snapshot(l, o);
        l.snapshot_failing.cleared("snapshots are written again");
      } catch (const std::exception& e) {
        l.snapshot_failing.failing("snapshot not written (the next owner replays more)",
                                   {{"partition", o.partition}, {"error", e.what()}});
      }
    }
    const std::lock_guard lock(mutex);
    for (const auto& slice : batch) {
      slice.owned->status.aggregates = slice.owned->store->aggregate_count();
      slice.owned->status.commands = slice.owned->store->command_count();
    }
  }

  // Aborts the open transaction if there is one; a failed abort starts the producer over.
  void abort_open_transaction(Lane& l) {
    if (!l.producer) return;
    try {
      core::kafka_check(l.producer->abort_transaction(kCallTimeoutMs), "abort_transaction");
    } catch (const core::KafkaError& abort_error) {
      log().warn("abort failed; starting the producer over", {{"error", abort_error.what()}});
      l.producer.reset();
      l.reply_partitions = 0;
    }
  }

  Decided decide_record(Lane& l, Owned& o, RdKafka::Message& message) {
    std::optional<CommandEnvelope> command;
    try {
      command = command_from_json(core::kafka_payload(message));
      l.foreign_records.cleared("commands decode again");
    } catch (const std::exception& e) {
      // A foreign producer's record: rejected (with a reply where it names one), parked,
      // committed past; never a crash or a stall; logged once per run of such records.
      l.foreign_records.failing(
          "not a command; rejected and parked on the dead-letters topic",
          {{"partition", o.partition}, {"offset", message.offset()}, {"error", e.what()}});
      park(l, o, message, e.what());
      Decided d;
      d.owned = &o;
      d.reply_to = reply_to(message, l.reply_partitions, l.bad_reply_partition);
      d.outcome.kind = ReplyOutcome::kRejected;
      d.outcome.rejection = Rejection{"invalid", "body", "not a valid command envelope"};
      return d;
    }
    auto d = decide_command(l, o, *command);
    d.reply_to = reply_to(message, l.reply_partitions, l.bad_reply_partition);
    return d;
  }

  // Decides one command against its partition's state; its events, remembered rejection and
  // state join the open transaction.
  Decided decide_command(Lane& l, Owned& o, const CommandEnvelope& command) {
    Decided d;
    d.owned = &o;
    d.command = command;
    // Decided in a span of its own, a child of the sender's (a new trace when it sent none):
    // the span its events carry.
    d.command->trace_parent = command.trace_parent.child();
    auto& store = *o.store;
    d.outcome = decide(store, *d.command);
    log().debug("command decided", {{"command_id", command.command_id},
                                    {"type", command.type},
                                    {"outcome", outcome_name(d.outcome.kind)},
                                    {"events", d.outcome.events.size()},
                                    {"partition", o.partition},
                                    {"trace_id", d.command->trace_parent.trace_id()},
                                    {"span_id", d.command->trace_parent.span_id()}});
    if (remembers_rejection(*d.command, d.outcome)) {
      remember_rejection(l, d);
      // At once, so that a repeat later in this batch answers the same.
      record(store, *d.command, d.outcome);
    }
    if (d.outcome.kind == ReplyOutcome::kApplied && !d.outcome.events.empty()) {
      d.first_slot = l.deliveries.size();
      d.slots = d.outcome.events.size();
      append_events(l, o, *d.command, d.outcome);
      // Remembered at once, so that a repeat later in this batch is a duplicate.
      record(store, *d.command, d.outcome);
    }
    return d;
  }

  static void check_produced(RdKafka::ErrorCode rc, const char* what) {
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::KafkaError(std::string(what) + ": " + RdKafka::err2str(rc), true,
                             rc == RdKafka::ERR__FENCED || rc == RdKafka::ERR__FATAL, true);
    }
  }

  void append_events(Lane& l, const Owned& o, const CommandEnvelope& command,
                     const Outcome& outcome) {
    for (const auto& envelope : event_envelopes(command, outcome)) {
      check_produced(
          core::kafka_produce(*l.producer, options.kafka.events_topic, o.partition,
                              command.aggregate_id, to_json(envelope),
                              {{header::kType, envelope.type},
                               {header::kAggregateType, envelope.aggregate_type},
                               {header::kAggregateId, envelope.aggregate_id},
                               {header::kEventId, envelope.event_id},
                               {header::kCommandId, envelope.command_id},
                               {header::kRequestHash, command.request_hash},
                               {header::kTraceParent, std::string(envelope.trace_parent.text())}},
                              l.deliveries.track()),
          "produce event");
    }
  }

  // The rejection joins the transaction on the outcomes topic (key = command id, the
  // command's partition), where rebuild() finds it again.
  // The stored value is the reply the command gets, so a retry is answered from it as is.
  void remember_rejection(Lane& l, const Decided& d) {
    const auto& command = *d.command;
    check_produced(
        core::kafka_produce(*l.producer, options.kafka.outcomes_topic, d.owned->partition,
                            command.command_id, to_json(make_reply(d)),
                            {{header::kCommandId, command.command_id},
                             {header::kRequestHash, command.request_hash}}),
        "produce outcome");
  }

  // A record that is not a command goes, as it came (key, value, headers) plus where it came
  // from and why, to the dead-letters topic in the same transaction that commits past it.
  void park(Lane& l, const Owned& o, RdKafka::Message& message, const std::string& error) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (const auto* original = message.headers()) {
      for (const auto& h : original->get_all()) {
        headers.emplace_back(h.key(),
                             std::string(static_cast<const char*>(h.value()), h.value_size()));
      }
    }
    headers.emplace_back(header::kDeadLetterSource, options.kafka.commands_topic + ":" +
                                                        std::to_string(o.partition) + ":" +
                                                        std::to_string(message.offset()));
    headers.emplace_back(header::kDeadLetterError, error.substr(0, 1000));
    // Capped, so that a record near the broker's size limit (plus these headers) still fits:
    // a dead letter that cannot be written would stall every partition of the batch.
    constexpr std::size_t kMaxParked = 256 * 1024;
    auto value = core::kafka_payload(message);
    if (value.size() > kMaxParked) {
      headers.emplace_back("dead_letter_truncated_from", std::to_string(value.size()));
      value.resize(kMaxParked);
    }
    auto key = core::kafka_key(message);
    if (key.size() > 1024) key.resize(1024);
    check_produced(core::kafka_produce(*l.producer, options.kafka.dead_letters_topic,
                                       o.partition % l.dead_letter_partitions, key, value, headers),
                   "produce dead letter");
    ++l.parked_in_batch;
  }

  static Reply make_reply(const Decided& d) {
    Reply reply;
    reply.outcome = d.outcome.kind;
    reply.version = d.outcome.version;
    reply.call_id = d.outcome.call_id;
    reply.claimed_until = d.outcome.claimed_until;
    reply.rejection = d.outcome.rejection;
    if (d.command) {
      reply.command_id = d.command->command_id;
      reply.aggregate_id = d.command->aggregate_id;
    }
    if (d.outcome.kind == ReplyOutcome::kApplied) reply.position = d.position;
    if (d.outcome.original) {
      // A repeat answers what the first decision answered.
      if (d.outcome.original->offset >= 0) {
        reply.position = position_token(d.owned->partition, d.outcome.original->offset);
      }
      reply.replayed = d.outcome.kind == ReplyOutcome::kRejected;
    }
    return reply;
  }

  void send_reply(Lane& l, const Decided& d) {
    if (!d.reply_to) return;
    const auto reply = make_reply(d);
    check_produced(core::kafka_produce(*l.producer, options.kafka.replies_topic,
                                       d.reply_to->partition, reply.command_id, to_json(reply),
                                       {{header::kReplyInstance, d.reply_to->instance},
                                        {header::kReplyToken, d.reply_to->token},
                                        {header::kCommandId, reply.command_id}}),
                   "produce reply");
  }

  // Another producer holds this processor's transactional id: it decides nothing more, answers
  // what it holds with 503s and leaves the group so that its partitions move to a live member.
  void mark_fenced(const Lane& l, const std::string& error) {
    log().warn(
        "fenced: another processor holds this transactional id now; appending nothing more and "
        "leaving the group",
        {{"transactional_id", l.transactional_id}, {"error", error}});
    std::deque<Item> unanswered;
    {
      const std::lock_guard lock(mutex);
      fenced = true;
      for (auto& [p, o] : owned) {
        o->ready = false;
        for (auto& item : o->inbox) {
          if (std::holds_alternative<LocalCommand>(item)) unanswered.push_back(std::move(item));
        }
        std::erase_if(o->inbox,
                      [](const Item& item) { return std::holds_alternative<LocalCommand>(item); });
      }
    }
    wake.notify_all();
    drop_local(unanswered);
    if (options.static_partitions.empty()) consumer->unsubscribe();
  }
};

CommandProcessor::CommandProcessor(ProcessorOptions options, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

CommandProcessor::~CommandProcessor() { stop(); }

void CommandProcessor::start() {
  auto& o = impl_->options;
  // A stable instance id lets a restarted process abort its predecessor's open transaction at
  // once; without one, that transaction holds the partitions' rebuild until it times out.
  const auto instance = o.commands.instance_id.empty()
                            ? uuid_v7(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count())
                            : o.commands.instance_id;
  for (int k = 0; k < o.commands.transactions_in_flight; ++k) {
    auto& lane = impl_->lanes.emplace_back(std::make_unique<Lane>(static_cast<std::size_t>(k)));
    lane->transactional_id = o.commands.processor_group + "-" + o.kafka.commands_topic + "-" +
                             instance + "-" + std::to_string(k);
  }
  impl_->stable_id = !o.commands.instance_id.empty();
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
  impl_->watermarks =
      std::make_unique<HighWatermarks>([&kafka = o.kafka, group = o.commands.processor_group] {
        auto wm_conf = core::kafka_conf(kafka, {{"group.id", group + "-watermarks"},
                                                {"enable.auto.commit", "false"},
                                                {"isolation.level", "read_uncommitted"}});
        std::string wm_err;
        std::unique_ptr<RdKafka::KafkaConsumer> client(
            RdKafka::KafkaConsumer::create(wm_conf.get(), wm_err));
        if (!client) throw core::DependencyError("kafka", "watermarks client: " + wm_err, false);
        return client;
      });
  impl_->running = true;
  if (o.static_partitions.empty()) {
    const auto rc = impl_->consumer->subscribe({o.kafka.commands_topic});
    if (rc != RdKafka::ERR_NO_ERROR) {
      impl_->running = false;
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
  for (auto& lane : impl_->lanes) {
    lane->thread = std::thread([impl = impl_.get(), l = lane.get()] { impl->commit_loop(*l); });
  }
  impl_->poller = std::thread([impl = impl_.get()] { impl->poll_loop(); });
  log().info("processor started", {{"group", o.commands.processor_group},
                                   {"topic", o.kafka.commands_topic},
                                   {"transactional_id", impl_->lanes.front()->transactional_id},
                                   {"transactions_in_flight", impl_->lanes.size()},
                                   {"static_partitions", o.static_partitions.size()}});
}

void CommandProcessor::stop() {
  if (!impl_->running.exchange(false)) return;
  impl_->wake.notify_all();
  impl_->poller.join();
  for (auto& lane : impl_->lanes) lane->thread.join();  // each finishes or aborts its batch first
  impl_->release_all();
  impl_->consumer->close();
  impl_->consumer.reset();
  impl_->watermarks.reset();
  log().info("processor stopped");
}

bool CommandProcessor::has_assignment() const { return impl_->assignment_known; }

bool CommandProcessor::try_submit(const CommandEnvelope& command, Done done) {
  return impl_->try_submit(command, std::move(done));
}

std::vector<PartitionStatus> CommandProcessor::status() const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<PartitionStatus> out;
  for (const auto& [partition, o] : impl_->owned) {
    auto& s = out.emplace_back(o->status);
    s.ready = o->ready;
    s.fenced = impl_->fenced;
  }
  return out;
}

}  // namespace cauce::commands
