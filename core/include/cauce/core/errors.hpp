#pragma once

#include <stdexcept>
#include <string>

namespace cauce::core {

// A dependency (Kafka, PostgreSQL) could not do what was asked. Retryable errors are
// transient (connection refused, timeout, leader moving); the caller may try again later,
// and the HTTP boundary answers 503 with Retry-After. Non-retryable ones are not expected to
// heal by waiting (an authentication failure, a topic with the wrong partition count).
class DependencyError : public std::runtime_error {
 public:
  DependencyError(std::string dependency, const std::string& message, bool retryable)
      : std::runtime_error(message), dependency_(std::move(dependency)), retryable_(retryable) {}

  const std::string& dependency() const noexcept { return dependency_; }
  bool is_retryable() const noexcept { return retryable_; }

 private:
  std::string dependency_;
  bool retryable_;
};

// A dependency refused cauce itself: its credentials, or the TLS handshake (a certificate that
// does not verify against the configured CA, a protocol the listener does not speak). Not
// retryable: start-up stops at once, and `settings` names the settings to check (never values).
class RefusedError : public DependencyError {
 public:
  RefusedError(std::string dependency, const std::string& reason, std::string settings)
      : DependencyError(std::move(dependency), reason + " (check " + settings + ")", false),
        settings_(std::move(settings)) {}

  const std::string& settings() const noexcept { return settings_; }

 private:
  std::string settings_;
};

// A dependency refused the data itself (PostgreSQL: a value it cannot store, a constraint; a
// record that is not a cauce event). Waiting does not heal it: the caller isolates what was
// refused and parks it instead of retrying. `sqlstate` is PostgreSQL's code, "" otherwise.
class DataError : public std::runtime_error {
 public:
  DataError(const std::string& message, std::string sqlstate = {})
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}

  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};

// Invalid configuration: names the offending key. The CLI exits with code 2.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, const std::string& message)
      : std::runtime_error(key.empty() ? message : key + ": " + message), key_(std::move(key)) {}

  const std::string& key() const noexcept { return key_; }

 private:
  std::string key_;
};

}  // namespace cauce::core
