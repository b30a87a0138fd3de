#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <cauce/core/time_zone.hpp>

namespace cauce::core {

// ---- the calendar ----

bool is_leap_year(std::int64_t year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(std::int64_t year, int month) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : kDays[static_cast<std::size_t>(month - 1)];
}

// Counted in 400-year eras starting on March 1st, so that the leap day ends a year.
std::int64_t days_from_civil(std::int64_t year, int month, int day) {
  const std::int64_t y = month <= 2 ? year - 1 : year;
  const std::int64_t era = floor_div(y, 400);
  const std::int64_t year_of_era = y - era * 400;                        // 0..399
  const std::int64_t shifted_month = month > 2 ? month - 3 : month + 9;  // March = 0
  const std::int64_t day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
  const std::int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;  // 719468: days from 0000-03-01 to 1970-01-01
}

CivilDate civil_from_days(std::int64_t days) {
  const std::int64_t z = days + 719468;
  const std::int64_t era = floor_div(z, 146097);
  const std::int64_t day_of_era = z - era * 146097;  // 0..146096
  const std::int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const std::int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const std::int64_t shifted_month = (5 * day_of_year + 2) / 153;
  const int day = static_cast<int>(day_of_year - (153 * shifted_month + 2) / 5 + 1);
  const int month = static_cast<int>(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
  return {year_of_era + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

int weekday_of_days(std::int64_t days) {
  return static_cast<int>(days + 4 - floor_div(days + 4, 7) * 7);  // 1970-01-01 was a Thursday
}

namespace {

constexpr std::int64_t kDay = 86400;

std::int64_t year_of(std::int64_t utc_s) { return civil_from_days(floor_div(utc_s, kDay)).year; }

// ---- the POSIX TZ string of a TZif footer ----

class RuleParser {
 public:
  explicit RuleParser(std::string_view text) : text_(text) {}

  TimeZone::Rule parse() {
    TimeZone::Rule rule;
    name();
    rule.std_offset = -offset(true);  // POSIX offsets are west of UTC
    if (at_end()) return rule;
    name();
    rule.dst_offset = rule.std_offset + 3600;
    if (!at_end() && peek() != ',') rule.dst_offset = -offset(true);
    if (at_end()) {
      // No rule given: POSIX leaves it to the implementation; the US rule is what glibc uses.
      rule.start = {TimeZone::RuleDate::Kind::kMonthWeekDay, 3, 2, 0, 7200};
      rule.end = {TimeZone::RuleDate::Kind::kMonthWeekDay, 11, 1, 0, 7200};
      return rule;
    }
    expect(',');
    rule.start = date();
    expect(',');
    rule.end = date();
    if (!at_end()) fail("unexpected text after the rule");
    return rule;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw std::invalid_argument("TZ rule \"" + std::string(text_) + "\": " + why);
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void name() {
    if (peek() == '<') {
      const auto close = text_.find('>', pos_);
      if (close == std::string_view::npos || close == pos_ + 1) fail("unterminated <name>");
      pos_ = close + 1;
      return;
    }
    const auto start = pos_;
    while (!at_end() && std::isalpha(static_cast<unsigned char>(peek()))) ++pos_;
    if (pos_ - start < 3) fail("a zone abbreviation needs 3 letters at least");
  }
  int number(int max) {
    const auto start = pos_;
    long value = 0;
    while (!at_end() && std::isdigit(static_cast<unsigned char>(peek()))) {
      value = value * 10 + (peek() - '0');
      if (value > max) fail("number out of range");
      ++pos_;
    }
    if (pos_ == start) fail("expected a number");
    return static_cast<int>(value);
  }
  // [+-]hh[:mm[:ss]], hours up to 24 for offsets and 167 for rule times (RFC 8536 3.3.1).
  std::int32_t offset(bool is_offset) {
    int sign = 1;
    if (peek() == '+' || peek() == '-') {
      sign = peek() == '-' ? -1 : 1;
      ++pos_;
    }
    std::int32_t seconds = number(is_offset ? 24 : 167) * 3600;
    if (peek() == ':') {
      ++pos_;
      seconds += number(59) * 60;
      if (peek() == ':') {
        ++pos_;
        seconds += number(59);
      }
    }
    return sign * seconds;
  }
  TimeZone::RuleDate date() {
    TimeZone::RuleDate d;
    if (peek() == 'J') {
      ++pos_;
      d.kind = TimeZone::RuleDate::Kind::kJulianNoLeap;
      d.a = number(365);
      if (d.a < 1) fail("Jn counts from 1");
    } else if (peek() == 'M') {
      ++pos_;
      d.kind = TimeZone::RuleDate::Kind::kMonthWeekDay;
      d.a = number(12);
      expect('.');
      d.b = number(5);
      expect('.');
      d.c = number(6);
      if (d.a < 1 || d.b < 1) fail("Mm.w.d: month and week count from 1");
    } else {
      d.kind = TimeZone::RuleDate::Kind::kJulianZero;
      d.a = number(365);
    }
    d.time_s = 7200;
    if (peek() == '/') {
      ++pos_;
      d.time_s = offset(false);
    }
    return d;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

// The day (days since the epoch) a rule date falls on in `year`.
std::int64_t rule_day(const TimeZone::RuleDate& d, std::int64_t year) {
  using Kind = TimeZone::RuleDate::Kind;
  const auto jan1 = days_from_civil(year, 1, 1);
  switch (d.kind) {
    case Kind::kJulianNoLeap:  // 1..365, February 29 never counted
      return jan1 + d.a - 1 + (is_leap_year(year) && d.a >= 60 ? 1 : 0);
    case Kind::kJulianZero:  // 0..365, February 29 counted
      return jan1 + d.a;
    case Kind::kMonthWeekDay: {
      const auto first = days_from_civil(year, d.a, 1);
      const int first_match = 1 + (d.c - weekday_of_days(first) + 7) % 7;
      int day = first_match + (d.b - 1) * 7;
      while (day > days_in_month(year, d.a)) day -= 7;  // week 5: the last one
      return first + day - 1;
    }
  }
  return jan1;
}

// ---- TZif ----

class Bytes {
 public:
  explicit Bytes(std::string_view in) : in_(in) {}
  std::string_view take(std::size_t n) {
    if (n > in_.size()) throw std::invalid_argument("TZif data is truncated");
    const auto out = in_.substr(0, n);
    in_.remove_prefix(n);
    return out;
  }
  std::int64_t big_endian(std::size_t n) {
    const auto b = take(n);
    std::uint64_t v = 0;
    for (const char c : b) v = (v << 8) | static_cast<unsigned char>(c);
    if (n == 4) return static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
    return static_cast<std::int64_t>(v);
  }
  std::uint32_t count() { return static_cast<std::uint32_t>(big_endian(4)); }
  std::string_view rest() const { return in_; }

 private:
  std::string_view in_;
};

struct Header {
  char version = 0;
  std::uint32_t isutcnt = 0, isstdcnt = 0, leapcnt = 0, timecnt = 0, typecnt = 0, charcnt = 0;
};

Header header(Bytes& b) {
  if (b.take(4) != "TZif") throw std::invalid_argument("not a TZif file");
  Header h;
  h.version = b.take(1)[0];
  b.take(15);
  h.isutcnt = b.count();
  h.isstdcnt = b.count();
  h.leapcnt = b.count();
  h.timecnt = b.count();
  h.typecnt = b.count();
  h.charcnt = b.count();
  if (h.typecnt == 0 || h.typecnt > 256 || h.charcnt == 0 ||
      (h.isutcnt != 0 && h.isutcnt != h.typecnt) || (h.isstdcnt != 0 && h.isstdcnt != h.typecnt)) {
    throw std::invalid_argument("TZif header counts are inconsistent");
  }
  return h;
}

}  // namespace

// ---- TimeZone ----

TimeZone TimeZone::utc() {
  TimeZone z;
  z.name_ = "UTC";
  return z;
}

TimeZone TimeZone::from_posix(std::string_view rule, std::string name) {
  TimeZone z;
  z.name_ = std::move(name);
  z.rule_ = RuleParser(rule).parse();
  z.initial_offset_ = z.rule_->std_offset;
  return z;
}

TimeZone TimeZone::from_tzif(std::string_view bytes, std::string name) {
  Bytes b(bytes);
  auto h = header(b);
  std::size_t time_size = 4;
  if (h.version >= '2') {
    // Skip the 32-bit block; the 64-bit one after the second header says the same and more.
    b.take(std::size_t{h.timecnt} * 5 + std::size_t{h.typecnt} * 6 + h.charcnt +
           std::size_t{h.leapcnt} * 8 + h.isstdcnt + h.isutcnt);
    h = header(b);
    time_size = 8;
  }
  if (h.leapcnt != 0) {
    throw std::invalid_argument("the zone counts leap seconds (a \"right/\" zone)");
  }
  // The counts say how large the data block is: it must all be there before anything is
  // allocated from them (a header claiming 4 billion transitions is a truncated file, not a
  // 32 GiB vector).
  const auto block = std::uint64_t{h.timecnt} * (time_size + 1) + std::uint64_t{h.typecnt} * 6 +
                     h.charcnt + std::uint64_t{h.leapcnt} * (time_size + 4) + h.isstdcnt +
                     h.isutcnt;
  if (block > b.rest().size()) throw std::invalid_argument("TZif data is truncated");
  std::vector<std::int64_t> times(h.timecnt);
  for (auto& t : times) t = b.big_endian(time_size);
  std::vector<std::uint8_t> indices(h.timecnt);
  for (auto& i : indices) {
    i = static_cast<std::uint8_t>(b.take(1)[0]);
    if (i >= h.typecnt) throw std::invalid_argument("TZif transition names an unknown type");
  }
  std::vector<std::int32_t> offsets(h.typecnt);
  for (auto& o : offsets) {
    o = static_cast<std::int32_t>(b.big_endian(4));
    b.take(2);  // isdst, abbreviation index: not needed for offsets
    if (o < -89999 || o > 93599) throw std::invalid_argument("TZif offset out of range");
  }
  b.take(h.charcnt + std::size_t{h.leapcnt} * (time_size + 4) + h.isstdcnt + h.isutcnt);
  TimeZone z;
  z.name_ = std::move(name);
  z.initial_offset_ = offsets[0];
  std::int32_t previous = offsets[0];
  for (std::size_t i = 0; i < times.size(); ++i) {
    if (i > 0 && times[i] <= times[i - 1]) {
      throw std::invalid_argument("TZif transitions are not in order");
    }
    const auto after = offsets[indices[i]];
    z.listed_.push_back(Transition{times[i], previous, after});
    previous = after;
  }
  if (h.version >= '2') {
    const auto footer = b.rest();
    if (footer.size() < 2 || footer.front() != '\n') {
      throw std::invalid_argument("TZif footer is missing");
    }
    const auto end = footer.find('\n', 1);
    if (end == std::string_view::npos) throw std::invalid_argument("TZif footer is unterminated");
    const auto tz = footer.substr(1, end - 1);
    if (!tz.empty()) z.rule_ = RuleParser(tz).parse();
  }
  return z;
}

std::vector<TimeZone::Transition> TimeZone::rule_transitions(std::int64_t year) const {
  if (!rule_ || !rule_->dst_offset) return {};
  const auto std_offset = rule_->std_offset;
  const auto dst_offset = *rule_->dst_offset;
  // The start is given in standard time (what runs before it), the end in daylight time.
  const Transition start{rule_day(rule_->start, year) * kDay + rule_->start.time_s - std_offset,
                         std_offset, dst_offset};
  const Transition end{rule_day(rule_->end, year) * kDay + rule_->end.time_s - dst_offset,
                       dst_offset, std_offset};
  return {start, end};
}

std::vector<TimeZone::Transition> TimeZone::rule_transitions_between(std::int64_t from_year,
                                                                     std::int64_t to_year) const {
  std::vector<Transition> all;
  for (auto y = from_year - 1; y <= to_year + 1; ++y) {
    for (const auto& t : rule_transitions(y)) all.push_back(t);
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Transition& a, const Transition& b) { return a.at < b.at; });
  // Two changes at one instant (a year's end and the next one's start in an all-year rule) are
  // one change, or none.
  std::vector<Transition> merged;
  for (const auto& t : all) {
    if (!merged.empty() && merged.back().at == t.at) {
      merged.back().after = t.after;
    } else {
      merged.push_back(t);
    }
  }
  const auto last_listed = listed_.empty() ? INT64_MIN : listed_.back().at;
  std::vector<Transition> out;
  for (const auto& t : merged) {
    if (t.before != t.after && t.at > last_listed) out.push_back(t);
  }
  return out;
}

std::int32_t TimeZone::offset_at(std::int64_t utc_s) const {
  if (const auto t = last_transition(utc_s)) return t->after;
  if (!listed_.empty()) return initial_offset_;
  if (rule_) {
    // No transition yet at all: the rule's offset before its first change of the year.
    const auto in_year = rule_transitions_between(year_of(utc_s), year_of(utc_s));
    if (!in_year.empty()) return in_year.front().before;
    return rule_->std_offset;
  }
  return initial_offset_;
}

std::optional<TimeZone::Transition> TimeZone::next_transition(std::int64_t after_s) const {
  const auto it = std::upper_bound(
      listed_.begin(), listed_.end(), after_s,
      [](std::int64_t t, const Transition& transition) { return t < transition.at; });
  if (it != listed_.end()) return *it;
  if (!rule_ || !rule_->dst_offset) return std::nullopt;
  const auto from = std::max(after_s, listed_.empty() ? after_s : listed_.back().at);
  const auto year = year_of(from);
  for (const auto& t : rule_transitions_between(year, year + 1)) {
    if (t.at > after_s) return t;
  }
  return std::nullopt;
}

std::optional<TimeZone::Transition> TimeZone::last_transition(std::int64_t at_s) const {
  if (rule_ && rule_->dst_offset && (listed_.empty() || at_s > listed_.back().at)) {
    const auto year = year_of(at_s);
    std::optional<Transition> found;
    for (const auto& t : rule_transitions_between(year - 1, year)) {
      if (t.at <= at_s) found = t;
    }
    if (found) return found;
  }
  const auto it = std::upper_bound(
      listed_.begin(), listed_.end(), at_s,
      [](std::int64_t t, const Transition& transition) { return t < transition.at; });
  if (it == listed_.begin()) return std::nullopt;
  return *std::prev(it);
}

// ---- names and files ----

bool valid_time_zone_name(std::string_view name) {
  if (name.empty() || name.size() > 100 || name.front() == '/' || name.back() == '/') return false;
  if (name == "localtime" || name == "posixrules" || name.starts_with("posix/") ||
      name.starts_with("right/")) {
    return false;
  }
  std::size_t part_start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '/') {
      if (i == part_start || name[part_start] == '-') return false;
      part_start = i + 1;
      continue;
    }
    const char c = name[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::shared_ptr<const TimeZone> load_time_zone(std::string_view name,
                                               const std::filesystem::path& zoneinfo_dir) {
  const std::string quoted = "no time zone named \"" + std::string(name) + "\"";
  if (!valid_time_zone_name(name)) {
    throw std::invalid_argument(quoted + " (an IANA name such as Europe/Madrid or UTC)");
  }
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const TimeZone>, std::less<>> cache;
  const auto key = zoneinfo_dir.string() + "\n" + std::string(name);
  {
    const std::lock_guard lock(mutex);
    if (const auto it = cache.find(key); it != cache.end()) return it->second;
  }
  const auto path = zoneinfo_dir / std::string(name);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) ||
      std::filesystem::file_size(path, ec) > 1 << 20) {
    throw std::invalid_argument(quoted);
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw std::invalid_argument(quoted);
  std::shared_ptr<const TimeZone> zone;
  try {
    zone = std::make_shared<const TimeZone>(TimeZone::from_tzif(bytes.str(), std::string(name)));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(quoted + " (" + e.what() + ")");
  }
  const std::lock_guard lock(mutex);
  return cache.try_emplace(key, zone).first->second;
}

}  // namespace cauce::core
