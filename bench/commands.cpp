// bench/commands: the write side under load, next to its raw limits measured in the same run.
//
//   1. memory per live aggregate in the processor's in-memory store;
//   2. raw limit: transactional librdkafka produce of event-sized records, one producer per
//      partition, batches of the processor's size (no HTTP, no decisions, no replies);
//   3. raw limit: a bare Beast handler behind the same HTTP server, same client;
//   4. raw limit: the Kafka transaction floor, one record per transaction, one at a time;
//   5. cauce over HTTP, a mix of register 20%, update 50%, log call 30% over `--aggregates`
//      contacts, keep-alive clients, on both paths: through the commands and replies topics,
//      and in-process (the API hands commands to the processor in its process); the in-process
//      path also at 50% of its peak rate (paced, latency from when each request was due) and
//      with one client sending one command at a time.
// Settings come from CAUCE_* like the service (scripts/bench starts Kafka and PostgreSQL).

#include <atomic>
#include <future>
#include <iomanip>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <malloc.h>
#include <prometheus/registry.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http_metrics.hpp>
#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/api/server.hpp>
#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/handler.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>

#include "load.hpp"

namespace cauce::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int seconds = 10;
  int runs = 3;
  int connections = 64;
  int aggregates = 10000;
  int partitions = 0;  // 0: kafka.partitions from the configuration
  bool memory_only = false;
};

void print_row(const std::string& name, double per_second, const std::string& unit, double p50,
               double p95, double p99) {
  std::cout << std::left << std::setw(44) << name << std::right << std::setw(10) << std::fixed
            << std::setprecision(0) << per_second << " " << std::setw(10) << std::left << unit
            << std::right << std::setprecision(2) << " p50 " << std::setw(7) << p50 << " ms  p95 "
            << std::setw(7) << p95 << " ms  p99 " << std::setw(7) << p99 << " ms\n";
}

// --- 1. memory per aggregate --------------------------------------------------------------------

std::size_t heap_in_use() { return mallinfo2().uordblks; }

void memory_per_aggregate() {
  constexpr int kCount = 1'000'000;
  const auto before = heap_in_use();
  {
    commands::MemoryAggregateStore store;
    for (int i = 0; i < kCount; ++i) {
      commands::CommandEnvelope c;
      c.command_id = commands::uuid_v7(1'700'000'000'000 + i);
      c.type = "contact.register";
      c.aggregate_type = "contact";
      c.aggregate_id = commands::uuid_v7(1'700'000'000'000 + i);
      c.issued_at_us = 1'700'000'000'000'000;
      c.request_hash = core::sha256_hex(c.command_id);
      c.data =
          R"({"name":"Contact )" + std::to_string(i) +
          R"(","phone":"+44 20 7946 0958","email":"someone@example.com","tags":["vip","north"]})";
      const auto out = commands::decide(store, c);
      commands::record(store, c, out, 12345);
    }
    const auto after = heap_in_use();
    std::cout << "memory per live aggregate (contact with 2 tags, its command id remembered): "
              << (after - before) / kCount << " bytes (heap in use, " << kCount << " aggregates)\n";
  }
}

// --- 2. raw transactional produce -------------------------------------------------------------

std::string sample_event() {
  commands::EventEnvelope e;
  e.event_id = commands::uuid_v7(1'700'000'000'000);
  e.type = "contact.updated";
  e.aggregate_type = "contact";
  e.aggregate_id = commands::uuid_v7(1'700'000'000'001);
  e.version = 7;
  e.occurred_at_us = 1'700'000'000'000'000;
  e.command_id = commands::uuid_v7(1'700'000'000'002);
  e.correlation_id = e.command_id;
  e.causation_id = e.command_id;
  e.actor = "bench";
  e.data = R"({"name":"Contact 123","notes":"called back about the invoice"})";
  return commands::to_json(e);
}

double raw_transactional_produce(const core::KafkaConfig& kafka, int seconds, int batch) {
  const auto value = sample_event();
  std::atomic<long long> total{0};
  std::vector<std::thread> threads;
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  const auto started = Clock::now();
  for (int p = 0; p < kafka.partitions; ++p) {
    threads.emplace_back([&, p] {
      auto conf = core::kafka_producer_conf(
          kafka, {{"transactional.id", kafka.events_topic + "-raw-" + std::to_string(p)},
                  {"linger.ms", "0"},
                  {"retry.backoff.ms", "10"}});
      std::string err;
      std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
      core::kafka_check(producer->init_transactions(30000), "init");
      while (Clock::now() < deadline) {
        core::kafka_check(producer->begin_transaction(), "begin");
        for (int i = 0; i < batch; ++i) {
          while (core::kafka_produce(*producer, kafka.events_topic, p, "key", value, {}) ==
                 RdKafka::ERR__QUEUE_FULL) {
            producer->poll(1);
          }
        }
        core::kafka_check(producer->commit_transaction(30000), "commit");
        total += batch;
      }
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(total) / std::chrono::duration<double>(Clock::now() - started).count();
}

// Per-transaction latency of one transactional producer committing one record at a time.
std::vector<double> transaction_floor(const core::KafkaConfig& kafka, int seconds) {
  const auto value = sample_event();
  auto conf = core::kafka_producer_conf(kafka, {{"transactional.id", kafka.events_topic + "-floor"},
                                                {"linger.ms", "0"},
                                                {"retry.backoff.ms", "10"}});
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  core::kafka_check(producer->init_transactions(30000), "init");
  std::vector<double> ms;
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < deadline) {
    const auto started = Clock::now();
    core::kafka_check(producer->begin_transaction(), "begin");
    core::kafka_produce(*producer, kafka.events_topic, 0, "key", value, {});
    core::kafka_check(producer->commit_transaction(30000), "commit");
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

// --- HTTP ----------------------------------------------------------------------------------------

struct Stack {
  Stack(const core::Config& config, const core::KafkaConfig& kafka)
      : pool(core::postgres_conninfo(config.postgres), 4),
        store(pool),
        keys(store),
        metrics(registry),
        processor({.kafka = kafka, .commands = config.commands}, registry),
        bus({.kafka = kafka, .commands = config.commands}, registry) {
    processor.start();
    bus.start();
    router.add(http::verb::get, "/bare", std::nullopt, [](api::Request& request) {
      return api::json_response(request, http::status::ok, R"({"ok":true})");
    });
    api::add_command_routes(router, bus,
                            static_cast<std::uint32_t>(config.commands.reply_timeout_ms));
    auto http_config = config.http;
    http_config.port = 0;
    // The benchmark measures capacity through one key: no per-key rate limit in the way.
    http_config.rate_limit_reader = http_config.rate_limit_operator = http_config.rate_limit_admin =
        0;
    server = std::make_unique<api::HttpServer>(http_config, router, keys, metrics);
    port = server->start();
    token = keys.create("bench", api::Role::kOperator).token;
  }
  ~Stack() {
    server->stop();
    bus.stop();
    processor.stop();
  }

  // The mean of one of the processor's histograms so far.
  double mean_of(const std::string& histogram) const {
    for (const auto& family : registry.Collect()) {
      if (family.name != histogram || family.metric.empty()) continue;
      const auto& h = family.metric.front().histogram;
      return h.sample_count == 0 ? 0 : h.sample_sum / static_cast<double>(h.sample_count);
    }
    return 0;
  }

  core::PgPool pool;
  api::PgApiKeyStore store;
  api::ApiKeys keys;
  prometheus::Registry registry;
  api::HttpMetrics metrics;
  commands::CommandProcessor processor;
  commands::CommandBus bus;
  api::Router router;
  std::unique_ptr<api::HttpServer> server;
  std::uint16_t port = 0;
  std::string token;
};

// Registers `count` contacts through the bus (no HTTP) and returns their ids.
std::vector<std::string> seed_contacts(commands::CommandBus& bus, int count) {
  std::vector<std::string> ids;
  std::vector<std::future<bool>> done;
  for (int i = 0; i < count; ++i) {
    commands::CommandEnvelope c;
    c.command_id = commands::uuid_v7(0);
    c.type = "contact.register";
    c.aggregate_type = "contact";
    c.aggregate_id = commands::uuid_v7(1'700'000'000'000 + i);
    c.issued_at_us = 1'700'000'000'000'000;
    c.actor = "bench";
    c.correlation_id = c.command_id;
    c.request_hash = c.command_id;
    c.data = R"({"name":"Seed )" + std::to_string(i) + R"(","phone":"+44 20 7946 0958"})";
    auto promise = std::make_shared<std::promise<bool>>();
    done.push_back(promise->get_future());
    bus.send(c, [promise](commands::SendResult r) {
      promise->set_value(std::holds_alternative<commands::Reply>(r));
    });
    ids.push_back(c.aggregate_id);
  }
  int failed = 0;
  for (auto& f : done) failed += f.get() ? 0 : 1;
  if (failed > 0) throw std::runtime_error(std::to_string(failed) + " seed commands failed");
  return ids;
}

int run(const Options& options) {
  if (options.memory_only) {
    memory_per_aggregate();
    return 0;
  }
  core::set_log_level(core::LogLevel::kWarn);
  auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  auto kafka = config.kafka;
  if (options.partitions > 0) kafka.partitions = options.partitions;
  const auto prefix = "bench-" + core::random_hex(4);
  core::use_topic_prefix(kafka, prefix);
  config.commands.processor_group = prefix + "-processor";
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), kafka.partitions, 1);
  {
    auto connection = core::connect_postgres(core::postgres_conninfo(config.postgres));
    core::migrate(*connection, core::parse_migrations(core::embedded_migration_files()));
  }
  std::cout << "cauce bench/commands: " << kafka.partitions << " partitions, "
            << options.connections << " connections, " << options.seconds << " s per run, "
            << options.runs << " runs, " << std::thread::hardware_concurrency() << " cores\n\n";

  memory_per_aggregate();

  auto raw_kafka = kafka;
  raw_kafka.events_topic = prefix + ".raw";
  core::KafkaAdmin(raw_kafka).ensure_topics({{raw_kafka.events_topic, {}}}, kafka.partitions, 1);

  Stack stack(config, kafka);
  const auto started = Clock::now();
  const auto ids = seed_contacts(stack.bus, options.aggregates);
  std::cout << "seeded " << ids.size() << " contacts in "
            << std::chrono::duration<double>(Clock::now() - started).count() << " s\n\n";

  const std::vector<std::pair<std::string, std::string>> auth = {
      {"Authorization", "Bearer " + stack.token}};
  std::atomic<long long> serial{0};
  const auto mix = [&](std::mt19937_64& rng) {
    LoadRequest r;
    r.headers = auth;
    const auto pick = rng() % 100;
    const auto& id = ids[rng() % ids.size()];
    if (pick < 20) {
      r.method = http::verb::post;
      r.target = "/v1/contacts";
      r.body = R"({"name":"New )" + std::to_string(serial++) + R"(","phone":"+351 912 345 678"})";
    } else if (pick < 70) {
      r.method = http::verb::patch;
      r.target = "/v1/contacts/" + id;
      r.body = R"({"notes":"update )" + std::to_string(serial++) + R"("})";
    } else {
      r.method = http::verb::post;
      r.target = "/v1/contacts/" + id + "/calls";
      r.body = R"({"outcome":"answered","duration_s":42,"operator":"op-1"})";
    }
    return r;
  };
  const auto bare_request = [](std::mt19937_64&) {
    return LoadRequest{http::verb::get, "/bare", "", {}};
  };

  // One row per measurement: every run's figures, then their medians.
  struct Row {
    Row(std::string n, std::string u) : name(std::move(n)), unit(std::move(u)) {}
    std::string name;
    std::string unit;
    std::vector<double> rate, p50, p95, p99;
    void add(double r, double a, double b, double c) {
      rate.push_back(r);
      p50.push_back(a);
      p95.push_back(b);
      p99.push_back(c);
      print_row(name, r, unit, a, b, c);
    }
    void add(const LoadResult& l) {
      add(l.per_second(), l.percentile(50), l.percentile(95), l.percentile(99));
      if (l.failed > 0) std::cout << "  (" << l.failed << " requests answered non-2xx)\n";
    }
    void print_median() const {
      print_row(name, median(rate), unit, median(p50), median(p95), median(p99));
    }
  };
  Row raw{"  raw transactional produce (no HTTP)", "events/s"};
  Row txn_floor{"  Kafka transaction floor (1 record, serial)", "txn/s"};
  Row bare{"  bare Beast handler", "req/s"};
  Row topics{"  cauce commands, through the topics", "cmd/s"};
  Row local{"  cauce commands, in-process path", "cmd/s"};
  Row half{"  in-process at 50% of its peak (paced)", "cmd/s"};
  Row single{"  in-process, one client, one at a time", "cmd/s"};
  const auto duration = std::chrono::seconds(options.seconds);
  for (int run = 1; run <= options.runs; ++run) {
    std::cout << "run " << run << "\n";
    raw.add(raw_transactional_produce(raw_kafka, options.seconds,
                                      std::min(config.commands.batch_max, 200)),
            0, 0, 0);
    const auto f = transaction_floor(raw_kafka, std::min(options.seconds, 3));
    txn_floor.add(f.empty() ? 0 : static_cast<double>(f.size()) / std::min(options.seconds, 3),
                  f.empty() ? 0 : f[f.size() / 2], f.empty() ? 0 : f[f.size() * 95 / 100],
                  f.empty() ? 0 : f[f.size() * 99 / 100]);
    bare.add(run_load(stack.port, options.connections, duration, bare_request));
    stack.bus.set_local(nullptr);
    topics.add(run_load(stack.port, options.connections, duration, mix));
    stack.bus.set_local(&stack.processor);
    const auto peak = run_load(stack.port, options.connections, duration, mix);
    local.add(peak);
    half.add(run_load(stack.port, options.connections, duration, mix, peak.per_second() / 2));
    single.add(run_load(stack.port, 1, duration, mix));
  }
  std::cout << "\nmedians over " << options.runs << " runs\n";
  for (const auto* row : {&raw, &txn_floor, &bare, &topics, &local, &half, &single}) {
    row->print_median();
  }
  const auto best = std::max(median(topics.rate), median(local.rate));
  std::cout << std::setprecision(2)
            << "  cauce (best path) / raw produce = " << best / median(raw.rate)
            << ", / bare HTTP = " << best / median(bare.rate)
            << "\n  mean commands per transaction = "
            << stack.mean_of("cauce_processor_batch_commands") << ", mean transaction = "
            << stack.mean_of("cauce_processor_transaction_duration_seconds") * 1000
            << " ms, mean bus round trip = "
            << stack.mean_of("cauce_command_round_trip_seconds") * 1000 << " ms\n";
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce write-side benchmark"};
  cauce::bench::Options options;
  app.add_option("--seconds", options.seconds, "Seconds per measurement")
      ->check(CLI::PositiveNumber);
  app.add_option("--runs", options.runs, "Runs (medians are reported)")->check(CLI::PositiveNumber);
  app.add_option("--connections", options.connections, "Keep-alive HTTP connections")
      ->check(CLI::PositiveNumber);
  app.add_option("--aggregates", options.aggregates, "Contacts updated and called")
      ->check(CLI::PositiveNumber);
  app.add_option("--partitions", options.partitions, "Partitions of the bench topics")
      ->check(CLI::PositiveNumber);
  app.add_flag("--memory-only", options.memory_only,
               "Only the heap per live aggregate (needs no Kafka or PostgreSQL)");
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/commands",
                                            [&] { return cauce::bench::run(options); });
}
