// The live dashboard (issue 16, part 5): GET /v1/stats on the real `cauce serve` equals a fresh
// computation from the read models' own rows after 10,000 random commands from 8 clients, and
// again after a replay rebuilt the read models; and its query reads counters and index ranges,
// never a whole read-model table (EXPLAIN).
#include <algorithm>
#include <functional>
#include <iostream>
#include <random>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/projections/queries.hpp>

#include "served.hpp"
#include "sse_client.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;

// The figures of /v1/stats computed the slow way, from the rows themselves.
const char* const kFresh = R"(
  SELECT json_build_object(
    'alerts', json_build_object(
      'open_by_level', (
        SELECT json_object_agg(l.level, (SELECT count(*) FROM alerts a
                                         WHERE a.level = l.level AND a.state <> 'closed')
                               ORDER BY l.rank)
        FROM (VALUES ('info', 1), ('warning', 2), ('critical', 3)) AS l(level, rank)),
      'open_by_region', (
        SELECT coalesce(json_object_agg(region, n ORDER BY region), '{}')
        FROM (SELECT coalesce(region, '') AS region, count(*) AS n FROM alerts
              WHERE state <> 'closed' GROUP BY 1) r),
      'per_hour', (
        SELECT json_agg(json_build_object(
                 'hour', rfc3339(h.hour),
                 'raised', (SELECT count(*) FROM alerts
                            WHERE date_trunc('hour', raised_at, 'UTC') = h.hour),
                 'closed', (SELECT count(*) FROM alerts
                            WHERE date_trunc('hour', closed_at, 'UTC') = h.hour)) ORDER BY h.hour)
        FROM generate_series(date_trunc('hour', now(), 'UTC') - interval '23 hours',
                             date_trunc('hour', now(), 'UTC'), interval '1 hour') AS h(hour)),
      'time_to_acknowledge_s', (
        SELECT json_build_object(
                 'count', count(*),
                 'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
                 'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY s))
        FROM (SELECT greatest(0, extract(epoch FROM acknowledged_at - raised_at)) AS s FROM alerts
              WHERE acknowledged_at > now() - interval '24 hours') a)),
    'calls_today', json_build_object(
      'day', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
      'by_operator', (
        SELECT coalesce(json_object_agg(operator, outcomes ORDER BY operator), '{}')
        FROM (SELECT operator, json_object_agg(outcome, n ORDER BY outcome) AS outcomes
              FROM (SELECT coalesce(operator, '') AS operator, outcome, count(*) AS n FROM calls
                    WHERE (occurred_at AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date
                    GROUP BY 1, 2) c
              GROUP BY operator) o)),
    'contacts', json_build_object(
      'by_status', (
        SELECT json_object_agg(st.status, (SELECT count(*) FROM contacts c
                                           WHERE c.status = st.status) ORDER BY st.status)
        FROM (VALUES ('active'), ('archived')) AS st(status)),
      'claimed_now', (SELECT count(*) FROM contacts WHERE claimed_until > now()))
  )::text)";

rapidjson::Document parsed(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  return d;
}

class StatsTest : public ServedTest {
 protected:
  void SetUp() override {
    // No deadline escalates an alert behind the test's back.
    settings = {{"CAUCE_HTTP_RATE_LIMIT_ADMIN", "0"},
                {"CAUCE_ALERTS_DEADLINE_WARNING_S", "0"},
                {"CAUCE_ALERTS_DEADLINE_CRITICAL_S", "0"}};
    ServedTest::SetUp();
    serve();
  }

  HttpResult post(const std::string& target, const std::string& body) const {
    return call(beast_http::verb::post, target, body);
  }

  std::string stats() const { return call(beast_http::verb::get, "/v1/stats").body; }

  // /v1/stats and the fresh computation agree (they are compared as JSON values).
  ::testing::AssertionResult stats_agree() const {
    std::string served;
    std::string fresh;
    const bool same = eventually(
        [&] {
          served = stats();
          fresh = db_.query_value(kFresh);
          return parsed(served) == parsed(fresh);
        },
        60s);
    if (same) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "/v1/stats:\n" << served << "\nfresh:\n" << fresh;
  }
};

// One client's share of the random commands, on contacts and alerts of its own.
void random_commands(int client, int count,
                     const std::function<HttpResult(const std::string&, const std::string&)>& post,
                     std::atomic<int>& refused) {
  std::mt19937 random(20261205 + client);
  const std::vector<std::string> operators = {"ana", "bruno", "carla", "diego", ""};
  const std::vector<std::string> regions = {"north", "south", "east", ""};
  const std::vector<std::string> outcomes = {"answered", "no_answer", "busy", "voicemail",
                                             "wrong_number"};
  const std::vector<std::string> levels = {"info", "warning", "critical"};
  std::vector<std::string> contacts;
  std::vector<std::string> alerts;
  auto pick = [&](const auto& v) { return v[random() % v.size()]; };
  for (int i = 0; i < count; ++i) {
    const auto roll = random() % 100;
    HttpResult r;
    if (contacts.empty() || roll < 15) {
      r = post("/v1/contacts", R"({"name":"C)" + std::to_string(client) + "-" + std::to_string(i) +
                                   R"(","phone":"+4420794609)" + std::to_string(10 + i % 90) +
                                   "\"}");
      if (r.status == 201) contacts.push_back(json_member(r.body, "id"));
    } else if (roll < 50) {
      const auto op = pick(operators);
      r = post("/v1/contacts/" + pick(contacts) + "/calls",
               R"({"outcome":")" + pick(outcomes) + R"(","duration_s":)" +
                   std::to_string(random() % 600) +
                   (op.empty() ? "" : R"(,"operator":")" + op + "\"") + "}");
    } else if (roll < 55) {
      r = post("/v1/contacts/" + pick(contacts) + "/archive", "{}");
    } else if (roll < 60) {
      r = post("/v1/contacts/" + pick(contacts) + "/claim", R"({"ttl_s":3600})");
    } else if (alerts.empty() || roll < 75) {
      const auto region = pick(regions);
      r = post("/v1/alerts", R"({"level":")" + pick(levels) + R"(","title":"A)" +
                                 std::to_string(i) + "\"" +
                                 (region.empty() ? "" : R"(,"region":")" + region + "\"") + "}");
      if (r.status == 201) alerts.push_back(json_member(r.body, "id"));
    } else if (roll < 85) {
      r = post("/v1/alerts/" + pick(alerts) + "/acknowledge", "{}");
    } else if (roll < 92) {
      r = post("/v1/alerts/" + pick(alerts) + "/close", R"({"resolution":"done"})");
    } else {
      r = post("/v1/alerts/" + pick(alerts) + "/escalate", R"({"level":"critical"})");
    }
    if (r.status >= 400) ++refused;  // 409s: archived, closed, already critical, claimed
  }
}

TEST_F(StatsTest, StatsEqualAFreshComputationAfterTenThousandRandomCommandsAndAReplay) {
  constexpr int kClients = 8;
  constexpr int kCommands = 10000;
  std::atomic<int> refused{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([this, c, &refused] {
      random_commands(
          c, kCommands / kClients,
          [this](const std::string& t, const std::string& b) { return post(t, b); }, refused);
    });
  }
  for (auto& t : clients) t.join();
  std::cout << refused << " of " << kCommands << " commands were refused by the state (409)\n";
  EXPECT_LT(refused.load(), kCommands / 2) << "most commands change something";

  ASSERT_TRUE(stats_agree());
  const auto before = parsed(stats());
  EXPECT_GT(before["alerts"]["time_to_acknowledge_s"]["count"].GetInt64(), 0);
  EXPECT_GT(before["contacts"]["claimed_now"].GetInt64(), 0);
  EXPECT_FALSE(before["calls_today"]["by_operator"].ObjectEmpty());

  // A replay rebuilds the counters with every other model: the same figures after the switch.
  const auto [code, out] = run_cauce({"replay"}, env());
  ASSERT_EQ(code, 0) << out;
  ASSERT_TRUE(stats_agree());
  EXPECT_EQ(parsed(stats()), before);
}

// Topic stats: the figures at once on subscribing, then again when they change (at most once a
// second), as events without an id next to the entity topics' events.
TEST_F(StatsTest, TheStatsTopicSendsTheFiguresAndThenTheirChanges) {
  SseClient stream(port_, admin_, "/v1/stream?topics=stats,alerts");
  const auto first = stream.read(1, 10s);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].event, "stats");
  EXPECT_EQ(first[0].id, 0) << "no id: resuming goes by the events' ids";
  EXPECT_EQ(parsed(first[0].data)["alerts"]["open_by_level"]["critical"].GetInt64(), 0);

  ASSERT_EQ(
      post("/v1/alerts", R"({"level":"critical","title":"Line 3 down","region":"north"})").status,
      201u);
  // The alert's notification and, within about a second, the changed figures.
  std::vector<SseEvent> seen;
  eventually(
      [&] {
        for (auto& e : stream.read(1, 2s)) seen.push_back(std::move(e));
        return std::any_of(seen.begin(), seen.end(),
                           [](const SseEvent& e) { return e.event == "stats"; });
      },
      15s);
  const auto stats_event =
      std::find_if(seen.begin(), seen.end(), [](const SseEvent& e) { return e.event == "stats"; });
  ASSERT_NE(stats_event, seen.end());
  const auto figures = parsed(stats_event->data);
  EXPECT_EQ(figures["alerts"]["open_by_level"]["critical"].GetInt64(), 1);
  EXPECT_EQ(figures["alerts"]["open_by_region"]["north"].GetInt64(), 1);
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(),
                          [](const SseEvent& e) { return e.event == "alerts" && e.id > 0; }));
  // Nothing changed since: no more figures.
  const auto quiet = stream.read(1, 2500ms);
  EXPECT_TRUE(std::none_of(quiet.begin(), quiet.end(),
                           [](const SseEvent& e) { return e.event == "stats"; }));
}

TEST_F(StatsTest, TheStatsQueryReadsCountersAndIndexRangesNeverAWholeTable) {
  // With sequential scans priced out, a whole-table scan shows up only where no index can
  // serve: the read models' tables must never need one (the counter tables are small).
  const auto explained = db_.query_value(std::string(R"(
        CREATE FUNCTION pg_temp.plan_of(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
        DECLARE line text;
        BEGIN
          PERFORM set_config('enable_seqscan', 'off', true);
          FOR line IN EXECUTE 'EXPLAIN ' || query LOOP RETURN NEXT line; END LOOP;
        END $$;
        SELECT string_agg(line, E'\n') FROM pg_temp.plan_of($q$)") +
                                         projections::ReadModels::stats_sql() + "$q$) AS line");
  ASSERT_FALSE(explained.empty());
  for (const auto* table : {"contacts", "calls", "alerts", "alert_timeline", "events"}) {
    EXPECT_FALSE(
        std::regex_search(explained, std::regex(std::string("Seq Scan on ") + table + R"(\b)")))
        << table << " is scanned whole:\n"
        << explained;
  }
  EXPECT_THAT(explained, ::testing::HasSubstr("contacts_claimed"));
  EXPECT_THAT(explained, ::testing::HasSubstr("alert_acks_by_time"));
}

}  // namespace
}  // namespace cauce::testing
