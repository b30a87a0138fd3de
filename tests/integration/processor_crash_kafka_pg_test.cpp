// The processor (a real `cauce serve --roles=processor` process) killed with SIGKILL while
// thousands of commands are in flight, then started again: every command that got a 2xx has
// exactly one event in the log, and no command has two.
#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/core/kafka_admin.hpp>

#include "event_log.hpp"
#include "fixtures.hpp"
#include "in_process_api.hpp"

namespace cauce::testing {
namespace {

std::string id_of(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  return d.IsObject() && d.HasMember("id") && d["id"].IsString() ? d["id"].GetString() : "";
}

class ProcessorCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core::KafkaAdmin(kafka_).ensure_topics(core::cauce_topics(kafka_), kafka_.partitions, 1);
    commands_.processor_group = unique_name("processor");
    commands_.reply_timeout_ms = 4000;
    bus_ = std::make_unique<commands::CommandBus>(
        commands::BusOptions{.kafka = kafka_, .commands = commands_}, registry_);
    bus_->start();
    api_ = std::make_unique<InProcessApi>(db_.config(),
                                          std::vector<std::unique_ptr<api::DependencyCheck>>{},
                                          [this](api::Router& router, api::ApiKeys&) {
                                            api::add_command_routes(router, *bus_, 4000);
                                          });
    token_ = api_->keys().create("crash-test", api::Role::kOperator).token;
  }

  std::unique_ptr<CauceProcess> start_processor() {
    auto env = cauce_env(db_.config(), kafka_);
    env["CAUCE_DATA_DIR"] = data_.path().string();
    env["CAUCE_COMMANDS_PROCESSOR_GROUP"] = commands_.processor_group;
    auto process = std::make_unique<CauceProcess>(
        std::vector<std::string>{"serve", "--roles=processor", "--http-port=0"}, env);
    EXPECT_TRUE(process->wait_for_line(R"("msg":"listening")")) << process->output();
    return process;
  }

  HttpResult register_contact(int i) {
    return http_request(
        api_->port(), http::verb::post, "/v1/contacts",
        R"({"name":"Caller )" + std::to_string(i) + R"(","phone":"+44 20 7946 0958"})",
        {{"Authorization", "Bearer " + token_}, {"Idempotency-Key", "crash-" + std::to_string(i)}},
        30s);
  }

  TempDatabase db_;
  TempDir data_;
  core::KafkaConfig kafka_ = test_kafka(3);
  core::CommandsConfig commands_;
  prometheus::Registry registry_;
  std::unique_ptr<commands::CommandBus> bus_;
  std::unique_ptr<InProcessApi> api_;
  std::string token_;
};

TEST_F(ProcessorCrashTest, SigkillWithCommandsInFlightLosesAndDuplicatesNothing) {
  constexpr int kCommands = 10000;
  constexpr int kClients = 32;
  auto processor = start_processor();

  std::atomic<int> next{0};
  std::atomic<int> succeeded{0};
  std::mutex mutex;
  std::map<int, std::string> created;  // request -> contact id, for every 2xx
  std::vector<int> unknown;            // requests answered 503: applied once or not at all
  std::vector<std::string> unexpected;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = next++; i < kCommands; i = next++) {
        const auto r = register_contact(i);
        const std::lock_guard lock(mutex);
        if (r.status == 201) {
          created[i] = id_of(r.body);
          ++succeeded;
        } else if (r.status == 503) {
          unknown.push_back(i);
        } else {
          unexpected.push_back(std::to_string(r.status) + " " + r.body);
        }
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return succeeded >= 2000; }, 120s));
  processor->signal(SIGKILL);
  ASSERT_EQ(processor->wait_exit(), 128 + SIGKILL);
  processor = start_processor();
  for (auto& t : clients) t.join();
  EXPECT_THAT(unexpected, ::testing::IsEmpty());
  EXPECT_GT(created.size(), 2000u);

  // A retry of every unanswered request learns its outcome and still appends at most once.
  for (const int i : unknown) {
    const auto r = register_contact(i);
    EXPECT_EQ(r.status, 201u) << r.body;
    created[i] = id_of(r.body);
  }
  ASSERT_EQ(created.size(), static_cast<std::size_t>(kCommands));

  const auto events = read_event_log(kafka_);
  EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
  std::map<std::string, int> per_command;
  std::map<std::string, int> per_aggregate;
  for (const auto& e : events) {
    ++per_command[e.envelope.command_id];
    ++per_aggregate[e.envelope.aggregate_id];
  }
  for (const auto& [command, count] : per_command) EXPECT_EQ(count, 1) << command;
  for (const auto& [i, id] : created) EXPECT_EQ(per_aggregate[id], 1) << "request " << i;
  EXPECT_EQ(events.size(), static_cast<std::size_t>(kCommands));
  std::cout << "2xx before the retries: " << kCommands - unknown.size()
            << ", 503 (then retried): " << unknown.size() << "\n";
}

}  // namespace
}  // namespace cauce::testing
