#pragma once

// When a report schedule's slots fall (issue 16, part 3): `every` (a fixed duration counted from
// the Unix epoch) or `cron` (five fields, wall-clock times in a time zone). Pure: the time zone
// arrives parsed (core::TimeZone).
//
// Slots are instants in whole seconds. DST, for cron times (workers/README.md says the same):
// - a local time the clocks skip (02:30 on Europe/Madrid's spring-forward day) fires once, at the
//   instant the clocks jump (03:00 CEST): the day keeps its report;
// - a local time that happens twice (02:30 on the fall-back day) fires once, at its first
//   occurrence (summer time), when the hour field names hours ("30 2 * * *"); an expression whose
//   hour field starts with '*' ("*/15 * * * *", "0 * * * *") runs by the clock and fires in both
//   passes of the repeated hour, as Vixie cron does.

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <cauce/core/time_zone.hpp>

namespace cauce::commands {

// A standard five-field cron expression: minute (0-59), hour (0-23), day of month (1-31), month
// (1-12 or jan-dec), day of week (0-7 or sun-sat; 0 and 7 are Sunday). Each field is '*' or a
// comma-separated list of values, ranges a-b and steps (*/n, a-b/n, a/n = a to the end by n).
// Day of month and day of week: when both are restricted (neither starts with '*') a day
// matching either fires; otherwise both must match (the Vixie cron rule).
class CronExpression {
 public:
  // The expression, or what is wrong with it ("minute: 61 is out of range 0-59").
  static std::variant<CronExpression, std::string> parse(std::string_view text);

  // The first civil (local wall-clock) time at a whole minute, as seconds since 1970-01-01T00:00
  // of that clock, at or after `civil_s` that matches; nullopt if none before `limit_s`.
  std::optional<std::int64_t> next_civil(std::int64_t civil_s, std::int64_t limit_s) const;
  bool matches_day(std::int64_t days) const;
  bool hour_is_wildcard() const { return hour_wildcard_; }

 private:
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0..6, Sunday = 0
  bool day_star_ = false;
  bool weekday_star_ = false;
  bool hour_wildcard_ = false;
};

// The shortest time between two consecutive slots of `cron` in wall-clock time (a zone's
// clock changes aside), over the calendar of 1970..1978 (every weekday, leap day and month
// length combination occurs); 60 at the least. A cron that never fires gives INT64_MAX.
std::int64_t shortest_gap_s(const CronExpression& cron);

// `every`: a positive whole number and a unit, s, m, h or d ("30s", "15m", "6h", "1d"), at most
// 366 days; the duration in seconds, or nullopt.
std::optional<std::int64_t> parse_every(std::string_view text);

// A schedule's slots: every `every_s` seconds since the epoch, or the cron expression's times
// in `zone`.
class Recurrence {
 public:
  static Recurrence every(std::int64_t every_s);
  static Recurrence cron(CronExpression cron, std::shared_ptr<const core::TimeZone> zone);

  // The first slot strictly after `t_s` (seconds); nullopt if none within 100 years.
  std::optional<std::int64_t> next_after(std::int64_t t_s) const;
  // The last slot in [from_s, t_s]; nullopt if none.
  std::optional<std::int64_t> latest_between(std::int64_t from_s, std::int64_t t_s) const;

 private:
  std::int64_t every_s_ = 0;
  std::optional<CronExpression> cron_;
  std::shared_ptr<const core::TimeZone> zone_;
};

}  // namespace cauce::commands
