#pragma once

// Time zones from the system's TZif files (RFC 8536; Debian's tzdata under /usr/share/zoneinfo),
// for schedules that name wall-clock times: GCC 12's <chrono> has no tz database. The parser is
// pure (bytes in, offsets out); load_time_zone() reads the file and keeps each zone once per
// process.
//
// A zone is its UTC offset over time: the offset before the first transition, the transitions
// the file lists, then the POSIX TZ rule of the file's footer ("CET-1CEST,M3.5.0,M10.5.0/3"),
// which says where the offset goes every year after the last listed transition.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cauce::core {

// Proleptic Gregorian calendar arithmetic on days since 1970-01-01.
struct CivilDate {
  std::int64_t year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..31
  friend bool operator==(const CivilDate&, const CivilDate&) = default;
};
std::int64_t days_from_civil(std::int64_t year, int month, int day);
CivilDate civil_from_days(std::int64_t days);
int weekday_of_days(std::int64_t days);  // 0 = Sunday ... 6 = Saturday
bool is_leap_year(std::int64_t year);
int days_in_month(std::int64_t year, int month);

// Floor division and modulo (towards minus infinity), for times before 1970 too.
inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

class TimeZone {
 public:
  // A change of UTC offset at instant `at` (seconds since the epoch): from `before` to `after`
  // seconds east of UTC.
  struct Transition {
    std::int64_t at = 0;
    std::int32_t before = 0;
    std::int32_t after = 0;
    friend bool operator==(const Transition&, const Transition&) = default;
  };

  // UTC: no offset, no transitions.
  static TimeZone utc();
  // Parses a TZif file (versions 1 to 4; the 64-bit data and the footer of version 2 and
  // later). Throws std::invalid_argument saying what is wrong. A file with leap seconds (the
  // "right/" zones) is refused: cauce's clock is POSIX time.
  static TimeZone from_tzif(std::string_view bytes, std::string name);
  // A POSIX TZ string alone ("UTC0", "EST5EDT,M3.2.0,M11.1.0"); throws std::invalid_argument.
  static TimeZone from_posix(std::string_view rule, std::string name);

  const std::string& name() const { return name_; }
  // Seconds east of UTC at instant `utc_s`.
  std::int32_t offset_at(std::int64_t utc_s) const;
  // The first transition strictly after `after_s`; nullopt when the offset never changes again.
  std::optional<Transition> next_transition(std::int64_t after_s) const;
  // The last transition at or before `at_s`; nullopt when there is none.
  std::optional<Transition> last_transition(std::int64_t at_s) const;

  // The footer rule (public for tests).
  struct RuleDate {
    enum class Kind { kJulianNoLeap, kJulianZero, kMonthWeekDay } kind = Kind::kMonthWeekDay;
    int a = 0, b = 0, c = 0;     // Jn: a = n; n: a = n; Mm.w.d: a = m, b = w, c = d
    std::int32_t time_s = 7200;  // local time of day of the change (may be negative or > 24 h)
  };
  struct Rule {
    std::int32_t std_offset = 0;             // seconds east of UTC
    std::optional<std::int32_t> dst_offset;  // none: no daylight saving time
    RuleDate start, end;                     // when daylight saving time starts and ends
  };

 private:
  // The rule's transitions in `year`, in time order (none without daylight saving time).
  std::vector<Transition> rule_transitions(std::int64_t year) const;
  // The rule's transitions of the years around [from_year, to_year], merged where two fall on
  // the same instant, later than the last listed transition.
  std::vector<Transition> rule_transitions_between(std::int64_t from_year,
                                                   std::int64_t to_year) const;

  std::string name_;
  std::int32_t initial_offset_ = 0;  // before the first listed transition
  std::vector<Transition> listed_;   // from the file, in time order
  std::optional<Rule> rule_;         // after the last listed transition
};

// Whether `name` may name a zone: 1 to 100 characters of letters, digits, '_', '+' and '-' in
// '/'-separated parts, none empty, not starting with '-'; never "..", never an absolute path, not
// the "posix/" or "right/" copies and not "localtime" or "posixrules".
bool valid_time_zone_name(std::string_view name);

// The zone `name` from `zoneinfo_dir`, parsed once per process and directory (thread-safe).
// Throws std::invalid_argument with a message fit for a client ("no time zone named ...") when
// the name is not a zone.
std::shared_ptr<const TimeZone> load_time_zone(
    std::string_view name, const std::filesystem::path& zoneinfo_dir = "/usr/share/zoneinfo");

}  // namespace cauce::core
