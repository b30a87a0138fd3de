// The real `cauce` binary as a child process: serve starts, answers, stops on SIGTERM with
// exit 0; restarts keep its state; bad configuration and absent dependencies fail clearly.
#include <csignal>
#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <sys/stat.h>

#include <cauce/core/kafka_admin.hpp>

#include "fixtures.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;

class ServiceTest : public ::testing::Test {
 protected:
  std::map<std::string, std::string> env() const {
    auto e = cauce_env(db_.config(), kafka_);
    e["CAUCE_DATA_DIR"] = data_.path().string();
    e["CAUCE_STARTUP_TIMEOUT_S"] = "20";
    return e;
  }

  TempDatabase db_;
  TempDir data_;
  core::KafkaConfig kafka_ = test_kafka(2);
};

TEST_F(ServiceTest, ServeAnswersThenStopsCleanlyOnSigterm) {
  ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0);
  CauceProcess serve({"serve"}, env());
  const auto listening = serve.wait_for_line(R"("msg":"listening")");
  ASSERT_TRUE(listening) << serve.output();
  const auto port = listening_port(*listening);

  EXPECT_EQ(http_request(port, http::verb::get, "/healthz").status, 200u);
  EXPECT_TRUE(eventually([&] {
    return http_request(port, http::verb::get, "/readyz").status == 200;
  })) << http_request(port, http::verb::get, "/readyz").body;

  const auto key_file = data_.path() / "admin.key";
  struct stat st {};
  ASSERT_EQ(::stat(key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string key;
  std::getline(std::ifstream(key_file), key);
  EXPECT_EQ(
      http_request(port, http::verb::get, "/v1/keys", "", {{"Authorization", "Bearer " + key}})
          .status,
      200u);
  EXPECT_THAT(serve.output(), HasSubstr(key_file.string()));
  EXPECT_THAT(serve.output(), ::testing::Not(HasSubstr(key))) << "the key itself is never logged";
  EXPECT_THAT(serve.output(), ::testing::Not(HasSubstr(db_.config().password.reveal())));

  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait_exit(), 0) << serve.output();
  EXPECT_THAT(serve.output(), HasSubstr(R"("msg":"stopped")"));
}

TEST_F(ServiceTest, ARestartKeepsSchemaAndKeys) {
  ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0);
  {
    CauceProcess first({"serve"}, env());
    ASSERT_TRUE(first.wait_for_line(R"("msg":"listening")")) << first.output();
    first.signal(SIGINT);
    ASSERT_EQ(first.wait_exit(), 0);
  }
  std::string key;
  std::getline(std::ifstream(data_.path() / "admin.key"), key);
  CauceProcess second({"serve"}, env());
  const auto listening = second.wait_for_line(R"("msg":"listening")");
  ASSERT_TRUE(listening) << second.output();
  EXPECT_THAT(second.output(), HasSubstr(R"("applied_now":0)"));
  EXPECT_THAT(second.output(), ::testing::Not(HasSubstr("created an admin key")));
  EXPECT_EQ(http_request(listening_port(*listening), http::verb::get, "/v1/keys", "",
                         {{"Authorization", "Bearer " + key}})
                .status,
            200u);
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(), 0);
}

TEST_F(ServiceTest, ADataDirShortOfFreeSpaceIsDegradedAndMeasured) {
  ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0);
  auto e = env();
  e["CAUCE_READINESS_MIN_FREE_BYTES"] = std::to_string(1LL << 62);  // more than any disk has
  CauceProcess serve({"serve"}, e);
  const auto listening = serve.wait_for_line(R"("msg":"listening")");
  ASSERT_TRUE(listening) << serve.output();
  const auto port = listening_port(*listening);
  // Still ready (200): a filling disk asks for an operator, it does not stop the service.
  std::string body;
  EXPECT_TRUE(eventually([&] {
    const auto r = http_request(port, http::verb::get, "/readyz");
    body = r.body;
    return r.status == 200 && body.find(R"("status":"degraded")") != std::string::npos;
  })) << body;
  EXPECT_THAT(body, HasSubstr(R"("data_dir":{"ok":true,"degraded":true,)"));
  EXPECT_THAT(body, HasSubstr("below readiness.min_free_bytes"));
  EXPECT_TRUE(serve.wait_for_line(R"("msg":"dependency degraded","dependency":"data_dir")", 1s));

  const auto metrics = http_request(port, http::verb::get, "/metrics").body;
  for (const std::string name : {"cauce_data_dir_free_bytes ", "cauce_data_dir_size_bytes "}) {
    const auto at = metrics.find("\n" + name);
    ASSERT_NE(at, std::string::npos) << name << "missing from /metrics";
    EXPECT_GT(std::stod(metrics.substr(at + 1 + name.size())), 0) << name;
  }
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait_exit(), 0) << serve.output();
}

TEST_F(ServiceTest, AFatalSignalLogsAStackTraceAndDiesOfIt) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "under a sanitizer cauce leaves fatal signals to the sanitizer's own report";
#endif
  ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0);
  CauceProcess serve({"serve"}, env());
  ASSERT_TRUE(serve.wait_for_line(R"("msg":"listening")")) << serve.output();
  serve.signal(SIGABRT);
  EXPECT_EQ(serve.wait_exit(), 128 + SIGABRT) << serve.output();
  const auto report = serve.wait_for_line(R"("msg":"fatal signal")", 1s);
  ASSERT_TRUE(report) << serve.output();
  EXPECT_THAT(*report, HasSubstr(R"("component":"crash")"));
  EXPECT_THAT(*report, HasSubstr(R"("signal":"SIGABRT")"));
  EXPECT_THAT(*report, HasSubstr(R"("stacktrace":["#0 0x)"));
  rapidjson::Document line;
  line.Parse(report->c_str());
  EXPECT_FALSE(line.HasParseError()) << *report;
}

TEST_F(ServiceTest, TopicsCreateIsIdempotentAndRefusesAPartitionMismatch) {
  const auto [created_rc, created] = run_cauce({"topics", "create"}, env());
  EXPECT_EQ(created_rc, 0) << created;
  EXPECT_THAT(created, HasSubstr(kafka_.events_topic + ": created (2 partitions)"));
  const auto [again_rc, again] = run_cauce({"topics", "create"}, env());
  EXPECT_EQ(again_rc, 0) << again;
  EXPECT_THAT(again, HasSubstr(kafka_.events_topic + ": exists (2 partitions)"));
  const auto [mismatch_rc, mismatch] =
      run_cauce({"topics", "create", "--kafka-partitions=4"}, env());
  EXPECT_EQ(mismatch_rc, 1);
  EXPECT_THAT(mismatch, HasSubstr("exists with 2 partitions"));
}

TEST_F(ServiceTest, MigrateAppliesOnceThenNothing) {
  const auto [rc, out] = run_cauce({"migrate"}, env());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("applied 0001_api_keys.sql"));
  const auto [rc2, out2] = run_cauce({"migrate"}, env());
  EXPECT_EQ(rc2, 0);
  EXPECT_THAT(out2, HasSubstr("0 applied"));
}

TEST_F(ServiceTest, KeysCommandsCreateListAndRevoke) {
  ASSERT_EQ(run_cauce({"migrate"}, env()).first, 0);
  const auto [rc, out] = run_cauce({"keys", "create", "--role=operator", "--name=bot"}, env());
  ASSERT_EQ(rc, 0) << out;
  const auto at = out.find("ck_");
  ASSERT_NE(at, std::string::npos) << out;
  const auto id = out.substr(at + 3, 16);
  const auto [list_rc, listed] = run_cauce({"keys", "list"}, env());
  EXPECT_EQ(list_rc, 0);
  EXPECT_THAT(listed, HasSubstr(id + "  operator  bot"));
  EXPECT_THAT(listed, ::testing::Not(HasSubstr(out.substr(at, 84))));
  EXPECT_EQ(run_cauce({"keys", "revoke", id}, env()).first, 0);
  EXPECT_EQ(run_cauce({"keys", "revoke", id}, env()).first, 1);
  EXPECT_EQ(run_cauce({"keys", "create", "--role=root"}, env()).first, 2);
}

TEST_F(ServiceTest, BadFlagsAndVariablesExitWith2NamingTheKey) {
  const auto [rc, out] = run_cauce({"serve", "--http-port=eighty"}, env());
  EXPECT_EQ(rc, 2);
  EXPECT_THAT(out, HasSubstr("http.port"));
  auto e = env();
  e["CAUCE_HTTP_PROT"] = "1";
  const auto [rc2, out2] = run_cauce({"serve"}, e);
  EXPECT_EQ(rc2, 2);
  EXPECT_THAT(out2, HasSubstr("CAUCE_HTTP_PROT"));
  const auto [rc3, out3] = run_cauce({"serve", "--no-such-flag"}, env());
  EXPECT_EQ(rc3, 2);
  EXPECT_THAT(out3, HasSubstr("--no-such-flag"));
  const auto [rc4, out4] = run_cauce({"serve", "--roles=api,chef"}, env());
  EXPECT_EQ(rc4, 2);
  EXPECT_THAT(out4, HasSubstr("chef"));
}

TEST_F(ServiceTest, PostgresDownAtStartIsAClearErrorAfterABoundedRetry) {
  auto e = env();
  e["CAUCE_POSTGRES_PORT"] = std::to_string(free_port());
  e["CAUCE_STARTUP_TIMEOUT_S"] = "2";
  const auto [rc, out] = run_cauce({"serve"}, e);
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("cannot connect to PostgreSQL"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr(db_.config().password.reveal())));
}

TEST_F(ServiceTest, KafkaDownAtStartIsAClearErrorAfterABoundedRetry) {
  auto e = env();
  e["CAUCE_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:" + std::to_string(free_port());
  e["CAUCE_STARTUP_TIMEOUT_S"] = "2";
  const auto [rc, out] = run_cauce({"serve"}, e);
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("Kafka metadata request failed"));
}

TEST_F(ServiceTest, APortInUseIsNamed) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor taken(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = std::to_string(taken.local_endpoint().port());
  ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0);
  const auto [rc, out] = run_cauce({"serve", "--http-port=" + port}, env());
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("cannot listen on 127.0.0.1:" + port));
  EXPECT_THAT(out, HasSubstr("in use"));
}

}  // namespace
}  // namespace cauce::testing
