#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <cauce/core/log.hpp>

namespace cauce::core {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

LogLevel parse_log_level(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

bool log_enabled(LogLevel level) { return level >= g_level.load(std::memory_order_relaxed); }

std::string format_utc_micros(std::int64_t micros_since_epoch) {
  // Floor division: before 1970 the fraction is still 0..999999 of the second that precedes.
  std::int64_t seconds = micros_since_epoch / 1'000'000;
  std::int64_t micros = micros_since_epoch % 1'000'000;
  if (micros < 0) {
    micros += 1'000'000;
    --seconds;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(micros));
  return out;
}

std::int64_t parse_utc_micros(std::string_view text) {
  const std::string copy(text);  // sscanf needs a terminated string
  std::tm tm{};
  int micros = 0;
  char z = 0;
  int consumed = 0;
  if (text.size() != 27 ||
      std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c%n", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &micros, &z, &consumed) != 8 ||
      z != 'Z' || consumed != 27) {
    throw std::invalid_argument("a time must look like 2026-01-31T12:00:00.000000Z");
  }
  if (tm.tm_year < 1) throw std::invalid_argument("a time must be in the years 0001 to 9999");
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const auto result = static_cast<std::int64_t>(timegm(&tm)) * 1'000'000 + micros;
  // timegm() normalises 2026-02-31 into March: only a time written the one way it prints is one.
  if (format_utc_micros(result) != text) {
    throw std::invalid_argument("not a calendar time: " + copy);
  }
  return result;
}

std::string format_log_line(LogLevel level, std::string_view component, std::string_view msg,
                            std::initializer_list<LogField> fields) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto key = [&w](std::string_view k) { w.Key(k.data(), static_cast<unsigned>(k.size())); };
  auto str = [&w](std::string_view v) { w.String(v.data(), static_cast<unsigned>(v.size())); };
  w.StartObject();
  key("ts");
  str(format_utc_micros(now_micros()));
  key("level");
  str(level_name(level));
  key("component");
  str(component);
  key("msg");
  str(msg);
  for (const auto& field : fields) {
    key(field.key);
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string_view>) {
            str(v);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            w.Int64(v);
          } else if constexpr (std::is_same_v<T, double>) {
            w.Double(v);
          } else {
            w.Bool(v);
          }
        },
        field.value);
  }
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

void Logger::write(LogLevel level, std::string_view msg,
                   std::initializer_list<LogField> fields) const {
  if (!log_enabled(level)) return;
  std::string line = format_log_line(level, component_, msg, fields);
  line += '\n';
  // One write(2) per line: stderr is unbuffered and lines from threads do not interleave.
  const char* data = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const auto n = ::write(STDERR_FILENO, data, left);
    if (n <= 0) return;
    data += n;
    left -= static_cast<std::size_t>(n);
  }
}

void ConditionLog::failing(std::string_view msg, std::initializer_list<LogField> fields) {
  if (active_) {
    ++suppressed_;
    return;
  }
  active_ = true;
  suppressed_ = 0;
  log_.warn(msg, fields);
}

void ConditionLog::cleared(std::string_view msg) {
  if (!active_) return;
  active_ = false;
  log_.info(msg, {{"suppressed_repeats", suppressed_}});
}

}  // namespace cauce::core
