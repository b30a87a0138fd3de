#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace cauce::core {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Parses "debug" / "info" / "warn" / "error"; anything else is kInfo.
LogLevel parse_log_level(std::string_view name);
void set_log_level(LogLevel level);
// Whether a line at `level` is written: for loops that would build many lines no one reads.
bool log_enabled(LogLevel level);

// One structured field of a log line. Never put secrets or personal data in one.
struct LogField {
  using Value = std::variant<std::string_view, std::int64_t, double, bool>;

  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  template <std::integral T>
  requires(!std::same_as<T, bool>) LogField(std::string_view k, T v)
      : key(k), value(static_cast<std::int64_t>(v)) {}

  std::string_view key;
  Value value;
};

// Writes one JSON object per line to stderr: {"ts","level","component","msg",...fields}.
// Thread-safe; a line is written with a single write so lines never interleave.
class Logger {
 public:
  explicit Logger(std::string component) : component_(std::move(component)) {}

  void debug(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    write(LogLevel::kDebug, msg, fields);
  }
  void info(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    write(LogLevel::kInfo, msg, fields);
  }
  void warn(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    write(LogLevel::kWarn, msg, fields);
  }
  void error(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    write(LogLevel::kError, msg, fields);
  }
  void write(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) const;

 private:
  std::string component_;
};

// A warning about a condition that lasts (a dependency down, a partition stuck): logged once when
// the condition starts, suppressed while it lasts, and when it clears one line says so with the
// number of repeats suppressed. A log of a long outage is two lines, not thousands. One per loop
// (not thread-safe).
class ConditionLog {
 public:
  explicit ConditionLog(const Logger& log) : log_(log) {}

  // The condition holds (again): the first call after a clear logs at warn, later ones count.
  void failing(std::string_view msg, std::initializer_list<LogField> fields = {});
  // The condition is over: if it held, logs `msg` at info with `suppressed_repeats`.
  void cleared(std::string_view msg);
  bool active() const { return active_; }

 private:
  const Logger& log_;
  bool active_ = false;
  std::int64_t suppressed_ = 0;
};

// The line Logger::write would print, without the trailing newline (for tests).
std::string format_log_line(LogLevel level, std::string_view component, std::string_view msg,
                            std::initializer_list<LogField> fields);

// RFC 3339 UTC with microseconds: 2026-11-24T07:41:22.123456Z.
std::string format_utc_micros(std::int64_t micros_since_epoch);
// The inverse of format_utc_micros; throws std::invalid_argument for any other shape.
std::int64_t parse_utc_micros(std::string_view text);

}  // namespace cauce::core
