// /readyz follows the real dependencies: a PostgreSQL of the test's own is stopped and started
// again; a dependency that accepts connections but never answers does not hold /readyz up.
#include <cstdlib>
#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/core/kafka_admin.hpp>

#include "in_process_api.hpp"
#include "private_postgres.hpp"

namespace cauce::testing {
namespace {

// Listens, lets the kernel complete handshakes, and never says a word.
class SilentListener {
 public:
  SilentListener() : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

bool ready(std::uint16_t port, bool* postgres_ok = nullptr) {
  const auto r = http_request(port, http::verb::get, "/readyz");
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  if (postgres_ok != nullptr && doc.IsObject() && doc.HasMember("checks")) {
    *postgres_ok = doc["checks"]["postgres"]["ok"].GetBool();
  }
  return r.status == 200;
}

TEST(ReadinessTest, ReadyzFollowsPostgresGoingAwayAndComingBack) {
  PrivatePostgres pg;
  const auto kafka = test_kafka(1);
  core::KafkaAdmin(kafka).ensure_topics(core::cauce_topics(kafka), 1, 1);
  std::vector<std::unique_ptr<api::DependencyCheck>> checks;
  checks.push_back(api::make_postgres_check(pg.config()));
  checks.push_back(api::make_kafka_check(kafka));
  InProcessApi api(pg.config(), std::move(checks));

  ASSERT_TRUE(eventually([&] { return ready(api.port()); })) << "never ready";
  pg.stop();
  bool postgres_ok = true;
  ASSERT_TRUE(eventually([&] { return !ready(api.port(), &postgres_ok); }))
      << "still ready with PostgreSQL stopped";
  EXPECT_FALSE(postgres_ok);
  const auto down = http_request(api.port(), http::verb::get, "/readyz");
  EXPECT_EQ(down.status, 503u);
  EXPECT_EQ(down.headers.at("content-type"), "application/problem+json");
  EXPECT_EQ(down.headers.at("retry-after"), "1");
  // Liveness is not readiness: the process is fine.
  EXPECT_EQ(http_request(api.port(), http::verb::get, "/healthz").status, 200u);
  pg.start();
  EXPECT_TRUE(eventually([&] { return ready(api.port()); }))
      << "not ready after PostgreSQL returned";
}

TEST(ReadinessTest, ReadyzAnswersWhileDependenciesHang) {
  TempDatabase db;  // for the key store; the checks point at the silent listeners
  SilentListener fake_postgres;
  SilentListener fake_kafka;
  auto pg = test_postgres();
  pg.port = fake_postgres.port();
  core::KafkaConfig kafka;
  kafka.bootstrap_servers = "127.0.0.1:" + std::to_string(fake_kafka.port());
  std::vector<std::unique_ptr<api::DependencyCheck>> checks;
  checks.push_back(api::make_postgres_check(pg));
  checks.push_back(api::make_kafka_check(kafka));
  InProcessApi api(db.config(), std::move(checks));
  for (int i = 0; i < 5; ++i) {
    // http_request throws if no answer comes within 2 s.
    EXPECT_EQ(http_request(api.port(), http::verb::get, "/readyz", "", {}, 2s).status, 503u);
  }
}

TEST(ReadinessTest, AMissingTopicKeepsTheServiceUnready) {
  TempDatabase db;
  const auto kafka = test_kafka(1);  // topics never created
  std::vector<std::unique_ptr<api::DependencyCheck>> checks;
  checks.push_back(api::make_kafka_check(kafka));
  InProcessApi api(db.config(), std::move(checks));
  const auto unready = [&] {
    const auto r = http_request(api.port(), http::verb::get, "/readyz");
    return r.status == 503 && r.body.find("cauce topics create") != std::string::npos;
  };
  EXPECT_TRUE(eventually(unready));
}

}  // namespace
}  // namespace cauce::testing
