// Scheduled reports (issue 16, part 3), the pure parts: the calendar and TZif time zones
// (checked against glibc's reading of the same files), cron expressions and `every`, the slots a
// recurrence gives (checked against a minute-by-minute scan, DST days included), and the
// ReportSchedule aggregate given/when/then.
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include <cauce/commands/recurrence.hpp>
#include <cauce/commands/report_schedule.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/time_zone.hpp>

#include "given_when_then.hpp"

namespace cauce::commands {
namespace {

using core::TimeZone;

std::int64_t at(const char* rfc3339) { return core::parse_utc_micros(rfc3339) / 1'000'000; }
std::string utc(std::int64_t s) { return core::format_utc_micros(s * 1'000'000); }

std::shared_ptr<const TimeZone> zone(const char* name) { return core::load_time_zone(name); }

CronExpression cron(const char* text) {
  auto parsed = CronExpression::parse(text);
  if (const auto* why = std::get_if<std::string>(&parsed)) {
    ADD_FAILURE() << text << ": " << *why;
    return std::get<CronExpression>(CronExpression::parse("* * * * *"));
  }
  return std::get<CronExpression>(parsed);
}

std::string cron_error(const char* text) {
  const auto parsed = CronExpression::parse(text);
  const auto* why = std::get_if<std::string>(&parsed);
  return why != nullptr ? *why : "<valid>";
}

// The slots after `from`, as UTC texts, `n` of them.
std::vector<std::string> slots(const Recurrence& r, std::int64_t from, int n) {
  std::vector<std::string> out;
  for (auto s = r.next_after(from); s && n-- > 0; s = r.next_after(*s)) out.push_back(utc(*s));
  return out;
}

// ---- the calendar and time zones ----

TEST(ScheduleTimeZoneTest, CivilDaysRoundTripAndKnownDates) {
  EXPECT_EQ(core::days_from_civil(1970, 1, 1), 0);
  EXPECT_EQ(core::days_from_civil(2000, 3, 1), 11017);
  EXPECT_EQ(core::days_from_civil(1969, 12, 31), -1);
  EXPECT_EQ(core::weekday_of_days(0), 4);  // a Thursday
  EXPECT_EQ(core::weekday_of_days(-1), 3);
  EXPECT_EQ(core::weekday_of_days(core::days_from_civil(2026, 3, 29)), 0);  // a Sunday
  for (std::int64_t d = -800'000; d < 800'000; d += 37) {
    const auto c = core::civil_from_days(d);
    ASSERT_EQ(core::days_from_civil(c.year, c.month, c.day), d);
    ASSERT_GE(c.day, 1);
    ASSERT_LE(c.day, core::days_in_month(c.year, c.month));
  }
  EXPECT_EQ(core::days_in_month(2024, 2), 29);
  EXPECT_EQ(core::days_in_month(1900, 2), 28);
  EXPECT_EQ(core::days_in_month(2000, 2), 29);
}

TEST(ScheduleTimeZoneTest, MadridChangesAtTheListedAndRuledInstants) {
  const auto madrid = zone("Europe/Madrid");
  // 2026: spring forward on March 29th at 01:00 UTC, back on October 25th at 01:00 UTC.
  EXPECT_EQ(madrid->offset_at(at("2026-03-29T00:59:59.000000Z")), 3600);
  EXPECT_EQ(madrid->offset_at(at("2026-03-29T01:00:00.000000Z")), 7200);
  EXPECT_EQ(madrid->offset_at(at("2026-10-25T00:59:59.000000Z")), 7200);
  EXPECT_EQ(madrid->offset_at(at("2026-10-25T01:00:00.000000Z")), 3600);
  const auto next = madrid->next_transition(at("2026-06-01T00:00:00.000000Z"));
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, (TimeZone::Transition{at("2026-10-25T01:00:00.000000Z"), 7200, 3600}));
  // Far beyond the file's last listed transition: the footer's rule (last Sundays of March and
  // October; March 28th in 2190).
  EXPECT_EQ(madrid->offset_at(at("2190-03-28T00:59:59.000000Z")), 3600);
  EXPECT_EQ(madrid->offset_at(at("2190-03-28T01:00:00.000000Z")), 7200);
  const auto last = madrid->last_transition(at("2190-07-01T00:00:00.000000Z"));
  ASSERT_TRUE(last);
  EXPECT_EQ(last->at, at("2190-03-28T01:00:00.000000Z"));
  EXPECT_EQ(zone("UTC")->offset_at(at("2026-07-01T00:00:00.000000Z")), 0);
  EXPECT_FALSE(zone("UTC")->next_transition(0));
}

TEST(ScheduleTimeZoneTest, PosixRulesOfBothHemispheres) {
  const auto ny = TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0", "test");
  EXPECT_EQ(ny.offset_at(at("2026-03-08T06:59:59.000000Z")), -5 * 3600);
  EXPECT_EQ(ny.offset_at(at("2026-03-08T07:00:00.000000Z")), -4 * 3600);
  EXPECT_EQ(ny.offset_at(at("2026-11-01T05:59:59.000000Z")), -4 * 3600);
  EXPECT_EQ(ny.offset_at(at("2026-11-01T06:00:00.000000Z")), -5 * 3600);
  // Southern: summer time from October to April, across the new year.
  const auto sydney = TimeZone::from_posix("AEST-10AEDT,M10.1.0,M4.1.0/3", "test");
  EXPECT_EQ(sydney.offset_at(at("2026-01-15T00:00:00.000000Z")), 11 * 3600);
  EXPECT_EQ(sydney.offset_at(at("2026-06-15T00:00:00.000000Z")), 10 * 3600);
  // Daylight saving time all year (the RFC 8536 idiom) never changes.
  const auto always = TimeZone::from_posix("EST5EDT4,0/0,J365/25", "test");
  EXPECT_EQ(always.offset_at(at("2026-06-15T00:00:00.000000Z")), -4 * 3600);
  EXPECT_EQ(always.offset_at(at("2027-01-01T04:30:00.000000Z")), -4 * 3600);
  EXPECT_THROW(TimeZone::from_posix("X5", "test"), std::invalid_argument);
  EXPECT_THROW(TimeZone::from_posix("EST5EDT,M13.1.0,M11.1.0", "test"), std::invalid_argument);
}

TEST(ScheduleTimeZoneTest, ANameThatIsNotAZoneIsRefused) {
  for (const auto* bad :
       {"", "../../etc/passwd", "Europe/../../../etc/passwd", "/etc/passwd", "Europe/Nowhere",
        "zone.tab", "right/Europe/Madrid", "posix/UTC", "localtime", "Europe/", "Europe//Madrid",
        "-x", "Europe/Madrid\n", "Etc"}) {
    EXPECT_THROW(core::load_time_zone(bad), std::invalid_argument) << bad;
  }
  try {
    core::load_time_zone("Mars/Olympus_Mons");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind(R"(no time zone named "Mars/Olympus_Mons")", 0), 0u);
  }
  for (const auto* good : {"UTC", "Europe/Madrid", "America/Argentina/Buenos_Aires", "Etc/GMT+3",
                           "Asia/Kathmandu", "Australia/Lord_Howe"}) {
    EXPECT_NO_THROW(core::load_time_zone(good)) << good;
  }
}

// A damaged file is refused, never trusted: every truncation of a real zone, and a header whose
// counts claim more data than there is (4 billion transitions), are an invalid_argument, not a
// crash or a 32 GiB allocation.
TEST(ScheduleTimeZoneTest, AMalformedTzifFileIsRefusedWhateverItsCountsClaim) {
  std::ifstream in("/usr/share/zoneinfo/Europe/Madrid", std::ios::binary);
  const std::string madrid((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(madrid.size(), 100u);
  EXPECT_NO_THROW(TimeZone::from_tzif(madrid, "Europe/Madrid"));
  for (std::size_t n = 0; n < madrid.size(); n += 7) {
    EXPECT_THROW(TimeZone::from_tzif(madrid.substr(0, n), "cut"), std::invalid_argument) << n;
  }
  // timecnt is the header's fourth count (bytes 32..35): in the first header, then the second.
  const auto second = madrid.find("TZif", 4);
  ASSERT_NE(second, std::string::npos);
  for (const auto at : {std::size_t{32}, second + 32}) {
    auto lying = madrid;
    lying.replace(at, 4, "\xff\xff\xff\xff");
    EXPECT_THROW(TimeZone::from_tzif(lying, "lying"), std::invalid_argument) << at;
  }
}

// The same files read by glibc: offsets agree at random instants from 1900 to 2200, which
// covers both the listed transitions and the footer's rule.
TEST(ScheduleTimeZoneTest, OffsetsAgreeWithGlibcAtRandomInstants) {
  std::mt19937_64 random(42);
  std::uniform_int_distribution<std::int64_t> instant(at("1900-01-01T00:00:00.000000Z"),
                                                      at("2200-01-01T00:00:00.000000Z"));
  const char* const old_tz = std::getenv("TZ");
  const std::string saved = old_tz != nullptr ? old_tz : "";
  for (const auto* name : {"Europe/Madrid", "America/New_York", "Australia/Sydney",
                           "Australia/Lord_Howe", "Asia/Kathmandu", "America/Sao_Paulo",
                           "Pacific/Apia", "Africa/Casablanca", "Europe/London"}) {
    const auto z = zone(name);
    ::setenv("TZ", (std::string(":") + name).c_str(), 1);
    ::tzset();
    for (int i = 0; i < 3000; ++i) {
      const auto t = instant(random);
      const std::time_t tt = t;
      std::tm tm{};
      ASSERT_NE(::localtime_r(&tt, &tm), nullptr);
      ASSERT_EQ(z->offset_at(t), tm.tm_gmtoff) << name << " at " << utc(t);
    }
  }
  if (old_tz != nullptr) {
    ::setenv("TZ", saved.c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
}

// ---- cron and every ----

TEST(ScheduleCronTest, AnExpressionThatDoesNotParseSaysWhatIsWrong) {
  EXPECT_EQ(cron_error("* * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4");
  EXPECT_EQ(cron_error("* * * * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 6");
  EXPECT_EQ(cron_error("61 * * * *"), "minute: 61 is out of range 0-59");
  EXPECT_EQ(cron_error("* 24 * * *"), "hour: 24 is out of range 0-23");
  EXPECT_EQ(cron_error("* * 0 * *"), "day-of-month: 0 is out of range 1-31");
  EXPECT_EQ(cron_error("* * * 13 *"), "month: 13 is out of range 1-12");
  EXPECT_EQ(cron_error("* * * * 8"), "day-of-week: 8 is out of range 0-7");
  EXPECT_EQ(cron_error("*/0 * * * *"), "minute: step 0 is out of range 1-59");
  EXPECT_EQ(cron_error("*/x * * * *"), "minute: step \"x\" is not a number");
  EXPECT_EQ(cron_error("5-1 * * * *"), "minute: range 5-1 goes backwards (write it as two ranges)");
  EXPECT_EQ(cron_error("1,,2 * * * *"), "minute: an empty item in the list");
  EXPECT_EQ(cron_error("a * * * *"), "minute: \"a\" is not a number");
  EXPECT_EQ(cron_error("* * * foo *"), "month: \"foo\" is not a number or name");
  EXPECT_EQ(cron_error("0 0 30 2 *"),
            "day-of-month: none of these days occurs in the months given");
  EXPECT_EQ(cron_error("0 0 31 4,6,9,11 *"),
            "day-of-month: none of these days occurs in the months given");
  for (const auto* good : {"* * * * *", "0 7 * * mon-fri", "0 9 * JAN-mar SUN", "*/15 * * * *",
                           "0 0 29 2 *", "5/20 1-23/2 1,15 * 7", "0 0 30 2 1", "  0   7 * * *  "}) {
    EXPECT_EQ(cron_error(good), "<valid>") << good;
  }
}

TEST(ScheduleCronTest, TheShortestGapBetweenSlotsIsFoundWhereverItFalls) {
  EXPECT_EQ(shortest_gap_s(cron("* * * * *")), 60);
  EXPECT_EQ(shortest_gap_s(cron("*/15 * * * *")), 15 * 60);
  EXPECT_EQ(shortest_gap_s(cron("0 * * * *")), 3600);
  EXPECT_EQ(shortest_gap_s(cron("50 7 * * *")), 86400);
  EXPECT_EQ(shortest_gap_s(cron("0,59 9 * * *")), 59 * 60);
  EXPECT_EQ(shortest_gap_s(cron("58 23 * * 1,2")), 86400) << "Monday then Tuesday";
  EXPECT_EQ(shortest_gap_s(cron("0 0 1 * *")), 28 * 86400) << "February, the shortest month";
  EXPECT_EQ(shortest_gap_s(cron("0 0 28 2 *")), 365 * 86400);
  // Day of month or day of week (both restricted): a Friday the 12th fires, and so does the
  // Saturday the 13th after it, a day apart.
  EXPECT_EQ(shortest_gap_s(cron("0 12 13 * 5")), 86400);
}

TEST(ScheduleCronTest, EveryTakesANumberAndAUnit) {
  EXPECT_EQ(parse_every("30s"), 30);
  EXPECT_EQ(parse_every("15m"), 900);
  EXPECT_EQ(parse_every("6h"), 21600);
  EXPECT_EQ(parse_every("1d"), 86400);
  EXPECT_EQ(parse_every("366d"), 366 * 86400);
  for (const auto* bad :
       {"", "m", "0m", "015m", "1.5h", "15", "15 m", "1w", "367d", "-1m", "99999999s"}) {
    EXPECT_FALSE(parse_every(bad)) << bad;
  }
}

TEST(ScheduleCronTest, SlotsInUtcFollowTheFields) {
  const auto utc_zone = zone("UTC");
  const auto from = at("2026-01-30T23:59:30.000000Z");  // a Friday
  EXPECT_EQ(slots(Recurrence::cron(cron("0 7 * * mon-fri"), utc_zone), from, 3),
            (std::vector<std::string>{"2026-02-02T07:00:00.000000Z", "2026-02-03T07:00:00.000000Z",
                                      "2026-02-04T07:00:00.000000Z"}));
  // Day of month or day of week when both are restricted: the 13th and every Friday.
  EXPECT_EQ(slots(Recurrence::cron(cron("0 0 13 * 5"), utc_zone), from, 3),
            (std::vector<std::string>{"2026-02-06T00:00:00.000000Z", "2026-02-13T00:00:00.000000Z",
                                      "2026-02-20T00:00:00.000000Z"}));
  // A day-of-month field starting with '*' makes it "and": odd days that are Fridays.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("0 0 */2 * 5"), utc_zone), from, 2),
      (std::vector<std::string>{"2026-02-13T00:00:00.000000Z", "2026-02-27T00:00:00.000000Z"}));
  // February 29th: leap years only.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("0 12 29 feb *"), utc_zone), from, 2),
      (std::vector<std::string>{"2028-02-29T12:00:00.000000Z", "2032-02-29T12:00:00.000000Z"}));
  EXPECT_EQ(
      slots(Recurrence::every(900), at("2026-01-01T10:07:00.000000Z"), 2),
      (std::vector<std::string>{"2026-01-01T10:15:00.000000Z", "2026-01-01T10:30:00.000000Z"}));
  // Strictly after: a slot instant itself is not its own next.
  EXPECT_EQ(slots(Recurrence::every(900), at("2026-01-01T10:15:00.000000Z"), 1),
            (std::vector<std::string>{"2026-01-01T10:30:00.000000Z"}));
}

TEST(ScheduleCronTest, TheLatestMissedSlotIsTheOnlyOneFound) {
  const auto daily = Recurrence::cron(cron("0 7 * * *"), zone("Europe/Madrid"));
  // Down from Monday 06:00 to Thursday 09:00 (Madrid, CET): three 07:00 slots missed; the
  // latest is Thursday's.
  const auto latest =
      daily.latest_between(at("2026-02-02T05:00:00.000000Z"), at("2026-02-05T08:00:00.000000Z"));
  ASSERT_TRUE(latest);
  EXPECT_EQ(utc(*latest), "2026-02-05T06:00:00.000000Z");
  EXPECT_FALSE(
      daily.latest_between(at("2026-02-05T06:00:01.000000Z"), at("2026-02-05T08:00:00.000000Z")));
  const auto yearly = Recurrence::cron(cron("0 0 1 1 *"), zone("UTC"));
  EXPECT_EQ(utc(*yearly.latest_between(0, at("2026-07-01T00:00:00.000000Z"))),
            "2026-01-01T00:00:00.000000Z");
  EXPECT_EQ(*Recurrence::every(60).latest_between(0, at("2026-07-01T00:00:59.000000Z")),
            at("2026-07-01T00:00:00.000000Z"));
  EXPECT_FALSE(Recurrence::every(3600).latest_between(at("2026-07-01T00:00:01.000000Z"),
                                                      at("2026-07-01T00:59:59.000000Z")));
}

// Europe/Madrid, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 2026-10-25: 03:00 CEST
// falls back to 02:00 CET (01:00 UTC).
TEST(ScheduleCronTest, MadridSpringForwardFiresASkippedTimeWhenTheClocksJump) {
  const auto madrid = zone("Europe/Madrid");
  const auto day_before = at("2026-03-28T12:00:00.000000Z");
  EXPECT_EQ(slots(Recurrence::cron(cron("30 2 * * *"), madrid), day_before, 3),
            (std::vector<std::string>{"2026-03-29T01:00:00.000000Z",  // 03:00 CEST, once
                                      "2026-03-30T00:30:00.000000Z",  // 02:30 CEST
                                      "2026-03-31T00:30:00.000000Z"}));
  // 02:00, 02:15, ... all skipped: one slot when the clocks jump, then 03:00 is that same instant.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("*/15 2-3 * * *"), madrid), at("2026-03-29T00:00:00.000000Z"), 5),
      (std::vector<std::string>{"2026-03-29T01:00:00.000000Z", "2026-03-29T01:15:00.000000Z",
                                "2026-03-29T01:30:00.000000Z", "2026-03-29T01:45:00.000000Z",
                                "2026-03-30T00:00:00.000000Z"}));
  // Not skipped: 07:00 is 07:00 either side of the change.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("0 7 * * *"), madrid), day_before, 2),
      (std::vector<std::string>{"2026-03-29T05:00:00.000000Z", "2026-03-30T05:00:00.000000Z"}));
}

TEST(ScheduleCronTest, MadridFallBackFiresARepeatedTimeOnceUnlessTheHourIsAWildcard) {
  const auto madrid = zone("Europe/Madrid");
  const auto day_before = at("2026-10-24T12:00:00.000000Z");
  // 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET): once, the first.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("30 2 * * *"), madrid), day_before, 2),
      (std::vector<std::string>{"2026-10-25T00:30:00.000000Z", "2026-10-26T01:30:00.000000Z"}));
  // Asked from inside the repeated hour's second pass: not again.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("30 2 * * *"), madrid), at("2026-10-25T01:10:00.000000Z"), 1),
      (std::vector<std::string>{"2026-10-26T01:30:00.000000Z"}));
  // By the clock: every half hour in both passes.
  EXPECT_EQ(
      slots(Recurrence::cron(cron("*/30 * * * *"), madrid), at("2026-10-24T23:45:00.000000Z"), 6),
      (std::vector<std::string>{"2026-10-25T00:00:00.000000Z", "2026-10-25T00:30:00.000000Z",
                                "2026-10-25T01:00:00.000000Z", "2026-10-25T01:30:00.000000Z",
                                "2026-10-25T02:00:00.000000Z", "2026-10-25T02:30:00.000000Z"}));
}

// An independent statement of the rules, instant by instant: each UTC minute whose wall-clock
// time matches is a slot, except a second pass of a repeated time when the hour is named; each
// forward change whose skipped wall-clock times hold a match is a slot at the change.
std::vector<std::int64_t> scan(const CronExpression& c, bool hour_wildcard, const TimeZone& z,
                               std::int64_t from, std::int64_t to) {
  std::set<std::int64_t> out;
  for (auto u = (core::floor_div(from, 60) + 1) * 60; u <= to; u += 60) {
    const auto offset = z.offset_at(u);
    const auto civil = u + offset;
    if (!c.next_civil(civil, civil + 1)) continue;
    const auto last = z.last_transition(u);
    const bool second_pass = last && last->after < last->before && civil < last->at + last->before;
    if (second_pass && !hour_wildcard) continue;
    out.insert(u);
  }
  for (auto t = z.next_transition(from); t && t->at <= to; t = z.next_transition(t->at)) {
    if (t->after > t->before && t->at > from && c.next_civil(t->at + t->before, t->at + t->after)) {
      out.insert(t->at);
    }
  }
  return {out.begin(), out.end()};
}

TEST(ScheduleCronTest, RandomExpressionsAgreeWithAMinuteByMinuteScanAcrossDstChanges) {
  std::mt19937_64 random(7);
  const auto pick = [&](int lo, int hi) {
    return static_cast<int>(std::uniform_int_distribution<int>(lo, hi)(random));
  };
  const auto field = [&](int lo, int hi) -> std::string {
    switch (pick(0, 4)) {
      case 0:
        return "*";
      case 1:
        return "*/" + std::to_string(pick(1, std::min(hi, 30)));
      case 2: {
        const int a = pick(lo, hi);
        return std::to_string(a) + "-" + std::to_string(pick(a, hi));
      }
      case 3:
        return std::to_string(pick(lo, hi)) + "," + std::to_string(pick(lo, hi));
      default:
        return std::to_string(pick(lo, hi));
    }
  };
  int compared = 0;
  for (const auto* name : {"Europe/Madrid", "America/New_York", "Australia/Lord_Howe"}) {
    const auto z = zone(name);
    for (int i = 0; i < 60; ++i) {
      const auto text = field(0, 59) + " " + field(0, 23) + " " +
                        (pick(0, 3) ? "*" : field(1, 31)) + " * " +
                        (pick(0, 3) ? "*" : field(0, 6));
      const auto parsed = CronExpression::parse(text);
      if (!std::holds_alternative<CronExpression>(parsed)) continue;
      const auto& c = std::get<CronExpression>(parsed);
      const auto r = Recurrence::cron(c, z);
      // Two days around each of the year's changes.
      for (auto t = z->next_transition(at("2026-01-01T00:00:00.000000Z"));
           t && t->at < at("2027-01-01T00:00:00.000000Z"); t = z->next_transition(t->at)) {
        const auto from = t->at - 86400 - pick(0, 3600);
        const auto to = t->at + 86400;
        std::vector<std::int64_t> got;
        for (auto s = r.next_after(from); s && *s <= to; s = r.next_after(*s)) got.push_back(*s);
        ASSERT_EQ(got, scan(c, c.hour_is_wildcard(), *z, from, to))
            << name << " \"" << text << "\" from " << utc(from);
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 200);
}

// ---- the aggregate ----

namespace rs = report_schedule;
using testing::at;
using testing::given;
using testing::then_events;
using testing::then_rejected;

rs::Create daily() {
  return rs::Create{
      "Calls", "https://example.org/c.csv", std::nullopt, "0 7 * * *", "Europe/Madrid", "crm"};
}

rs::State created() {
  return given<rs::State, rs::Event>({std::get<0>(decide(rs::State{}, daily(), at()))[0]});
}

TEST(ScheduleAggregateTest, CreationChecksEveryField) {
  const auto events = then_events(decide(rs::State{}, daily(), at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(rs::to_json(events[0]),
            R"({"title":"Calls","source_url":"https://example.org/c.csv","cron":"0 7 * * *",)"
            R"("timezone":"Europe/Madrid","source_auth":"crm"})");
  auto c = daily();
  c.every = "15m";
  EXPECT_EQ(then_rejected(decide(rs::State{}, c, at())).field, "every");  // both
  c.every.reset();
  c.cron.reset();
  EXPECT_EQ(then_rejected(decide(rs::State{}, c, at())).field, "every");  // neither
  c.cron = "0 25 * * *";
  const auto bad_cron = then_rejected(decide(rs::State{}, c, at()));
  EXPECT_EQ(bad_cron.field, "cron");
  EXPECT_EQ(bad_cron.message, "not a cron expression: hour: 25 is out of range 0-23");
  c = daily();
  c.timezone = "../etc";
  EXPECT_EQ(then_rejected(decide(rs::State{}, c, at())).field, "timezone");
  c = daily();
  c.source_auth = "../secret";
  EXPECT_EQ(then_rejected(decide(rs::State{}, c, at())).field, "source_auth");
  c = daily();
  c.timezone.reset();
  const auto in_utc = then_events(decide(rs::State{}, c, at()));
  EXPECT_EQ(std::get<rs::Created>(in_utc[0]).definition.timezone, "UTC");
  EXPECT_EQ(then_rejected(decide(created(), daily(), at())).code, "already_exists");
}

TEST(ScheduleAggregateTest, AChangeRecordsTheWholeDefinitionAndRestartsTheSlots) {
  auto s = created();
  EXPECT_EQ(s.revision, 1);
  rs::Update u;
  u.every = "1h";
  const auto events = then_events(decide(s, u, at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(rs::to_json(events[0]),
            R"({"title":"Calls","source_url":"https://example.org/c.csv","every":"1h",)"
            R"("timezone":"Europe/Madrid","source_auth":"crm","recurrence_changed":true})");
  s = evolve(s, events[0]);
  EXPECT_EQ(s.revision, 2);
  rs::Update remove_auth;
  remove_auth.source_auth = std::optional<std::string>{};
  remove_auth.paused = true;
  const auto two = then_events(decide(s, remove_auth, at()));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_FALSE(std::get<rs::Changed>(two[0]).definition.source_auth);
  EXPECT_TRUE(std::holds_alternative<rs::Paused>(two[1]));
  // Nothing that differs: nothing recorded.
  rs::Update same;
  same.title = "Calls";
  same.paused = false;
  EXPECT_TRUE(then_events(decide(s, same, at())).empty());
  rs::Update both;
  both.every = "1h";
  both.cron = "0 * * * *";
  EXPECT_EQ(then_rejected(decide(s, both, at())).field, "every");
  rs::Update bad;
  bad.cron = "every day";
  EXPECT_EQ(then_rejected(decide(s, bad, at())).field, "cron");
  EXPECT_EQ(then_rejected(decide(s, same, at(1, 1))).code, "version_mismatch");
}

// Only a new recurrence (every, cron, timezone) restarts the slots. A fix of the title at
// 07:00:00.3, before the runner fired 07:00, keeps the revision the runner read: that slot still
// fires, with the new title; so does a slot missed while cauce was down when the source moves.
TEST(ScheduleAggregateTest, AChangeOfAnythingButTheRecurrenceKeepsTheSlots) {
  const auto s = created();  // cron 0 7 * * * in Europe/Madrid, revision 1
  const auto seven = core::parse_utc_micros("2026-03-02T06:00:00.000000Z");  // 07:00 CET
  const auto just_after = at(seven + 300'000);
  rs::Update title;
  title.title = "Calls today";
  const auto retitled = then_events(decide(s, title, just_after));
  ASSERT_EQ(retitled.size(), 1u);
  EXPECT_FALSE(std::get<rs::Changed>(retitled[0]).recurrence_changed);
  EXPECT_EQ(rs::to_json(retitled[0]),
            R"({"title":"Calls today","source_url":"https://example.org/c.csv","cron":"0 7 * * *",)"
            R"("timezone":"Europe/Madrid","source_auth":"crm","recurrence_changed":false})");
  const auto after_title = evolve(s, retitled[0]);
  EXPECT_EQ(after_title.revision, 1);
  const std::string report = "0195a0c4-0000-8000-8000-000000000001";
  const auto fired = then_events(decide(after_title, rs::Trigger{seven, 1, report}, just_after));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(std::get<rs::Triggered>(fired[0]).title, "Calls today");

  // The source moves (and its secret goes) after a weekend down: the missed slot still fires.
  rs::Update source;
  source.source_url = "https://example.org/v2/c.csv";
  source.source_auth = std::optional<std::string>{};
  const auto two_days_later = at(seven + 2 * 86'400'000'000LL);
  const auto moved =
      evolve(after_title, then_events(decide(after_title, source, two_days_later))[0]);
  EXPECT_EQ(moved.revision, 1);
  const auto later = then_events(decide(moved, rs::Trigger{seven, 1, report}, two_days_later));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(
      std::get<rs::Triggered>(later[0]),
      (rs::Triggered{seven, report, "Calls today", "https://example.org/v2/c.csv", std::nullopt}));

  // every, cron or the zone: a new revision, and the old one's triggers are refused.
  for (const auto& change : std::vector<rs::Update>{[] {
                                                      rs::Update u;
                                                      u.every = "1h";
                                                      return u;
                                                    }(),
                                                    [] {
                                                      rs::Update u;
                                                      u.cron = "30 7 * * *";
                                                      return u;
                                                    }(),
                                                    [] {
                                                      rs::Update u;
                                                      u.timezone = "Europe/Lisbon";
                                                      return u;
                                                    }()}) {
    const auto events = then_events(decide(moved, change, at()));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_TRUE(std::get<rs::Changed>(events[0]).recurrence_changed);
    const auto restarted = evolve(moved, events[0]);
    EXPECT_EQ(restarted.revision, restarted.version);
    EXPECT_EQ(then_rejected(decide(restarted, rs::Trigger{seven, 1, report}, at())).field,
              "revision");
  }
  // A resume restarts them too (slots passed while paused never fire).
  rs::Update pause;
  pause.paused = true;
  const auto paused = evolve(moved, then_events(decide(moved, pause, at()))[0]);
  rs::Update resume_with_title;
  resume_with_title.paused = false;
  resume_with_title.title = "Calls again";
  auto resumed = paused;
  for (const auto& e : then_events(decide(paused, resume_with_title, at()))) {
    resumed = evolve(resumed, e);
  }
  EXPECT_EQ(resumed.revision, resumed.version);
}

// A secret is bound to the origins it may be sent to (checked by the API on the pair it is
// given): while a schedule sends one, a change of the URL names the secret and vice versa.
TEST(ScheduleAggregateTest, AScheduleThatSendsASecretChangesItsURLAndSecretTogether) {
  const auto s = created();  // source_auth "crm"
  rs::Update url;
  url.source_url = "https://attacker.example/x";
  EXPECT_EQ(then_rejected(decide(s, url, at())).field, "source_auth");
  rs::Update secret;
  secret.source_auth = std::optional<std::string>("warehouse");
  EXPECT_EQ(then_rejected(decide(s, secret, at())).field, "source_url");
  rs::Update both = url;
  both.source_auth = std::optional<std::string>("crm");
  EXPECT_EQ(then_events(decide(s, both, at())).size(), 1u);
  rs::Update without = url;
  without.source_auth = std::optional<std::string>{};  // null: no secret sent any more
  const auto dropped = evolve(s, then_events(decide(s, without, at()))[0]);
  EXPECT_FALSE(dropped.definition->source_auth);
  rs::Update moved;
  moved.source_url = "https://example.org/elsewhere.csv";
  EXPECT_EQ(then_events(decide(dropped, moved, at())).size(), 1u) << "no secret: any URL";
}

// Events written before recurrence_changed existed restarted the slots, and read back so.
TEST(ScheduleAggregateTest, AChangeWrittenWithoutTheFlagRestartsTheSlots) {
  const auto e = rs::event_from_json(
      "report_schedule.changed",
      R"({"title":"T","source_url":"https://x.org/a","every":"15m","timezone":"UTC"})");
  EXPECT_TRUE(std::get<rs::Changed>(e).recurrence_changed);
  const auto s = evolve(created(), e);
  EXPECT_EQ(s.revision, 2);
}

TEST(ScheduleAggregateTest, ASlotFiresOnceWhileActiveAtItsRevision) {
  const auto s = created();
  const auto slot = at().issued_at_us - 1'000'000;
  const std::string report = "0195a0c4-0000-8000-8000-000000000001";
  const auto fired = then_events(decide(s, rs::Trigger{slot, 1, report}, at()));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(std::get<rs::Triggered>(fired[0]),
            (rs::Triggered{slot, report, "Calls", "https://example.org/c.csv", "crm"}));
  const auto after = evolve(s, fired[0]);
  EXPECT_EQ(then_rejected(decide(after, rs::Trigger{slot, 1, report}, at())).field, "slot_at");
  EXPECT_EQ(then_rejected(decide(s, rs::Trigger{slot, 2, report}, at())).field, "revision");
  EXPECT_EQ(then_rejected(decide(s, rs::Trigger{at().issued_at_us + 1, 1, report}, at())).code,
            "too_early");
  EXPECT_EQ(then_rejected(decide(s, rs::Trigger{slot, 1, "nope"}, at())).field, "report_id");
  rs::Update pause;
  pause.paused = true;
  const auto paused = evolve(s, then_events(decide(s, pause, at()))[0]);
  EXPECT_EQ(then_rejected(decide(paused, rs::Trigger{slot, 1, report}, at())).code, "conflict");
  rs::Update resume;
  resume.paused = false;
  const auto resumed = evolve(paused, then_events(decide(paused, resume, at()))[0]);
  EXPECT_EQ(resumed.revision, 3);
  EXPECT_EQ(then_events(decide(resumed, rs::Trigger{slot, 3, report}, at())).size(), 1u);
  const auto deleted = evolve(s, then_events(decide(s, rs::Delete{}, at()))[0]);
  EXPECT_EQ(then_rejected(decide(deleted, rs::Trigger{slot, 1, report}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(deleted, rs::Delete{}, at())).code, "not_found");
  EXPECT_EQ(then_rejected(decide(deleted, pause, at())).code, "not_found");
}

TEST(ScheduleAggregateTest, EveryEventReadsBackAsWritten) {
  const std::vector<rs::Event> events = {
      rs::Created{{"T", "https://x.org/a", "15m", std::nullopt, "UTC", std::nullopt}},
      rs::Changed{{"T2", "https://x.org/b", std::nullopt, "0 7 * * 1", "Europe/Madrid", "crm"}},
      rs::Changed{{"T3", "https://x.org/b", std::nullopt, "0 7 * * 1", "Europe/Madrid", "crm"},
                  false},
      rs::Paused{},
      rs::Resumed{},
      rs::Triggered{1'700'000'000'000'000, "0195a0c4-0000-8000-8000-000000000001", "T2",
                    "https://x.org/b", "crm"},
      rs::Deleted{}};
  for (const auto& e : events) {
    EXPECT_EQ(rs::event_from_json(rs::event_type(e), rs::to_json(e)), e) << rs::event_type(e);
  }
}

}  // namespace
}  // namespace cauce::commands
