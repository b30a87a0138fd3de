// bench/jobs: the workers' heavy steps next to the raw tools doing the same work.
//
//   1. PDF rendering: a CSV of --rows rows (median of --runs), pages/s and the peak memory of the
//      process that rendered it (a child per render: its own high-water mark), then a 10× larger
//      source once, to show the memory stays flat with the rows;
//   2. backup and restore of a history of --contacts contacts × 10 events (1M by default): the
//      history is produced and projected into the read models, then, in the same run,
//      - a raw read_committed consume of the whole log,
//      - pg_dump -Fc of the database and pg_restore of that dump into an empty database,
//      - cauce's backup (log export + pg_dump in one snapshot + manifest), verify, and restore
//        (re-produce into empty topics, project again, compare digests).
// Settings come from CAUCE_* like the service (scripts/bench starts Kafka and PostgreSQL).

#include <fstream>
#include <iomanip>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <pqxx/pqxx>
#include <prometheus/registry.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/config.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/workers/backup.hpp>
#include <cauce/workers/render.hpp>

#include "history.hpp"
#include "load.hpp"

namespace cauce::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  int rows = 10000;
  int runs = 3;
  int contacts = 100000;  // × 10 events
  bool skip_backup = false;
  bool skip_render = false;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void write_csv(const fs::path& path, int rows) {
  std::ofstream out(path);
  out << "operator,region,calls,duration_s,notes\n";
  for (int i = 0; i < rows; ++i) {
    out << "Operadora " << i % 40 << ",Região " << i % 7 << "," << i % 97 << "," << (i * 37) % 3600
        << ",\"chamada número " << i << ": cliente satisfeito, seguimento na próxima semana\"\n";
  }
}

struct RenderRun {
  int pages = 0;
  double seconds = 0;
  double peak_mb = 0;  // the rendering process's resident high-water mark
};

// Renders in a child process, so that its peak memory is the render's alone.
RenderRun render_in_child(const fs::path& csv, const fs::path& pdf) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe");
  const auto started = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    ::close(pipe_fds[0]);
    int pages = -1;
    try {
      pages = workers::render_report(
                  csv, "text/csv", {"Chamadas por operadora", "bench", 1'780'000'000'000'000}, pdf)
                  .pages;
    } catch (...) {
    }
    [[maybe_unused]] const auto n = ::write(pipe_fds[1], &pages, sizeof pages);
    ::_exit(pages > 0 ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  int pages = -1;
  [[maybe_unused]] const auto n = ::read(pipe_fds[0], &pages, sizeof pages);
  ::close(pipe_fds[0]);
  int status = 0;
  rusage usage{};
  ::wait4(pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("render failed");
  return {pages, seconds_since(started), static_cast<double>(usage.ru_maxrss) / 1024.0};
}

void bench_render(const Options& options, const fs::path& dir) {
  std::cout << "PDF rendering (cairo + pango, DejaVu), CSV source, child process per render\n";
  std::cout << std::left << std::setw(12) << "rows" << std::setw(10) << "pages" << std::setw(12)
            << "seconds" << std::setw(12) << "pages/s" << std::setw(12) << "rows/s"
            << "peak RSS MB\n";
  const auto row = [](int rows, const RenderRun& r) {
    std::cout << std::left << std::setw(12) << rows << std::setw(10) << r.pages << std::setw(12)
              << std::fixed << std::setprecision(2) << r.seconds << std::setw(12)
              << std::setprecision(0) << r.pages / r.seconds << std::setw(12) << rows / r.seconds
              << std::setprecision(1) << r.peak_mb << "\n";
  };
  const auto csv = dir / "source.csv";
  write_csv(csv, options.rows);
  std::vector<double> seconds;
  RenderRun last;
  for (int i = 0; i < options.runs; ++i) {
    last = render_in_child(csv, dir / "report.pdf");
    seconds.push_back(last.seconds);
    row(options.rows, last);
  }
  last.seconds = median(seconds);
  std::cout << "median: ";
  row(options.rows, last);
  write_csv(csv, options.rows * 10);
  std::cout << "10× the rows, once: ";
  row(options.rows * 10, render_in_child(csv, dir / "report.pdf"));
  std::cout << "\n";
}

// ---- backup and restore ----

std::int64_t raw_consume(const core::KafkaConfig& kafka) {
  auto conf = core::kafka_conf(kafka, {{"group.id", "bench-raw-" + core::random_hex(4)},
                                       {"enable.auto.commit", "false"},
                                       {"isolation.level", "read_committed"},
                                       {"enable.partition.eof", "true"},
                                       {"fetch.max.bytes", "52428800"}});
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) throw std::runtime_error(err);
  std::vector<RdKafka::TopicPartition*> assignment;
  for (int p = 0; p < kafka.partitions; ++p) {
    assignment.push_back(
        RdKafka::TopicPartition::create(kafka.events_topic, p, RdKafka::Topic::OFFSET_BEGINNING));
  }
  consumer->assign(assignment);
  RdKafka::TopicPartition::destroy(assignment);
  std::int64_t records = 0;
  int at_end = 0;
  while (at_end < kafka.partitions) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(1000));
    if (m->err() == RdKafka::ERR__PARTITION_EOF) ++at_end;
    if (m->err() == RdKafka::ERR_NO_ERROR) ++records;
  }
  consumer->close();
  return records;
}

void wait_projected(const core::PostgresConfig& pg, std::int64_t events) {
  auto c = core::connect_postgres(core::postgres_conninfo(pg));
  for (;;) {
    pqxx::nontransaction n(*c);
    if (n.exec1("SELECT count(*) FROM events")[0].as<std::int64_t>() >= events) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

std::string pg_flags(const core::PostgresConfig& pg) {
  return " -h " + pg.host + " -p " + std::to_string(pg.port) + " -U " + pg.user + " ";
}

void run_shell(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

void create_database(const core::PostgresConfig& admin, const std::string& name) {
  auto c = core::connect_postgres(core::postgres_conninfo(admin));
  pqxx::nontransaction n(*c);
  n.exec("CREATE DATABASE " + n.quote_name(name));
}

void bench_backup(const Options& options, const core::Config& config, const fs::path& dir) {
  auto kafka = config.kafka;
  const auto prefix = "jobs-" + core::random_hex(4);
  core::use_topic_prefix(kafka, prefix);
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), kafka.partitions,
                                        kafka.replication_factor);
  auto pg = config.postgres;
  pg.database = "bench_" + core::random_hex(4);
  create_database(config.postgres, pg.database);
  {
    auto c = core::connect_postgres(core::postgres_conninfo(pg));
    core::migrate(*c, core::parse_migrations(core::embedded_migration_files()));
  }
  ::setenv("PGPASSWORD", pg.password.reveal().c_str(), 1);  // for pg_dump / pg_restore below

  std::vector<std::string> ids;
  auto t = Clock::now();
  const auto events = produce_history(kafka, options.contacts, 9, ids);
  std::cout << "backup and restore of " << events << " events (" << options.contacts
            << " contacts × 10), " << kafka.partitions << " partitions\n";
  std::cout << std::left << std::setw(58) << "step"
            << "seconds   events/s\n";
  const auto row = [](const std::string& step, double s, std::int64_t n) {
    std::cout << std::left << std::setw(58) << step << std::setw(10) << std::fixed
              << std::setprecision(2) << s;
    if (n > 0) std::cout << std::setprecision(0) << n / s;
    std::cout << "\n";
  };
  row("produce the history (idempotent producer)", seconds_since(t), events);
  {
    prometheus::Registry registry;
    auto projections = config.projections;
    projections.group = prefix + "-projector";
    projections::Projector projector(
        {.kafka = kafka, .postgres = pg, .projections = projections, .schema = {}}, registry);
    t = Clock::now();
    projector.start();
    wait_projected(pg, events);
    row("project into the read models", seconds_since(t), events);
    projector.stop();
  }
  t = Clock::now();
  const auto consumed = raw_consume(kafka);
  row("raw read_committed consume of the log (the floor)", seconds_since(t), consumed);
  t = Clock::now();
  run_shell("pg_dump -Fc -f " + (dir / "plain.dump").string() + pg_flags(pg) + "-d " + pg.database);
  row("pg_dump -Fc of the database (the floor)", seconds_since(t), 0);
  const auto restored_db = pg.database + "_r";
  create_database(config.postgres, restored_db);
  t = Clock::now();
  run_shell("pg_restore -j 2 " + pg_flags(pg) + "-d " + restored_db + " " +
            (dir / "plain.dump").string());
  row("pg_restore of that dump into an empty database", seconds_since(t), 0);

  const workers::BackupSources sources{kafka, pg, config.projections.name,
                                       std::chrono::seconds(3600), std::nullopt};
  t = Clock::now();
  const auto taken = workers::take_backup(sources, dir / "backups", commands::uuid_v7(1), 0);
  row("cauce backup (log export + pg_dump + manifest)", seconds_since(t), taken.events);
  std::cout << "  " << taken.bytes / (1024 * 1024) << " MiB\n";
  t = Clock::now();
  workers::verify_backup(taken.directory);
  row("cauce backups verify (sha256 of every file)", seconds_since(t), taken.events);

  auto target_kafka = config.kafka;
  core::use_topic_prefix(target_kafka, prefix + "-restored");
  auto target_pg = pg;
  target_pg.database = pg.database + "_t";
  create_database(config.postgres, target_pg.database);
  auto target_projections = config.projections;
  target_projections.group = prefix + "-restore";
  t = Clock::now();
  const auto report =
      workers::restore_backup(taken.directory,
                              {.kafka = target_kafka,
                               .postgres = target_pg,
                               .projections = target_projections,
                               .data_dir = std::nullopt},
                              [](const std::string&, std::int64_t, std::int64_t) {});
  row("cauce restore (re-produce, project, compare digests)", seconds_since(t), report.events);
  std::cout << "\n";
}

int run(const Options& options) {
  core::set_log_level(core::LogLevel::kWarn);
  const auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  std::cout << "cauce bench/jobs: " << std::thread::hardware_concurrency() << " cores\n\n";
  const auto dir = fs::temp_directory_path() / ("cauce-bench-jobs-" + core::random_hex(4));
  fs::create_directories(dir);
  struct Remove {
    fs::path path;
    ~Remove() { fs::remove_all(path); }
  } remove{dir};
  if (!options.skip_render) bench_render(options, dir);  // before any Kafka client: it forks
  if (!options.skip_backup) bench_backup(options, config, dir);
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  cauce::bench::Options options;
  CLI::App app{"cauce bench/jobs: PDF rendering, backup and restore"};
  app.add_option("--rows", options.rows, "Rows of the rendered CSV");
  app.add_option("--runs", options.runs, "Renders of it (the median is reported)");
  app.add_option("--contacts", options.contacts, "Contacts of the backed-up history (× 10 events)");
  app.add_flag("--skip-backup", options.skip_backup, "Only the rendering");
  app.add_flag("--skip-render", options.skip_render, "Only the backup and restore");
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/jobs", [&] { return run(options); });
}
