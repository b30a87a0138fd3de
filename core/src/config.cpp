#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <cauce/core/cidr.hpp>
#include <cauce/core/config.hpp>
#include <cauce/core/errors.hpp>

extern char** environ;  // NOLINT: POSIX

namespace cauce::core {
namespace {

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

long long parse_integer(const std::string& key, const std::string& raw, long long min,
                        long long max) {
  const std::string value = trim(raw);
  long long out = 0;
  const auto* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (value.empty() || ec != std::errc{} || ptr != end) {
    throw ConfigError(key, "expected an integer, got \"" + raw + "\"");
  }
  if (out < min || out > max) {
    throw ConfigError(key, "must be between " + std::to_string(min) + " and " +
                               std::to_string(max) + ", got " + value);
  }
  return out;
}

std::string parse_nonempty(const std::string& key, const std::string& raw) {
  std::string value = trim(raw);
  if (value.empty()) throw ConfigError(key, "must not be empty");
  return value;
}

std::vector<std::string> parse_list(const std::string& key, const std::string& raw) {
  std::vector<std::string> out;
  std::stringstream in(raw);
  for (std::string item; std::getline(in, item, ',');) {
    item = trim(item);
    if (!item.empty()) out.push_back(item);
  }
  if (out.empty()) throw ConfigError(key, "must list at least one value");
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

struct Binding {
  ConfigOption option;
  std::function<void(Config&, const std::string&)> set;
  std::function<std::string(const Config&)> get;
};

ConfigOption option(std::string key, std::string help, bool secret = false) {
  std::string env = "CAUCE_";
  std::string flag = "--";
  for (char c : key) {
    const bool sep = c == '.' || c == '_';
    env += sep ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    flag += sep ? '-' : c;
  }
  return ConfigOption{std::move(key), std::move(env), std::move(flag), std::move(help), secret};
}

template <typename Int>
Binding integer(std::string key, std::string help, Int Config::*field_of_config, long long min,
                long long max) {
  return {option(key, std::move(help)),
          [key, field_of_config, min, max](Config& c, const std::string& v) {
            c.*field_of_config = static_cast<Int>(parse_integer(key, v, min, max));
          },
          [field_of_config](const Config& c) { return std::to_string(c.*field_of_config); }};
}

// Builds bindings for fields of a nested struct (c.http.port) without a macro.
template <typename Section>
struct SectionBinder {
  Section Config::*section;

  template <typename Int>
  Binding integer(std::string key, std::string help, Int Section::*field, long long min,
                  long long max) const {
    auto sec = section;
    return {option(key, std::move(help)),
            [key, sec, field, min, max](Config& c, const std::string& v) {
              (c.*sec).*field = static_cast<Int>(parse_integer(key, v, min, max));
            },
            [sec, field](const Config& c) { return std::to_string((c.*sec).*field); }};
  }

  Binding boolean(std::string key, std::string help, bool Section::*field) const {
    auto sec = section;
    return {
        option(key, std::move(help)),
        [key, sec, field](Config& c, const std::string& v) {
          const auto value = trim(v);
          if (value == "true" || value == "1") {
            (c.*sec).*field = true;
          } else if (value == "false" || value == "0") {
            (c.*sec).*field = false;
          } else {
            throw ConfigError(key, "expected true or false, got \"" + v + "\"");
          }
        },
        [sec, field](const Config& c) { return std::string((c.*sec).*field ? "true" : "false"); }};
  }

  // One of `allowed`, in any case (Kafka's documentation writes SASL_SSL, librdkafka's
  // sasl_ssl); kept as `allowed` spells it.
  Binding choice(std::string key, std::string help, std::string Section::*field,
                 std::vector<std::string> allowed) const {
    auto sec = section;
    std::string listed;  // "a, b or c"
    std::string all;     // "a, b, c"
    for (std::size_t i = 0; i < allowed.size(); ++i) {
      listed += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + allowed[i];
      all += (i == 0 ? "" : ", ") + allowed[i];
    }
    return {option(key, help + ": " + all),
            [key, sec, field, allowed, listed](Config& c, const std::string& v) {
              const auto value = trim(v);
              const auto same = [&](const std::string& candidate) {
                return std::equal(value.begin(), value.end(), candidate.begin(), candidate.end(),
                                  [](char a, char b) {
                                    return std::tolower(static_cast<unsigned char>(a)) ==
                                           std::tolower(static_cast<unsigned char>(b));
                                  });
              };
              const auto it = std::find_if(allowed.begin(), allowed.end(), same);
              if (it == allowed.end()) {
                throw ConfigError(key, "expected " + listed + ", got \"" + v + "\"");
              }
              (c.*sec).*field = *it;
            },
            [sec, field](const Config& c) { return (c.*sec).*field; }};
  }

  Binding text(std::string key, std::string help, std::string Section::*field,
               bool may_be_empty = false) const {
    auto sec = section;
    return {option(key, std::move(help)),
            [key, sec, field, may_be_empty](Config& c, const std::string& v) {
              (c.*sec).*field = may_be_empty ? trim(v) : parse_nonempty(key, v);
            },
            [sec, field](const Config& c) { return (c.*sec).*field; }};
  }
};

const std::vector<Binding>& bindings() {
  static const std::vector<Binding> all = [] {
    constexpr long long kPortMax = std::numeric_limits<std::uint16_t>::max();
    const SectionBinder<HttpConfig> http{&Config::http};
    const SectionBinder<KafkaConfig> kafka{&Config::kafka};
    const SectionBinder<PostgresConfig> pg{&Config::postgres};
    const SectionBinder<CommandsConfig> commands{&Config::commands};
    const SectionBinder<ProjectionsConfig> projections{&Config::projections};
    const SectionBinder<DownloadConfig> download{&Config::download};
    const SectionBinder<WorkersConfig> workers{&Config::workers};
    const SectionBinder<BackupsConfig> backups{&Config::backups};
    const SectionBinder<AlertsConfig> alerts{&Config::alerts};
    const SectionBinder<ReportsConfig> reports{&Config::reports};
    const SectionBinder<WebhooksConfig> webhooks{&Config::webhooks};
    const SectionBinder<ImportsConfig> imports{&Config::imports};
    const SectionBinder<ReadinessConfig> readiness{&Config::readiness};
    std::vector<Binding> b;
    b.push_back(
        {option("data_dir", "Directory for cauce's own files (admin.key, job outputs)"),
         [](Config& c, const std::string& v) { c.data_dir = parse_nonempty("data_dir", v); },
         [](const Config& c) { return c.data_dir; }});
    b.push_back({option("log.level", "Lowest level logged: debug, info, warn, error"),
                 [](Config& c, const std::string& v) {
                   const std::string level = trim(v);
                   static const std::set<std::string> kLevels = {"debug", "info", "warn", "error"};
                   if (!kLevels.contains(level)) {
                     throw ConfigError("log.level",
                                       "expected debug, info, warn or error, got \"" + v + "\"");
                   }
                   c.log_level = level;
                 },
                 [](const Config& c) { return c.log_level; }});
    b.push_back(
        {option("roles", "Roles this process runs: api,processor,projector,workers"),
         [](Config& c, const std::string& v) {
           static const std::set<std::string> kRoles = {"api", "processor", "projector", "workers"};
           auto roles = parse_list("roles", v);
           for (const auto& role : roles) {
             if (!kRoles.contains(role)) {
               throw ConfigError("roles", "unknown role \"" + role +
                                              "\" (expected api, processor, projector, "
                                              "workers)");
             }
           }
           c.roles = std::move(roles);
         },
         [](const Config& c) { return join(c.roles); }});
    b.push_back(integer("startup_timeout_s",
                        "Seconds start-up keeps retrying an unreachable Kafka or PostgreSQL",
                        &Config::startup_timeout_s, 0, 3600));
    b.push_back(http.text("http.host", "Address the HTTP server binds", &HttpConfig::host));
    b.push_back(
        http.integer("http.port", "HTTP port (0 = any free port)", &HttpConfig::port, 0, kPortMax));
    b.push_back(http.integer("http.threads", "HTTP I/O threads", &HttpConfig::threads, 1, 256));
    b.push_back(http.integer("http.body_limit_bytes", "Largest request body accepted (413 above)",
                             &HttpConfig::body_limit_bytes, 1, 1LL << 30));
    b.push_back(http.integer("http.idle_timeout_s", "Idle keep-alive connections close after",
                             &HttpConfig::idle_timeout_s, 1, 3600));
    b.push_back(http.integer("http.header_timeout_s",
                             "Seconds from a request's first byte to the end of its headers",
                             &HttpConfig::header_timeout_s, 1, 3600));
    b.push_back(http.integer("http.body_timeout_s", "Seconds to receive a request's body",
                             &HttpConfig::body_timeout_s, 1, 3600));
    b.push_back(http.integer("http.rate_limit_reader",
                             "Requests per second per reader key (0 = no limit)",
                             &HttpConfig::rate_limit_reader, 0, 1000000));
    b.push_back(http.integer("http.rate_limit_operator",
                             "Requests per second per operator key (0 = no limit)",
                             &HttpConfig::rate_limit_operator, 0, 1000000));
    b.push_back(http.integer("http.rate_limit_admin",
                             "Requests per second per admin key (0 = no limit)",
                             &HttpConfig::rate_limit_admin, 0, 1000000));
    b.push_back(
        {option("http.cors_origins",
                "Origins browsers may call the API from (CORS), comma-separated; none if empty"),
         [](Config& c, const std::string& v) {
           // Empty means none (what `config --print` shows for the default): loaded back as is.
           auto origins =
               trim(v).empty() ? std::vector<std::string>{} : parse_list("http.cors_origins", v);
           for (auto& origin : origins) {
             // As browsers send it: lower case, no default port.
             std::transform(origin.begin(), origin.end(), origin.begin(),
                            [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
             for (const auto* default_port : {"https://:443", "http://:80"}) {
               const std::string_view d(default_port);
               const auto scheme = d.substr(0, d.find("://") + 3);
               const auto port = d.substr(d.find("://") + 3);
               if (origin.starts_with(scheme) && origin.ends_with(port)) {
                 origin.resize(origin.size() - port.size());
               }
             }
             const auto scheme = origin.find("://");
             if (origin == "*" || scheme == std::string::npos || scheme == 0 ||
                 origin.size() == scheme + 3 || origin.back() == '/' ||
                 origin.find_first_of("*/ ", scheme + 3) != std::string::npos) {
               throw ConfigError("http.cors_origins",
                                 "\"" + origin +
                                     "\" is not an origin: list each one as scheme://host[:port] "
                                     "(no wildcard, no path)");
             }
           }
           c.http.cors_origins = std::move(origins);
         },
         [](const Config& c) { return join(c.http.cors_origins); }});
    b.push_back(http.boolean("http.hsts",
                             "Send Strict-Transport-Security on HTTPS answers (cauce's own TLS "
                             "or X-Forwarded-Proto: https from a trusted proxy; with neither "
                             "TLS nor http.trusted_proxies, on every answer)",
                             &HttpConfig::hsts));
    b.push_back(http.text("http.tls_certificate_file",
                          "PEM certificate (chain) file: cauce serves HTTPS (TLS 1.2+) with it "
                          "and http.tls_key_file, reloaded on SIGHUP; empty: plain HTTP",
                          &HttpConfig::tls_certificate_file, true));
    b.push_back(http.text("http.tls_key_file",
                          "PEM private key file of http.tls_certificate_file (both or neither)",
                          &HttpConfig::tls_key_file, true));
    b.push_back(
        {option("http.trusted_proxies",
                "Reverse proxies (CIDRs or addresses, comma-separated) whose X-Forwarded-For "
                "and X-Forwarded-Proto are believed; none if empty"),
         [](Config& c, const std::string& v) {
           std::vector<std::string> proxies;
           if (!trim(v).empty()) {
             for (const auto& item : parse_list("http.trusted_proxies", v)) {
               std::string error;
               const auto cidr = Cidr::parse(item, &error);
               if (!cidr) throw ConfigError("http.trusted_proxies", error);
               proxies.push_back(cidr->text());
             }
           }
           c.http.trusted_proxies = std::move(proxies);
         },
         [](const Config& c) { return join(c.http.trusted_proxies); }});
    b.push_back(http.integer("http.max_connections",
                             "Open connections at most (streams included); past it a 503",
                             &HttpConfig::max_connections, 1, 1000000));
    b.push_back(http.integer("http.gzip_min_bytes",
                             "Response bodies of at least this many bytes are gzipped when the "
                             "client sends Accept-Encoding: gzip (0: never)",
                             &HttpConfig::gzip_min_bytes, 0, 100 * 1024 * 1024));
    b.push_back(http.integer("http.max_queued_queries",
                             "Read queries waiting for a PostgreSQL connection at most; past it "
                             "a 503 with Retry-After rather than a queue that only grows",
                             &HttpConfig::max_queued_queries, 1, 1000000));
    b.push_back(http.integer("http.drain_timeout_s",
                             "On shutdown, seconds in-flight requests get to finish",
                             &HttpConfig::drain_timeout_s, 0, 600));
    b.push_back(http.integer("http.shutdown_grace_ms",
                             "On SIGTERM, milliseconds /readyz answers 503 (stopping) while "
                             "requests are still served, before the listener closes and the "
                             "drain starts (a load balancer's time to stop sending)",
                             &HttpConfig::shutdown_grace_ms, 0, 600000));
    b.push_back(kafka.text("kafka.bootstrap_servers", "Kafka bootstrap servers (host:port,...)",
                           &KafkaConfig::bootstrap_servers));
    b.push_back(kafka.text("kafka.commands_topic", "Topic the API writes commands to",
                           &KafkaConfig::commands_topic));
    b.push_back(
        kafka.text("kafka.events_topic", "The event log topic", &KafkaConfig::events_topic));
    b.push_back(kafka.text("kafka.replies_topic", "Topic command outcomes are written to",
                           &KafkaConfig::replies_topic));
    b.push_back(kafka.text("kafka.outcomes_topic",
                           "Topic remembering rejected commands that carried an Idempotency-Key",
                           &KafkaConfig::outcomes_topic));
    b.push_back(kafka.text("kafka.snapshots_topic",
                           "Topic where processors keep snapshots of partition state",
                           &KafkaConfig::snapshots_topic));
    b.push_back(kafka.text("kafka.dead_letters_topic",
                           "Topic where records that cannot be decoded are parked",
                           &KafkaConfig::dead_letters_topic));
    b.push_back(kafka.text("kafka.jobs_dlq_topic",
                           "Topic where jobs that failed for good are recorded (job, attempts, "
                           "last error)",
                           &KafkaConfig::jobs_dlq_topic));
    b.push_back(kafka.integer("kafka.partitions", "Partitions of each topic (fixed at creation)",
                              &KafkaConfig::partitions, 1, 10000));
    b.push_back(kafka.integer("kafka.replication_factor", "Replication factor of new topics",
                              &KafkaConfig::replication_factor, 1, 32));
    b.push_back(kafka.integer("kafka.min_insync_replicas",
                              "min.insync.replicas of new topics (capped at the replication "
                              "factor)",
                              &KafkaConfig::min_insync_replicas, 1, 32));
    b.push_back(kafka.integer("kafka.request_timeout_ms", "Timeout of one Kafka admin request",
                              &KafkaConfig::request_timeout_ms, 100, 600000));
    b.push_back(kafka.choice("kafka.compression", "Compression of the batches cauce produces",
                             &KafkaConfig::compression, {"none", "gzip", "snappy", "lz4", "zstd"}));
    b.push_back(kafka.choice("kafka.security_protocol", "How cauce's clients reach the brokers",
                             &KafkaConfig::security_protocol,
                             {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"}));
    b.push_back(kafka.choice(
        "kafka.sasl_mechanism", "SASL mechanism (security_protocol sasl_plaintext or sasl_ssl)",
        &KafkaConfig::sasl_mechanism, {"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"}));
    b.push_back(kafka.text("kafka.sasl_username", "SASL user cauce authenticates as",
                           &KafkaConfig::sasl_username, true));
    b.push_back({option("kafka.sasl_password",
                        "SASL password (environment only: CAUCE_KAFKA_SASL_PASSWORD)", true),
                 [](Config& c, const std::string& v) { c.kafka.sasl_password = Secret(v); },
                 [](const Config& c) { return c.kafka.sasl_password.masked(); }});
    b.push_back(kafka.text("kafka.sasl_password_file", "File holding the SASL password",
                           &KafkaConfig::sasl_password_file, true));
    b.push_back(kafka.text("kafka.ssl_ca_file",
                           "PEM CA bundle the brokers' certificates are verified with (ssl, "
                           "sasl_ssl; empty: the system's)",
                           &KafkaConfig::ssl_ca_file, true));
    b.push_back(kafka.text("kafka.ssl_certificate_file",
                           "PEM client certificate for mutual TLS (with kafka.ssl_key_file)",
                           &KafkaConfig::ssl_certificate_file, true));
    b.push_back(kafka.text("kafka.ssl_key_file", "PEM private key of kafka.ssl_certificate_file",
                           &KafkaConfig::ssl_key_file, true));
    b.push_back(pg.text("postgres.host", "PostgreSQL host", &PostgresConfig::host));
    b.push_back(pg.integer("postgres.port", "PostgreSQL port", &PostgresConfig::port, 1, kPortMax));
    b.push_back(pg.text("postgres.database", "PostgreSQL database", &PostgresConfig::database));
    b.push_back(pg.text("postgres.user", "PostgreSQL role", &PostgresConfig::user));
    b.push_back({option("postgres.password",
                        "PostgreSQL password (environment only: CAUCE_POSTGRES_PASSWORD)", true),
                 [](Config& c, const std::string& v) { c.postgres.password = Secret(v); },
                 [](const Config& c) { return c.postgres.password.masked(); }});
    b.push_back(pg.text("postgres.password_file", "File holding the PostgreSQL password",
                        &PostgresConfig::password_file, true));
    b.push_back(pg.integer("postgres.connect_timeout_s", "Timeout of one connection attempt",
                           &PostgresConfig::connect_timeout_s, 1, 600));
    b.push_back(pg.integer("postgres.pool_size", "Connections the API keeps open",
                           &PostgresConfig::pool_size, 1, 1000));
    b.push_back(pg.integer("postgres.read_pipelines",
                           "Pipelined connections reading contacts by id on the HTTP I/O threads, "
                           "besides the pool (0: none)",
                           &PostgresConfig::read_pipelines, 0, 64));
    b.push_back(pg.integer("postgres.statement_timeout_ms",
                           "A query of the API running longer is cancelled (503); 0 = no limit",
                           &PostgresConfig::statement_timeout_ms, 0, 3600000));
    b.push_back(pg.text("postgres.migrations_dir",
                        "Directory of *.sql migrations (empty: those built into cauce)",
                        &PostgresConfig::migrations_dir, true));
    b.push_back(pg.choice("postgres.sslmode", "libpq's sslmode", &PostgresConfig::sslmode,
                          {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}));
    b.push_back(pg.text("postgres.sslrootcert",
                        "PEM CA file the server's certificate is verified with (sslmode verify-ca "
                        "or verify-full)",
                        &PostgresConfig::sslrootcert, true));
    b.push_back(commands.integer("commands.batch_max",
                                 "Most commands the processor decides in one Kafka transaction",
                                 &CommandsConfig::batch_max, 1, 100000));
    b.push_back(commands.integer("commands.linger_ms",
                                 "How long a batch waits for more commands before committing",
                                 &CommandsConfig::linger_ms, 0, 1000));
    b.push_back(commands.integer(
        "commands.transactions_in_flight",
        "Kafka transactions a processor runs at once (one producer and thread each, partitions "
        "split between them)",
        &CommandsConfig::transactions_in_flight, 1, 16));
    b.push_back(commands.integer("commands.reply_timeout_ms",
                                 "How long the API waits for a command's outcome (then 503)",
                                 &CommandsConfig::reply_timeout_ms, 100, 120000));
    b.push_back(commands.text("commands.instance_id",
                              "Names this process's replies and its processor's transactional id; "
                              "stable per process (empty: random per start)",
                              &CommandsConfig::instance_id, true));
    b.push_back(commands.text("commands.processor_group",
                              "Consumer group of the processors (also their transactional id "
                              "prefix); one per cauce deployment",
                              &CommandsConfig::processor_group));
    b.push_back(commands.integer("commands.snapshot_every_events",
                                 "New events after which a partition's state is snapshotted "
                                 "(0: never)",
                                 &CommandsConfig::snapshot_every_events, 0, 100000000));
    b.push_back(projections.text("projections.group", "Consumer group of the projectors",
                                 &ProjectionsConfig::group));
    b.push_back(
        projections.text("projections.name",
                         "The projection's name in projection_checkpoints (one per read model set)",
                         &ProjectionsConfig::name));
    b.push_back(projections.integer("projections.batch_max",
                                    "Most events applied in one PostgreSQL transaction",
                                    &ProjectionsConfig::batch_max, 1, 1000000));
    b.push_back(projections.integer(
        "projections.min_position_wait_ms",
        "How long a query with Cauce-Min-Position waits for the projection (then 503)",
        &ProjectionsConfig::min_position_wait_ms, 0, 120000));
    b.push_back(projections.integer("projections.max_lag_events",
                                    "/readyz is 503 while the projector lags more events",
                                    &ProjectionsConfig::max_lag_events, 1, 1000000000));
    b.push_back(projections.integer("projections.notifications_retention_h",
                                    "Hours notifications are kept for Last-Event-ID resumes",
                                    &ProjectionsConfig::notifications_retention_h, 1, 24 * 365));
    b.push_back(projections.integer("projections.heartbeat_s",
                                    "Seconds between SSE heartbeats and WebSocket pings",
                                    &ProjectionsConfig::heartbeat_s, 1, 3600));
    b.push_back(projections.integer(
        "projections.client_buffer",
        "Notifications queued for one live client before it is disconnected as too slow",
        &ProjectionsConfig::client_buffer, 1, 1000000));
    b.push_back(projections.integer("projections.max_stream_clients",
                                    "Live clients (SSE and WebSocket) of one process, at most",
                                    &ProjectionsConfig::max_stream_clients, 1, 10000000));
    b.push_back(projections.integer("projections.max_stream_clients_per_key",
                                    "Live clients of one API key, at most",
                                    &ProjectionsConfig::max_stream_clients_per_key, 1, 10000000));
    b.push_back(projections.integer("projections.replay_batch_max",
                                    "Events a replay applies in one PostgreSQL transaction at most",
                                    &ProjectionsConfig::replay_batch_max, 1, 1000000));
    b.push_back(projections.integer(
        "projections.replay_grace_s",
        "Seconds a read-model generation a replay replaced is kept before it is dropped",
        &ProjectionsConfig::replay_grace_s, 0, 30 * 24 * 3600));
    b.push_back(download.boolean(
        "download.allow_private",
        "Let report downloads reach loopback, private, link-local and CGNAT addresses",
        &DownloadConfig::allow_private));
    b.push_back(download.integer("download.connect_timeout_ms", "Connect timeout of a download",
                                 &DownloadConfig::connect_timeout_ms, 100, 600000));
    b.push_back(download.integer("download.total_timeout_ms", "A download taking longer fails",
                                 &DownloadConfig::total_timeout_ms, 100, 3600000));
    b.push_back(download.integer("download.max_redirects", "Redirects a download follows",
                                 &DownloadConfig::max_redirects, 0, 20));
    b.push_back(download.integer("download.max_bytes", "Largest report source accepted",
                                 &DownloadConfig::max_bytes, 1, 1LL << 40));
    b.push_back(workers.integer("workers.concurrency", "Jobs one process runs at once",
                                &WorkersConfig::concurrency, 1, 64));
    b.push_back(workers.integer("workers.max_attempts",
                                "Attempts of a job (per round) before it fails for good",
                                &WorkersConfig::max_attempts, 1, 100));
    b.push_back(workers.integer("workers.backoff_base_ms",
                                "First retry delay bound (full jitter, doubling per attempt)",
                                &WorkersConfig::backoff_base_ms, 1, 3600000));
    b.push_back(workers.integer("workers.backoff_cap_ms", "Largest retry delay bound",
                                &WorkersConfig::backoff_cap_ms, 1, 86400000));
    b.push_back(workers.integer("workers.lease_ms",
                                "A claimed job whose worker stops renewing it for this long is run "
                                "by another",
                                &WorkersConfig::lease_ms, 500, 3600000));
    b.push_back(workers.integer("workers.poll_ms", "How often an idle runner looks for due jobs",
                                &WorkersConfig::poll_ms, 10, 60000));
    b.push_back(workers.text("workers.group", "Consumer group of the workers' event readers",
                             &WorkersConfig::group));
    b.push_back(backups.integer("backups.interval_s", "Seconds between scheduled backups (0: none)",
                                &BackupsConfig::interval_s, 0, 86400 * 365));
    b.push_back(backups.integer("backups.retention_h",
                                "Hours a complete backup is kept before retention deletes it",
                                &BackupsConfig::retention_h, 1, 24 * 3650));
    for (const auto& [key, field] :
         {std::pair{"alerts.deadline_critical_s", &AlertsConfig::deadline_critical_s},
          std::pair{"alerts.deadline_warning_s", &AlertsConfig::deadline_warning_s},
          std::pair{"alerts.deadline_info_s", &AlertsConfig::deadline_info_s}}) {
      b.push_back(alerts.integer(key,
                                 "Seconds an open alert of this level may go unacknowledged before "
                                 "it escalates itself one level (0: never)",
                                 field, 0, 30 * 86400));
    }
    b.push_back(backups.integer("backups.export_timeout_s",
                                "How long one backup's event-log export may take",
                                &BackupsConfig::export_timeout_s, 1, 86400));
    b.push_back({option("backups.copy_to",
                        "Absolute directory on another mount (NFS, SMB) each completed backup is "
                        "copied into and verified at (there: what a sync agent uploads from it "
                        "is not verified); one per installation, apart from the data dir; "
                        "empty: no copy"),
                 [](Config& c, const std::string& v) {
                   const auto dir = trim(v);
                   if (!dir.empty() && !std::filesystem::path(dir).is_absolute()) {
                     throw ConfigError("backups.copy_to",
                                       "must be an absolute directory, got \"" + v + "\"");
                   }
                   c.backups.copy_to = dir;
                 },
                 [](const Config& c) { return c.backups.copy_to; }});
    b.push_back(backups.integer("backups.copy_keep",
                                "Copies kept in backups.copy_to (the newest; older ones deleted)",
                                &BackupsConfig::copy_keep, 1, 100000));
    b.push_back(backups.integer("backups.copy_timeout_s",
                                "How long one backup's copy into backups.copy_to may take (a "
                                "mount that does not answer fails the attempt, retried later)",
                                &BackupsConfig::copy_timeout_s, 1, 86400));
    b.push_back(reports.text("reports.source_auth_dir",
                             "Directory of the secrets report downloads may send, one file per "
                             "name (bearer <token> or basic <user>:<password>, and origins "
                             "https://host[:port],...); empty: none",
                             &ReportsConfig::source_auth_dir, true));
    b.push_back(reports.integer("reports.schedule_min_every_s",
                                "The shortest interval a report schedule's `every` may have",
                                &ReportsConfig::schedule_min_every_s, 1, 86400));
    b.push_back(reports.text("reports.zoneinfo_dir",
                             "The tz database schedules' time zones are read from (TZif files)",
                             &ReportsConfig::zoneinfo_dir));
    b.push_back(
        webhooks.boolean("webhooks.allow_private",
                         "Let webhook URLs reach loopback, private, link-local and CGNAT addresses",
                         &WebhooksConfig::allow_private));
    b.push_back(webhooks.integer("webhooks.disable_after",
                                 "Failed delivery attempts in a row that disable a webhook",
                                 &WebhooksConfig::disable_after, 1, 1000000));
    b.push_back(webhooks.integer("webhooks.max_attempts",
                                 "Attempts of one delivery before it is dead-lettered",
                                 &WebhooksConfig::max_attempts, 1, 100));
    b.push_back(webhooks.integer("webhooks.concurrency", "Webhooks one process delivers to at once",
                                 &WebhooksConfig::concurrency, 1, 64));
    b.push_back(webhooks.integer("webhooks.connect_timeout_ms",
                                 "Connect timeout of a delivery attempt",
                                 &WebhooksConfig::connect_timeout_ms, 100, 600000));
    b.push_back(webhooks.integer("webhooks.timeout_ms",
                                 "A delivery attempt taking longer fails (and is retried)",
                                 &WebhooksConfig::timeout_ms, 100, 600000));
    b.push_back(imports.integer("imports.max_bytes",
                                "Largest body of an import (POST /v1/imports); past it a 413",
                                &ImportsConfig::max_bytes, 1, 1LL << 40));
    b.push_back(imports.integer("imports.max_running_per_key",
                                "Imports one API key may run at once in a process; past it a 429",
                                &ImportsConfig::max_running_per_key, 1, 1000));
    b.push_back(imports.integer("imports.max_in_flight",
                                "Rows of one import sent to the processor and not answered yet",
                                &ImportsConfig::max_in_flight, 1, 100000));
    b.push_back(imports.integer("imports.max_row_bytes",
                                "Longest row of an import; a longer one is a row error",
                                &ImportsConfig::max_row_bytes, 64, 16 * 1024 * 1024));
    b.push_back(imports.integer(
        "imports.abandoned_after_s",
        "An import running with no event for this long (its process died mid-upload) is "
        "recorded failed by the workers",
        &ImportsConfig::abandoned_after_s, 1, 7 * 86400));
    b.push_back(readiness.integer("readiness.min_free_bytes",
                                  "/readyz is degraded while data_dir's file system has fewer free "
                                  "bytes (0: never)",
                                  &ReadinessConfig::min_free_bytes, 0, 1LL << 62));
    return b;
  }();
  return all;
}

const Binding& find_by_key(const std::string& key, std::string_view source) {
  for (const auto& b : bindings()) {
    if (b.option.key == key) return b;
  }
  throw ConfigError(
      key, "unknown setting (from " + std::string(source) + "); `cauce config --print` lists them");
}

// Flattens {"http": {"port": 8080}} into ("http.port", "8080").
void flatten(const rapidjson::Value& value, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>& out) {
  if (value.IsObject()) {
    for (const auto& member : value.GetObject()) {
      const std::string name(member.name.GetString(), member.name.GetStringLength());
      flatten(member.value, prefix.empty() ? name : prefix + "." + name, out);
    }
    return;
  }
  std::string text;
  if (value.IsString()) {
    text.assign(value.GetString(), value.GetStringLength());
  } else if (value.IsBool()) {
    text = value.GetBool() ? "true" : "false";
  } else if (value.IsInt64()) {
    text = std::to_string(value.GetInt64());
  } else if (value.IsUint64()) {
    text = std::to_string(value.GetUint64());
  } else if (value.IsArray()) {
    for (const auto& item : value.GetArray()) {
      if (!item.IsString()) throw ConfigError(prefix, "expected a list of strings");
      text += (text.empty() ? "" : ",") + std::string(item.GetString(), item.GetStringLength());
    }
  } else {
    throw ConfigError(prefix, "expected a string, integer, boolean or list of strings");
  }
  out.emplace_back(prefix, std::move(text));
}

std::vector<std::pair<std::string, std::string>> read_config_file(
    const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("config", "cannot read config file " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  if (doc.HasParseError()) {
    throw ConfigError("config", path.string() + " is not valid JSON at offset " +
                                    std::to_string(doc.GetErrorOffset()) + ": " +
                                    rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) throw ConfigError("config", path.string() + " must hold a JSON object");
  std::vector<std::pair<std::string, std::string>> out;
  flatten(doc, "", out);
  return out;
}

std::string read_secret_file(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(key, "cannot read " + path);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace

const std::vector<ConfigOption>& config_options() {
  static const std::vector<ConfigOption> all = [] {
    std::vector<ConfigOption> out;
    for (const auto& b : bindings()) out.push_back(b.option);
    return out;
  }();
  return all;
}

namespace {

// backups.copy_to is neither the data dir, nor inside it, nor around it (symlinks resolved as far
// as the path exists): a copy there is lost with the data dir, and the copies' retention would
// take the local backups for copies.
void check_copy_to(const Config& config) {
  namespace fs = std::filesystem;
  if (config.backups.copy_to.empty()) return;
  const auto resolved = [](const std::string& text) {
    std::error_code ec;
    auto p = fs::weakly_canonical(fs::absolute(text), ec);
    if (ec) p = fs::absolute(text).lexically_normal();
    return p.has_filename() || !p.has_relative_path() ? p : p.parent_path();  // no trailing '/'
  };
  const auto within = [](const fs::path& inner, const fs::path& outer) {
    return std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end()).first ==
           outer.end();
  };
  const auto copy_to = resolved(config.backups.copy_to);
  const auto data_dir = resolved(config.data_dir);
  if (within(copy_to, data_dir) || within(data_dir, copy_to)) {
    throw ConfigError("backups.copy_to",
                      "is the data dir, inside it or around it (" + copy_to.string() +
                          ", data_dir " + data_dir.string() +
                          "): a copy there is lost with the data dir; name a directory on "
                          "another mount");
  }
}

void check_readable(const std::string& key, const std::string& path) {
  if (path.empty()) return;
  if (!std::ifstream(path, std::ios::binary)) throw ConfigError(key, "cannot read " + path);
}

// The Kafka settings that only make sense together: SASL settings with a sasl_* protocol, TLS
// files with ssl or sasl_ssl, a client certificate with its key. Files are read now, so that a
// wrong path stops start-up naming its setting instead of failing at the first connection.
void check_kafka_security(const KafkaConfig& kafka) {
  const auto& protocol = kafka.security_protocol;
  const bool sasl = protocol == "sasl_plaintext" || protocol == "sasl_ssl";
  const bool tls = protocol == "ssl" || protocol == "sasl_ssl";
  if (sasl && kafka.sasl_username.empty()) {
    throw ConfigError("kafka.sasl_username",
                      "must be set when kafka.security_protocol is " + protocol);
  }
  if (sasl && kafka.sasl_password.empty()) {
    throw ConfigError("kafka.sasl_password_file",
                      "must name a file holding the password (or set CAUCE_KAFKA_SASL_PASSWORD) "
                      "when kafka.security_protocol is " +
                          protocol);
  }
  if (!sasl && (!kafka.sasl_username.empty() || !kafka.sasl_password.empty())) {
    throw ConfigError(
        kafka.sasl_username.empty() ? "kafka.sasl_password_file" : "kafka.sasl_username",
        "is set but kafka.security_protocol is " + protocol +
            " (sasl_plaintext or sasl_ssl authenticate)");
  }
  const std::pair<const char*, const std::string*> files[] = {
      {"kafka.ssl_ca_file", &kafka.ssl_ca_file},
      {"kafka.ssl_certificate_file", &kafka.ssl_certificate_file},
      {"kafka.ssl_key_file", &kafka.ssl_key_file}};
  for (const auto& [key, path] : files) {
    if (path->empty()) continue;
    if (!tls) {
      throw ConfigError(key, std::string("is set but kafka.security_protocol is ") + protocol +
                                 " (ssl or sasl_ssl use TLS)");
    }
    check_readable(key, *path);
  }
  if (kafka.ssl_certificate_file.empty() != kafka.ssl_key_file.empty()) {
    throw ConfigError(
        kafka.ssl_key_file.empty() ? "kafka.ssl_key_file" : "kafka.ssl_certificate_file",
        "a client certificate needs both kafka.ssl_certificate_file and "
        "kafka.ssl_key_file");
  }
}

void check_postgres_tls(const PostgresConfig& pg) {
  if (pg.sslmode.starts_with("verify-") && pg.sslrootcert.empty()) {
    throw ConfigError("postgres.sslrootcert",
                      "must name the CA file the server's certificate is verified with when "
                      "postgres.sslmode is " +
                          pg.sslmode);
  }
  if (!pg.sslrootcert.empty() && pg.sslmode == "disable") {
    throw ConfigError("postgres.sslrootcert", "is set but postgres.sslmode is disable");
  }
  check_readable("postgres.sslrootcert", pg.sslrootcert);
}

}  // namespace

Config load_config(const ConfigSources& sources) {
  Config config;
  if (sources.file) {
    for (const auto& [key, value] : read_config_file(*sources.file)) {
      const auto& b = find_by_key(key, sources.file->string());
      if (b.option.secret) {
        throw ConfigError(key, "is a secret and is read only from " + b.option.env +
                                   " or a file setting, never from the config file");
      }
      b.set(config, value);
    }
  }
  for (const auto& [name, value] : sources.env) {
    const auto it = std::find_if(bindings().begin(), bindings().end(),
                                 [&](const Binding& b) { return b.option.env == name; });
    if (it == bindings().end()) {
      throw ConfigError(name,
                        "unknown environment variable; `cauce config --print` lists the "
                        "settings");
    }
    it->set(config, value);
  }
  for (const auto& [key, value] : sources.flags) {
    const auto& b = find_by_key(key, "command line");
    if (b.option.secret) {
      throw ConfigError(key, "is a secret and is read only from " + b.option.env +
                                 " or a file setting, never from the command line");
    }
    b.set(config, value);
  }
  if (config.postgres.password.empty() && !config.postgres.password_file.empty()) {
    config.postgres.password =
        Secret(read_secret_file("postgres.password_file", config.postgres.password_file));
  }
  if (config.kafka.sasl_password.empty() && !config.kafka.sasl_password_file.empty()) {
    config.kafka.sasl_password =
        Secret(read_secret_file("kafka.sasl_password_file", config.kafka.sasl_password_file));
  }
  check_copy_to(config);
  check_kafka_security(config.kafka);
  check_postgres_tls(config.postgres);
  if (config.http.tls_certificate_file.empty() != config.http.tls_key_file.empty()) {
    const bool key_missing = config.http.tls_key_file.empty();
    throw ConfigError(key_missing ? "http.tls_key_file" : "http.tls_certificate_file",
                      std::string("must be set with ") +
                          (key_missing ? "http.tls_certificate_file" : "http.tls_key_file") +
                          " (both or neither)");
  }
  return config;
}

std::vector<std::pair<std::string, std::string>> cauce_environment() {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view var(*entry);
    const auto eq = var.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string name(var.substr(0, eq));
    if (!name.starts_with("CAUCE_") || name == "CAUCE_CONFIG") continue;
    out.emplace_back(name, std::string(var.substr(eq + 1)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> describe(const Config& config) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& b : bindings()) out.emplace_back(b.option.key, b.get(config));
  return out;
}

void use_topic_prefix(KafkaConfig& kafka, const std::string& prefix) {
  kafka.commands_topic = prefix + ".commands";
  kafka.events_topic = prefix + ".events";
  kafka.replies_topic = prefix + ".replies";
  kafka.outcomes_topic = prefix + ".outcomes";
  kafka.snapshots_topic = prefix + ".snapshots";
  kafka.dead_letters_topic = prefix + ".dead-letters";
  kafka.jobs_dlq_topic = prefix + ".jobs.dlq";
}

}  // namespace cauce::core
