#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <stdexcept>
#include <vector>

#include <cauce/commands/recurrence.hpp>

namespace cauce::commands {
namespace {

using core::floor_div;

constexpr std::int64_t kMinute = 60;
constexpr std::int64_t kDay = 86400;
constexpr std::int64_t kYear = 366 * kDay;

struct Field {
  const char* name;
  int min;
  int max;
  std::array<const char*, 12> names;  // value min + i, for months and weekdays
};

constexpr Field kMinuteField{"minute", 0, 59, {}};
constexpr Field kHourField{"hour", 0, 23, {}};
constexpr Field kDayField{"day-of-month", 1, 31, {}};
constexpr Field kMonthField{
    "month",
    1,
    12,
    {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}};
// 7 is Sunday too (folded into 0 after parsing).
constexpr Field kWeekdayField{
    "day-of-week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}};

[[noreturn]] void fail(const std::string& why) { throw std::invalid_argument(why); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One value of a field: a number or (months, weekdays) a three-letter name.
int value(const Field& f, std::string_view text) {
  const auto name = lower(text);
  for (std::size_t i = 0; i < f.names.size(); ++i) {
    if (f.names[i] != nullptr && name == f.names[i]) return f.min + static_cast<int>(i);
  }
  if (text.empty() || text.size() > 2 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    fail(std::string(f.name) + ": \"" + std::string(text) + "\" is not a " +
         (f.names[0] != nullptr ? "number or name" : "number"));
  }
  const int v = std::stoi(std::string(text));
  if (v < f.min || v > f.max) {
    fail(std::string(f.name) + ": " + std::to_string(v) + " is out of range " +
         std::to_string(f.min) + "-" + std::to_string(f.max));
  }
  return v;
}

// A field's values as bits (index = value). Throws the message of what is wrong.
std::vector<bool> field_bits(const Field& f, std::string_view text) {
  std::vector<bool> bits(static_cast<std::size_t>(f.max + 1), false);
  if (text.empty()) fail(std::string(f.name) + ": empty");
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto item =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    if (item.empty()) fail(std::string(f.name) + ": an empty item in the list");
    int step = 1;
    auto range = item;
    if (const auto slash = item.find('/'); slash != std::string_view::npos) {
      const auto step_text = item.substr(slash + 1);
      if (step_text.empty() || step_text.size() > 2 ||
          !std::all_of(step_text.begin(), step_text.end(),
                       [](char c) { return c >= '0' && c <= '9'; })) {
        fail(std::string(f.name) + ": step \"" + std::string(step_text) + "\" is not a number");
      }
      step = std::stoi(std::string(step_text));
      if (step < 1 || step > f.max) {
        fail(std::string(f.name) + ": step " + std::to_string(step) + " is out of range 1-" +
             std::to_string(f.max));
      }
      range = item.substr(0, slash);
    }
    int lo = f.min;
    int hi = f.max;
    if (range == "*") {
      if (&f == &kWeekdayField) hi = 6;  // 7 is Sunday again, already 0
    } else if (const auto dash = range.find('-'); dash != std::string_view::npos) {
      lo = value(f, range.substr(0, dash));
      hi = value(f, range.substr(dash + 1));
      if (lo > hi) {
        fail(std::string(f.name) + ": range " + std::string(range) +
             " goes backwards (write it as two ranges)");
      }
    } else {
      lo = value(f, range);
      // "a/n": from a to the end of the field by n; "a": a alone.
      hi = step > 1 || item.find('/') != std::string_view::npos ? f.max : lo;
    }
    for (int v = lo; v <= hi; v += step) bits[static_cast<std::size_t>(v)] = true;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return bits;
}

template <std::size_t N>
std::bitset<N> to_bitset(const std::vector<bool>& bits) {
  std::bitset<N> out;
  for (std::size_t i = 0; i < bits.size() && i < N; ++i) out[i] = bits[i];
  return out;
}

}  // namespace

std::variant<CronExpression, std::string> CronExpression::parse(std::string_view text) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    const auto start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
    if (i > start) fields.push_back(text.substr(start, i - start));
  }
  if (fields.size() != 5) {
    return "expected 5 fields (minute hour day-of-month month day-of-week), got " +
           std::to_string(fields.size());
  }
  CronExpression c;
  try {
    c.minutes_ = to_bitset<60>(field_bits(kMinuteField, fields[0]));
    c.hours_ = to_bitset<24>(field_bits(kHourField, fields[1]));
    c.days_ = to_bitset<32>(field_bits(kDayField, fields[2]));
    c.months_ = to_bitset<13>(field_bits(kMonthField, fields[3]));
    auto weekdays = field_bits(kWeekdayField, fields[4]);
    if (weekdays[7]) weekdays[0] = true;
    c.weekdays_ = to_bitset<7>(weekdays);
  } catch (const std::invalid_argument& e) {
    return std::string(e.what());
  }
  c.day_star_ = fields[2].starts_with('*');
  c.weekday_star_ = fields[4].starts_with('*');
  c.hour_wildcard_ = fields[1].starts_with('*');
  // Days that no month has: "30 2" (February 30th) would never fire.
  if (!c.day_star_ && c.weekday_star_) {
    bool any = false;
    for (int m = 1; m <= 12 && !any; ++m) {
      if (!c.months_[static_cast<std::size_t>(m)]) continue;
      const int longest = m == 2 ? 29 : core::days_in_month(2001, m);
      for (int d = 1; d <= longest && !any; ++d) any = c.days_[static_cast<std::size_t>(d)];
    }
    if (!any) return std::string("day-of-month: none of these days occurs in the months given");
  }
  return c;
}

bool CronExpression::matches_day(std::int64_t days) const {
  const auto date = core::civil_from_days(days);
  if (!months_[static_cast<std::size_t>(date.month)]) return false;
  const bool day = days_[static_cast<std::size_t>(date.day)];
  const bool weekday = weekdays_[static_cast<std::size_t>(core::weekday_of_days(days))];
  if (day_star_ || weekday_star_) return day && weekday;
  return day || weekday;
}

std::optional<std::int64_t> CronExpression::next_civil(std::int64_t civil_s,
                                                       std::int64_t limit_s) const {
  // The first whole minute at or after civil_s.
  auto t = floor_div(civil_s + kMinute - 1, kMinute) * kMinute;
  while (t < limit_s) {
    const auto days = floor_div(t, kDay);
    const auto date = core::civil_from_days(days);
    if (!months_[static_cast<std::size_t>(date.month)]) {
      // The first day of the next month.
      const int month = date.month == 12 ? 1 : date.month + 1;
      const auto year = date.month == 12 ? date.year + 1 : date.year;
      t = core::days_from_civil(year, month, 1) * kDay;
      continue;
    }
    if (!matches_day(days)) {
      t = (days + 1) * kDay;
      continue;
    }
    const auto second_of_day = t - days * kDay;
    int hour = static_cast<int>(second_of_day / 3600);
    int minute = static_cast<int>(second_of_day % 3600 / kMinute);
    if (!hours_[static_cast<std::size_t>(hour)]) {
      int h = hour + 1;
      while (h < 24 && !hours_[static_cast<std::size_t>(h)]) ++h;
      if (h == 24) {
        t = (days + 1) * kDay;
      } else {
        t = days * kDay + h * 3600;
      }
      continue;
    }
    int m = minute;
    while (m < 60 && !minutes_[static_cast<std::size_t>(m)]) ++m;
    if (m == 60) {
      t = days * kDay + (hour + 1) * 3600;
      continue;
    }
    const auto found = days * kDay + hour * 3600 + m * kMinute;
    if (found >= limit_s) break;
    return found;
  }
  return std::nullopt;
}

std::int64_t shortest_gap_s(const CronExpression& cron) {
  // Eight years from 1970 cover every month length, a leap day and each date on every weekday;
  // at most 100,000 slots are looked at (an hourly cron has 70,128), and a gap of one minute,
  // the least there is, ends the scan.
  constexpr std::int64_t kEnd = 8 * 365 * 86400 + 2 * 86400;
  std::int64_t shortest = std::numeric_limits<std::int64_t>::max();
  std::optional<std::int64_t> previous;
  std::int64_t at = 0;
  for (int slots = 0; slots < 100000 && shortest > 60; ++slots) {
    const auto next = cron.next_civil(at, kEnd);
    if (!next) break;
    if (previous) shortest = std::min(shortest, *next - *previous);
    previous = next;
    at = *next + 60;
  }
  return shortest;
}

std::optional<std::int64_t> parse_every(std::string_view text) {
  if (text.size() < 2 || text.size() > 7) return std::nullopt;
  const auto digits = text.substr(0, text.size() - 1);
  if (digits.front() == '0' ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = kDay;
      break;
    default:
      return std::nullopt;
  }
  const auto seconds = std::stoll(std::string(digits)) * unit;
  if (seconds > 366 * kDay) return std::nullopt;
  return seconds;
}

Recurrence Recurrence::every(std::int64_t every_s) {
  Recurrence r;
  r.every_s_ = every_s;
  return r;
}

Recurrence Recurrence::cron(CronExpression cron, std::shared_ptr<const core::TimeZone> zone) {
  Recurrence r;
  r.cron_ = std::move(cron);
  r.zone_ = zone ? std::move(zone) : std::make_shared<const core::TimeZone>(core::TimeZone::utc());
  return r;
}

std::optional<std::int64_t> Recurrence::next_after(std::int64_t t) const {
  if (every_s_ > 0) return (floor_div(t, every_s_) + 1) * every_s_;
  const auto& cron = *cron_;
  const auto& zone = *zone_;
  const auto horizon = t + 100 * kYear;
  // The zone's time as periods of one offset each. In each, the next matching wall-clock time
  // maps to one instant; a forward change skips wall-clock times (fired when it happens) and a
  // backward one repeats them (fired again only for an hour field that starts with '*').
  auto previous = zone.last_transition(t);
  std::int32_t offset = zone.offset_at(t);
  std::int64_t from = t;
  bool first = true;
  while (from < horizon) {
    const auto next = zone.next_transition(from);
    const auto end = next ? next->at : horizon;
    // The wall-clock time to search from: past t in the first period, the period's start after.
    auto civil = first ? floor_div(t + offset, kMinute) * kMinute + kMinute : from + offset;
    if (previous && previous->after < previous->before && !cron.hour_is_wildcard()) {
      civil = std::max(civil, previous->at + previous->before);  // the repeated times: done
    }
    // A match beyond the period's end is in the next period (or skipped): search no further.
    if (const auto c = cron.next_civil(civil, end + offset + kMinute)) {
      if (*c - offset < end) return *c - offset;
    }
    if (!next) return std::nullopt;
    if (next->after > next->before) {
      // Wall-clock times in [at + before, at + after) do not happen: fire at the jump instead.
      if (cron.next_civil(next->at + next->before, next->at + next->after)) return next->at;
    }
    previous = next;
    offset = next->after;
    from = next->at;
    first = false;
  }
  return std::nullopt;
}

std::optional<std::int64_t> Recurrence::latest_between(std::int64_t from_s,
                                                       std::int64_t t_s) const {
  if (from_s > t_s) return std::nullopt;
  if (every_s_ > 0) {
    const auto latest = floor_div(t_s, every_s_) * every_s_;
    if (latest < from_s) return std::nullopt;
    return latest;
  }
  // Look back over growing windows: the latest slot is in the first window holding any.
  for (const auto span : {kDay, 32 * kDay, kYear, 5 * kYear, 30 * kYear, 100 * kYear}) {
    const auto lo = std::max(from_s, t_s - span);
    std::optional<std::int64_t> latest;
    for (auto s = next_after(lo - 1); s && *s <= t_s; s = next_after(*s)) latest = s;
    if (latest) return latest;
    if (lo == from_s) return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace cauce::commands
