#include "service.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <sys/resource.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http_metrics.hpp>
#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/api/readiness.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/api/server.hpp>
#include <cauce/api/tls.hpp>
#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/parked_events.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/projections/queries.hpp>
#include <cauce/workers/job_worker.hpp>

#include "pg_pipeline.hpp"
#include "version_cache.hpp"

namespace cauce::api {
namespace {

// Waits `grace`, or less when another stop signal comes (an operator who does not want to wait).
void wait_for_grace(const sigset_t& stop_signals, std::chrono::milliseconds grace) {
  const auto until = std::chrono::steady_clock::now() + grace;
  for (;;) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(left);
    timespec timeout{static_cast<time_t>(s.count()),
                     static_cast<long>(std::chrono::nanoseconds(left - s).count())};
    if (sigtimedwait(&stop_signals, nullptr, &timeout) >= 0) return;
    if (errno != EINTR) return;  // EAGAIN: the grace is over
  }
}

bool has_role(const core::Config& config, std::string_view role) {
  return std::find(config.roles.begin(), config.roles.end(), role) != config.roles.end();
}

// Waits (bounded) for the broker to answer; returns what it said.
core::ClusterInfo wait_for_kafka(core::KafkaAdmin& admin, std::chrono::seconds timeout,
                                 const core::Logger& log) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int attempt = 1;; ++attempt) {
    try {
      return admin.describe(std::chrono::milliseconds(2000));
    } catch (const core::DependencyError& e) {
      if (!e.is_retryable() || std::chrono::steady_clock::now() >= deadline) throw;
      log.warn("Kafka not reachable yet, retrying", {{"attempt", attempt}, {"error", e.what()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
}

// Every live client is a file descriptor: the soft limit (often 1,024) goes up to the hard one,
// so that http.max_connections and projections.max_stream_clients can be reached. Logged either
// way, with what the caps would need.
void raise_file_limit(const core::Config& config, const core::Logger& log) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const auto soft_before = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = soft_before;
  }
  const auto as_number = [](rlim_t v) {
    return v == RLIM_INFINITY ? std::int64_t{-1} : static_cast<std::int64_t>(v);
  };
  const auto wanted = static_cast<rlim_t>(config.http.max_connections) + 256;
  const auto level = limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted
                         ? core::LogLevel::kWarn
                         : core::LogLevel::kInfo;
  log.write(level,
            level == core::LogLevel::kWarn
                ? "the open-file limit is below http.max_connections: connections past it fail"
                : "open-file limit",
            {{"soft_before", as_number(soft_before)},
             {"soft", as_number(limit.rlim_cur)},
             {"hard", as_number(limit.rlim_max)},
             {"http_max_connections", config.http.max_connections}});
}

std::vector<core::Migration> migrations_for(const core::PostgresConfig& config) {
  return core::parse_migrations(config.migrations_dir.empty()
                                    ? core::embedded_migration_files()
                                    : core::read_migration_files(config.migrations_dir));
}

// The pipelined reads' figures, brought up to date at each scrape (any I/O thread).
class PipelineMetrics {
 public:
  explicit PipelineMetrics(prometheus::Registry& registry)
      : queries_(prometheus::BuildCounter()
                     .Name("cauce_pg_read_pipeline_queries_total")
                     .Help("Reads sent through the pipelined connections, by outcome: answered "
                           "there, or handed back to the query pool (sampled at scrape)")
                     .Register(registry)),
        answered_(queries_.Add({{"outcome", "answered"}})),
        handed_back_(queries_.Add({{"outcome", "handed_back"}})),
        ready_(prometheus::BuildGauge()
                   .Name("cauce_pg_read_pipelines_ready")
                   .Help("Pipelined read connections open and ready (sampled at scrape)")
                   .Register(registry)
                   .Add({})) {}

  void sample(const PgPipelines& pipelines) {
    const std::lock_guard lock(mutex_);
    const auto answered = pipelines.answered();
    const auto handed_back = pipelines.handed_back();
    answered_.Increment(static_cast<double>(answered - seen_answered_));
    handed_back_.Increment(static_cast<double>(handed_back - seen_handed_back_));
    seen_answered_ = answered;
    seen_handed_back_ = handed_back;
    ready_.Set(pipelines.ready());
  }

 private:
  prometheus::Family<prometheus::Counter>& queries_;
  prometheus::Counter& answered_;
  prometheus::Counter& handed_back_;
  prometheus::Gauge& ready_;
  std::mutex mutex_;
  std::uint64_t seen_answered_ = 0;
  std::uint64_t seen_handed_back_ = 0;
};

}  // namespace

int run_serve(const core::Config& config) {
  const core::Logger log("serve");
  // Block the stop signals and SIGHUP (reload the HTTPS certificate) before any thread starts,
  // so every thread inherits the mask and this one receives them with sigwait below: a reload
  // runs on this thread, between stops, never inside a handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t waited_signals = stop_signals;
  sigaddset(&waited_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &waited_signals, nullptr);

  std::string roles;
  for (const auto& role : config.roles) roles += (roles.empty() ? "" : ",") + role;
  log.info("starting",
           {{"roles", roles},
            {"kafka", config.kafka.bootstrap_servers},
            {"postgres", config.postgres.host + ":" + std::to_string(config.postgres.port) + "/" +
                             config.postgres.database},
            {"data_dir", config.data_dir}});
  const auto startup_timeout = std::chrono::seconds(config.startup_timeout_s);
  raise_file_limit(config, log);
  prometheus::Registry registry;
  // The HTTPS certificate first: a file that cannot be used stops the start at once (a
  // ConfigError naming the setting), before any wait for Kafka or PostgreSQL.
  std::shared_ptr<TlsCertificate> tls;
  if (!config.http.tls_certificate_file.empty()) {
    tls = std::make_shared<TlsCertificate>(config.http.tls_certificate_file,
                                           config.http.tls_key_file, &registry);
    const auto served = tls->served();
    log.info("TLS certificate loaded", {{"subject", served.subject},
                                        {"not_after_s", served.not_after_s},
                                        {"sha256", served.sha256}});
  }

  std::filesystem::create_directories(config.data_dir);
  const auto conninfo = core::postgres_conninfo(config.postgres);
  {
    auto connection = core::connect_postgres_with_retry(conninfo, startup_timeout);
    const auto report = core::migrate(*connection, migrations_for(config.postgres));
    log.info("database schema up to date",
             {{"applied_now", report.applied.size()}, {"already_applied", report.already_applied}});
  }

  core::KafkaAdmin admin(config.kafka);
  auto cluster = wait_for_kafka(admin, startup_timeout, log);
  log.info("Kafka reachable", {{"brokers", cluster.brokers}});
  const bool writes = has_role(config, "api") || has_role(config, "processor");
  // Topics created a moment ago (`cauce topics create` just before) may take a few seconds to
  // show in the broker's metadata: asked again for a while before one counts as missing.
  const auto topics = core::cauce_topics(config.kafka);
  const auto all_listed = [&] {
    return std::all_of(topics.begin(), topics.end(),
                       [&](const auto& t) { return cluster.partitions_by_topic.contains(t.name); });
  };
  for (const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       !all_listed() && std::chrono::steady_clock::now() < settle;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cluster = admin.describe(std::chrono::milliseconds(config.kafka.request_timeout_ms));
  }
  for (const auto& topic : topics) {
    if (cluster.partitions_by_topic.contains(topic.name)) continue;
    if (writes) {
      throw core::DependencyError(
          "kafka", "topic " + topic.name + " does not exist; run `cauce topics create` first",
          false);
    }
    log.warn("topic missing; /readyz stays 503 until `cauce topics create` has run",
             {{"topic", topic.name}});
  }

  const auto events_topic = cluster.partitions_by_topic.find(config.kafka.events_topic);
  const std::int32_t event_partitions =
      events_topic == cluster.partitions_by_topic.end() ? 0 : events_topic->second;
  core::PgPool pool(conninfo, static_cast<std::size_t>(config.postgres.pool_size),
                    std::chrono::seconds(2),
                    std::chrono::milliseconds(config.postgres.statement_timeout_ms));
  PgApiKeyStore key_store(pool);
  ApiKeys keys(key_store);
  if (const auto path = keys.ensure_admin_key(config.data_dir)) {
    log.info("no API keys existed: created an admin key", {{"file", path->string()}});
  }

  const core::KafkaErrorMetrics kafka_errors(registry);
  auto& pool_in_use =
      prometheus::BuildGauge()
          .Name("cauce_pg_pool_in_use")
          .Help("Connections of the PostgreSQL query pool in use (sampled at scrape)")
          .Register(registry)
          .Add({});
  // The data dir's file system, sampled at scrape (statvfs through std::filesystem::space).
  auto& data_dir_free =
      prometheus::BuildGauge()
          .Name("cauce_data_dir_free_bytes")
          .Help("Bytes cauce may still write on the data dir's file system (sampled at scrape)")
          .Register(registry)
          .Add({});
  auto& data_dir_size = prometheus::BuildGauge()
                            .Name("cauce_data_dir_size_bytes")
                            .Help("Size of the data dir's file system (sampled at scrape)")
                            .Register(registry)
                            .Add({});
  HttpMetrics http_metrics(registry);
  std::unique_ptr<projections::Projector> projector;
  if (has_role(config, "projector")) {
    projector = std::make_unique<projections::Projector>(
        projections::ProjectorOptions{.kafka = config.kafka,
                                      .postgres = config.postgres,
                                      .projections = config.projections,
                                      .schema = {}},
        registry);
    projector->start();
  }
  // Started in dependency order and stopped in reverse: the HTTP server drains requests that
  // still wait for replies, so the bus and the processor outlive it.
  std::unique_ptr<commands::CommandProcessor> processor;
  if (has_role(config, "processor")) {
    processor = std::make_unique<commands::CommandProcessor>(
        commands::ProcessorOptions{.kafka = config.kafka, .commands = config.commands}, registry);
    processor->start();
  }
  std::vector<std::unique_ptr<DependencyCheck>> checks;
  checks.push_back(make_postgres_check(config.postgres));
  checks.push_back(make_kafka_check(config.kafka));
  if (processor) checks.push_back(make_processor_check(*processor));
  if (projector) {
    checks.push_back(make_projection_check(*projector, config.projections.max_lag_events));
  }
  checks.push_back(make_data_dir_check(config.data_dir, config.readiness.min_free_bytes));
  ReadinessProbe probe(std::move(checks));
  std::unique_ptr<commands::CommandBus> bus;
  if (has_role(config, "api")) {
    bus = std::make_unique<commands::CommandBus>(
        commands::BusOptions{.kafka = config.kafka, .commands = config.commands}, registry);
    // The processor in this process decides its own partitions' commands without the round
    // trip through cauce.commands and cauce.replies; other partitions' go through the topics.
    if (processor) bus->set_local(processor.get());
    bus->start();
  }
  // Whatever way this scope ends (an error while starting included), the processor stops while
  // the bus it answers local commands through still exists.
  const struct StopProcessorFirst {
    StopProcessorFirst(commands::CommandBus* b, commands::CommandProcessor* p)
        : bus(b), processor(p) {}
    commands::CommandBus* bus;
    commands::CommandProcessor* processor;
    StopProcessorFirst(const StopProcessorFirst&) = delete;
    StopProcessorFirst& operator=(const StopProcessorFirst&) = delete;
    ~StopProcessorFirst() {
      if (bus != nullptr) bus->set_local(nullptr);
      if (processor != nullptr) processor->stop();
    }
  } stop_processor_first{bus.get(), processor.get()};

  // Queries run on their own threads (as many as the pool has connections), never on the I/O
  // threads; the hub LISTENs for the projector's progress and feeds live clients.
  std::unique_ptr<projections::NotificationHub> hub;
  std::unique_ptr<ReplayRunner> replays;
  // The HTTP server's I/O threads run this; so do the pipelined reads, which outlive neither.
  boost::asio::io_context io(config.http.threads);
  VersionCache versions;  // before query_threads: the feed's drains run on them
  boost::asio::thread_pool query_threads(static_cast<std::size_t>(config.postgres.pool_size));
  std::unique_ptr<VersionFeed> version_feed;  // unsubscribes before the hub goes
  projections::ReadModels models(pool);
  projections::ParkedEvents parked(conninfo, config.projections.name, config.kafka.events_topic);
  const BlockingExecutor run_blocking = [&query_threads](std::function<void()> work) {
    boost::asio::post(query_threads, std::move(work));
  };
  // Pipelined connections open on a thread of their own, never holding a query thread.
  boost::asio::thread_pool pipeline_opener(1);
  std::unique_ptr<PgPipelines> pipelines;
  PipelineMetrics pipeline_metrics(registry);
  if (has_role(config, "api") && config.postgres.read_pipelines > 0) {
    pipelines = std::make_unique<PgPipelines>(
        io,
        PgPipelineOptions{
            // Named apart from the pool's connections in pg_stat_activity (the last one counts).
            .conninfo = conninfo + " application_name='cauce-read-pipeline'",
            .statements = pipelined_statements(),
            .statement_timeout = std::chrono::milliseconds(config.postgres.statement_timeout_ms),
            // A connection is taken for dead a second past the statement timeout (5 s at least),
            // never before PostgreSQL's own cancel.
            .answer_timeout = std::chrono::milliseconds(
                std::max(5000, config.postgres.statement_timeout_ms + 1000)),
            .open_on =
                [&pipeline_opener](std::function<void()> work) {
                  boost::asio::post(pipeline_opener, std::move(work));
                }},
        config.postgres.read_pipelines);
  }
  Router router;
  const auto sample_at_scrape = [&pool, &pool_in_use, &pipelines, &pipeline_metrics, &config,
                                 &data_dir_free, &data_dir_size] {
    pool_in_use.Set(static_cast<double>(pool.in_use()));
    if (pipelines) pipeline_metrics.sample(*pipelines);
    std::error_code error;
    const auto space = std::filesystem::space(config.data_dir, error);
    if (!error) {
      data_dir_free.Set(static_cast<double>(space.available));
      data_dir_size.Set(static_cast<double>(space.capacity));
    }
  };
  add_operations_routes(router, probe, registry, sample_at_scrape);
  if (has_role(config, "api")) {
    hub = std::make_unique<projections::NotificationHub>(
        config.postgres, config.projections.name, config.kafka.events_topic, config.projections);
    hub->start();
    add_key_routes(router, keys);
    add_command_routes(router, *bus, static_cast<std::uint32_t>(config.commands.reply_timeout_ms));
    add_schedule_routes(router, *bus, static_cast<std::uint32_t>(config.commands.reply_timeout_ms),
                        config.reports, run_blocking);
    version_feed = std::make_unique<VersionFeed>(*hub, std::set<std::string>{"contacts"}, versions,
                                                 run_blocking);
    add_query_routes(router, QueryDeps{.models = models,
                                       .hub = *hub,
                                       .run_blocking = run_blocking,
                                       .min_position_wait = std::chrono::milliseconds(
                                           config.projections.min_position_wait_ms),
                                       .data_dir = config.data_dir,
                                       .event_partitions = event_partitions,
                                       .zoneinfo_dir = config.reports.zoneinfo_dir,
                                       .versions = &versions,
                                       .pipelines = pipelines.get(),
                                       .max_queued_queries = config.http.max_queued_queries});
    add_stream_routes(router, *hub, config.projections, keys, run_blocking, registry);
    add_webhook_routes(router, *bus, static_cast<std::uint32_t>(config.commands.reply_timeout_ms),
                       pool, run_blocking, config.webhooks.allow_private);
    add_parked_routes(router, parked, run_blocking);
    replays = std::make_unique<ReplayRunner>(
        projections::ReplayOptions{config.kafka, config.postgres, config.projections});
    add_replay_routes(router, *replays, config.postgres, run_blocking);
    add_import_routes(router,
                      ImportDeps{.bus = *bus,
                                 .config = config.imports,
                                 .spool_dir = std::filesystem::path(config.data_dir) / "imports",
                                 .registry = registry});
  }
  // The workers report back through a bus: the API's when this process has one.
  std::unique_ptr<commands::CommandBus> workers_bus;
  std::unique_ptr<workers::Workers> job_workers;
  if (has_role(config, "workers")) {
    if (!bus) {
      workers_bus = std::make_unique<commands::CommandBus>(
          commands::BusOptions{.kafka = config.kafka, .commands = config.commands}, registry);
      if (processor) workers_bus->set_local(processor.get());
      workers_bus->start();
    }
    job_workers = std::make_unique<workers::Workers>(
        workers::WorkerOptions{.kafka = config.kafka,
                               .postgres = config.postgres,
                               .projections = config.projections,
                               .workers = config.workers,
                               .download = config.download,
                               .backups = config.backups,
                               .alerts = config.alerts,
                               .reports = config.reports,
                               .webhooks = config.webhooks,
                               .imports = config.imports,
                               .data_dir = config.data_dir,
                               .now_us = {}},
        workers::send_through(bus ? *bus : *workers_bus), registry);
    job_workers->start();
  }

  HttpServer server(config.http, router, keys, http_metrics, io, tls);
  const auto port = server.start();
  log.info("listening",
           {{"host", config.http.host}, {"port", port}, {"scheme", tls ? "https" : "http"}});

  int signal = 0;
  for (;;) {
    sigwait(&waited_signals, &signal);
    if (signal != SIGHUP) break;
    if (tls) {
      tls->reload();  // logs either way; a failure keeps the certificate served now
    } else {
      log.info("SIGHUP: nothing to reload (no http.tls_certificate_file)");
    }
  }
  const auto stopping_at = std::chrono::steady_clock::now();
  log.info("stopping", {{"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"},
                        {"grace_ms", config.http.shutdown_grace_ms}});
  // Not ready from now on, still serving: a load balancer takes this process out of rotation
  // before the listener closes. Then the HTTP drain answers every request already accepted,
  // commands included (their replies come through the bus and the processor, which stop after).
  probe.stop_serving();
  wait_for_grace(stop_signals, std::chrono::milliseconds(config.http.shutdown_grace_ms));
  server.stop();
  if (job_workers) job_workers->stop();
  if (workers_bus) {
    workers_bus->set_local(nullptr);
    workers_bus->stop();
  }
  if (hub) hub->stop();
  query_threads.join();
  replays.reset();  // interrupts a replay started over HTTP (the next one resumes it)
  if (bus) bus->stop();
  if (processor) processor->stop();
  if (projector) projector->stop();
  log.info("stopped", {{"ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - stopping_at)
                                  .count()}});
  return 0;
}

}  // namespace cauce::api
