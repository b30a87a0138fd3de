// bench/takeover: how long a processor takes from being given its partitions to deciding
// commands, replaying the whole history and then from a snapshot, as the history grows.
//
//   1. a synthetic history is produced straight to a fresh events topic (contacts registered,
//      then updated `--updates` times each, every event keyed and placed like cauce's own);
//   2. a processor takes every partition and replays it all: "full replay";
//   3. one command per partition makes it snapshot (the replay was long), then a new processor
//      takes the partitions: "from snapshot" (it loads the snapshot and replays the tail).
// Settings come from CAUCE_* like the service (scripts/bench starts Kafka and PostgreSQL).

#include <future>
#include <iomanip>
#include <iostream>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>
#include <prometheus/registry.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/config.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>

#include "history.hpp"
#include "load.hpp"

namespace cauce::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<int> aggregates = {100000, 1000000};
  int updates = 9;  // events per aggregate: 1 + updates
  int partitions = 0;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double snapshots_written(prometheus::Registry& registry) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "cauce_processor_snapshots_total") continue;
    for (const auto& m : family.metric) {
      for (const auto& label : m.label) {
        if (label.name == "result" && label.value == "written") return m.counter.value;
      }
    }
  }
  return 0;
}

// Starts a processor on every partition and returns the seconds until all are ready.
double takeover(commands::CommandProcessor& processor, int partitions) {
  const auto started = Clock::now();
  processor.start();
  for (;;) {
    const auto s = processor.status();
    if (static_cast<int>(s.size()) == partitions &&
        std::all_of(s.begin(), s.end(), [](const auto& p) { return p.ready; })) {
      return seconds_since(started);
    }
    if (seconds_since(started) > 600) throw std::runtime_error("not ready within 10 minutes");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int run(const Options& options) {
  core::set_log_level(core::LogLevel::kWarn);
  const auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  std::cout << "cauce bench/takeover: " << options.updates + 1 << " events per contact, "
            << std::thread::hardware_concurrency() << " cores\n\n"
            << std::left << std::setw(12) << "aggregates" << std::setw(12) << "events"
            << std::setw(16) << "produce ev/s" << std::setw(18) << "full replay s" << std::setw(16)
            << "replay ev/s" << std::setw(18) << "from snapshot s"
            << "\n";
  for (const int aggregates : options.aggregates) {
    auto kafka = config.kafka;
    if (options.partitions > 0) kafka.partitions = options.partitions;
    const auto prefix = "takeover-" + core::random_hex(4);
    core::use_topic_prefix(kafka, prefix);
    core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), kafka.partitions, 1);
    auto commands_config = config.commands;
    commands_config.processor_group = prefix + "-processor";
    commands_config.instance_id = prefix;
    commands_config.snapshot_every_events = 1000;
    std::vector<int> all;
    for (int p = 0; p < kafka.partitions; ++p) all.push_back(p);

    std::vector<std::string> ids;
    const auto produce_started = Clock::now();
    const auto events = produce_history(kafka, aggregates, options.updates, ids);
    const auto produce_rate = static_cast<double>(events) / seconds_since(produce_started);

    prometheus::Registry registry;
    double full = 0;
    {
      commands::CommandProcessor processor(
          {.kafka = kafka, .commands = commands_config, .static_partitions = all}, registry);
      full = takeover(processor, kafka.partitions);
      // One command per partition: its commit snapshots the partition (the replay was long).
      commands::CommandBus bus({.kafka = kafka, .commands = commands_config}, registry);
      bus.set_local(&processor);
      bus.start();
      std::vector<std::future<bool>> done;
      for (const auto& id : ids) {
        if (id.empty()) continue;
        commands::CommandEnvelope c;
        c.command_id = commands::uuid_v7(0);
        c.type = "contact.update";
        c.aggregate_type = "contact";
        c.aggregate_id = id;
        c.issued_at_us = 1'700'000'000'000'000;
        c.actor = "bench";
        c.correlation_id = c.command_id;
        c.request_hash = c.command_id;
        c.data = R"({"notes":"after the replay"})";
        auto promise = std::make_shared<std::promise<bool>>();
        done.push_back(promise->get_future());
        bus.send(c, [promise](commands::SendResult r) {
          promise->set_value(std::holds_alternative<commands::Reply>(r));
        });
      }
      for (auto& f : done) {
        if (!f.get()) throw std::runtime_error("a command after the replay failed");
      }
      const auto wait_started = Clock::now();
      while (snapshots_written(registry) < static_cast<double>(done.size())) {
        if (seconds_since(wait_started) > 120) throw std::runtime_error("no snapshot written");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      processor.stop();  // also flushes the snapshots
      bus.stop();
    }
    double from_snapshot = 0;
    {
      prometheus::Registry second_registry;
      commands::CommandProcessor processor(
          {.kafka = kafka, .commands = commands_config, .static_partitions = all}, second_registry);
      from_snapshot = takeover(processor, kafka.partitions);
      processor.stop();
    }
    std::cout << std::left << std::setw(12) << aggregates << std::setw(12) << events
              << std::setw(16) << std::fixed << std::setprecision(0) << produce_rate
              << std::setw(18) << std::setprecision(2) << full << std::setw(16)
              << std::setprecision(0) << static_cast<double>(events) / full << std::setw(18)
              << std::setprecision(2) << from_snapshot << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce partition takeover benchmark"};
  cauce::bench::Options options;
  app.add_option("--aggregates", options.aggregates, "Contacts in the history (one row each)")
      ->check(CLI::PositiveNumber);
  app.add_option("--updates", options.updates, "Updates per contact")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--partitions", options.partitions, "Partitions of the bench topics")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/takeover",
                                            [&] { return cauce::bench::run(options); });
}
