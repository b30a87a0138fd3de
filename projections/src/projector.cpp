#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <cauce/core/backoff.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/projector.hpp>

#include "pg_projection.hpp"

namespace cauce::projections {
namespace {

using Clock = std::chrono::steady_clock;
using MessagePtr = std::unique_ptr<RdKafka::Message>;

const core::Logger& log() {
  static const core::Logger logger("projector");
  return logger;
}

struct Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : events(prometheus::BuildCounter()
                   .Name("cauce_projection_events_total")
                   .Help("Records of the event topic seen by the projector, by outcome")
                   .Register(registry)),
        applied(events.Add({{"outcome", "applied"}})),
        redelivered(events.Add({{"outcome", "already_applied"}})),
        parked(events.Add({{"outcome", "parked"}})),
        open_parked(prometheus::BuildGauge()
                        .Name("cauce_parked_events")
                        .Help("Events this projection parked that wait for an operator "
                              "(cauce parked list)")
                        .Register(registry)
                        .Add({})),
        failures(prometheus::BuildCounter()
                     .Name("cauce_projection_failures_total")
                     .Help("Batches that did not reach PostgreSQL (retried from the checkpoint)")
                     .Register(registry)
                     .Add({})),
        batch_seconds(
            prometheus::BuildHistogram()
                .Name("cauce_projection_batch_duration_seconds")
                .Help("One batch's PostgreSQL transaction, from begin to commit")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02,
                                                                 0.05, 0.1, 0.2, 0.5, 1, 2, 5})),
        lag(prometheus::BuildGauge()
                .Name("cauce_projection_lag_events")
                .Help("Records of the event topic not projected yet, by partition this process "
                      "owns")
                .Register(registry)),
        replay_progress(prometheus::BuildGauge()
                            .Name("cauce_replay_progress_ratio")
                            .Help("Progress of the read-model replay being built (0 to 1; 0 when "
                                  "none is)")
                            .Register(registry)
                            .Add({})) {}

  prometheus::Family<prometheus::Counter>& events;
  prometheus::Counter& applied;
  prometheus::Counter& redelivered;
  prometheus::Counter& parked;
  prometheus::Gauge& open_parked;
  prometheus::Counter& failures;
  prometheus::Histogram& batch_seconds;
  prometheus::Family<prometheus::Gauge>& lag;
  prometheus::Gauge& replay_progress;
};

struct TopicPartitions {
  std::vector<std::unique_ptr<RdKafka::TopicPartition>> owned;
  std::vector<RdKafka::TopicPartition*> list;
  void add(const std::string& topic, std::int32_t partition, std::int64_t offset) {
    owned.emplace_back(RdKafka::TopicPartition::create(topic, partition, offset));
    list.push_back(owned.back().get());
  }
};

}  // namespace

struct Projector::Impl final : public RdKafka::RebalanceCb {
  Impl(ProjectorOptions o, prometheus::Registry& registry)
      : options(std::move(o)),
        metrics(registry),
        pg(core::postgres_conninfo(options.postgres), options.projections.name,
           options.kafka.events_topic, options.schema),
        reader_pg(core::postgres_conninfo(options.postgres), options.projections.name,
                  options.kafka.events_topic, options.schema) {}

  ProjectorOptions options;
  Metrics metrics;
  PgProjection pg;         // applier thread only: the batches
  PgProjection reader_pg;  // reader thread only: checkpoints at assignment, counts, pruning
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::atomic<bool> running{false};
  std::thread thread;   // the reader: consumes, decodes, hands batches to the applier
  std::thread applier;  // applies them to PostgreSQL, one transaction each, in order

  // Reader thread only.
  std::set<std::int32_t> assigned;
  std::map<std::int32_t, std::int64_t> next_offset;  // as committed to PostgreSQL
  std::map<std::int32_t, std::int64_t> end_seen;     // partition EOF offsets already applied
  bool resync_needed = false;
  std::map<std::int32_t, prometheus::Gauge*> lag_gauges;  // cauce_projection_lag_events
  core::ConditionLog postgres_down{log()};
  core::ConditionLog consumer_failing{log()};
  core::ConditionLog parking{log()};  // records parked one after another: logged once
  core::Backoff backoff{std::chrono::milliseconds(100), std::chrono::milliseconds(5000)};

  // Applier thread only.
  std::set<std::string> unprojected_warned;  // each type is logged once
  core::ConditionLog batch_failing{log()};

  mutable std::mutex status_mutex;
  ProjectionStatus published;

  // Checkpoints from PostgreSQL, retried until it answers or the projector stops.
  std::optional<std::map<std::int32_t, std::int64_t>> checkpoints_for(
      const std::vector<std::int32_t>& partitions, bool wait) {
    for (;;) {
      try {
        auto checkpoints = reader_pg.load_checkpoints(partitions);
        set_postgres_ok(true);
        return checkpoints;
      } catch (const std::exception& e) {
        set_postgres_ok(false);
        postgres_down.failing("PostgreSQL does not answer; projection paused, retrying",
                              {{"error", e.what()}});
        if (!wait || !running) return std::nullopt;
        std::this_thread::sleep_for(backoff.next());
      }
    }
  }

  // Drops the batches queued for the applier: what they hold is read again.
  void new_generation() {
    const std::lock_guard lock(pipe_mutex);
    ++generation;
    queued.clear();
    pipe_changed.notify_all();
  }

  // Assigns `partitions` at their stored checkpoints (fresh partitions start at 0). A batch the
  // applier is still applying may move a checkpoint past what is read here: its records are
  // then read again and skipped as already applied.
  bool assign_at_checkpoints(const std::vector<std::int32_t>& partitions, bool wait) {
    const auto checkpoints = checkpoints_for(partitions, wait);
    if (!checkpoints) return false;
    new_generation();
    TopicPartitions tps;
    for (const auto& [partition, offset] : *checkpoints) {
      tps.add(options.kafka.events_topic, partition, offset);
      next_offset[partition] = offset;
    }
    consumer->assign(tps.list);
    consumer->resume(tps.list);
    assigned = {partitions.begin(), partitions.end()};
    log().info("partitions assigned at their checkpoints", {{"partitions", partitions.size()}});
    return true;
  }

  void rebalance_cb(RdKafka::KafkaConsumer* c, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override {
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      std::vector<std::int32_t> ids;
      for (const auto* tp : partitions) ids.push_back(tp->partition());
      if (!assign_at_checkpoints(ids, true)) c->assign(partitions);  // stopping
    } else {
      new_generation();
      c->unassign();
      assigned.clear();
      next_offset.clear();
      end_seen.clear();
    }
  }

  void set_postgres_ok(bool ok) {
    const std::lock_guard lock(status_mutex);
    published.postgres_ok = ok;
  }

  // What one poll took from the log, in the order consumed (offset order per partition):
  // decoded events and records to park, each numbered so a range of the batch keeps both.
  struct Batch {
    std::vector<LogRecord> records;
    std::vector<std::size_t> record_seq;
    std::vector<ParkedRecord> parked;
    std::vector<std::size_t> parked_seq;
    std::size_t size = 0;  // sequence numbers handed out
    std::map<std::int32_t, std::int64_t> eof;
    bool empty() const { return size == 0 && eof.empty(); }
  };

  static inline const std::map<std::int32_t, std::int64_t> kNoEnds;

  // What the applier did with one batch, for the reader (which owns the consumer).
  struct Applied {
    std::uint64_t generation = 0;
    bool ok = false;
    ApplyResult result;
    std::map<std::int32_t, std::int64_t> eof;
  };

  // The pipeline between the reader and the applier: while PostgreSQL applies batch N, the
  // reader consumes and decodes batch N+1. Batches carry the reader's generation, which moves on
  // at every (re)assignment and after a failed batch: the applier drops a batch of an older
  // generation and never applies one queued behind a batch that failed (its records follow
  // records that are not in PostgreSQL; the reader re-reads them from the checkpoints).
  static constexpr std::size_t kQueuedBatches = 2;
  std::mutex pipe_mutex;
  std::condition_variable pipe_changed;
  std::deque<std::pair<std::uint64_t, Batch>> queued;  // generation, batch
  std::deque<Applied> applied;
  std::uint64_t generation = 1;  // written by the reader only, under the mutex
  std::uint64_t failed_generation = 0;

  // Reads one batch; `read_in` is the generation its records belong to. A rebalance served
  // inside one of its polls moves the generation on: what was read before it belongs to the old
  // assignment (the new one restarts at the checkpoints, and the batches queued before it were
  // dropped), so it is dropped too and the batch goes on with what comes after.
  Batch collect(std::uint64_t& read_in) {
    Batch batch;
    read_in = generation;  // the reader alone writes it, so it reads it without the lock
    const auto max = static_cast<std::size_t>(options.projections.batch_max);
    int timeout_ms = 100;
    while (batch.size < max && running) {
      MessagePtr m(consumer->consume(timeout_ms));
      timeout_ms = 0;  // after the first record, take only what is already here
      if (generation != read_in) {
        batch = Batch{};
        read_in = generation;
      }
      if (m->err() == RdKafka::ERR__TIMED_OUT) break;
      if (m->err() == RdKafka::ERR__PARTITION_EOF) {
        if (assigned.contains(m->partition())) batch.eof[m->partition()] = m->offset();
        continue;
      }
      if (m->err() != RdKafka::ERR_NO_ERROR) {
        consumer_failing.failing("event consumer error", {{"error", m->errstr()}});
        break;
      }
      consumer_failing.cleared("event consumer reads again");
      if (!assigned.contains(m->partition())) continue;
      const auto value = core::kafka_payload(*m);
      try {
        batch.records.push_back(decode_record(m->partition(), m->offset(), value));
        batch.record_seq.push_back(batch.size++);
      } catch (const std::exception& e) {
        // Not a cauce event (a foreign producer), or a schema_version this build cannot upcast:
        // parked as read, so a retry after an upcaster lands can apply it.
        ParkedRecord p;
        p.partition = m->partition();
        p.offset = m->offset();
        p.value.assign(value);
        p.error = std::string("not a cauce event: ") + e.what();
        if (const auto key = core::kafka_key(*m); commands::is_uuid(key)) p.aggregate_id = key;
        batch.parked.push_back(std::move(p));
        batch.parked_seq.push_back(batch.size++);
      }
    }
    return batch;
  }

  // Sums what the sub-batches of one batch did.
  static void tally(ApplyResult& total, ApplyResult part) {
    total.applied += part.applied;
    total.already_applied += part.already_applied;
    total.parked += part.parked;
    if (!total.first_parked) total.first_parked = std::move(part.first_parked);
    for (const auto& [p, next] : part.checkpoints) {
      total.checkpoints[p] = std::max(total.checkpoints[p], next);
    }
    for (auto& t : part.unprojected_types) total.unprojected_types.push_back(std::move(t));
  }

  // Applies the part of `batch` numbered [from, to) in one transaction. When PostgreSQL refuses
  // the data (core::DataError), the record at fault is found by bisection and parked, and the
  // rest is applied around it: one bad event costs one parked event, never the projection.
  // Dependency failures are thrown (the caller resyncs from the checkpoints).
  void apply_isolating(Batch& batch, std::size_t from, std::size_t to, ApplyResult& total) {
    auto range = [from, to](const std::vector<std::size_t>& seq) {
      return std::pair(std::lower_bound(seq.begin(), seq.end(), from) - seq.begin(),
                       std::lower_bound(seq.begin(), seq.end(), to) - seq.begin());
    };
    const auto [rb, re] = range(batch.record_seq);
    const auto [pb, pe] = range(batch.parked_seq);
    const bool whole = rb == 0 && static_cast<std::size_t>(re) == batch.records.size() && pb == 0 &&
                       static_cast<std::size_t>(pe) == batch.parked.size();
    // The ends of partitions the batch reached go with its last part: the checkpoint then moves
    // past transaction markers too (nothing but markers lies between the last record and them).
    const auto& ends = to == batch.size ? batch.eof : kNoEnds;
    try {
      if (whole) {
        tally(total, pg.apply(batch.records, batch.parked, ends));
      } else {
        tally(total, pg.apply({batch.records.begin() + rb, batch.records.begin() + re},
                              {batch.parked.begin() + pb, batch.parked.begin() + pe}, ends));
      }
    } catch (const core::DataError& e) {
      const auto records = re - rb;
      if (records == 0) throw;  // parking itself refused: a bug; the caller backs off
      if (records > 1) {
        const auto middle = batch.record_seq[static_cast<std::size_t>(rb + records / 2)];
        apply_isolating(batch, from, middle, total);
        apply_isolating(batch, middle, to, total);
        return;
      }
      // The one record PostgreSQL refuses: park it and apply the range without it.
      const auto at = static_cast<std::size_t>(rb);
      const auto seq = batch.record_seq[at];
      auto parked = ParkedRecord::of(batch.records[at], e.what(), e.sqlstate());
      batch.records.erase(batch.records.begin() + rb);
      batch.record_seq.erase(batch.record_seq.begin() + rb);
      const auto slot = std::lower_bound(batch.parked_seq.begin(), batch.parked_seq.end(), seq);
      batch.parked.insert(batch.parked.begin() + (slot - batch.parked_seq.begin()),
                          std::move(parked));
      batch.parked_seq.insert(slot, seq);
      apply_isolating(batch, from, to, total);
    }
  }

  void pause_all() {
    TopicPartitions tps;
    for (const auto p : assigned)
      tps.add(options.kafka.events_topic, p, RdKafka::Topic::OFFSET_INVALID);
    if (!tps.list.empty()) consumer->pause(tps.list);
  }

  // Applier thread: one batch in one transaction (bisecting around data PostgreSQL refuses).
  Applied apply(std::uint64_t batch_generation, Batch& batch) {
    Applied out;
    out.generation = batch_generation;
    out.eof = batch.eof;
    const auto started = Clock::now();
    try {
      apply_isolating(batch, 0, batch.size, out.result);
      out.ok = true;
      const auto& result = out.result;
      metrics.batch_seconds.Observe(std::chrono::duration<double>(Clock::now() - started).count());
      metrics.applied.Increment(static_cast<double>(result.applied));
      metrics.redelivered.Increment(static_cast<double>(result.already_applied));
      metrics.parked.Increment(static_cast<double>(result.parked));
      for (const auto& type : result.unprojected_types) {
        if (unprojected_warned.insert(type).second) {
          log().warn("event type has no read model in this build (kept in events only)",
                     {{"type", type}});
        }
      }
      batch_failing.cleared("PostgreSQL answers again; projecting");
      const std::lock_guard lock(status_mutex);
      published.applied += result.applied;
      published.postgres_ok = true;
    } catch (const ReadModelMoved& e) {
      // Not a failure: the partitions are read again from the new generation's checkpoints.
      log().info("read models switched; projecting into the new generation",
                 {{"detail", e.what()}});
    } catch (const std::exception& e) {
      metrics.failures.Increment();
      set_postgres_ok(false);
      batch_failing.failing("batch not applied; partitions paused until PostgreSQL answers",
                            {{"events", batch.records.size()}, {"error", e.what()}});
    }
    return out;
  }

  void applier_loop() {
    for (;;) {
      std::pair<std::uint64_t, Batch> next;
      {
        std::unique_lock lock(pipe_mutex);
        pipe_changed.wait(lock, [&] { return !running || !queued.empty(); });
        if (!running) return;
        next = std::move(queued.front());
        queued.pop_front();
        pipe_changed.notify_all();  // room for the reader's next batch
        if (next.first != generation || next.first <= failed_generation) continue;
      }
      auto done = apply(next.first, next.second);
      const std::lock_guard lock(pipe_mutex);
      if (!done.ok) failed_generation = std::max(failed_generation, done.generation);
      applied.push_back(std::move(done));
      pipe_changed.notify_all();
    }
  }

  // Reader thread: hands a batch read under generation `read_in` to the applier, waiting while
  // kQueuedBatches are queued; dropped when a batch of its generation failed (its records are
  // read again after the resync).
  void hand_over(std::uint64_t read_in, Batch batch) {
    std::unique_lock lock(pipe_mutex);
    pipe_changed.wait(lock, [&] {
      return !running || queued.size() < kQueuedBatches || failed_generation >= read_in;
    });
    if (!running || failed_generation >= read_in) return;
    queued.emplace_back(read_in, std::move(batch));
    pipe_changed.notify_all();
  }

  // Reader thread: what the applier finished. A failed batch pauses the partitions until
  // PostgreSQL answers; they restart at their checkpoints.
  void take_applied() {
    std::deque<Applied> done;
    std::uint64_t current = 0;
    {
      const std::lock_guard lock(pipe_mutex);
      done.swap(applied);
      current = generation;
    }
    for (auto& a : done) {
      // A batch from before the last (re)assignment: its partitions were read again from the
      // checkpoints since, and may not be this reader's any more.
      if (a.generation != current) continue;
      if (!a.ok) {
        if (!resync_needed) {
          pause_all();
          resync_needed = true;
        }
        continue;
      }
      const auto& result = a.result;
      for (const auto& [p, next] : result.checkpoints) next_offset[p] = next;
      for (const auto& [p, end] : a.eof) end_seen[p] = end;
      if (result.first_parked) {
        const auto& first = *result.first_parked;
        const core::TraceParent none;
        const auto& trace = first.event ? first.event->trace_parent : none;
        parking.failing("events parked: the projection goes on without them (cauce parked list)",
                        {{"parked", result.parked},
                         {"partition", first.partition},
                         {"offset", first.offset},
                         {"error", first.error},
                         {"trace_id", trace.trace_id()},
                         {"span_id", trace.span_id()}});
        refresh_parked_count();
      } else if (result.applied > 0) {
        parking.cleared("events project again without parking");
      }
      postgres_down.cleared("PostgreSQL answers again; projecting");
      backoff.reset();
      // For operators' tools only (kafka-consumer-groups): cauce itself starts from PostgreSQL.
      if (!result.checkpoints.empty()) {
        TopicPartitions tps;
        for (const auto& [p, next] : result.checkpoints) {
          tps.add(options.kafka.events_topic, p, next);
        }
        consumer->commitAsync(tps.list);
      }
    }
  }

  // cauce_parked_events and the status /readyz reports (operators resolve parked events from
  // other processes, so PostgreSQL is asked, not a local count).
  void refresh_parked_count() {
    try {
      const auto open = reader_pg.open_parked();
      metrics.open_parked.Set(static_cast<double>(open));
      metrics.replay_progress.Set(reader_pg.replay_progress());
      const std::lock_guard lock(status_mutex);
      published.parked = open;
    } catch (const std::exception&) {
      // PostgreSQL is away: the batch path reports that; keep the last count.
    }
  }

  void publish_lag() {
    ProjectionStatus::Partition row;
    std::vector<ProjectionStatus::Partition> rows;
    std::int64_t total = 0;
    for (const auto p : assigned) {
      row.partition = p;
      row.next_offset = next_offset.contains(p) ? next_offset[p] : 0;
      std::int64_t low = 0;
      std::int64_t high = -1;
      consumer->get_watermark_offsets(options.kafka.events_topic, p, &low, &high);
      if (high < 0 || resync_needed) {
        // Paused partitions are not fetched, so ask the broker (bounded).
        if (consumer->query_watermark_offsets(options.kafka.events_topic, p, &low, &high, 500) !=
            RdKafka::ERR_NO_ERROR) {
          high = -1;
        }
      }
      row.end_offset = high;
      const auto done = std::max(row.next_offset, end_seen.contains(p) ? end_seen[p] : 0);
      row.lag = high < 0 ? 0 : std::max<std::int64_t>(0, high - done);
      total += row.lag;
      rows.push_back(row);
    }
    for (auto& [partition, gauge] : lag_gauges) {
      if (!assigned.contains(partition)) metrics.lag.Remove(gauge);
    }
    std::erase_if(lag_gauges, [&](const auto& entry) { return !assigned.contains(entry.first); });
    for (const auto& r : rows) {
      auto [it, fresh] = lag_gauges.try_emplace(r.partition, nullptr);
      if (fresh) it->second = &metrics.lag.Add({{"partition", std::to_string(r.partition)}});
      it->second->Set(static_cast<double>(r.lag));
    }
    const std::lock_guard lock(status_mutex);
    published.partitions = std::move(rows);
    published.lag = total;
  }

  void loop() {
    auto last_status = Clock::now() - std::chrono::hours(1);
    auto last_prune = Clock::now() - std::chrono::hours(1);
    auto last_parked_count = Clock::now() - std::chrono::hours(1);
    while (running) {
      take_applied();
      if (resync_needed) {
        // Drop whatever was fetched for the paused partitions; they restart at the checkpoint.
        MessagePtr ignored(consumer->consume(0));
        std::this_thread::sleep_for(backoff.next());
        if (assign_at_checkpoints({assigned.begin(), assigned.end()}, false)) {
          resync_needed = false;
        }
      } else {
        std::uint64_t read_in = 0;
        auto batch = collect(read_in);
        if (!batch.empty()) hand_over(read_in, std::move(batch));
      }
      const auto now = Clock::now();
      if (now - last_status > std::chrono::seconds(1)) {
        last_status = now;
        publish_lag();
      }
      if (!resync_needed && now - last_parked_count > std::chrono::seconds(5)) {
        last_parked_count = now;
        refresh_parked_count();
      }
      if (!resync_needed && now - last_prune > std::chrono::minutes(10)) {
        last_prune = now;
        try {
          const auto deleted =
              reader_pg.prune_notifications(options.projections.notifications_retention_h);
          if (deleted > 0) log().info("old notifications deleted", {{"rows", deleted}});
          for (const auto& schema : reader_pg.drop_replaced_generations()) {
            log().info("replaced read-model generation dropped", {{"schema", schema}});
          }
        } catch (const std::exception& e) {
          log().warn("could not prune notifications or old generations", {{"error", e.what()}});
        }
      }
    }
  }
};

Projector::Projector(ProjectorOptions options, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

Projector::~Projector() { stop(); }

void Projector::start() {
  auto& o = impl_->options;
  auto settings = core::exactly_once_consumer_settings(o.projections.group);
  settings.emplace_back("enable.partition.eof", "true");  // "caught up" for the lag
  auto conf = core::kafka_conf(o.kafka, settings);
  std::string err;
  if (conf->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(impl_.get()), err) !=
      RdKafka::Conf::CONF_OK) {
    throw core::ConfigError("kafka.rebalance_cb", err);
  }
  impl_->consumer.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!impl_->consumer) throw core::DependencyError("kafka", "events consumer: " + err, false);
  const auto rc = impl_->consumer->subscribe({o.kafka.events_topic});
  if (rc != RdKafka::ERR_NO_ERROR) {
    throw core::DependencyError("kafka", "subscribe: " + RdKafka::err2str(rc), true);
  }
  impl_->running = true;
  impl_->applier = std::thread([impl = impl_.get()] { impl->applier_loop(); });
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
  log().info("projector started", {{"group", o.projections.group},
                                   {"projection", o.projections.name},
                                   {"topic", o.kafka.events_topic}});
}

void Projector::stop() {
  if (!impl_->running.exchange(false)) return;
  {
    const std::lock_guard lock(impl_->pipe_mutex);
    impl_->pipe_changed.notify_all();
  }
  impl_->thread.join();
  impl_->applier.join();  // finishes the batch it is applying
  impl_->consumer->close();
  impl_->consumer.reset();
  log().info("projector stopped");
}

ProjectionStatus Projector::status() const {
  const std::lock_guard lock(impl_->status_mutex);
  return impl_->published;
}

}  // namespace cauce::projections
