// bench/e2e: how long from a command to the change being visible, one client at a time:
//
//   command   POST /v1/contacts/{id}/calls answered (events committed in Kafka)
//   visible   then GET /v1/contacts/{id} with the command's Cauce-Min-Position answered
//             (the projector has committed the change to PostgreSQL)
//   sse       the change's notification arrived on an open GET /v1/stream
//
// all measured from the moment the command was sent, next to the raw limits measured in the same
// run: a bare Beast handler's round trip and one Kafka transaction (produce one record + commit).

#include <condition_variable>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <CLI/CLI.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <prometheus/registry.h>
#include <rapidjson/document.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http_metrics.hpp>
#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/api/server.hpp>
#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/envelope.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/projections/queries.hpp>

#include "load.hpp"

namespace cauce::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

struct Options {
  int requests = 500;
  int runs = 3;
};

double ms_since(Clock::time_point start, Clock::time_point end = Clock::now()) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

void print_row(const std::string& name, const std::vector<double>& ms) {
  LoadResult r;
  r.latencies_ms = ms;
  std::cout << std::left << std::setw(46) << name << std::right << std::fixed
            << std::setprecision(2) << " p50 " << std::setw(7) << r.percentile(50) << " ms  p99 "
            << std::setw(7) << r.percentile(99) << " ms\n";
}

// One keep-alive HTTP/1.1 connection, synchronous.
class Client {
 public:
  explicit Client(std::uint16_t port) : stream_(ioc_) {
    stream_.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  http::response<http::string_body> send(
      http::verb method, const std::string& target, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& headers) {
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(stream_, req);
    http::response<http::string_body> res;
    http::read(stream_, buffer_, res);
    return res;
  }

 private:
  asio::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

// Reads /v1/stream on its own thread and notes when each position's notification arrived.
class SseWatcher {
 public:
  SseWatcher(std::uint16_t port, const std::string& token) : socket_(ioc_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    const std::string request =
        "GET /v1/stream?topics=contacts HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Bearer " +
        token + "\r\n\r\n";
    asio::write(socket_, asio::buffer(request));
    thread_ = std::thread([this] { read_loop(); });
  }
  ~SseWatcher() {
    beast::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    thread_.join();
  }
  // When `position` arrived (waits up to 10 s).
  std::optional<Clock::time_point> arrival(const std::string& position) {
    std::unique_lock lock(mutex_);
    if (!arrived_.wait_for(lock, std::chrono::seconds(10),
                           [&] { return seen_.contains(position); })) {
      return std::nullopt;
    }
    return seen_[position];
  }

 private:
  void read_loop() {
    std::string buffer;
    char chunk[16384];
    for (;;) {
      beast::error_code ec;
      const auto n = socket_.read_some(asio::buffer(chunk), ec);
      if (ec) return;
      const auto now = Clock::now();
      buffer.append(chunk, n);
      std::size_t at;
      while ((at = buffer.find("\"position\":\"")) != std::string::npos) {
        const auto start = at + 12;
        const auto end = buffer.find('"', start);
        if (end == std::string::npos) break;
        {
          const std::lock_guard lock(mutex_);
          seen_[buffer.substr(start, end - start)] = now;
        }
        arrived_.notify_all();
        buffer.erase(0, end);
      }
    }
  }

  asio::io_context ioc_;
  asio::ip::tcp::socket socket_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<std::string, Clock::time_point> seen_;
};

// One record produced and committed in its own Kafka transaction, `count` times.
std::vector<double> raw_transaction_latency(const core::KafkaConfig& kafka, int count) {
  auto conf =
      core::kafka_producer_conf(kafka, {{"transactional.id", "bench-e2e-" + core::random_hex(4)},
                                        {"linger.ms", "0"},
                                        {"retry.backoff.ms", "10"}});  // as the processor
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  if (!producer) throw std::runtime_error(err);
  core::kafka_check(producer->init_transactions(10000), "init_transactions");
  core::kafka_partition_count(*producer, kafka.events_topic, std::chrono::seconds(10));
  std::vector<double> ms;
  const std::string value(400, 'x');
  for (int i = 0; i < count; ++i) {
    const auto start = Clock::now();
    core::kafka_check(producer->begin_transaction(), "begin_transaction");
    core::kafka_produce(*producer, kafka.events_topic, 0, "key", value, {});
    core::kafka_check(producer->commit_transaction(10000), "commit_transaction");
    ms.push_back(ms_since(start));
  }
  return ms;
}

int run(const Options& options) {
  core::set_log_level(core::LogLevel::kWarn);
  auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  auto kafka = config.kafka;
  const auto prefix = "bench-" + core::random_hex(4);
  core::use_topic_prefix(kafka, prefix);
  config.commands.processor_group = prefix + "-processor";
  config.projections.group = prefix + "-projector";
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), kafka.partitions, 1);
  {
    auto c = core::connect_postgres(core::postgres_conninfo(config.postgres));
    core::migrate(*c, core::parse_migrations(core::embedded_migration_files()));
  }
  auto raw_kafka = kafka;
  raw_kafka.events_topic = prefix + ".raw";
  core::KafkaAdmin(raw_kafka).ensure_topics({{raw_kafka.events_topic, {}}}, 1, 1);

  prometheus::Registry registry;
  core::PgPool pool(core::postgres_conninfo(config.postgres), 4);
  api::PgApiKeyStore store(pool);
  api::ApiKeys keys(store);
  api::HttpMetrics metrics(registry);
  commands::CommandProcessor processor({.kafka = kafka, .commands = config.commands}, registry);
  commands::CommandBus bus({.kafka = kafka, .commands = config.commands}, registry);
  projections::Projector projector({.kafka = kafka,
                                    .postgres = config.postgres,
                                    .projections = config.projections,
                                    .schema = {}},
                                   registry);
  projections::NotificationHub hub(config.postgres, config.projections.name, kafka.events_topic,
                                   config.projections);
  projections::ReadModels models(pool);
  asio::thread_pool query_threads(4);
  processor.start();
  bus.set_local(&processor);  // as `cauce serve` wires them: the in-process path
  bus.start();
  projector.start();
  hub.start();
  api::Router router;
  router.add(http::verb::get, "/bare", std::nullopt, [](api::Request& request) {
    return api::json_response(request, http::status::ok, R"({"ok":true})");
  });
  api::add_command_routes(router, bus, 10000);
  api::add_query_routes(router, {.models = models,
                                 .hub = hub,
                                 .run_blocking =
                                     [&query_threads](std::function<void()> work) {
                                       asio::post(query_threads, std::move(work));
                                     },
                                 .min_position_wait = std::chrono::seconds(10)});
  api::add_stream_routes(
      router, hub, config.projections, keys,
      [&query_threads](std::function<void()> work) { asio::post(query_threads, std::move(work)); },
      registry);
  auto http_config = config.http;
  http_config.port = 0;
  // The benchmark measures capacity through one key: no per-key rate limit in the way.
  http_config.rate_limit_reader = http_config.rate_limit_operator = http_config.rate_limit_admin =
      0;
  api::HttpServer server(http_config, router, keys, metrics);
  const auto port = server.start();
  const auto token = keys.create("bench", api::Role::kOperator).token;
  const std::vector<std::pair<std::string, std::string>> auth = {
      {"Authorization", "Bearer " + token}};

  std::cout << "bench/e2e: " << kafka.partitions << " partitions, one client, " << options.requests
            << " commands per run, " << options.runs << " runs\n\n";
  Client client(port);
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto r =
        client.send(http::verb::post, "/v1/contacts",
                    R"({"name":"E2E )" + std::to_string(i) + R"(","phone":"+351912345678"})", auth);
    rapidjson::Document d;
    d.Parse(r.body().c_str());
    if (r.result_int() != 201) throw std::runtime_error("seeding failed: " + r.body());
    ids.emplace_back(d["id"].GetString());
  }
  SseWatcher sse(port, token);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // subscribed before the first command

  std::map<std::string, std::vector<double>> medians_p50;
  std::map<std::string, std::vector<double>> medians_p99;
  auto note = [&](const std::string& name, const std::vector<double>& ms) {
    LoadResult r;
    r.latencies_ms = ms;
    medians_p50[name].push_back(r.percentile(50));
    medians_p99[name].push_back(r.percentile(99));
    print_row("  " + name, ms);
  };
  for (int run = 1; run <= options.runs; ++run) {
    std::cout << "run " << run << "\n";
    std::vector<double> bare;
    for (int i = 0; i < options.requests; ++i) {
      const auto start = Clock::now();
      client.send(http::verb::get, "/bare", "", {});
      bare.push_back(ms_since(start));
    }
    note("raw: bare Beast round trip", bare);
    note("raw: one Kafka transaction (1 record)",
         raw_transaction_latency(raw_kafka, options.requests));
    std::vector<double> command;
    std::vector<double> visible;
    std::vector<double> pushed;
    for (int i = 0; i < options.requests; ++i) {
      const auto& id = ids[static_cast<std::size_t>(i) % ids.size()];
      const auto start = Clock::now();
      auto r = client.send(http::verb::post, "/v1/contacts/" + id + "/calls",
                           R"({"outcome":"answered","duration_s":61,"operator":"op1"})", auth);
      command.push_back(ms_since(start));
      const auto position = std::string(r["Cauce-Position"]);
      auto headers = auth;
      headers.emplace_back("Cauce-Min-Position", position);
      r = client.send(http::verb::get, "/v1/contacts/" + id, "", headers);
      if (r.result_int() != 200) throw std::runtime_error("query failed: " + r.body());
      visible.push_back(ms_since(start));
      const auto arrived = sse.arrival(position);
      if (!arrived) throw std::runtime_error("no notification for " + position);
      pushed.push_back(ms_since(start, *arrived));
    }
    note("command answered (201)", command);
    note("visible to a query with Cauce-Min-Position", visible);
    note("notification received on /v1/stream", pushed);
  }
  std::cout << "\nmedians over " << options.runs << " runs (of each run's p50 and p99)\n";
  for (const auto* name : {"raw: bare Beast round trip", "raw: one Kafka transaction (1 record)",
                           "command answered (201)", "visible to a query with Cauce-Min-Position",
                           "notification received on /v1/stream"}) {
    std::cout << std::left << std::setw(48) << (std::string("  ") + name) << std::right
              << std::fixed << std::setprecision(2) << " p50 " << std::setw(7)
              << median(medians_p50[name]) << " ms  p99 " << std::setw(7)
              << median(medians_p99[name]) << " ms\n";
  }
  server.stop();
  hub.stop();
  query_threads.join();
  projector.stop();
  bus.stop();
  processor.stop();
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce end-to-end latency benchmark"};
  cauce::bench::Options options;
  app.add_option("--requests", options.requests, "Commands per run")->check(CLI::PositiveNumber);
  app.add_option("--runs", options.runs, "Runs (medians are reported)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/e2e",
                                            [&] { return cauce::bench::run(options); });
}
