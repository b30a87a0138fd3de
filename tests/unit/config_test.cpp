#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/config.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>

namespace cauce::core {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  std::filesystem::path write_file(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path;
  }
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cauce-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

// Runs load_config and returns the key the ConfigError named.
std::string rejected_key(const ConfigSources& sources) {
  try {
    load_config(sources);
  } catch (const ConfigError& e) {
    return e.key();
  }
  return "<accepted>";
}

TEST_F(ConfigTest, DefaultsAreTheEmbeddedSetup) {
  const auto config = load_config({});
  EXPECT_EQ(config.http.host, "127.0.0.1");
  EXPECT_EQ(config.http.port, 8080);
  EXPECT_EQ(config.http.body_limit_bytes, 1024u * 1024u);
  EXPECT_EQ(config.kafka.partitions, 12);
  EXPECT_EQ(config.kafka.events_topic, "cauce.events");
  EXPECT_EQ(config.postgres.port, 5432);
  EXPECT_THAT(config.roles, ::testing::ElementsAre("api", "processor", "projector", "workers"));
}

TEST_F(ConfigTest, LayersAreDefaultsThenFileThenEnvThenFlags) {
  const auto file = write_file("c.json", R"({"http": {"port": 9001, "threads": 3},
                                              "kafka": {"partitions": 6},
                                              "roles": ["api", "projector"],
                                              "log": {"level": "debug"}})");
  ConfigSources sources;
  sources.file = file;
  sources.env = {{"CAUCE_HTTP_PORT", "9002"}, {"CAUCE_KAFKA_PARTITIONS", "4"}};
  sources.flags = {{"http.port", "9003"}};
  const auto config = load_config(sources);
  EXPECT_EQ(config.http.port, 9003);      // flag beats env and file
  EXPECT_EQ(config.kafka.partitions, 4);  // env beats file
  EXPECT_EQ(config.http.threads, 3);      // file beats default
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_THAT(config.roles, ::testing::ElementsAre("api", "projector"));
  EXPECT_EQ(config.postgres.database, "cauce");  // untouched default
}

TEST_F(ConfigTest, DownloadsRefusePrivateAddressesUnlessTheSettingSaysSo) {
  EXPECT_FALSE(load_config({}).download.allow_private);
  for (const auto* yes : {"true", "1"}) {
    EXPECT_TRUE(
        load_config({.file = {}, .env = {{"CAUCE_DOWNLOAD_ALLOW_PRIVATE", yes}}, .flags = {}})
            .download.allow_private);
  }
  ConfigSources file;
  file.file = write_file("download.json", R"({"download": {"allow_private": true}})");
  EXPECT_TRUE(load_config(file).download.allow_private);
}

TEST_F(ConfigTest, BackupsAreCopiedOffTheBoxOnlyWhenASettingNamesAnAbsoluteDirectory) {
  const auto defaults = load_config({});
  EXPECT_EQ(defaults.backups.copy_to, "");
  EXPECT_EQ(defaults.backups.copy_keep, 7);
  EXPECT_EQ(defaults.backups.copy_timeout_s, 1800);
  const auto set = load_config(
      {.file = {},
       .env = {{"CAUCE_BACKUPS_COPY_TO", "/mnt/nfs/cauce"}, {"CAUCE_BACKUPS_COPY_KEEP", "3"}},
       .flags = {}});
  EXPECT_EQ(set.backups.copy_to, "/mnt/nfs/cauce");
  EXPECT_EQ(set.backups.copy_keep, 3);
  EXPECT_EQ(
      rejected_key({.file = {}, .env = {{"CAUCE_BACKUPS_COPY_TO", "nfs/cauce"}}, .flags = {}}),
      "backups.copy_to");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"backups.copy_keep", "0"}}}),
            "backups.copy_keep");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"backups.copy_timeout_s", "0"}}}),
            "backups.copy_timeout_s");
}

// A copy on the data dir itself (the same directory, one inside it, or one holding it, through a
// symlink too) is lost with it, and copy retention would delete the local backups as its own.
TEST_F(ConfigTest, BackupsAreNotCopiedIntoOrAroundTheDataDir) {
  const auto data = dir_ / "data";
  std::filesystem::create_directories(data / "backups");
  std::filesystem::create_directory_symlink(data, dir_ / "link");
  const auto with = [&](const std::filesystem::path& copy_to) {
    return ConfigSources{
        .file = {},
        .env = {{"CAUCE_BACKUPS_COPY_TO", copy_to.string()}, {"CAUCE_DATA_DIR", data.string()}},
        .flags = {}};
  };
  for (const auto& copy_to : {data, data / "backups", data / "not-yet" / "copies", dir_,
                              dir_ / "link", dir_ / "link" / "copies", data / ".." / "data"}) {
    EXPECT_EQ(rejected_key(with(copy_to)), "backups.copy_to") << copy_to;
  }
  try {
    load_config(with(data / "backups"));
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("data_dir"));
  }
  for (const auto& copy_to : {dir_ / "copies", dir_ / "data-copies", dir_ / "dat"}) {
    EXPECT_EQ(load_config(with(copy_to)).backups.copy_to, copy_to.string()) << copy_to;
  }
}

TEST_F(ConfigTest, UnknownKeysAreRefusedByName) {
  EXPECT_EQ(rejected_key({.file = {}, .env = {{"CAUCE_HTTP_PROT", "1"}}, .flags = {}}),
            "CAUCE_HTTP_PROT");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"kafka.partitons", "3"}}}),
            "kafka.partitons");
  ConfigSources from_file;
  from_file.file = write_file("typo.json", R"({"http": {"prot": 1}})");
  EXPECT_EQ(rejected_key(from_file), "http.prot");
}

// Every codec the setting accepts is one Debian's librdkafka was built with (it refuses others
// when the property is set), and the default reaches the producer's configuration.
TEST_F(ConfigTest, ProducersCompressWithZstdUnlessTheSettingSaysOtherwise) {
  const auto defaults = load_config({});
  EXPECT_EQ(defaults.kafka.compression, "zstd");
  std::string value;
  ASSERT_EQ(kafka_producer_conf(defaults.kafka, {})->get("compression.type", value),
            RdKafka::Conf::CONF_OK);
  EXPECT_EQ(value, "zstd");
  for (const auto* codec : {"none", "gzip", "snappy", "lz4", "zstd"}) {
    const auto config =
        load_config({.file = {}, .env = {{"CAUCE_KAFKA_COMPRESSION", codec}}, .flags = {}});
    EXPECT_EQ(config.kafka.compression, codec);
    ASSERT_EQ(kafka_producer_conf(config.kafka, {})->get("compression.type", value),
              RdKafka::Conf::CONF_OK);
    EXPECT_EQ(value, codec);
  }
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"kafka.compression", "brotli"}}}),
            "kafka.compression");
}

// Kafka's security settings go together: what one needs is asked for by name, and what the
// protocol would not use is refused rather than silently ignored.
TEST_F(ConfigTest, KafkaSecuritySettingsAreCheckedTogether) {
  const auto ca = write_file("ca.crt", "PEM");
  const auto password = write_file("kafka.password", "p4ss\n");
  const auto with = [&](std::map<std::string, std::string> flags) {
    ConfigSources sources;
    for (auto& [key, value] : flags) sources.flags.emplace_back(key, value);
    return sources;
  };
  const auto sasl_ssl = load_config(with({{"kafka.security_protocol", "sasl_ssl"},
                                          {"kafka.sasl_mechanism", "SCRAM-SHA-256"},
                                          {"kafka.sasl_username", "cauce"},
                                          {"kafka.sasl_password_file", password.string()},
                                          {"kafka.ssl_ca_file", ca.string()}}));
  EXPECT_EQ(sasl_ssl.kafka.sasl_password.reveal(), "p4ss");
  const KafkaSettings expected = {{"security.protocol", "sasl_ssl"},
                                  {"sasl.mechanism", "SCRAM-SHA-256"},
                                  {"sasl.username", "cauce"},
                                  {"sasl.password", "p4ss"},
                                  {"ssl.endpoint.identification.algorithm", "https"},
                                  {"ssl.ca.location", ca.string()}};
  EXPECT_EQ(kafka_security_settings(sasl_ssl.kafka), expected);
  EXPECT_TRUE(kafka_security_settings(load_config({}).kafka).empty());

  EXPECT_EQ(load_config(with({{"kafka.security_protocol", "SSL"}})).kafka.security_protocol, "ssl")
      << "Kafka's own spelling is taken too";
  EXPECT_EQ(rejected_key(with({{"kafka.security_protocol", "tls"}})), "kafka.security_protocol");
  EXPECT_EQ(rejected_key(with({{"kafka.sasl_mechanism", "GSSAPI"}})), "kafka.sasl_mechanism");
  EXPECT_EQ(rejected_key(with({{"kafka.security_protocol", "sasl_plaintext"}})),
            "kafka.sasl_username");
  EXPECT_EQ(rejected_key(with(
                {{"kafka.security_protocol", "sasl_plaintext"}, {"kafka.sasl_username", "cauce"}})),
            "kafka.sasl_password_file");
  EXPECT_EQ(rejected_key(with({{"kafka.sasl_username", "cauce"}})), "kafka.sasl_username");
  EXPECT_EQ(rejected_key(with({{"kafka.ssl_ca_file", ca.string()}})), "kafka.ssl_ca_file");
  EXPECT_EQ(rejected_key(with({{"kafka.security_protocol", "ssl"},
                               {"kafka.ssl_ca_file", (dir_ / "missing.crt").string()}})),
            "kafka.ssl_ca_file");
  EXPECT_EQ(rejected_key(with(
                {{"kafka.security_protocol", "ssl"}, {"kafka.ssl_certificate_file", ca.string()}})),
            "kafka.ssl_key_file");
  EXPECT_EQ(rejected_key(with({{"kafka.security_protocol", "sasl_ssl"},
                               {"kafka.sasl_username", "cauce"},
                               {"kafka.sasl_password_file", (dir_ / "missing").string()}})),
            "kafka.sasl_password_file");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"kafka.sasl_password", "x"}}}),
            "kafka.sasl_password");
}

TEST_F(ConfigTest, PostgresVerifiesItsServerOnlyAgainstANamedCa) {
  const auto ca = write_file("root.crt", "PEM");
  const auto config = load_config({.file = {},
                                   .env = {{"CAUCE_POSTGRES_SSLMODE", "verify-full"},
                                           {"CAUCE_POSTGRES_SSLROOTCERT", ca.string()}},
                                   .flags = {}});
  EXPECT_EQ(config.postgres.sslmode, "verify-full");
  EXPECT_EQ(load_config({}).postgres.sslmode, "prefer");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"postgres.sslmode", "verify-ca"}}}),
            "postgres.sslrootcert");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"postgres.sslmode", "on"}}}),
            "postgres.sslmode");
  EXPECT_EQ(rejected_key({.file = {},
                          .env = {},
                          .flags = {{"postgres.sslmode", "require"},
                                    {"postgres.sslrootcert", (dir_ / "none.crt").string()}}}),
            "postgres.sslrootcert");
  EXPECT_EQ(rejected_key({.file = {},
                          .env = {},
                          .flags = {{"postgres.sslmode", "disable"},
                                    {"postgres.sslrootcert", ca.string()}}}),
            "postgres.sslrootcert");
}

TEST_F(ConfigTest, ReadinessWantsAGibibyteFreeInTheDataDirByDefault) {
  EXPECT_EQ(load_config({}).readiness.min_free_bytes, 1024LL * 1024 * 1024);
  EXPECT_EQ(load_config({.file = {}, .env = {{"CAUCE_READINESS_MIN_FREE_BYTES", "0"}}, .flags = {}})
                .readiness.min_free_bytes,
            0);
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"readiness.min_free_bytes", "-1"}}}),
            "readiness.min_free_bytes");
}

// Empty means none, as `config --print` shows the default: it loads back.
TEST_F(ConfigTest, AnEmptyCorsListIsNoOrigins) {
  const auto config =
      load_config({.file = {}, .env = {{"CAUCE_HTTP_CORS_ORIGINS", " "}}, .flags = {}});
  EXPECT_TRUE(config.http.cors_origins.empty());
  EXPECT_EQ(rejected_key({.file = {}, .env = {{"CAUCE_HTTP_CORS_ORIGINS", "*"}}, .flags = {}}),
            "http.cors_origins");
}

TEST_F(ConfigTest, WrongTypesAndRangesAreRefusedByName) {
  EXPECT_EQ(rejected_key({.file = {}, .env = {{"CAUCE_HTTP_PORT", "eighty"}}, .flags = {}}),
            "http.port");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"http.port", "70000"}}}), "http.port");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"kafka.partitions", "0"}}}),
            "kafka.partitions");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"http.threads", "2x"}}}),
            "http.threads");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"roles", "api,cooking"}}}), "roles");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"log.level", "loud"}}}), "log.level");
  EXPECT_EQ(
      rejected_key({.file = {}, .env = {{"CAUCE_DOWNLOAD_ALLOW_PRIVATE", "maybe"}}, .flags = {}}),
      "download.allow_private");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"kafka.bootstrap_servers", " "}}}),
            "kafka.bootstrap_servers");
  ConfigSources bad_json;
  bad_json.file = write_file("bad.json", R"({"http": {"port": 80,}})");
  EXPECT_EQ(rejected_key(bad_json), "config");
  ConfigSources wrong_type_in_file;
  wrong_type_in_file.file = write_file("float.json", R"({"http": {"port": 80.5}})");
  EXPECT_EQ(rejected_key(wrong_type_in_file), "http.port");
}

TEST_F(ConfigTest, SecretsComeOnlyFromEnvironmentOrFile) {
  const auto env =
      load_config({.file = {}, .env = {{"CAUCE_POSTGRES_PASSWORD", "s3cret"}}, .flags = {}});
  EXPECT_EQ(env.postgres.password.reveal(), "s3cret");

  const auto secret_file = write_file("pw", "from-file\n");
  const auto from_file = load_config(
      {.file = {}, .env = {}, .flags = {{"postgres.password_file", secret_file.string()}}});
  EXPECT_EQ(from_file.postgres.password.reveal(), "from-file");

  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"postgres.password", "x"}}}),
            "postgres.password");
  ConfigSources in_file;
  in_file.file = write_file("secret.json", R"({"postgres": {"password": "x"}})");
  EXPECT_EQ(rejected_key(in_file), "postgres.password");
}

TEST_F(ConfigTest, DescribeMasksSecrets) {
  const auto config = load_config({.file = {},
                                   .env = {{"CAUCE_POSTGRES_PASSWORD", "hunter2"},
                                           {"CAUCE_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"},
                                           {"CAUCE_KAFKA_SASL_USERNAME", "cauce"},
                                           {"CAUCE_KAFKA_SASL_PASSWORD", "swordfish"}},
                                   .flags = {}});
  std::set<std::string> masked;
  for (const auto& [key, value] : describe(config)) {
    EXPECT_THAT(value, ::testing::Not(HasSubstr("hunter2"))) << key;
    EXPECT_THAT(value, ::testing::Not(HasSubstr("swordfish"))) << key;
    if (value == "********") masked.insert(key);
  }
  EXPECT_EQ(masked, (std::set<std::string>{"postgres.password", "kafka.sasl_password"}));
}

TEST_F(ConfigTest, EveryOptionHasEnvAndFlagNamesDerivedFromItsKey) {
  for (const auto& option : config_options()) {
    EXPECT_TRUE(option.env.starts_with("CAUCE_")) << option.key;
    EXPECT_TRUE(option.flag.starts_with("--")) << option.key;
    EXPECT_FALSE(option.help.empty()) << option.key;
    // Every option round-trips through describe(): load its described default back.
    for (const auto& [key, value] : describe(Config{})) {
      if (key == option.key && !option.secret && !value.empty()) {
        EXPECT_NO_THROW(load_config({.file = {}, .env = {}, .flags = {{key, value}}})) << key;
      }
    }
  }
}

TEST(TopicPrefixTest, NamesEveryTopic) {
  KafkaConfig kafka;
  use_topic_prefix(kafka, "t1");
  std::set<std::string> topics;
  for (const auto& spec : cauce_topics(kafka)) topics.insert(spec.name);
  EXPECT_EQ(topics, (std::set<std::string>{"t1.commands", "t1.events", "t1.replies", "t1.outcomes",
                                           "t1.snapshots", "t1.dead-letters", "t1.jobs.dlq"}));
}

}  // namespace
}  // namespace cauce::core
