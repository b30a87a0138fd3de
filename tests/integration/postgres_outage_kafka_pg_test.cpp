// PostgreSQL stopped for 30 s under a running `cauce serve` (all roles): commands keep being
// accepted (they only need Kafka), /readyz says what is wrong and how far the projection lags,
// and once PostgreSQL is back the projection catches up with every command.
#include <csignal>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/core/kafka_admin.hpp>

#include "fixtures.hpp"
#include "private_postgres.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;

std::size_t item_count(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  return d.IsObject() && d.HasMember("items") ? d["items"].Size() : 0;
}

TEST(PostgresOutageTest, CommandsContinueAndProjectionsCatchUpAfterThirtySeconds) {
  PrivatePostgres pg;
  const auto kafka = test_kafka(3);
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), kafka.partitions, 1);
  TempDir data;
  auto env = cauce_env(pg.config(), kafka);
  env["CAUCE_DATA_DIR"] = data.path().string();
  env["CAUCE_COMMANDS_PROCESSOR_GROUP"] = unique_name("processor");
  env["CAUCE_PROJECTIONS_GROUP"] = unique_name("projector");
  env["CAUCE_PROJECTIONS_MAX_LAG_EVENTS"] = "5";
  CauceProcess cauce({"serve"}, env);
  const auto listening = cauce.wait_for_line("\"msg\":\"listening\"");
  ASSERT_TRUE(listening) << cauce.output();
  const auto port = listening_port(*listening);
  std::string key;
  std::getline(std::ifstream(data.path() / "admin.key"), key);
  const std::vector<std::pair<std::string, std::string>> auth = {
      {"Authorization", "Bearer " + key}};
  auto post_contact = [&](int i) {
    return http_request(port, http::verb::post, "/v1/contacts",
                        R"({"name":"Outage )" + std::to_string(i) + R"(","phone":"+351912345678"})",
                        auth, 15s);
  };
  int sent = 0;
  for (; sent < 5; ++sent) ASSERT_EQ(post_contact(sent).status, 201u) << cauce.output();
  ASSERT_TRUE(eventually([&] {
    return item_count(
               http_request(port, http::verb::get, "/v1/contacts?limit=500", "", auth).body) == 5;
  }));
  ASSERT_TRUE(eventually(
      [&] { return http_request(port, http::verb::get, "/readyz").status == 200; }, 30s));

  pg.stop();
  const auto stopped_at = std::chrono::steady_clock::now();
  const auto back_at = stopped_at + 30s;
  bool saw_lag = false;
  while (std::chrono::steady_clock::now() < back_at) {
    const auto r = post_contact(sent++);
    EXPECT_EQ(r.status, 201u) << "commands need only Kafka: " << r.body;
    const auto ready = http_request(port, http::verb::get, "/readyz");
    // /readyz answers from checks that run every 500 ms: allow them a moment to notice.
    if (std::chrono::steady_clock::now() - stopped_at > 2s) {
      EXPECT_EQ(ready.status, 503u);
    }
    if (ready.body.find("\"projection\":{\"ok\":false") != std::string::npos &&
        ready.body.find("lag ") != std::string::npos) {
      saw_lag = true;
    }
    const auto query = http_request(port, http::verb::get, "/v1/contacts", "", auth);
    EXPECT_EQ(query.status, 503u) << query.body;
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(saw_lag) << http_request(port, http::verb::get, "/readyz").body;
  pg.start();

  ASSERT_TRUE(eventually(
      [&] {
        const auto r = http_request(port, http::verb::get, "/v1/contacts?limit=500", "", auth);
        return r.status == 200 && item_count(r.body) == static_cast<std::size_t>(sent);
      },
      60s, 250ms))
      << cauce.output();
  EXPECT_TRUE(eventually(
      [&] { return http_request(port, http::verb::get, "/readyz").status == 200; }, 30s));
  cauce.signal(SIGTERM);
  EXPECT_EQ(cauce.wait_exit(), 0) << cauce.output();
}

}  // namespace
}  // namespace cauce::testing
