// bench/import: bulk import throughput on a real `cauce serve` (every role, as scripts/run runs
// it): a 100,000-row CSV file POSTed to /v1/imports, timed from the first byte sent to the 201,
// which comes once every row's contact.register was decided and committed. Each run imports a
// file of new contacts (their names carry the run's number), so nothing is a duplicate; one more
// run posts the last file again (every row a duplicate) and is reported apart.
//
// scripts/bench import runs bench/commands first on the same broker and PostgreSQL and prints
// both figures side by side. Settings come from CAUCE_* like the service.

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cauce/core/config.hpp>
#include <cauce/core/crypto.hpp>

#include "load.hpp"

extern char** environ;

namespace cauce::bench {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string cauce = "build/release/cauce";
  int rows = 100000;
  int runs = 3;
  int partitions = 0;  // 0: kafka.partitions from the configuration
};

// A child process with its output in a file; SIGTERM and a wait when it goes.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::filesystem::path& log) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
  }
  ~Child() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
};

std::uint16_t free_port() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

struct Answer {
  unsigned status = 0;
  std::string text;
};

// One request over a fresh connection, read until the server closes it (imports close it).
Answer exchange(std::uint16_t port, const std::string& head, const std::string& body) {
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(socket, asio::buffer(head));
  if (!body.empty()) asio::write(socket, asio::buffer(body));
  std::string raw;
  boost::system::error_code ec;
  char chunk[16384];
  for (;;) {
    const auto n = socket.read_some(asio::buffer(chunk), ec);
    raw.append(chunk, n);
    if (ec) break;
    // A keep-alive answer (GET /readyz) ends with its Content-Length.
    const auto end = raw.find("\r\n\r\n");
    const auto length = raw.find("Content-Length: ");
    if (end != std::string::npos && length != std::string::npos && length < end &&
        raw.size() >= end + 4 + std::stoul(raw.substr(length + 16))) {
      break;
    }
  }
  Answer a;
  if (raw.size() >= 12) a.status = static_cast<unsigned>(std::stoi(raw.substr(9, 3)));
  a.text = std::move(raw);
  return a;
}

std::string member(const std::string& text, const std::string& name) {
  const auto at = text.find("\"" + name + "\":");
  if (at == std::string::npos) return "";
  const auto from = at + name.size() + 3;
  return text.substr(from, text.find_first_of(",}", from) - from);
}

// `rows` contacts, all new for run `run`: a name, a phone, an e-mail, tags and notes, some
// quoted with a comma inside (about 90 bytes a row).
std::string csv_file(int rows, int run) {
  std::string out = "name,phone,email,tags,notes\r\n";
  out.reserve(static_cast<std::size_t>(rows) * 96);
  for (int i = 0; i < rows; ++i) {
    const auto n = std::to_string(i);
    out += "\"Import " + std::to_string(run) + ", contact " + n + "\",+351 9" +
           std::to_string(10000000 + i) + ",c" + n + ".r" + std::to_string(run) +
           "@example.org,bulk;run" + std::to_string(run) + ",imported by bench/import\r\n";
  }
  return out;
}

int run(const Options& options) {
  auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  auto kafka = config.kafka;
  if (options.partitions > 0) kafka.partitions = options.partitions;
  const auto prefix = "bench-import-" + core::random_hex(4);
  core::use_topic_prefix(kafka, prefix);
  const auto data_dir = std::filesystem::temp_directory_path() / prefix;
  std::filesystem::create_directories(data_dir);
  const auto port = free_port();
  const std::vector<std::pair<const char*, std::string>> env = {
      {"CAUCE_KAFKA_COMMANDS_TOPIC", kafka.commands_topic},
      {"CAUCE_KAFKA_EVENTS_TOPIC", kafka.events_topic},
      {"CAUCE_KAFKA_REPLIES_TOPIC", kafka.replies_topic},
      {"CAUCE_KAFKA_OUTCOMES_TOPIC", kafka.outcomes_topic},
      {"CAUCE_KAFKA_DEAD_LETTERS_TOPIC", kafka.dead_letters_topic},
      {"CAUCE_KAFKA_JOBS_DLQ_TOPIC", kafka.jobs_dlq_topic},
      {"CAUCE_KAFKA_SNAPSHOTS_TOPIC", kafka.snapshots_topic},
      {"CAUCE_KAFKA_PARTITIONS", std::to_string(kafka.partitions)},
      {"CAUCE_COMMANDS_PROCESSOR_GROUP", prefix + "-processor"},
      {"CAUCE_PROJECTIONS_GROUP", prefix + "-projector"},
      {"CAUCE_WORKERS_GROUP", prefix + "-workers"},
      {"CAUCE_DATA_DIR", data_dir.string()},
      {"CAUCE_HTTP_PORT", std::to_string(port)},
      {"CAUCE_HTTP_RATE_LIMIT_OPERATOR", "0"},
      {"CAUCE_HTTP_RATE_LIMIT_ADMIN", "0"},
      {"CAUCE_BACKUPS_INTERVAL_S", "0"},
      {"CAUCE_LOG_LEVEL", "warn"},
  };
  for (const auto& [name, value] : env) setenv(name, value.c_str(), 1);
  const auto log = data_dir / "serve.log";
  if (Child({options.cauce, "topics", "create"}, log).wait() != 0) {
    throw std::runtime_error("cauce topics create failed; see " + log.string());
  }
  auto serve = std::make_unique<Child>(std::vector<std::string>{options.cauce, "serve"}, log);
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  for (;;) {
    try {
      if (exchange(port, "GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n", "").status == 200) break;
    } catch (const std::exception&) {
    }
    if (Clock::now() > deadline)
      throw std::runtime_error("cauce serve not ready; see " + log.string());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  // A key of its own (the database may hold other benchmarks' keys, so no admin.key is made).
  const auto key_file = data_dir / "key.txt";
  if (Child({options.cauce, "keys", "create", "--role=operator", "--name=bench-import"}, key_file)
          .wait() != 0) {
    throw std::runtime_error("cauce keys create failed; see " + key_file.string());
  }
  std::string key;
  {
    std::ifstream in(key_file);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("ck_")) key = line;
    }
  }
  if (key.empty()) throw std::runtime_error("no key in " + key_file.string());

  std::cout << "cauce bench/import: " << options.rows << " rows per file, " << options.runs
            << " runs, " << kafka.partitions << " partitions, "
            << std::thread::hardware_concurrency() << " cores, a real `cauce serve` ("
            << options.cauce << ")\n\n";
  const auto post = [&](const std::string& file) {
    const auto head =
        "POST /v1/imports HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + key +
        "\r\nContent-Type: text/csv\r\nContent-Length: " + std::to_string(file.size()) + "\r\n\r\n";
    const auto started = Clock::now();
    const auto answer = exchange(port, head, file);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (answer.status != 201) {
      throw std::runtime_error("import answered " + std::to_string(answer.status) + ": " +
                               answer.text.substr(0, 400));
    }
    return std::pair{seconds, answer.text};
  };
  std::vector<double> rates;
  std::string last;
  for (int run = 1; run <= options.runs; ++run) {
    last = csv_file(options.rows, run);
    const auto [seconds, text] = post(last);
    const double rate = options.rows / seconds;
    rates.push_back(rate);
    std::cout << "run " << run << ": " << std::fixed << std::setprecision(0) << rate << " rows/s ("
              << std::setprecision(2) << seconds << " s, " << last.size() / 1024 / 1024.0
              << " MiB; accepted " << member(text, "accepted") << ", rejected "
              << member(text, "rejected") << ", duplicates " << member(text, "duplicates") << ")\n";
  }
  const auto [again_s, again_text] = post(last);
  std::cout << "the last file again (every row a duplicate): " << std::fixed << std::setprecision(0)
            << options.rows / again_s << " rows/s (duplicates " << member(again_text, "duplicates")
            << ")\n";
  std::cout << "\nmedians over " << options.runs << " runs\n"
            << "  import, " << options.rows << "-row CSV   " << std::setprecision(0)
            << median(rates) << " rows/s\n";
  serve.reset();  // SIGTERM, and waits for it to stop
  std::error_code ignored;
  std::filesystem::remove_all(data_dir, ignored);
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce bulk import benchmark"};
  cauce::bench::Options options;
  app.add_option("--cauce", options.cauce, "The cauce binary to serve with");
  app.add_option("--rows", options.rows, "Rows per file")->check(CLI::PositiveNumber);
  app.add_option("--runs", options.runs, "Runs (the median is reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--partitions", options.partitions, "Partitions of the bench topics")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/import",
                                            [&] { return cauce::bench::run(options); });
}
