#pragma once

// Fixtures shared by the integration tests. They use the one Kafka broker and the one
// PostgreSQL that scripts/test starts (addresses in TEST_* variables); each test gets its
// own database and its own topic names, so tests run in parallel without seeing each other.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/beast/http.hpp>
#include <librdkafka/rdkafkacpp.h>

#include <cauce/core/config.hpp>

namespace cauce::testing {

namespace http = boost::beast::http;
using namespace std::chrono_literals;

// The value of a TEST_* variable set by scripts/test; throws (failing the test) when unset.
std::string test_env(const char* name);

// A name no other test (or run) uses: prefix-<pid>-<counter>-<random>.
std::string unique_name(const std::string& prefix);

// PostgreSQL settings for the test cluster, database `database`.
core::PostgresConfig test_postgres(const std::string& database = "postgres");

// Kafka settings for the test broker with topic names unique to this test.
core::KafkaConfig test_kafka(int partitions = 3);

// Polls `condition` until it holds or `timeout` passes; never a fixed sleep.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 20s,
                std::chrono::milliseconds every = 50ms);

// A database of its own, dropped at the end of the test.
class TempDatabase {
 public:
  TempDatabase();
  ~TempDatabase();
  TempDatabase(const TempDatabase&) = delete;
  TempDatabase& operator=(const TempDatabase&) = delete;

  const core::PostgresConfig& config() const { return config_; }
  // Runs one SQL statement and returns the first column of the first row ("" if none).
  std::string query_value(const std::string& sql) const;

 private:
  std::string name_;
  core::PostgresConfig config_;
};

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct HttpResult {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A header of an answer ("" when absent); `name` in lower case.
inline std::string header(const HttpResult& r, const std::string& name) {
  const auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

// A plain HTTP/1.1 client over a real socket. Throws std::runtime_error when nothing answers
// within the timeout, so a hang fails the test instead of stalling it.
HttpResult http_request(std::uint16_t port, http::verb method, const std::string& target,
                        const std::string& body = "",
                        const std::vector<std::pair<std::string, std::string>>& headers = {},
                        std::chrono::milliseconds timeout = 10s);

// Sends raw bytes and returns whatever the server answers before closing (for malformed HTTP).
std::string raw_exchange(std::uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout = 10s);

// Runs `call` (e.g. "pg_stop \"$1\"") with scripts/lib/common.sh sourced and `args` as $1, $2,
// ...; returns its exit status. Output is discarded. For tests that start and stop a
// PostgreSQL or Kafka of their own.
int common_sh(const std::string& call, const std::vector<std::string>& args);

// A word quoted for sh ('it'\''s').
std::string shell_quote(const std::string& word);

struct ToolResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};
// Runs a shell command line to completion (a tool such as promtool, not a service).
ToolResult run_tool(const std::string& command);

// A bare librdkafka configuration of exactly `settings` (none of cauce's defaults), for tests of
// librdkafka's own behaviour; throws std::runtime_error naming a property it refuses.
std::unique_ptr<RdKafka::Conf> rdkafka_conf(
    const std::vector<std::pair<std::string, std::string>>& settings);

// A TCP port nothing listens on right now.
std::uint16_t free_port();

// `cauce` started as a child process (posix_spawn) with exactly the given CAUCE_* environment;
// stderr (the JSON log) is collected line by line.
class CauceProcess {
 public:
  CauceProcess(std::vector<std::string> args, std::map<std::string, std::string> env);
  ~CauceProcess();
  CauceProcess(const CauceProcess&) = delete;
  CauceProcess& operator=(const CauceProcess&) = delete;

  // Waits for a stderr line containing `needle`; returns it.
  std::optional<std::string> wait_for_line(const std::string& needle,
                                           std::chrono::milliseconds timeout = 60s);
  void signal(int sig) const;
  // Waits for the exit; returns the exit code (128 + signal when killed), nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = 30s);
  std::string output() const;  // stdout + stderr so far

 private:
  void read_loop(int fd);

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  mutable std::mutex mutex_;
  std::string output_;
  std::vector<std::thread> readers_;
};

// Runs cauce to completion; returns {exit code, stdout+stderr}.
std::pair<int, std::string> run_cauce(std::vector<std::string> args,
                                      std::map<std::string, std::string> env);

// CAUCE_* variables pointing cauce at a database and topics.
std::map<std::string, std::string> cauce_env(const core::PostgresConfig& pg,
                                             const core::KafkaConfig& kafka);

// The HTTP port from a `"msg":"listening"` log line.
std::uint16_t listening_port(const std::string& log_line);

// `cauce serve` started with `env`, once it listens and /readyz says ready (within a minute):
// its HTTP port and the admin key it writes to <data_dir>/admin.key on a first start. When it
// did not get there, `port` is 0 and `failure` says why (with the process's output).
struct Served {
  std::unique_ptr<CauceProcess> process;
  std::uint16_t port = 0;
  std::string admin_key;
  std::string failure;
};
Served serve_ready(const std::map<std::string, std::string>& env,
                   const std::filesystem::path& data_dir);

}  // namespace cauce::testing
