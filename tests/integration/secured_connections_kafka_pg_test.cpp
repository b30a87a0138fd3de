// cauce against a Kafka that requires SASL and TLS and a PostgreSQL that requires TLS: the
// broker scripts/test starts also listens with SASL_PLAINTEXT (SCRAM-SHA-512, SCRAM-SHA-256,
// PLAIN), SSL (a client certificate required) and SASL_SSL, with certificates from a throwaway
// CA (common.sh tls_test_ca); PostgreSQL is a cluster of the test's own with ssl=on. A wrong
// password, a wrong CA or a protocol the listener does not speak stops start-up at once with a
// message naming the setting to check, and no secret reaches the log.
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <cauce/api/readiness.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/postgres.hpp>

#include "fixtures.hpp"
#include "private_postgres.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string tls_file(const std::string& name) { return test_env("TEST_TLS_DIR") + "/" + name; }

std::string sasl_password() {
  std::string password;
  std::getline(std::ifstream(test_env("TEST_KAFKA_SASL_PASSWORD_FILE")), password);
  return password;
}

// The test broker's listener `port_variable` (TEST_KAFKA_*_PORT), secured as `protocol`.
core::KafkaConfig secured_kafka(const char* port_variable, const std::string& protocol) {
  auto kafka = test_kafka(2);
  kafka.bootstrap_servers = "localhost:" + test_env(port_variable);
  kafka.security_protocol = protocol;
  if (protocol.starts_with("sasl_")) {
    kafka.sasl_username = test_env("TEST_KAFKA_SASL_USER");
    kafka.sasl_password_file = test_env("TEST_KAFKA_SASL_PASSWORD_FILE");
    kafka.sasl_password = core::Secret(sasl_password());
  }
  if (protocol.ends_with("ssl")) kafka.ssl_ca_file = tls_file("ca.crt");
  if (protocol == "ssl") {
    kafka.ssl_certificate_file = tls_file("client.crt");
    kafka.ssl_key_file = tls_file("client.key");
  }
  return kafka;
}

// What `cauce` is told through its environment about a secured Kafka (the password as a file).
void add_kafka_security(std::map<std::string, std::string>& env, const core::KafkaConfig& kafka) {
  env["CAUCE_KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers;
  env["CAUCE_KAFKA_SECURITY_PROTOCOL"] = kafka.security_protocol;
  if (!kafka.sasl_username.empty()) {
    env["CAUCE_KAFKA_SASL_MECHANISM"] = kafka.sasl_mechanism;
    env["CAUCE_KAFKA_SASL_USERNAME"] = kafka.sasl_username;
    env["CAUCE_KAFKA_SASL_PASSWORD_FILE"] = kafka.sasl_password_file;
  }
  if (!kafka.ssl_ca_file.empty()) env["CAUCE_KAFKA_SSL_CA_FILE"] = kafka.ssl_ca_file;
  if (!kafka.ssl_certificate_file.empty()) {
    env["CAUCE_KAFKA_SSL_CERTIFICATE_FILE"] = kafka.ssl_certificate_file;
    env["CAUCE_KAFKA_SSL_KEY_FILE"] = kafka.ssl_key_file;
  }
}

class SecuredConnectionsTest : public ::testing::Test {
 protected:
  std::map<std::string, std::string> env(const core::PostgresConfig& pg,
                                         const core::KafkaConfig& kafka) const {
    auto e = cauce_env(pg, kafka);
    add_kafka_security(e, kafka);
    e["CAUCE_DATA_DIR"] = data_.path().string();
    e["CAUCE_STARTUP_TIMEOUT_S"] = "60";
    e["CAUCE_ROLES"] = "api,processor,projector";
    if (pg.sslmode != "prefer") e["CAUCE_POSTGRES_SSLMODE"] = pg.sslmode;
    if (!pg.sslrootcert.empty()) e["CAUCE_POSTGRES_SSLROOTCERT"] = pg.sslrootcert;
    return e;
  }

  // Runs `cauce serve` expecting start-up to stop: its exit code and output. Bounded well below
  // the start-up timeout (60 s above), so a refusal that is retried instead fails the test.
  std::pair<int, std::string> refused_start(const std::map<std::string, std::string>& e) const {
    CauceProcess serve({"serve"}, e);
    const auto code = serve.wait_exit(30s);
    if (!code) {
      serve.signal(SIGKILL);
      serve.wait_exit();
      ADD_FAILURE() << "start-up kept waiting on a refusal:\n" << serve.output();
      return {-1, serve.output()};
    }
    return {*code, serve.output()};
  }

  TempDir data_;
};

TEST_F(SecuredConnectionsTest, ServesOverSaslScramWithTlsToKafkaAndVerifiedTlsToPostgres) {
  PrivatePostgres private_pg(test_env("TEST_TLS_DIR"));
  auto pg = private_pg.config();
  pg.sslmode = "verify-full";
  pg.sslrootcert = tls_file("ca.crt");
  const auto kafka = secured_kafka("TEST_KAFKA_SASL_SSL_PORT", "sasl_ssl");
  const auto e = env(pg, kafka);

  const auto [created, topics_output] = run_cauce({"topics", "create"}, e);
  ASSERT_EQ(created, 0) << topics_output;
  const auto served = serve_ready(e, data_.path());
  ASSERT_NE(served.port, 0) << served.failure;
  const std::vector<std::pair<std::string, std::string>> auth = {
      {"Authorization", "Bearer " + served.admin_key}, {"Content-Type", "application/json"}};
  const auto created_contact =
      http_request(served.port, http::verb::post, "/v1/contacts",
                   R"({"name":"Ana Lima","phone":"+351 912 345 678"})", auth);
  ASSERT_EQ(created_contact.status, 201u) << created_contact.body;
  const auto location = header(created_contact, "location");
  auto position = header(created_contact, "cauce-position");
  auto with_position = auth;
  with_position.emplace_back("Cauce-Min-Position", position);
  const auto read = http_request(served.port, http::verb::get, location, "", with_position);
  EXPECT_EQ(read.status, 200u) << read.body;
  EXPECT_THAT(read.body, HasSubstr("Ana Lima"));

  // Every connection cauce holds to PostgreSQL is encrypted.
  pqxx::connection check(core::postgres_conninfo(pg));
  pqxx::nontransaction n(check);
  const auto row = n.exec1(
      "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a "
      "JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'cauce%'");
  EXPECT_GT(row[1].as<int>(), 0);
  EXPECT_EQ(row[0].as<int>(), row[1].as<int>()) << "a connection of cauce's is not encrypted";

  served.process->signal(SIGTERM);
  EXPECT_EQ(served.process->wait_exit(), 0);
  const auto log = served.process->output();
  EXPECT_THAT(log, Not(HasSubstr(sasl_password())));
  EXPECT_THAT(log, Not(HasSubstr(pg.password.reveal())));
}

TEST_F(SecuredConnectionsTest, EveryMechanismAndMutualTlsReachTheBroker) {
  struct Case {
    const char* port;
    std::string protocol;
    std::string mechanism;
  };
  const std::vector<Case> cases = {
      {"TEST_KAFKA_SASL_PLAINTEXT_PORT", "sasl_plaintext", "SCRAM-SHA-512"},
      {"TEST_KAFKA_SASL_PLAINTEXT_PORT", "sasl_plaintext", "SCRAM-SHA-256"},
      {"TEST_KAFKA_SASL_PLAINTEXT_PORT", "sasl_plaintext", "PLAIN"},
      {"TEST_KAFKA_SASL_SSL_PORT", "sasl_ssl", "SCRAM-SHA-256"},
      {"TEST_KAFKA_SSL_PORT", "ssl", ""},
  };
  for (const auto& c : cases) {
    auto kafka = secured_kafka(c.port, c.protocol);
    if (!c.mechanism.empty()) kafka.sasl_mechanism = c.mechanism;
    core::KafkaAdmin admin(kafka);
    try {
      EXPECT_EQ(admin.describe(10s).brokers, 1) << c.protocol << " " << c.mechanism;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.protocol << " " << c.mechanism << ": " << e.what();
    }
  }
}

TEST_F(SecuredConnectionsTest, AWrongKafkaPasswordStopsStartUpNamingTheSetting) {
  TempDatabase db;
  const TempDir secrets;
  const auto wrong = secrets.path() / "kafka.password";
  std::ofstream(wrong) << "not-" << sasl_password() << "\n";
  auto e = env(db.config(), secured_kafka("TEST_KAFKA_SASL_SSL_PORT", "sasl_ssl"));
  e["CAUCE_KAFKA_SASL_PASSWORD_FILE"] = wrong.string();

  const auto [code, output] = refused_start(e);
  EXPECT_NE(code, 0);
  EXPECT_THAT(output, HasSubstr("Kafka refused the connection"));
  EXPECT_THAT(output, HasSubstr("kafka.sasl_password_file"));
  EXPECT_THAT(output, Not(HasSubstr(sasl_password())));
}

TEST_F(SecuredConnectionsTest, AnUnknownCaOrAPlaintextClientAtATlsListenerStopsStartUp) {
  TempDatabase db;
  auto wrong_ca = env(db.config(), secured_kafka("TEST_KAFKA_SASL_SSL_PORT", "sasl_ssl"));
  wrong_ca["CAUCE_KAFKA_SSL_CA_FILE"] = tls_file("other-ca.crt");
  const auto [ca_code, ca_output] = refused_start(wrong_ca);
  EXPECT_NE(ca_code, 0);
  EXPECT_THAT(ca_output, HasSubstr("certificate verify failed"));
  EXPECT_THAT(ca_output, HasSubstr("kafka.ssl_ca_file"));

  auto kafka = test_kafka(2);
  kafka.bootstrap_servers = "localhost:" + test_env("TEST_KAFKA_SSL_PORT");
  const auto [plain_code, plain_output] = refused_start(env(db.config(), kafka));
  EXPECT_NE(plain_code, 0);
  EXPECT_THAT(plain_output, HasSubstr("kafka.security_protocol"));
}

TEST_F(SecuredConnectionsTest, PostgresRefusalsStopStartUpNamingTheSetting) {
  PrivatePostgres private_pg(test_env("TEST_TLS_DIR"));
  const auto kafka = test_kafka(2);

  auto wrong_ca = private_pg.config();
  wrong_ca.sslmode = "verify-full";
  wrong_ca.sslrootcert = tls_file("other-ca.crt");
  const auto [ca_code, ca_output] = refused_start(env(wrong_ca, kafka));
  EXPECT_NE(ca_code, 0);
  EXPECT_THAT(ca_output, HasSubstr("PostgreSQL refused the connection"));
  EXPECT_THAT(ca_output, HasSubstr("postgres.sslrootcert"));

  auto wrong_password = private_pg.config();
  const auto password = wrong_password.password.reveal();
  wrong_password.password = core::Secret("not-" + password);
  const auto [pw_code, pw_output] = refused_start(env(wrong_password, kafka));
  EXPECT_NE(pw_code, 0);
  EXPECT_THAT(pw_output, HasSubstr("postgres.password_file"));
  EXPECT_THAT(pw_output, Not(HasSubstr(password)));

  // The shared test cluster runs without TLS.
  TempDatabase plain;
  auto required = plain.config();
  required.sslmode = "require";
  const auto [tls_code, tls_output] = refused_start(env(required, kafka));
  EXPECT_NE(tls_code, 0);
  EXPECT_THAT(tls_output, HasSubstr("postgres.sslmode"));
}

TEST_F(SecuredConnectionsTest, ReadinessNamesTheSettingsOfARefusal) {
  auto kafka = secured_kafka("TEST_KAFKA_SASL_PLAINTEXT_PORT", "sasl_plaintext");
  kafka.sasl_password = core::Secret("not-" + sasl_password());
  const auto check = api::make_kafka_check(kafka);
  std::string said;
  // The first check may end before the broker's refusal arrives ("unreachable" then).
  EXPECT_TRUE(eventually([&] {
    try {
      check->check();
      said = "passed";
    } catch (const std::exception& e) {
      said = e.what();
    }
    return said.find("refused") != std::string::npos;
  })) << said;
  EXPECT_THAT(said, HasSubstr("Kafka refused the connection; check kafka.sasl_username"));
  EXPECT_THAT(said, Not(HasSubstr(sasl_password())));
}

}  // namespace
}  // namespace cauce::testing
