#include "served_cauce.hpp"

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cauce/core/crypto.hpp>

extern char** environ;

namespace cauce::bench {

namespace asio = boost::asio;

Child::Child(const std::vector<std::string>& args, const std::filesystem::path& log,
             const std::map<std::string, std::string>& env) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // This process's environment with `env` on top.
  std::vector<std::string> entries;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (!env.contains(std::string(entry.substr(0, entry.find('='))))) entries.emplace_back(entry);
  }
  for (const auto& [name, value] : env) entries.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& e : entries) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
}

Child::~Child() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
}

int Child::wait() {
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::uint16_t free_port() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

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
    // A keep-alive answer ends with its Content-Length.
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
  auto from = at + name.size() + 3;
  if (from < text.size() && text[from] == '"') {
    ++from;
    return text.substr(from, text.find('"', from) - from);
  }
  return text.substr(from, text.find_first_of(",}", from) - from);
}

ServedCauce::ServedCauce(std::string binary, const std::string& name,
                         const std::map<std::string, std::string>& settings)
    : binary_(std::move(binary)) {
  const auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  kafka_ = config.kafka;
  const auto prefix = name + "-" + core::random_hex(4);
  core::use_topic_prefix(kafka_, prefix);
  if (const auto it = settings.find("CAUCE_KAFKA_PARTITIONS"); it != settings.end()) {
    kafka_.partitions = std::stoi(it->second);
  }
  data_dir_ = std::filesystem::temp_directory_path() / prefix;
  std::filesystem::create_directories(data_dir_);
  port_ = free_port();
  std::map<std::string, std::string> env = {
      {"CAUCE_KAFKA_COMMANDS_TOPIC", kafka_.commands_topic},
      {"CAUCE_KAFKA_EVENTS_TOPIC", kafka_.events_topic},
      {"CAUCE_KAFKA_REPLIES_TOPIC", kafka_.replies_topic},
      {"CAUCE_KAFKA_OUTCOMES_TOPIC", kafka_.outcomes_topic},
      {"CAUCE_KAFKA_DEAD_LETTERS_TOPIC", kafka_.dead_letters_topic},
      {"CAUCE_KAFKA_JOBS_DLQ_TOPIC", kafka_.jobs_dlq_topic},
      {"CAUCE_KAFKA_SNAPSHOTS_TOPIC", kafka_.snapshots_topic},
      {"CAUCE_KAFKA_PARTITIONS", std::to_string(kafka_.partitions)},
      {"CAUCE_COMMANDS_PROCESSOR_GROUP", prefix + "-processor"},
      {"CAUCE_PROJECTIONS_GROUP", prefix + "-projector"},
      {"CAUCE_WORKERS_GROUP", prefix + "-workers"},
      {"CAUCE_DATA_DIR", data_dir_.string()},
      {"CAUCE_HTTP_PORT", std::to_string(port_)},
      {"CAUCE_HTTP_RATE_LIMIT_READER", "0"},
      {"CAUCE_HTTP_RATE_LIMIT_OPERATOR", "0"},
      {"CAUCE_HTTP_RATE_LIMIT_ADMIN", "0"},
      {"CAUCE_BACKUPS_INTERVAL_S", "0"},
      {"CAUCE_LOG_LEVEL", "warn"},
  };
  for (const auto& [setting, value] : settings) env[setting] = value;
  const auto log = data_dir_ / "serve.log";
  if (Child({binary_, "topics", "create"}, log, env).wait() != 0) {
    throw std::runtime_error("cauce topics create failed; see " + log.string());
  }
  serve_ = std::make_unique<Child>(std::vector<std::string>{binary_, "serve"}, log, env);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    try {
      if (exchange(port_, "GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n").status == 200) break;
    } catch (const std::exception&) {
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("cauce serve not ready; see " + log.string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

ServedCauce::~ServedCauce() {
  serve_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(data_dir_, ignored);
}

std::string ServedCauce::key(const std::string& role, const std::string& name) const {
  // A key of its own (the database may hold other benchmarks' keys, so no admin.key is made).
  const auto key_file = data_dir_ / ("key-" + name + ".txt");
  if (Child({binary_, "keys", "create", "--role=" + role, "--name=" + name}, key_file).wait() !=
      0) {
    throw std::runtime_error("cauce keys create failed; see " + key_file.string());
  }
  std::ifstream in(key_file);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("ck_")) return line;
  }
  throw std::runtime_error("no key in " + key_file.string());
}

}  // namespace cauce::bench
