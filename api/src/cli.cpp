#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/cli.hpp>
#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/parked_events.hpp>
#include <cauce/projections/replay.hpp>
#include <cauce/workers/backup.hpp>

#include "events_cli.hpp"
#include "service.hpp"

namespace cauce::api {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    // "alert.raised, alert.closed": the spaces are not part of a type
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// Progress of a restore: a bar on a terminal, one JSON line per step otherwise.
workers::Progress progress_printer() {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  return [tty](const std::string& what, std::int64_t done, std::int64_t total) {
    if (!tty) {
      std::cout << R"({"progress":")" << what << R"(","done":)" << done << R"(,"total":)" << total
                << "}" << std::endl;
      return;
    }
    constexpr int kWidth = 30;
    const int filled = total > 0 ? static_cast<int>(kWidth * std::min(done, total) / total) : 0;
    std::cout << "\r" << what << " [" << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(kWidth - filled), ' ') << "] " << done << "/"
              << total << (done >= total ? "\n" : "") << std::flush;
  };
}

// Turns SIGINT and SIGTERM into a flag for a long-running command (replay, events tail), from
// construction (before any other thread starts, so they all inherit the mask) to destruction.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    watcher_ = std::thread([this] {
      const timespec tick{0, 200'000'000};
      while (!finished_) {
        if (sigtimedwait(&signals_, nullptr, &tick) <= 0) continue;
        if (stop_.exchange(true)) std::_Exit(130);  // a second Ctrl-C: now, whatever it waits on
      }
    });
  }
  ~StopSignals() {
    finished_ = true;
    watcher_.join();
    pthread_sigmask(SIG_UNBLOCK, &signals_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  const std::atomic<bool>& flag() const { return stop_; }

 private:
  sigset_t signals_{};
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::thread watcher_;
};

// `cauce replay`: progress as a bar on a terminal (events/s, % of the log, ETA), JSON lines
// otherwise; Ctrl-C (or SIGTERM) stops at the next batch, and the next run resumes.
int run_replay(const core::Config& config, projections::ReplayRequest request, bool abandon) {
  const projections::ReplayOptions options{config.kafka, config.postgres, config.projections};
  if (abandon) {
    if (!projections::Replay::abandon(options)) {
      std::cerr << "cauce: no unfinished replay to abandon\n";
      return kExitFailure;
    }
    std::cout << "abandoned the unfinished replay; its generation is dropped\n";
    return 0;
  }
  const StopSignals signals;
  const auto& stop = signals.flag();

  projections::Replay replay(options, std::move(request));
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  const auto& prepared = replay.prepared();
  std::cerr << (prepared.resumed ? "resuming replay " : "replay ") << prepared.id << " into "
            << prepared.schema << "\n";
  const auto result = replay.run(
      [tty](const projections::ReplayProgress& p) {
        if (!tty) {
          std::cout << projections::to_json(p) << std::endl;
          return;
        }
        constexpr int kWidth = 30;
        const int filled = static_cast<int>(kWidth * std::clamp(p.ratio, 0.0, 1.0));
        std::ostringstream line;
        line << std::fixed << std::setprecision(1) << "\r" << p.schema << " ["
             << std::string(static_cast<std::size_t>(filled), '#')
             << std::string(static_cast<std::size_t>(kWidth - filled), ' ') << "] " << 100 * p.ratio
             << "%  " << std::setprecision(0) << p.events_per_s << " events/s  ";
        if (p.eta_s >= 0) {
          line << "ETA " << p.eta_s << " s";
        } else {
          line << "ETA -";
        }
        line << "   ";
        std::cout << line.str() << std::flush;
      },
      stop);
  if (tty) std::cout << "\n";
  if (result.status == "interrupted") {
    std::cerr << "interrupted; run `cauce replay` again to resume\n";
    return 130;
  }
  std::cerr << "switched to " << result.schema << " (" << result.applied << " events); "
            << result.old_schema << " is dropped after " << config.projections.replay_grace_s
            << " s\n";
  return 0;
}

// The local backups, then (with backups.copy_to set) the copies off the box.
int list_backups(const core::Config& config) {
  const auto print = [](const std::vector<workers::BackupSummary>& backups, const char* where) {
    for (const auto& b : backups) {
      std::cout << b.id << "  " << core::format_utc_micros(b.created_at_us) << "  " << b.events
                << " events  " << b.bytes << " bytes  " << where << "  " << b.directory.string()
                << "\n";
    }
  };
  print(workers::list_backups(std::filesystem::path(config.data_dir) / "backups"), "local");
  if (!config.backups.copy_to.empty()) {
    print(workers::list_backups(config.backups.copy_to), "copy");
  }
  return 0;
}

// An id names a backup under <data dir>/backups, or else its copy under backups.copy_to (the
// machine's own disk lost); anything with a slash is a directory.
std::filesystem::path backup_directory(const core::Config& config, const std::string& id_or_dir) {
  if (id_or_dir.find('/') != std::string::npos) return id_or_dir;
  const auto local = std::filesystem::path(config.data_dir) / "backups" / id_or_dir;
  if (!std::filesystem::exists(local) && !config.backups.copy_to.empty() &&
      std::filesystem::exists(std::filesystem::path(config.backups.copy_to) / id_or_dir)) {
    return std::filesystem::path(config.backups.copy_to) / id_or_dir;
  }
  return local;
}

core::Config effective_config(const std::string& config_file,
                              const std::map<std::string, std::string>& flag_values,
                              const CLI::App& app) {
  core::ConfigSources sources;
  if (!config_file.empty()) {
    sources.file = config_file;
  } else if (const char* env_file = std::getenv("CAUCE_CONFIG"); env_file && *env_file) {
    sources.file = env_file;
  }
  sources.env = core::cauce_environment();
  for (const auto& option : core::config_options()) {
    if (option.secret) continue;
    if (app.get_option(option.flag)->count() > 0) {
      sources.flags.emplace_back(option.key, flag_values.at(option.key));
    }
  }
  auto config = core::load_config(sources);
  core::set_log_level(core::parse_log_level(config.log_level));
  return config;
}

int topics_create(const core::Config& config) {
  const core::Logger log("topics");
  core::KafkaAdmin admin(config.kafka);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(config.startup_timeout_s);
  for (;;) {
    try {
      for (const auto& topic :
           admin.ensure_topics(core::cauce_topics(config.kafka), config.kafka.partitions,
                               config.kafka.replication_factor)) {
        std::cout << topic.name << ": "
                  << (topic.state == core::TopicState::kCreated ? "created" : "exists") << " ("
                  << topic.partitions << " partitions)\n";
      }
      return 0;
    } catch (const core::DependencyError& e) {
      if (!e.is_retryable() || std::chrono::steady_clock::now() >= deadline) throw;
      log.warn("Kafka not reachable yet, retrying", {{"error", e.what()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
}

int migrate(const core::Config& config) {
  auto connection = core::connect_postgres_with_retry(
      core::postgres_conninfo(config.postgres), std::chrono::seconds(config.startup_timeout_s));
  const auto files = config.postgres.migrations_dir.empty()
                         ? core::embedded_migration_files()
                         : core::read_migration_files(config.postgres.migrations_dir);
  const auto report = core::migrate(*connection, core::parse_migrations(files));
  for (const auto& name : report.applied) std::cout << "applied " << name << "\n";
  std::cout << report.applied.size() << " applied, " << report.already_applied
            << " already applied\n";
  return 0;
}

// Key management runs against the database directly: it is how the first operator keys are
// made, before anyone holds a key for the HTTP API.
template <typename Fn>
int with_keys(const core::Config& config, Fn&& fn) {
  core::PgPool pool(core::postgres_conninfo(config.postgres), 1, std::chrono::seconds(10));
  PgApiKeyStore store(pool);
  ApiKeys keys(store);
  return fn(keys);
}

// One line per parked event: id, where it sits, what it is, why it was parked.
int list_parked(projections::ParkedEvents& parked, bool all) {
  std::int64_t after = 0;
  std::size_t shown = 0;
  for (;;) {
    const auto page = parked.list(all, after, 500);
    for (const auto& e : page) {
      std::cout << e.id << "  " << e.partition << ":" << e.offset << "  "
                << e.type.value_or("(not an event)") << "  " << e.aggregate_id.value_or("-") << "  "
                << e.resolution.value_or("parked") << "  attempts " << e.attempts << "  parked "
                << e.parked_at << "\n    " << e.error << "\n";
      after = e.id;
    }
    shown += page.size();
    if (page.size() < 500) break;
  }
  std::cerr << shown << (all ? " parked events\n" : " parked events waiting\n");
  return 0;
}

int retry_parked(projections::ParkedEvents& parked, std::int64_t id) {
  const auto r = parked.retry(id, "cli");
  using O = projections::RetryResult::Outcome;
  switch (r.outcome) {
    case O::kApplied:
      std::cout << "retried " << id << ": " << r.applied << " events applied\n";
      return 0;
    case O::kFailed:
      std::cerr << "cauce: parked event " << id << " still does not apply: " << r.error << "\n";
      return kExitFailure;
    case O::kNotFound:
      std::cerr << "cauce: no parked event " << id << "\n";
      return kExitFailure;
    case O::kResolved:
      std::cerr << "cauce: parked event " << id << " was retried or skipped already\n";
      return kExitFailure;
    case O::kBehindAnother:
      std::cerr << "cauce: an earlier event of the same aggregate is parked: retry "
                << r.blocking_id << " first\n";
      return kExitFailure;
  }
  return kExitFailure;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"cauce: an event-sourced operations backend (Kafka log, PostgreSQL read models)",
               "cauce"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("cauce ") + CAUCE_VERSION);

  std::string config_file;
  app.add_option("--config", config_file, "JSON config file (also CAUCE_CONFIG)")
      ->group("Configuration");
  std::map<std::string, std::string> flag_values;
  for (const auto& option : core::config_options()) {
    if (option.secret) continue;  // secrets come from the environment or a file only
    app.add_option(option.flag, flag_values[option.key], option.help + " [" + option.env + "]")
        ->group("Configuration");
  }

  auto* serve = app.add_subcommand("serve", "Run cauce (all roles unless --roles says otherwise)");
  auto* topics = app.add_subcommand("topics", "Manage cauce's Kafka topics");
  topics->require_subcommand(1);
  auto* topics_create_cmd = topics->add_subcommand(
      "create", "Create cauce.commands/events/replies (idempotent; refuses a partition mismatch)");
  auto* migrate_cmd = app.add_subcommand("migrate", "Apply the SQL migrations to PostgreSQL");
  auto* keys = app.add_subcommand("keys", "Manage API keys");
  keys->require_subcommand(1);
  std::string key_role = "operator";
  std::string key_name;
  auto* keys_create = keys->add_subcommand("create", "Create a key and print it (shown once)");
  keys_create->add_option("--role", key_role, "reader, operator or admin")
      ->check(CLI::IsMember({"reader", "operator", "admin"}));
  keys_create->add_option("--name", key_name, "Who holds the key (default: the role)");
  std::string key_actor;
  std::vector<std::string> key_topics;
  std::vector<std::string> key_regions;
  keys_create->add_option("--actor", key_actor,
                          "The identity its commands record as actor (default: the name)");
  keys_create
      ->add_option("--topics", key_topics,
                   "Only these stream topics, comma-separated (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(projections::subscribable_topics()));
  keys_create
      ->add_option("--regions", key_regions,
                   "Only alerts of these regions on its streams, comma-separated (default: all)")
      ->delimiter(',');
  auto* keys_list = keys->add_subcommand("list", "List keys (never their secrets)");
  std::string revoke_id;
  auto* keys_revoke = keys->add_subcommand("revoke", "Revoke a key by id");
  keys_revoke->add_option("id", revoke_id, "The key's id")->required();
  auto* parked_cmd =
      app.add_subcommand("parked", "Events the projection parked (could not apply) and went past");
  parked_cmd->require_subcommand(1);
  bool parked_all = false;
  auto* parked_list = parked_cmd->add_subcommand("list", "List parked events, oldest first");
  parked_list->add_flag("--all", parked_all, "Include the ones already retried or skipped");
  std::int64_t parked_id = 0;
  auto* parked_retry = parked_cmd->add_subcommand(
      "retry", "Apply a parked event (and the ones held back behind it) with this build's code");
  parked_retry->add_option("id", parked_id, "The parked event's id")->required();
  auto* parked_skip =
      parked_cmd->add_subcommand("skip", "Mark a parked event skipped: it is never applied");
  parked_skip->add_option("id", parked_id, "The parked event's id")->required();
  auto* backups_cmd = app.add_subcommand(
      "backups", "The backups under <data dir>/backups (and their copies under backups.copy_to)");
  backups_cmd->require_subcommand(1);
  auto* backups_list =
      backups_cmd->add_subcommand("list", "List complete backups and copies, oldest first");
  std::string backup_id;
  auto* backups_verify = backups_cmd->add_subcommand(
      "verify", "Check a backup's files against its manifest (sizes, sha256) without restoring");
  backups_verify->add_option("id", backup_id, "The backup's id, or its directory")->required();
  std::string restore_dir;
  auto* restore_cmd = app.add_subcommand(
      "restore", "Rebuild a working system from a backup on an empty Kafka and PostgreSQL");
  restore_cmd
      ->add_option("backup", restore_dir,
                   "The backup's directory, or its id (local, else its copy in backups.copy_to)")
      ->required();
  auto* replay_cmd = app.add_subcommand(
      "replay", "Rebuild the read models from the log into a new generation, then switch to it");
  std::string replay_projection = "all";
  std::string replay_from_offset;
  std::string replay_from_time;
  bool replay_abandon = false;
  replay_cmd->add_option("--projection", replay_projection,
                         "The projection (projections.name) or all; one holds every read model");
  auto* from_offset_opt = replay_cmd->add_option(
      "--from-offset", replay_from_offset,
      "Start at these offsets, e.g. 0:1200,1:980 (partitions not named start at 0)");
  replay_cmd
      ->add_option("--from-time", replay_from_time,
                   "Start at the first event at or after this RFC 3339 time (broker time index)")
      ->excludes(from_offset_opt);
  replay_cmd->add_flag("--abandon", replay_abandon,
                       "Give up the unfinished replay and drop its generation");
  auto* events_cmd = app.add_subcommand("events", "Read the event log (read_committed)");
  events_cmd->require_subcommand(1);
  std::string event_types;
  std::string event_aggregate;
  std::string events_from;
  std::string events_to;
  auto* events_tail_cmd = events_cmd->add_subcommand(
      "tail", "Print new events as they are committed, one JSON line each, until Ctrl-C");
  auto* events_dump_cmd = events_cmd->add_subcommand(
      "dump", "Print the events of a time range as JSON lines (> file.ndjson), then exit");
  for (auto* sub : {events_tail_cmd, events_dump_cmd}) {
    sub->add_option("--type", event_types, "Only these event types (comma-separated)");
    sub->add_option("--aggregate", event_aggregate, "Only this aggregate's events (its id)");
  }
  events_dump_cmd->add_option("--from-time", events_from,
                              "From the first event at or after this RFC 3339 time");
  events_dump_cmd->add_option("--to-time", events_to,
                              "Up to (not including) the first event at or after this time");
  auto* config_cmd = app.add_subcommand("config", "Show the effective configuration");
  bool print = false;
  config_cmd->add_flag("--print", print, "Print every setting (secrets masked)");
  auto* version = app.add_subcommand("version", "Print the version");
  for (auto* sub :
       {serve,           topics,          topics_create_cmd, migrate_cmd, keys,         keys_create,
        keys_list,       keys_revoke,     parked_cmd,        parked_list, parked_retry, parked_skip,
        backups_cmd,     backups_list,    backups_verify,    restore_cmd, replay_cmd,   events_cmd,
        events_tail_cmd, events_dump_cmd, config_cmd,        version}) {
    sub->fallthrough();  // configuration flags may follow the subcommand
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "cauce: " << e.what() << "\nRun `cauce --help` for usage.\n";
    return kExitUsage;
  }

  const core::Logger log("cli");
  try {
    const auto config = effective_config(config_file, flag_values, app);
    if (*version) {
      std::cout << "cauce " << CAUCE_VERSION << " (librdkafka " << core::kafka_client_version()
                << ")\n";
      return 0;
    }
    if (*config_cmd) {
      for (const auto& [key, value] : core::describe(config)) {
        std::cout << key << " = " << value << "\n";
      }
      return 0;
    }
    if (*serve) return run_serve(config);
    if (*topics_create_cmd) return topics_create(config);
    if (*migrate_cmd) return migrate(config);
    if (*keys_create) {
      return with_keys(config, [&](ApiKeys& k) {
        KeyScope scope;
        if (!key_topics.empty()) scope.topics.emplace(key_topics.begin(), key_topics.end());
        if (!key_regions.empty()) scope.regions.emplace(key_regions.begin(), key_regions.end());
        const auto issued = k.create(key_name.empty() ? key_role : key_name, *parse_role(key_role),
                                     key_actor, std::move(scope));
        std::cerr << "created " << key_role << " key " << issued.record.id
                  << "; it is shown only now:\n";
        std::cout << issued.token << "\n";
        return 0;
      });
    }
    if (*keys_list) {
      return with_keys(config, [](ApiKeys& k) {
        for (const auto& r : k.list()) {
          std::cout << r.id << "  " << role_name(r.role) << "  " << r.name << "  actor " << r.actor
                    << "  " << r.created_at << (r.revoked_at ? "  revoked " + *r.revoked_at : "")
                    << "\n";
        }
        return 0;
      });
    }
    if (*keys_revoke) {
      return with_keys(config, [&](ApiKeys& k) {
        if (!k.revoke(revoke_id)) {
          std::cerr << "cauce: no active key with id " << revoke_id << "\n";
          return kExitFailure;
        }
        std::cout << "revoked " << revoke_id << "\n";
        return 0;
      });
    }
    if (*parked_list || *parked_retry || *parked_skip) {
      projections::ParkedEvents parked(core::postgres_conninfo(config.postgres),
                                       config.projections.name, config.kafka.events_topic);
      if (*parked_list) return list_parked(parked, parked_all);
      if (*parked_retry) return retry_parked(parked, parked_id);
      if (!parked.skip(parked_id, "cli")) {
        std::cerr << "cauce: no open parked event " << parked_id << "\n";
        return kExitFailure;
      }
      std::cout << "skipped " << parked_id << "\n";
      return 0;
    }
    if (*backups_list) return list_backups(config);
    if (*backups_verify) {
      const auto b = workers::verify_backup(backup_directory(config, backup_id));
      std::cout << "backup " << b.id << " is intact: " << b.events << " events, " << b.bytes
                << " bytes\n";
      return 0;
    }
    if (*restore_cmd) {
      const auto report = workers::restore_backup(
          backup_directory(config, restore_dir),
          workers::RestoreTarget{.kafka = config.kafka,
                                 .postgres = config.postgres,
                                 .projections = config.projections,
                                 .data_dir = std::filesystem::path(config.data_dir)},
          progress_printer());
      std::cout << "restored " << report.events << " events; read models match the backup ("
                << report.tables_checked.size() << " tables checked)\n";
      return 0;
    }
    if (*replay_cmd) {
      projections::ReplayRequest request;
      request.projection = replay_projection;
      request.requested_by = "cli";
      if (!replay_from_offset.empty()) {
        request.from.kind = projections::ReplayFrom::Kind::kOffsets;
        request.from.offsets = projections::parse_partition_offsets(replay_from_offset);
      } else if (!replay_from_time.empty()) {
        request.from.kind = projections::ReplayFrom::Kind::kTime;
        request.from.time = projections::parse_rfc3339(replay_from_time, "from-time");
      }
      return run_replay(config, std::move(request), replay_abandon);
    }
    if (*events_tail_cmd || *events_dump_cmd) {
      EventFilter filter;
      for (const auto& type : split_list(event_types)) filter.types.insert(type);
      filter.aggregate = event_aggregate;
      std::optional<std::chrono::system_clock::time_point> from;
      std::optional<std::chrono::system_clock::time_point> to;
      if (!events_from.empty()) from = projections::parse_rfc3339(events_from, "from-time");
      if (!events_to.empty()) to = projections::parse_rfc3339(events_to, "to-time");
      if (from && to && *to <= *from) {
        throw std::invalid_argument("to-time must come after from-time");
      }
      const StopSignals signals;
      if (*events_tail_cmd) return events_tail(config.kafka, filter, signals.flag());
      return events_dump(config.kafka, filter, from, to, signals.flag());
    }
  } catch (const std::invalid_argument& e) {
    std::cerr << "cauce: " << e.what() << "\n";
    return kExitUsage;
  } catch (const projections::ReplayConflict& e) {
    std::cerr << "cauce: " << e.what() << "\n";
    return kExitFailure;
  } catch (const workers::BackupError& e) {
    std::cerr << "cauce: " << e.what() << "\n";
    return kExitFailure;
  } catch (const core::ConfigError& e) {
    std::cerr << "cauce: invalid configuration: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    log.error("failed", {{"error", e.what()}});
    return kExitFailure;
  }
  return kExitUsage;
}

}  // namespace cauce::api
