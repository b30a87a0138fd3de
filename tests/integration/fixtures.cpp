#include "fixtures.hpp"

#include <array>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <fcntl.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cauce/core/postgres.hpp>

extern char** environ;  // NOLINT: POSIX

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;

}  // namespace

std::string test_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error(std::string(name) +
                             " is not set: run the integration tests through scripts/test");
  }
  return value;
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  static const auto salt = std::random_device{}() % 100000;
  return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(salt) + "_" +
         std::to_string(counter++);
}

core::PostgresConfig test_postgres(const std::string& database) {
  core::PostgresConfig pg;
  pg.host = test_env("TEST_POSTGRES_HOST");
  pg.port = static_cast<std::uint16_t>(std::stoi(test_env("TEST_POSTGRES_PORT")));
  pg.user = test_env("TEST_POSTGRES_USER");
  pg.password = core::Secret(test_env("TEST_POSTGRES_PASSWORD"));
  pg.database = database;
  pg.pool_size = 4;
  return pg;
}

core::KafkaConfig test_kafka(int partitions) {
  core::KafkaConfig kafka;
  kafka.bootstrap_servers = test_env("TEST_KAFKA_BOOTSTRAP_SERVERS");
  const auto prefix = unique_name("t");
  core::use_topic_prefix(kafka, prefix);
  kafka.partitions = partitions;
  return kafka;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

TempDatabase::TempDatabase() : name_(unique_name("cauce_test")) {
  auto admin = core::connect_postgres(core::postgres_conninfo(test_postgres()));
  pqxx::nontransaction(*admin).exec("CREATE DATABASE " + name_);
  config_ = test_postgres(name_);
}

TempDatabase::~TempDatabase() {
  try {
    auto admin = core::connect_postgres(core::postgres_conninfo(test_postgres()));
    pqxx::nontransaction(*admin).exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (const std::exception&) {
    // The cluster goes away with the test run anyway.
  }
}

std::string TempDatabase::query_value(const std::string& sql) const {
  auto connection = core::connect_postgres(core::postgres_conninfo(config_));
  pqxx::nontransaction n(*connection);
  const auto rows = n.exec(sql);
  if (rows.empty() || rows[0].empty() || rows[0][0].is_null()) return "";
  return rows[0][0].as<std::string>();
}

TempDir::TempDir() {
  path_ = std::filesystem::temp_directory_path() / unique_name("cauce-it");
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

HttpResult http_request(std::uint16_t port, http::verb method, const std::string& target,
                        const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == http::verb::post) {
    if (req[http::field::content_type].empty())
      req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code result = asio::error::timed_out;
  bool done = false;
  stream.expires_after(timeout);
  stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                       [&](beast::error_code ec) {
                         if (ec) {
                           result = ec;
                           done = true;
                           return;
                         }
                         http::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
                           // A server may answer (413) before reading the whole body.
                           static_cast<void>(wec);
                           http::async_read(stream, buffer, parser,
                                            [&](beast::error_code rec, std::size_t) {
                                              result = rec;
                                              done = true;
                                            });
                         });
                       });
  ioc.run_for(timeout + 1s);
  if (!done || (result && !parser.is_header_done())) {
    throw std::runtime_error("HTTP " + std::string(http::to_string(method)) + " " + target +
                             " got no answer: " + (done ? result.message() : "timed out"));
  }
  HttpResult out;
  const auto& res = parser.get();
  out.status = res.result_int();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(c));
    out.headers[name] = std::string(field.value());
  }
  out.body = res.body();
  return out;
}

std::string raw_exchange(std::uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  std::string answer;
  std::array<char, 4096> chunk{};
  std::function<void()> read_more = [&] {
    stream.async_read_some(asio::buffer(chunk), [&](beast::error_code ec, std::size_t n) {
      answer.append(chunk.data(), n);
      if (!ec) read_more();
    });
  };
  stream.expires_after(timeout);
  stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                       [&](beast::error_code ec) {
                         if (ec) return;
                         asio::async_write(stream, asio::buffer(bytes),
                                           [&](beast::error_code, std::size_t) { read_more(); });
                       });
  ioc.run_for(timeout + 1s);
  return answer;
}

int common_sh(const std::string& call, const std::vector<std::string>& args) {
  std::string command = "bash -c 'source \"$0/scripts/lib/common.sh\" && " + call + "' '" +
                        std::string(CAUCE_SOURCE_DIR) + "'";
  for (const auto& arg : args) command += " '" + arg + "'";
  command += " >/dev/null 2>&1";
  return std::system(command.c_str());
}

std::unique_ptr<RdKafka::Conf> rdkafka_conf(
    const std::vector<std::pair<std::string, std::string>>& settings) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  for (const auto& [key, value] : settings) {
    if (conf->set(key, value, err) != RdKafka::Conf::CONF_OK) {
      throw std::runtime_error(key + ": " + err);
    }
  }
  return conf;
}

std::string shell_quote(const std::string& word) {
  std::string out = "'";
  for (const char c : word) out += c == '\'' ? std::string(R"('\'')") : std::string(1, c);
  return out + "'";
}

ToolResult run_tool(const std::string& command) {
  ToolResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  char chunk[4096];
  while (const auto n = std::fread(chunk, 1, sizeof chunk, pipe)) result.output.append(chunk, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::uint16_t free_port() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

CauceProcess::CauceProcess(std::vector<std::string> args, std::map<std::string, std::string> env) {
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("CAUCE_")) continue;  // only what the test says
    envs.emplace_back(*e);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  args.insert(args.begin(), test_env("TEST_CAUCE_BINARY"));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  const int rc = posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
  readers_.emplace_back([this, fd = out_pipe[0]] { read_loop(fd); });
  readers_.emplace_back([this, fd = err_pipe[0]] { read_loop(fd); });
}

CauceProcess::~CauceProcess() {
  if (!exit_code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait_exit(10s);
  }
  for (auto& t : readers_) {
    if (t.joinable()) t.join();
  }
}

void CauceProcess::read_loop(int fd) {
  char buf[4096];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    const std::lock_guard lock(mutex_);
    output_.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
}

std::optional<std::string> CauceProcess::wait_for_line(const std::string& needle,
                                                       std::chrono::milliseconds timeout) {
  std::optional<std::string> found;
  eventually(
      [&] {
        const std::lock_guard lock(mutex_);
        const auto at = output_.find(needle);
        if (at == std::string::npos) return false;
        const auto begin = output_.rfind('\n', at);
        const auto end = output_.find('\n', at);
        found = output_.substr(begin == std::string::npos ? 0 : begin + 1,
                               end == std::string::npos
                                   ? std::string::npos
                                   : end - (begin == std::string::npos ? 0 : begin + 1));
        return true;
      },
      timeout);
  return found;
}

void CauceProcess::signal(int sig) const { ::kill(pid_, sig); }

std::optional<int> CauceProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  eventually(
      [&] {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
      },
      timeout, 20ms);
  if (exit_code_) {
    // The child is gone and its pipe ends with it: collect the rest of its output.
    for (auto& t : readers_) {
      if (t.joinable()) t.join();
    }
  }
  return exit_code_;
}

std::string CauceProcess::output() const {
  const std::lock_guard lock(mutex_);
  return output_;
}

std::pair<int, std::string> run_cauce(std::vector<std::string> args,
                                      std::map<std::string, std::string> env) {
  CauceProcess process(std::move(args), std::move(env));
  const auto code = process.wait_exit(120s);
  if (!code) throw std::runtime_error("cauce did not exit: " + process.output());
  return {*code, process.output()};
}

std::map<std::string, std::string> cauce_env(const core::PostgresConfig& pg,
                                             const core::KafkaConfig& kafka) {
  // Consumer groups of this test's own, named after its topics: servers of tests running side by
  // side must not share a group, or each one's start, stop or kill rebalances the others'
  // partitions away mid-command (a killed member holds the group until its session times out).
  const auto groups = kafka.commands_topic + "-group";
  return {
      {"CAUCE_COMMANDS_PROCESSOR_GROUP", groups + "-processor"},
      {"CAUCE_PROJECTIONS_GROUP", groups + "-projector"},
      {"CAUCE_WORKERS_GROUP", groups + "-workers"},
      {"CAUCE_POSTGRES_HOST", pg.host},
      {"CAUCE_POSTGRES_PORT", std::to_string(pg.port)},
      {"CAUCE_POSTGRES_DATABASE", pg.database},
      {"CAUCE_POSTGRES_USER", pg.user},
      {"CAUCE_POSTGRES_PASSWORD", pg.password.reveal()},
      {"CAUCE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers},
      {"CAUCE_KAFKA_COMMANDS_TOPIC", kafka.commands_topic},
      {"CAUCE_KAFKA_EVENTS_TOPIC", kafka.events_topic},
      {"CAUCE_KAFKA_REPLIES_TOPIC", kafka.replies_topic},
      {"CAUCE_KAFKA_OUTCOMES_TOPIC", kafka.outcomes_topic},
      {"CAUCE_KAFKA_DEAD_LETTERS_TOPIC", kafka.dead_letters_topic},
      {"CAUCE_KAFKA_JOBS_DLQ_TOPIC", kafka.jobs_dlq_topic},
      {"CAUCE_KAFKA_SNAPSHOTS_TOPIC", kafka.snapshots_topic},
      {"CAUCE_KAFKA_PARTITIONS", std::to_string(kafka.partitions)},
      {"CAUCE_HTTP_PORT", "0"},
      {"CAUCE_HTTP_THREADS", "2"},
      // Tests drive load through one key; the rate limit has tests of its own (HardeningTest).
      {"CAUCE_HTTP_RATE_LIMIT_READER", "0"},
      {"CAUCE_HTTP_RATE_LIMIT_OPERATOR", "0"},
      {"CAUCE_HTTP_RATE_LIMIT_ADMIN", "0"},
      // Tests stop servers often and no load balancer watches them; the grace has a test of its
      // own (UpgradesTest).
      {"CAUCE_HTTP_SHUTDOWN_GRACE_MS", "0"},
  };
}

std::uint16_t listening_port(const std::string& log_line) {
  rapidjson::Document doc;
  doc.Parse(log_line.c_str());
  if (doc.HasParseError() || !doc.HasMember("port")) {
    throw std::runtime_error("not a listening line: " + log_line);
  }
  return static_cast<std::uint16_t>(doc["port"].GetInt());
}

Served serve_ready(const std::map<std::string, std::string>& env,
                   const std::filesystem::path& data_dir) {
  Served served;
  served.process = std::make_unique<CauceProcess>(std::vector<std::string>{"serve"}, env);
  const auto listening = served.process->wait_for_line(R"("msg":"listening")");
  if (!listening) {
    served.failure = "cauce serve did not listen:\n" + served.process->output();
    return served;
  }
  const auto port = listening_port(*listening);
  std::getline(std::ifstream(data_dir / "admin.key"), served.admin_key);
  if (!eventually([&] { return http_request(port, http::verb::get, "/readyz").status == 200; },
                  std::chrono::seconds(60))) {
    served.failure = "cauce serve did not get ready:\n" + served.process->output();
    return served;
  }
  served.port = port;
  return served;
}

}  // namespace cauce::testing
