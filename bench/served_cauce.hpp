#pragma once

// A real `cauce serve` (every role, as scripts/run runs it) as a child process of a benchmark:
// its own topics, consumer groups and data directory on the broker and PostgreSQL that
// scripts/bench started (CAUCE_* in the environment), a free port, and keys of its own.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include <cauce/core/config.hpp>

namespace cauce::bench {

// A child process with its output appended to a file, in this process's environment plus `env`;
// SIGTERM and a wait when it goes.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::filesystem::path& log,
        const std::map<std::string, std::string>& env = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  int wait();  // the exit code (-1: killed by a signal)
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

std::uint16_t free_port();

struct Answer {
  unsigned status = 0;
  std::string text;  // the whole answer, head and body
};

// One request over a fresh connection: `head` (with its blank line) then `body`; read until the
// server closes the connection or the body's Content-Length has arrived.
Answer exchange(std::uint16_t port, const std::string& head, const std::string& body = "");

// A JSON member's raw text in `text` ("" when absent): enough for the benchmarks' own answers.
std::string member(const std::string& text, const std::string& name);

class ServedCauce {
 public:
  // `name` prefixes the topics, groups and data directory; `settings` are CAUCE_* on top of the
  // benchmark's environment (rate limits off, backups off and warnings only by default).
  ServedCauce(std::string binary, const std::string& name,
              const std::map<std::string, std::string>& settings = {});
  ~ServedCauce();  // SIGTERM, wait, and the data directory removed
  ServedCauce(const ServedCauce&) = delete;
  ServedCauce& operator=(const ServedCauce&) = delete;

  std::uint16_t port() const { return port_; }
  const core::KafkaConfig& kafka() const { return kafka_; }
  pid_t pid() const { return serve_->pid(); }

  // A new key with `role` (reader, operator, admin); its token.
  std::string key(const std::string& role, const std::string& name) const;

 private:
  std::string binary_;
  core::KafkaConfig kafka_;
  std::filesystem::path data_dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Child> serve_;
};

}  // namespace cauce::bench
