// Kafka going away under a running write side: a command is answered 503 with Retry-After
// within 5 s (never a hang), /readyz says so, and once the broker is back the same processor
// and bus carry on. Uses a broker of the test's own so that stopping it disturbs no other test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/kafka_admin.hpp>

#include "event_log.hpp"
#include "fixtures.hpp"
#include "in_process_api.hpp"

namespace cauce::testing {
namespace {

class PrivateKafka {
 public:
  PrivateKafka()
      : dir_(std::filesystem::path(test_env("TEST_WORK_DIR")) / unique_name("kafka")),
        port_(free_port()),
        controller_port_(free_port()) {
    start();
  }
  ~PrivateKafka() { common_sh("kafka_stop \"$1\"", {dir_.string()}); }

  void start() {
    ASSERT_EQ(common_sh("kafka_start \"$1\" \"$2\" \"$3\"",
                        {dir_.string(), std::to_string(port_), std::to_string(controller_port_)}),
              0);
  }
  void stop() { ASSERT_EQ(common_sh("kafka_stop \"$1\"", {dir_.string()}), 0); }

  core::KafkaConfig config() const {
    auto kafka = test_kafka(2);
    kafka.bootstrap_servers = "127.0.0.1:" + std::to_string(port_);
    return kafka;
  }

 private:
  std::filesystem::path dir_;
  std::uint16_t port_;
  std::uint16_t controller_port_;
};

TEST(KafkaOutageTest, CommandsAre503WithinFiveSecondsWhileKafkaIsDownAndWorkAfter) {
  PrivateKafka broker;
  const auto kafka = broker.config();
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), kafka.partitions, 1);
  core::CommandsConfig commands;
  commands.processor_group = unique_name("processor");
  prometheus::Registry registry;
  commands::CommandProcessor processor({.kafka = kafka, .commands = commands}, registry);
  processor.start();
  commands::CommandBus bus({.kafka = kafka, .commands = commands}, registry);
  bus.start();
  TempDatabase db;
  std::vector<std::unique_ptr<api::DependencyCheck>> checks;
  checks.push_back(api::make_kafka_check(kafka));
  InProcessApi api(db.config(), std::move(checks), [&](api::Router& router, api::ApiKeys&) {
    api::add_command_routes(router, bus, static_cast<std::uint32_t>(commands.reply_timeout_ms));
  });
  const auto token = api.keys().create("outage", api::Role::kOperator).token;
  const auto raise = [&](const std::string& key) {
    return http_request(api.port(), http::verb::post, "/v1/alerts",
                        R"({"level":"warning","title":"Broker check"})",
                        {{"Authorization", "Bearer " + token}, {"Idempotency-Key", key}}, 30s);
  };
  ASSERT_TRUE(eventually([&] { return raise("before").status == 201; }, 60s));

  broker.stop();
  const auto started = std::chrono::steady_clock::now();
  auto during = raise("during");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(during.status, 503u) << during.body;
  EXPECT_EQ(during.headers["retry-after"], "1");
  EXPECT_EQ(during.headers["content-type"], "application/problem+json");
  EXPECT_TRUE(eventually(
      [&] { return http_request(api.port(), http::verb::get, "/readyz").status == 503; }));

  broker.start();
  // The same processes recover: the unanswered command is retried with its key and applied
  // at most once; new commands work.
  EXPECT_TRUE(eventually([&] { return raise("during").status == 201; }, 90s, 500ms));
  EXPECT_EQ(raise("after").status, 201u);
  const auto events = read_event_log(kafka);
  EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
  EXPECT_EQ(events.size(), 3u) << "before, during (once), after";
}

}  // namespace
}  // namespace cauce::testing
