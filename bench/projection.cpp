// bench/projection: the projector's throughput next to PostgreSQL's raw limits, same rows, same
// run, each in a fresh database:
//
//   1. raw COPY of the event rows into `events` (the raw limit);
//   2. COPY into a temporary table + one INSERT ... SELECT ... ON CONFLICT merge per batch;
//   3. a plain multi-row upsert (jsonb_to_recordset) of the event rows per batch;
//   4. cauce's apply path: the whole projection transaction per batch (events, contacts, calls,
//      notifications, checkpoint, pg_notify) — no Kafka;
//   5. cauce's projector end to end: consume the log from Kafka (read_committed) and apply,
//      next to the raw produce rate of the same records.
//
// With --replay (`scripts/bench replay`): a blue/green rebuild of the whole log
// (projections/replay.hpp: a new generation, a projector pinned to it, the switch) in total
// seconds and events/s, next to a raw read_committed consume and a raw COPY of the same events.
//
// The log: contacts, each registered then called four times and assigned once (6 events).

#include <iomanip>
#include <iostream>

#include <CLI/CLI.hpp>
#include <pqxx/pqxx>
#include <pqxx/stream_to>
#include <prometheus/registry.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/config.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/batch.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/projections/replay.hpp>

#include "load.hpp"
#include "pg_projection.hpp"  // projections/src: the apply path without Kafka

namespace cauce::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int events = 1'000'000;
  int runs = 3;
  int batch = 5000;
  bool replay = false;
  int replay_batch = core::ProjectionsConfig{}.replay_batch_max;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void print_rate(const std::string& name, double per_second, const std::string& extra = "") {
  std::cout << std::left << std::setw(52) << name << std::right << std::setw(10) << std::fixed
            << std::setprecision(0) << per_second << " events/s" << extra << "\n";
}

std::vector<projections::LogRecord> synthetic_log(int events, int partitions) {
  std::vector<projections::LogRecord> log;
  log.reserve(static_cast<std::size_t>(events));
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(partitions), 0);
  const std::int64_t base_us = 1'764'000'000'000'000;
  for (int c = 0; static_cast<int>(log.size()) < events; ++c) {
    const auto id = commands::uuid_v7(base_us / 1000 + c);
    const auto partition = c % partitions;
    auto add = [&](const std::string& type, int schema_version, std::int64_t version,
                   std::string data) {
      projections::LogRecord r;
      r.partition = partition;
      r.offset = offsets[static_cast<std::size_t>(partition)]++;
      auto& e = r.event;
      e.event_id = commands::uuid_v7(base_us / 1000 + c);
      e.type = type;
      e.schema_version = schema_version;
      e.aggregate_type = "contact";
      e.aggregate_id = id;
      e.version = version;
      e.occurred_at_us = base_us + c * 1000 + version;
      e.command_id = commands::uuid_v7(base_us / 1000 + c);
      e.correlation_id = "bench";
      e.causation_id = e.command_id;
      e.actor = "bench";
      e.data = std::move(data);
      log.push_back(std::move(r));
    };
    add("contact.registered", 1, 1,
        R"({"name":"Contact )" + std::to_string(c) +
            R"(","phone":"+351912345678","email":"c@example.org","tags":["vip","eu"]})");
    for (int k = 0; k < 4 && static_cast<int>(log.size()) < events; ++k) {
      add("contact.call_logged", 2, 2 + k,
          R"({"call_id":")" + commands::uuid_v7(base_us / 1000 + c) +
              R"(","outcome":"answered","duration_s":61,"operator":"op)" + std::to_string(k) +
              R"(","called_at":")" + core::format_utc_micros(base_us + c * 1000 + k) + "\"}");
    }
    if (static_cast<int>(log.size()) < events)
      add("contact.assigned", 1, 6, R"({"operator":"op1"})");
  }
  return log;
}

// A fresh database with cauce's schema, dropped afterwards.
class FreshDatabase {
 public:
  explicit FreshDatabase(const core::PostgresConfig& admin) : admin_(admin) {
    config_ = admin;
    config_.database = "cauce_bench_" + std::to_string(counter_++);
    auto c = core::connect_postgres(core::postgres_conninfo(admin_));
    pqxx::nontransaction(*c).exec("DROP DATABASE IF EXISTS " + config_.database);
    pqxx::nontransaction(*c).exec("CREATE DATABASE " + config_.database);
    auto db = core::connect_postgres(core::postgres_conninfo(config_));
    core::migrate(*db, core::parse_migrations(core::embedded_migration_files()));
  }
  ~FreshDatabase() {
    try {
      auto c = core::connect_postgres(core::postgres_conninfo(admin_));
      pqxx::nontransaction(*c).exec("DROP DATABASE IF EXISTS " + config_.database +
                                    " WITH (FORCE)");
    } catch (const std::exception&) {
    }
  }
  const core::PostgresConfig& config() const { return config_; }

 private:
  static inline int counter_ = 0;
  core::PostgresConfig admin_;
  core::PostgresConfig config_;
};

using EventRow = std::tuple<std::string, std::string, std::string, std::string, std::string,
                            std::string, std::string, std::string, std::string, std::string,
                            std::string, std::string, std::string, std::string>;

EventRow event_row(const projections::LogRecord& r) {
  const auto& e = r.event;
  return {std::to_string(r.partition),
          std::to_string(r.offset),
          e.event_id,
          e.type,
          std::to_string(e.schema_version),
          e.aggregate_type,
          e.aggregate_id,
          std::to_string(e.version),
          core::format_utc_micros(e.occurred_at_us),
          e.command_id,
          e.correlation_id,
          e.causation_id,
          e.actor,
          e.data};
}

const std::vector<std::string> kEventColumns = {
    "partition",      "\"offset\"",   "event_id", "type",        "schema_version",
    "aggregate_type", "aggregate_id", "version",  "occurred_at", "command_id",
    "correlation_id", "causation_id", "actor",    "data"};

// A connection writing the live read-model generation's tables themselves (public holds views
// of them, and COPY cannot write through a view).
std::unique_ptr<pqxx::connection> connect_to_model(const core::PostgresConfig& config) {
  auto c = core::connect_postgres(core::postgres_conninfo(config));
  pqxx::nontransaction n(*c);
  n.exec("SET search_path TO " +
         n.quote_name(n.exec1("SELECT schema FROM read_model_live")[0].as<std::string>()) +
         ", public");
  return c;
}

double raw_copy(const core::PostgresConfig& admin, const std::vector<projections::LogRecord>& log) {
  FreshDatabase db(admin);
  auto c = connect_to_model(db.config());
  const auto start = Clock::now();
  pqxx::work txn(*c);
  {
    pqxx::stream_to writer(txn, "events", kEventColumns);
    for (const auto& r : log) writer << event_row(r);
    writer.complete();
  }
  txn.commit();
  return static_cast<double>(log.size()) / seconds_since(start);
}

using Batches = std::vector<std::vector<projections::LogRecord>>;

// The log cut into batches before any clock starts (the projector gets its batches from the
// consumer; copying them is not what is measured).
Batches batches_of(const std::vector<projections::LogRecord>& log, int batch) {
  Batches out;
  for (std::size_t i = 0; i < log.size(); i += static_cast<std::size_t>(batch)) {
    const auto end = std::min(log.size(), i + static_cast<std::size_t>(batch));
    out.emplace_back(log.begin() + static_cast<std::ptrdiff_t>(i),
                     log.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return out;
}

double per_second(const Batches& batches, Clock::time_point start) {
  std::size_t events = 0;
  for (const auto& b : batches) events += b.size();
  return static_cast<double>(events) / seconds_since(start);
}

double copy_and_merge(const core::PostgresConfig& admin, const Batches& batches) {
  FreshDatabase db(admin);
  auto c = connect_to_model(db.config());
  pqxx::nontransaction(*c).exec(
      "CREATE TEMP TABLE incoming (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS");
  const auto start = Clock::now();
  for (const auto& slice : batches) {
    pqxx::work txn(*c);
    {
      pqxx::stream_to writer(txn, "incoming", kEventColumns);
      for (const auto& r : slice) writer << event_row(r);
      writer.complete();
    }
    txn.exec("INSERT INTO events SELECT * FROM incoming ON CONFLICT DO NOTHING");
    txn.commit();
  }
  return per_second(batches, start);
}

double multi_row_upsert(const core::PostgresConfig& admin, const Batches& batches) {
  FreshDatabase db(admin);
  auto c = connect_to_model(db.config());
  const auto start = Clock::now();
  for (const auto& slice : batches) {
    const auto rows = projections::fold_batch(slice);  // only its `events` array is used
    pqxx::work txn(*c);
    txn.exec_params(R"(
      INSERT INTO events SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
        partition int, "offset" bigint, event_id uuid, type text, schema_version int,
        aggregate_type text, aggregate_id uuid, version bigint, occurred_at timestamptz,
        command_id uuid, correlation_id text, causation_id uuid, actor text, data jsonb)
      ON CONFLICT DO NOTHING)",
                    rows.events);
    txn.commit();
  }
  return per_second(batches, start);
}

double apply_path(const core::PostgresConfig& admin, const Batches& batches) {
  FreshDatabase db(admin);
  projections::PgProjection pg(core::postgres_conninfo(db.config()), "main", "bench.events");
  const auto start = Clock::now();
  for (const auto& slice : batches) pg.apply(slice);
  return per_second(batches, start);
}

// Produces the log to a fresh topic (idempotent producer); returns records/s.
double produce(const core::KafkaConfig& kafka, const std::vector<projections::LogRecord>& log) {
  auto conf = core::kafka_producer_conf(
      kafka, {{"enable.idempotence", "true"}, {"linger.ms", "5"}, {"batch.size", "1000000"}});
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  if (!producer) throw std::runtime_error(err);
  core::kafka_partition_count(*producer, kafka.events_topic, std::chrono::seconds(10));
  const auto start = Clock::now();
  for (const auto& r : log) {
    const auto value = commands::to_json(r.event);
    while (core::kafka_produce(*producer, kafka.events_topic, r.partition, r.event.aggregate_id,
                               value, {}) == RdKafka::ERR__QUEUE_FULL) {
      producer->poll(10);
    }
  }
  if (producer->flush(120000) != RdKafka::ERR_NO_ERROR) throw std::runtime_error("flush timed out");
  return static_cast<double>(log.size()) / seconds_since(start);
}

// Reads the whole topic read_committed with a plain consumer (no decoding); returns records/s.
double raw_consume(const core::KafkaConfig& kafka, std::size_t records, int partitions) {
  auto conf = core::kafka_conf(kafka, {{"group.id", "bench-raw-" + core::random_hex(4)},
                                       {"enable.auto.commit", "false"},
                                       {"isolation.level", "read_committed"},
                                       {"enable.partition.eof", "true"}});
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) throw std::runtime_error(err);
  std::vector<std::unique_ptr<RdKafka::TopicPartition>> owned;
  std::vector<RdKafka::TopicPartition*> list;
  for (int p = 0; p < partitions; ++p) {
    owned.emplace_back(
        RdKafka::TopicPartition::create(kafka.events_topic, p, RdKafka::Topic::OFFSET_BEGINNING));
    list.push_back(owned.back().get());
  }
  const auto start = Clock::now();
  consumer->assign(list);
  std::size_t seen = 0;
  while (seen < records) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(1000));
    if (m->err() == RdKafka::ERR_NO_ERROR) {
      ++seen;
    } else if (seconds_since(start) > 600) {
      throw std::runtime_error("raw consume did not finish in 600 s");
    }
  }
  const auto rate = static_cast<double>(seen) / seconds_since(start);
  consumer->close();
  return rate;
}

double projector_end_to_end(const core::PostgresConfig& admin, const core::KafkaConfig& kafka,
                            std::size_t records, int batch) {
  FreshDatabase db(admin);
  core::ProjectionsConfig config;
  config.group = "bench-projector-" + core::random_hex(4);
  config.batch_max = batch;
  prometheus::Registry registry;
  projections::Projector projector(
      {.kafka = kafka, .postgres = db.config(), .projections = config, .schema = {}}, registry);
  auto c = core::connect_postgres(core::postgres_conninfo(db.config()));
  const auto start = Clock::now();
  projector.start();
  for (;;) {
    pqxx::nontransaction n(*c);
    const auto done = n.exec1("SELECT coalesce(sum(next_offset), 0) FROM projection_checkpoints")[0]
                          .as<std::int64_t>();
    if (done >= static_cast<std::int64_t>(records)) break;
    if (seconds_since(start) > 600) throw std::runtime_error("projector did not finish in 600 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto rate = static_cast<double>(records) / seconds_since(start);
  projector.stop();
  return rate;
}

// `cauce replay` of the whole log into a fresh database: seconds from the start to the switch.
double replay_seconds(const core::PostgresConfig& admin, const core::KafkaConfig& kafka,
                      int replay_batch) {
  FreshDatabase db(admin);
  {
    // As a live generation would have left them: every event notified already (else the switch
    // writes a notification for each of the log's events, which no real rebuild does).
    auto c = core::connect_postgres(core::postgres_conninfo(db.config()));
    pqxx::work txn(*c);
    for (const auto& [partition, end] :
         core::KafkaAdmin(kafka).end_offsets(kafka.events_topic, kafka.partitions)) {
      txn.exec_params("INSERT INTO notification_marks VALUES ($1, $2, $3)", kafka.events_topic,
                      partition, end);
    }
    txn.commit();
  }
  core::ProjectionsConfig config;
  config.group = "bench-replay-" + core::random_hex(4);
  config.replay_batch_max = replay_batch;
  config.replay_grace_s = 0;
  const std::atomic<bool> stop{false};
  const auto start = Clock::now();
  projections::ReplayRequest request;
  request.projection = "all";
  request.requested_by = "bench";
  projections::Replay replay({.kafka = kafka, .postgres = db.config(), .projections = config},
                             std::move(request));
  const auto result = replay.run([](const projections::ReplayProgress&) {}, stop);
  if (result.status != "switched") throw std::runtime_error("the replay did not switch");
  return seconds_since(start);
}

// Events in their own topic (the log of bench/projection), for one run.
core::KafkaConfig fresh_topics(core::KafkaConfig kafka, int partitions) {
  kafka.events_topic = "bench.events." + core::random_hex(4);
  kafka.commands_topic = kafka.events_topic + ".commands";
  kafka.replies_topic = kafka.events_topic + ".replies";
  kafka.outcomes_topic = kafka.events_topic + ".outcomes";
  kafka.dead_letters_topic = kafka.events_topic + ".dead-letters";
  kafka.snapshots_topic = kafka.events_topic + ".snapshots";
  kafka.jobs_dlq_topic = kafka.events_topic + ".jobs-dlq";
  kafka.partitions = partitions;
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), partitions, 1);
  return kafka;
}

int run_replay(const Options& options, const core::Config& config) {
  const int partitions = 12;
  const auto log = synthetic_log(options.events, partitions);
  std::cout << "bench/projection --replay: " << log.size() << " events, replay batches of "
            << options.replay_batch << ", " << options.runs
            << " runs, fresh database and topic each\n\n";
  std::vector<double> copy_rates;
  std::vector<double> consume_rates;
  std::vector<double> replay_secs;
  for (int run = 1; run <= options.runs; ++run) {
    std::cout << "run " << run << "\n";
    copy_rates.push_back(raw_copy(config.postgres, log));
    print_rate("  raw COPY into events (raw limit)", copy_rates.back());
    const auto kafka = fresh_topics(config.kafka, partitions);
    produce(kafka, log);
    consume_rates.push_back(raw_consume(kafka, log.size(), partitions));
    print_rate("  raw read_committed consume", consume_rates.back());
    replay_secs.push_back(replay_seconds(config.postgres, kafka, options.replay_batch));
    print_rate("  cauce replay, start to switch",
               static_cast<double>(log.size()) / replay_secs.back());
    std::cout << "    (" << std::fixed << std::setprecision(1) << replay_secs.back() << " s)\n"
              << std::defaultfloat;
  }
  const auto events = static_cast<double>(log.size());
  const auto copy = median(copy_rates);
  const auto consume = median(consume_rates);
  const auto secs = median(replay_secs);
  std::cout << "\nmedians over " << options.runs << " runs\n";
  print_rate("  raw COPY into events (raw limit)", copy);
  print_rate("  raw read_committed consume", consume);
  print_rate("  cauce replay, start to switch", events / secs);
  std::cout << std::fixed << std::setprecision(1) << "  replay: " << secs << " s for " << log.size()
            << " events; raw consume alone " << events / consume << " s, raw COPY alone "
            << events / copy << " s, one after the other " << events / consume + events / copy
            << " s\n";
  return 0;
}

int run(const Options& options) {
  core::ConfigSources sources;
  sources.env = core::cauce_environment();
  auto config = core::load_config(sources);
  core::set_log_level(core::LogLevel::kWarn);
  if (options.replay) return run_replay(options, config);
  auto admin = config.postgres;
  const int partitions = 12;
  const auto log = synthetic_log(options.events, partitions);
  const auto batches = batches_of(log, options.batch);
  std::cout << "bench/projection: " << log.size() << " events (" << log.size() / 6
            << " contacts x register + 4 calls + assign), batches of " << options.batch << ", "
            << options.runs << " runs, fresh database each\n\n";
  std::map<std::string, std::vector<double>> rates;
  const std::vector<std::string> order = {
      "1. raw COPY into events (raw limit)",      "2. COPY to temp + merge, per batch",
      "3. multi-row upsert of events, per batch", "4. cauce apply path (all read models)",
      "   raw idempotent produce (same records)", "   raw read_committed consume (no decoding)",
      "5. cauce projector from Kafka, end to end"};
  for (int run = 1; run <= options.runs; ++run) {
    std::cout << "run " << run << "\n";
    auto record = [&](const std::string& name, double rate) {
      rates[name].push_back(rate);
      print_rate("  " + name, rate);
    };
    record(order[0], raw_copy(admin, log));
    record(order[1], copy_and_merge(admin, batches));
    record(order[2], multi_row_upsert(admin, batches));
    record(order[3], apply_path(admin, batches));
    const auto kafka = fresh_topics(config.kafka, partitions);
    record(order[4], produce(kafka, log));
    record(order[5], raw_consume(kafka, log.size(), partitions));
    record(order[6], projector_end_to_end(admin, kafka, log.size(), options.batch));
  }
  std::cout << "\nmedians over " << options.runs << " runs\n";
  for (const auto& name : order) print_rate("  " + name, median(rates[name]));
  const auto apply = median(rates[order[3]]);
  const auto e2e = median(rates[order[6]]);
  // Consuming and then COPYing every record, one after the other: the raw limit of end to end.
  const auto consume_then_copy =
      1.0 / (1.0 / median(rates[order[5]]) + 1.0 / median(rates[order[0]]));
  std::cout << std::setprecision(2) << "  apply / raw COPY = " << apply / median(rates[order[0]])
            << ", apply / COPY+merge = " << apply / median(rates[order[1]])
            << ", apply / multi-row upsert = " << apply / median(rates[order[2]])
            << "\n  end to end / raw COPY = " << e2e / median(rates[order[0]])
            << ", end to end / COPY+merge = " << e2e / median(rates[order[1]])
            << "\n  raw consume then raw COPY = " << std::setprecision(0) << std::fixed
            << consume_then_copy << " events/s, end to end / that = " << std::setprecision(2)
            << e2e / consume_then_copy << "\n";
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce projection benchmark"};
  cauce::bench::Options options;
  app.add_option("--events", options.events, "Events in the log")->check(CLI::PositiveNumber);
  app.add_option("--runs", options.runs, "Runs (medians are reported)")->check(CLI::PositiveNumber);
  app.add_option("--batch", options.batch, "Events per PostgreSQL transaction")
      ->check(CLI::PositiveNumber);
  app.add_flag("--replay", options.replay,
               "Measure a blue/green replay of the log instead (scripts/bench replay)");
  app.add_option("--replay-batch", options.replay_batch, "projections.replay_batch_max")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/projection",
                                            [&] { return cauce::bench::run(options); });
}
