// bench/reads: the read side of a real `cauce serve` (every role, as scripts/run runs it) under
// many keep-alive connections, next to the raw limits measured in the same run:
//
//   - pgbench (-M prepared, 64 clients) running the very SQL cauce runs for a contact by id and
//     for the first page of contacts (projections::ReadModels::contact_sql / contacts_sql);
//   - bare HTTP: GET /healthz of the same server through the same client (no key, no
//     PostgreSQL).
//
// cauce is measured by id at 64 and 500 connections (closed loop), then at 500 connections
// paced at half of the peak just measured (latency from when each request was due), the list
// at 500 connections, and a conditional GET whose If-None-Match matches (304) at 64. Each
// figure is the median of --runs runs; the 503s (backpressure) are printed. Contacts are
// seeded by a bulk import with ids the pgbench script can compute (v7-shaped, numbered).

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iomanip>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include <cauce/projections/queries.hpp>

#include "load.hpp"
#include "served_cauce.hpp"

namespace cauce::bench {
namespace {

using namespace std::chrono_literals;

struct Options {
  std::string cauce = "build/release/cauce";
  std::string pgbench = "pgbench";
  int runs = 3;
  int seconds = 5;
  int contacts = 10000;
  int clients = 64;  // the smaller connection count, and pgbench's clients
  int many = 500;    // the larger connection count
  // Whether reads are also measured beside commands paced at half of this server's command
  // peak (measured first, alone).
  bool with_commands = true;
};

// The seeded contact number n's id, as cauce and the pgbench script both spell it.
std::string contact_id(int n) {
  char id[40];
  std::snprintf(id, sizeof id, "01900000-0000-7000-8000-%012x", n);
  return id;
}
constexpr const char* kIdSql =
    "('01900000-0000-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid";

// `sql` with $1..$n replaced by `values` (highest first, so that $1 does not eat $10).
std::string bound(std::string sql, const std::vector<std::string>& values) {
  for (auto i = values.size(); i >= 1; --i) {
    const auto name = "$" + std::to_string(i);
    for (auto at = sql.find(name); at != std::string::npos; at = sql.find(name, at)) {
      sql.replace(at, name.size(), values[i - 1]);
      at += values[i - 1].size();
    }
  }
  return sql;
}

// One line per statement: pgbench reads a script's SQL command up to its line end.
std::string one_line(std::string sql) {
  for (auto& c : sql) {
    if (c == '\n') c = ' ';
  }
  return sql;
}

struct Row {
  Row(std::string n, std::string u) : name(std::move(n)), unit(std::move(u)) {}
  std::string name;
  std::string unit;
  std::vector<double> rate, p50, p95, p99, busy, idle;
  void add(const LoadResult& r) {
    idle.push_back(r.machine_idle * 100);
    rate.push_back(r.per_second());
    p50.push_back(r.percentile(50));
    p95.push_back(r.percentile(95));
    p99.push_back(r.percentile(99));
    busy.push_back(static_cast<double>(r.busy));
  }
};

class Reads {
 public:
  explicit Reads(const Options& options)
      : options_(options),
        cauce_(options.cauce, "bench-reads"),
        reader_(cauce_.key("reader", "bench-reads")),
        operator_(cauce_.key("operator", "bench-reads-writer")),
        work_(std::filesystem::temp_directory_path() /
              ("bench-reads-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(work_);
  }
  ~Reads() {
    std::error_code ignored;
    std::filesystem::remove_all(work_, ignored);
  }

  // The contacts, by one bulk import with their own ids; waits until the read model has them.
  void seed() {
    std::string csv = "id,name,phone,email\r\n";
    for (int n = 1; n <= 2 * options_.contacts; ++n) {
      csv += contact_id(n) + ",Reader " + std::to_string(n) + ",+351 9" +
             std::to_string(10000000 + n) + ",r" + std::to_string(n) + "@example.org\r\n";
    }
    const auto operator_key = cauce_.key("operator", "bench-reads-seed");
    const auto answer =
        exchange(cauce_.port(),
                 "POST /v1/imports HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + operator_key +
                     "\r\nContent-Type: text/csv\r\nContent-Length: " + std::to_string(csv.size()) +
                     "\r\n\r\n",
                 csv);
    if (answer.status != 201) {
      throw std::runtime_error("seeding import answered " + std::to_string(answer.status) + ": " +
                               answer.text.substr(0, 400));
    }
    const auto at = answer.text.find("Cauce-Position: ");
    const auto position = answer.text.substr(at + 16, answer.text.find("\r\n", at) - at - 16);
    const auto read =
        exchange(cauce_.port(), "GET /v1/contacts/" + contact_id(options_.contacts) +
                                    " HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + reader_ +
                                    "\r\nCauce-Min-Position: " + position + "\r\n\r\n");
    if (read.status != 200) {
      throw std::runtime_error("the seeded contacts did not reach the read model: " +
                               read.text.substr(0, 400));
    }
    std::cout << "seeded " << 2 * options_.contacts << " contacts (accepted "
              << member(answer.text, "accepted") << ")\n";
  }

  LoadResult by_id(int connections, double rate = 0) const {
    return run_load(
        cauce_.port(), connections, std::chrono::seconds(options_.seconds),
        [this](std::mt19937_64& rng) {
          return LoadRequest{http::verb::get,
                             "/v1/contacts/" + contact_id(pick(rng)),
                             "",
                             {{"Authorization", "Bearer " + reader_}}};
        },
        rate);
  }
  LoadResult not_modified(int connections) const {
    return run_load(cauce_.port(), connections, std::chrono::seconds(options_.seconds),
                    [this](std::mt19937_64& rng) {
                      return LoadRequest{
                          http::verb::get,
                          "/v1/contacts/" + contact_id(pick(rng)),
                          "",
                          {{"Authorization", "Bearer " + reader_}, {"If-None-Match", "\"1\""}}};
                    });
  }
  // Calls logged at `rate` per second on random contacts of the second half of those seeded, so
  // that the ones the reads ask for keep version 1 (the 304 figure names it). Each call is a
  // new version of its contact: the read model, its notifications and the version cache move.
  LoadResult commands(int connections, double rate = 0) const {
    return run_load(
        cauce_.port(), connections, std::chrono::seconds(options_.seconds),
        [this](std::mt19937_64& rng) {
          return LoadRequest{http::verb::post,
                             "/v1/contacts/" + contact_id(options_.contacts + pick(rng)) + "/calls",
                             R"({"outcome":"answered","duration_s":30})",
                             {{"Authorization", "Bearer " + operator_}}};
        },
        rate);
  }
  // Waits until the read model has caught up with every command sent so far (the projector
  // works on after a command phase): one more command, then a read at its position.
  void settle() const {
    const auto body = std::string(R"({"outcome":"answered","duration_s":1})");
    const auto sent = exchange(
        cauce_.port(),
        "POST /v1/contacts/" + contact_id(2 * options_.contacts) +
            "/calls HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nAuthorization: "
            "Bearer " +
            operator_ + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n",
        body);
    const auto at = sent.text.find("Cauce-Position: ");
    if (sent.status != 201 || at == std::string::npos) {
      throw std::runtime_error("settling command answered " + sent.text.substr(0, 300));
    }
    const auto position = sent.text.substr(at + 16, sent.text.find("\r\n", at) - at - 16);
    for (int attempt = 0; attempt < 60; ++attempt) {
      const auto read =
          exchange(cauce_.port(), "GET /v1/contacts/" + contact_id(1) +
                                      " HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + reader_ +
                                      "\r\nCauce-Min-Position: " + position + "\r\n\r\n");
      if (read.status == 200) return;
    }
    throw std::runtime_error("the read model did not catch up with the commands");
  }
  LoadResult list(int connections) const {
    return run_load(cauce_.port(), connections, std::chrono::seconds(options_.seconds),
                    [this](std::mt19937_64&) {
                      return LoadRequest{http::verb::get,
                                         "/v1/contacts?limit=50",
                                         "",
                                         {{"Authorization", "Bearer " + reader_}}};
                    });
  }
  LoadResult bare(int connections) const {
    return run_load(cauce_.port(), connections, std::chrono::seconds(options_.seconds),
                    [](std::mt19937_64&) {
                      return LoadRequest{http::verb::get, "/healthz", "", {}};
                    });
  }

  // pgbench -M prepared over `script` with options_.clients clients: transactions per second.
  double pgbench(const std::string& name, const std::string& script) const {
    const auto file = work_ / (name + ".sql");
    std::ofstream(file) << script;
    const auto out = work_ / (name + ".out");
    std::filesystem::remove(out);
    const auto env = [](const char* variable) {
      const char* v = std::getenv(variable);
      return std::string(v ? v : "");
    };
    Child run({options_.pgbench, "-n", "-M", "prepared", "-c", std::to_string(options_.clients),
               "-j", std::to_string(std::max(1u, std::thread::hardware_concurrency())), "-T",
               std::to_string(options_.seconds), "-f", file.string()},
              out,
              {{"PGHOST", env("CAUCE_POSTGRES_HOST")},
               {"PGPORT", env("CAUCE_POSTGRES_PORT")},
               {"PGUSER", env("CAUCE_POSTGRES_USER")},
               {"PGPASSWORD", env("CAUCE_POSTGRES_PASSWORD")},
               {"PGDATABASE", env("CAUCE_POSTGRES_DATABASE")}});
    const int rc = run.wait();
    std::ifstream in(out);
    std::stringstream text;
    text << in.rdbuf();
    std::smatch tps;
    const auto s = text.str();
    if (rc != 0 || !std::regex_search(s, tps, std::regex(R"(tps = ([0-9.]+))"))) {
      throw std::runtime_error("pgbench " + name + " failed: " + s.substr(0, 600));
    }
    return std::stod(tps[1]);
  }

  std::string by_id_script() const {
    return "\\set n random(1, " + std::to_string(options_.contacts) + ")\n" +
           one_line(bound(projections::ReadModels::contact_sql(), {kIdSql})) + ";\n";
  }
  static std::string list_script() {
    return one_line(bound(
               projections::ReadModels::contacts_sql(),
               {"''", "''", "''", "''", "'00000000-0000-0000-0000-000000000000'", "51", "false"})) +
           ";\n";
  }

 private:
  int pick(std::mt19937_64& rng) const {
    return 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(options_.contacts));
  }

  Options options_;
  ServedCauce cauce_;
  std::string reader_;
  std::string operator_;
  std::filesystem::path work_;
};

void print_row(const Row& row, const std::string& limit_name, double limit) {
  const auto rate = median(row.rate);
  std::cout << "  " << std::left << std::setw(44) << row.name << std::right << std::fixed
            << std::setprecision(0) << std::setw(9) << rate << " " << row.unit;
  if (!row.p50.empty()) {
    std::cout << std::setprecision(2) << "  p50 " << median(row.p50) << " ms  p95 "
              << median(row.p95) << " ms  p99 " << median(row.p99) << " ms  503s "
              << std::setprecision(0) << median(row.busy) << "  idle " << median(row.idle) << "%";
  }
  if (limit > 0) {
    std::cout << std::setprecision(2) << "  = " << rate / limit << " x " << limit_name;
  }
  std::cout << "\n";
}

int run(const Options& options) {
  Reads reads(options);
  std::cout << "cauce bench/reads: " << options.contacts << " contacts, " << options.runs
            << " runs of " << options.seconds << " s per figure, "
            << std::thread::hardware_concurrency() << " cores, a real `cauce serve` ("
            << options.cauce << "), PostgreSQL, client and server on this machine\n";
  reads.seed();
  const auto c = std::to_string(options.clients);
  const auto m = std::to_string(options.many);
  Row bare{"bare HTTP (GET /healthz), " + c + " connections", "req/s"};
  Row get_small{"GET /v1/contacts/{id}, " + c + " connections", "req/s"};
  Row get_many{"GET /v1/contacts/{id}, " + m + " connections", "req/s"};
  Row get_half{"  same, paced at half of that peak", "req/s"};
  Row get_calm{"GET by id, " + c + " connections, paced at half of peak", "req/s"};
  Row get_busy{"  same pace, commands running meanwhile", "req/s"};
  Row command_peak{"commands (calls logged), " + c + " connections", "cmd/s"};
  Row busy_commands{"  the commands meanwhile, paced at half of their peak", "cmd/s"};
  Row list{"GET /v1/contacts?limit=50, " + m + " connections", "req/s"};
  Row not_modified{"GET /v1/contacts/{id} -> 304, " + c + " connections", "req/s"};
  Row pg_get{"pgbench, the same SELECT by id, " + c + " clients", "tps"};
  Row pg_list{"pgbench, the same first page, " + c + " clients", "tps"};
  for (int run = 1; run <= options.runs; ++run) {
    reads.settle();
    bare.add(reads.bare(options.clients));
    get_small.add(reads.by_id(options.clients));
    get_many.add(reads.by_id(options.many));
    get_half.add(reads.by_id(options.many, get_many.rate.back() / 2));
    list.add(reads.list(options.many));
    not_modified.add(reads.not_modified(options.clients));
    pg_get.rate.push_back(reads.pgbench("by-id", reads.by_id_script()));
    pg_list.rate.push_back(reads.pgbench("list", Reads::list_script()));
    if (options.with_commands) {
      // Reads at half of their peak, alone and then with commands paced at half of theirs beside
      // them (each load on a thread of its own): what the writes cost the reads' latency.
      command_peak.add(reads.commands(options.clients));
      reads.settle();
      const auto pace = get_small.rate.back() / 2;
      get_calm.add(reads.by_id(options.clients, pace));
      auto writes = std::async(std::launch::async, [&] {
        return reads.commands(options.clients, command_peak.rate.back() / 2);
      });
      get_busy.add(reads.by_id(options.clients, pace));
      busy_commands.add(writes.get());
    }
    std::cout << "run " << run << ": by id " << std::fixed << std::setprecision(0)
              << get_small.rate.back() << " / " << get_many.rate.back() << " req/s, pgbench "
              << pg_get.rate.back() << " tps; list " << list.rate.back() << " req/s, pgbench "
              << pg_list.rate.back() << " tps; 304 " << not_modified.rate.back() << " req/s; bare "
              << bare.rate.back() << " req/s\n";
  }
  std::cout << "\nmedians over " << options.runs << " runs\n";
  print_row(pg_get, "", 0);
  print_row(pg_list, "", 0);
  print_row(bare, "", 0);
  print_row(get_small, "pgbench", median(pg_get.rate));
  print_row(get_many, "pgbench", median(pg_get.rate));
  print_row(get_half, "", 0);
  if (options.with_commands) {
    print_row(command_peak, "", 0);
    print_row(get_calm, "", 0);
    print_row(get_busy, "", 0);
    print_row(busy_commands, "", 0);
    std::cout << "  read p99 with commands running / without: " << std::setprecision(2)
              << median(get_busy.p99) / median(get_calm.p99) << "\n";
  }
  print_row(list, "pgbench", median(pg_list.rate));
  print_row(not_modified, "bare HTTP", median(bare.rate));
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce read side benchmark"};
  cauce::bench::Options options;
  app.add_option("--cauce", options.cauce, "The cauce binary to serve with");
  app.add_option("--pgbench", options.pgbench, "The pgbench binary");
  app.add_option("--runs", options.runs, "Runs (medians are reported)")->check(CLI::PositiveNumber);
  app.add_option("--seconds", options.seconds, "Seconds per figure per run")
      ->check(CLI::PositiveNumber);
  app.add_option("--contacts", options.contacts, "Contacts seeded")->check(CLI::Range(1, 1000000));
  app.add_option("--clients", options.clients, "The smaller connection count (and pgbench's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--many", options.many, "The larger connection count")->check(CLI::PositiveNumber);
  app.add_flag("!--without-commands", options.with_commands,
               "Skip the figures of reads beside commands");
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/reads",
                                            [&] { return cauce::bench::run(options); });
}
