#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

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
        skipped(events.Add({{"outcome", "skipped"}})),
        failures(prometheus::BuildCounter()
                     .Name("cauce_projection_failures_total")
                     .Help("Batches that PostgreSQL did not take (retried from the checkpoint)")
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
                .Help("Records of the event topic not projected yet (all owned partitions)")
                .Register(registry)
                .Add({})) {}

  prometheus::Family<prometheus::Counter>& events;
  prometheus::Counter& applied;
  prometheus::Counter& redelivered;
  prometheus::Counter& skipped;
  prometheus::Counter& failures;
  prometheus::Histogram& batch_seconds;
  prometheus::Gauge& lag;
};

// Logs at most once per interval (a broken dependency must not flood the log).
class Throttle {
 public:
  bool ready() {
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(10)) return false;
    last_ = now;
    return true;
  }

 private:
  Clock::time_point last_ = Clock::now() - std::chrono::hours(1);
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
           options.kafka.events_topic) {}

  ProjectorOptions options;
  Metrics metrics;
  PgProjection pg;  // projector thread only
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::atomic<bool> running{false};
  std::thread thread;

  // Projector thread only.
  std::set<std::int32_t> assigned;
  std::map<std::int32_t, std::int64_t> next_offset;  // as committed to PostgreSQL
  std::map<std::int32_t, std::int64_t> end_seen;     // partition EOF offsets already applied
  bool resync_needed = false;
  std::set<std::string> unprojected_warned;  // each type is logged once
  Throttle pg_warning;
  Throttle skip_warning;

  mutable std::mutex status_mutex;
  ProjectionStatus published;

  // Checkpoints from PostgreSQL, retried until it answers or the projector stops.
  std::optional<std::map<std::int32_t, std::int64_t>> checkpoints_for(
      const std::vector<std::int32_t>& partitions, bool wait) {
    for (int attempt = 0;; ++attempt) {
      try {
        auto checkpoints = pg.load_checkpoints(partitions);
        set_postgres_ok(true);
        return checkpoints;
      } catch (const std::exception& e) {
        set_postgres_ok(false);
        if (pg_warning.ready()) {
          log().warn("cannot read checkpoints from PostgreSQL; retrying", {{"error", e.what()}});
        }
        if (!wait || !running) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 << attempt, 1000)));
      }
    }
  }

  // Assigns `partitions` at their stored checkpoints (fresh partitions start at 0).
  bool assign_at_checkpoints(const std::vector<std::int32_t>& partitions, bool wait) {
    const auto checkpoints = checkpoints_for(partitions, wait);
    if (!checkpoints) return false;
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

  // Decodes a record into an event, or says why it is not one (foreign producers).
  static std::optional<LogRecord> decode(RdKafka::Message& m, std::string& why) {
    try {
      return decode_record(m.partition(), m.offset(), core::kafka_payload(m));
    } catch (const std::exception& e) {
      why = e.what();
      return std::nullopt;
    }
  }

  struct Batch {
    std::vector<LogRecord> records;
    std::map<std::int32_t, std::int64_t> passed;  // past skipped records
    std::map<std::int32_t, std::int64_t> eof;
    bool empty() const { return records.empty() && passed.empty() && eof.empty(); }
  };

  Batch collect() {
    Batch batch;
    const auto max = static_cast<std::size_t>(options.projections.batch_max);
    int timeout_ms = 100;
    while (batch.records.size() < max && running) {
      MessagePtr m(consumer->consume(timeout_ms));
      timeout_ms = 0;  // after the first record, take only what is already here
      if (m->err() == RdKafka::ERR__TIMED_OUT) break;
      if (m->err() == RdKafka::ERR__PARTITION_EOF) {
        batch.eof[m->partition()] = m->offset();
        continue;
      }
      if (m->err() != RdKafka::ERR_NO_ERROR) {
        if (skip_warning.ready()) log().warn("event consumer error", {{"error", m->errstr()}});
        break;
      }
      if (!assigned.contains(m->partition())) continue;
      std::string why;
      if (auto record = decode(*m, why)) {
        batch.records.push_back(std::move(*record));
      } else {
        metrics.skipped.Increment();
        batch.passed[m->partition()] = m->offset() + 1;
        if (skip_warning.ready()) {
          log().warn("skipped a record that is not a cauce event",
                     {{"partition", m->partition()}, {"offset", m->offset()}, {"reason", why}});
        }
      }
    }
    return batch;
  }

  void pause_all() {
    TopicPartitions tps;
    for (const auto p : assigned)
      tps.add(options.kafka.events_topic, p, RdKafka::Topic::OFFSET_INVALID);
    if (!tps.list.empty()) consumer->pause(tps.list);
  }

  void apply(Batch& batch) {
    const auto started = Clock::now();
    try {
      const auto result = pg.apply(batch.records, batch.passed);
      metrics.batch_seconds.Observe(std::chrono::duration<double>(Clock::now() - started).count());
      metrics.applied.Increment(static_cast<double>(result.applied));
      metrics.redelivered.Increment(static_cast<double>(result.already_applied));
      for (const auto& [p, next] : result.checkpoints) next_offset[p] = next;
      for (const auto& [p, end] : batch.eof) end_seen[p] = end;
      for (const auto& type : result.unprojected_types) {
        if (unprojected_warned.insert(type).second) {
          log().warn("event type has no read model in this build (kept in events only)",
                     {{"type", type}});
        }
      }
      {
        const std::lock_guard lock(status_mutex);
        published.applied += result.applied;
        published.postgres_ok = true;
      }
      // For operators' tools only (kafka-consumer-groups): cauce itself starts from PostgreSQL.
      if (!result.checkpoints.empty()) {
        TopicPartitions tps;
        for (const auto& [p, next] : result.checkpoints) {
          tps.add(options.kafka.events_topic, p, next);
        }
        consumer->commitAsync(tps.list);
      }
    } catch (const std::exception& e) {
      metrics.failures.Increment();
      set_postgres_ok(false);
      if (pg_warning.ready()) {
        log().warn("batch not applied; partitions paused until PostgreSQL answers",
                   {{"events", batch.records.size()}, {"error", e.what()}});
      }
      pause_all();
      resync_needed = true;
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
    metrics.lag.Set(static_cast<double>(total));
    const std::lock_guard lock(status_mutex);
    published.partitions = std::move(rows);
    published.lag = total;
  }

  void loop() {
    auto last_status = Clock::now() - std::chrono::hours(1);
    auto last_prune = Clock::now() - std::chrono::hours(1);
    int failures = 0;
    while (running) {
      if (resync_needed) {
        // Drop whatever was fetched for the paused partitions; they restart at the checkpoint.
        MessagePtr ignored(consumer->consume(0));
        if (assign_at_checkpoints({assigned.begin(), assigned.end()}, false)) {
          resync_needed = false;
          failures = 0;
          log().info("PostgreSQL answers again; projecting from the checkpoints");
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 << failures, 1000)));
          failures = std::min(failures + 1, 4);
        }
      } else {
        auto batch = collect();
        if (!batch.empty()) apply(batch);
      }
      const auto now = Clock::now();
      if (now - last_status > std::chrono::seconds(1)) {
        last_status = now;
        publish_lag();
      }
      if (!resync_needed && now - last_prune > std::chrono::minutes(10)) {
        last_prune = now;
        try {
          const auto deleted =
              pg.prune_notifications(options.projections.notifications_retention_h);
          if (deleted > 0) log().info("old notifications deleted", {{"rows", deleted}});
        } catch (const std::exception& e) {
          log().warn("could not prune notifications", {{"error", e.what()}});
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
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
  log().info("projector started", {{"group", o.projections.group},
                                   {"projection", o.projections.name},
                                   {"topic", o.kafka.events_topic}});
}

void Projector::stop() {
  if (!impl_->running.exchange(false)) return;
  impl_->thread.join();
  impl_->consumer->close();
  impl_->consumer.reset();
  log().info("projector stopped");
}

ProjectionStatus Projector::status() const {
  const std::lock_guard lock(impl_->status_mutex);
  return impl_->published;
}

}  // namespace cauce::projections
