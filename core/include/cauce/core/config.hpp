#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cauce::core {

// A value that must never reach a log line, an error message or `cauce config --print`.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}

  const std::string& reveal() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }
  std::string masked() const { return value_.empty() ? "" : "********"; }

 private:
  std::string value_;
};

struct HttpConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 picks a free port; the bound port is logged
  int threads = 4;
  std::size_t body_limit_bytes = 1024 * 1024;
  int idle_timeout_s = 30;    // a keep-alive connection with no request is closed after this
  int header_timeout_s = 10;  // from a request's first byte to the end of its headers
  int body_timeout_s = 30;    // to receive a request's body
  int drain_timeout_s = 10;   // on shutdown, in-flight requests get this long to finish
  // On SIGTERM, /readyz answers 503 this long before the listener closes, so that a load
  // balancer stops sending new requests here first (a second signal cuts it short).
  int shutdown_grace_ms = 1000;
  int max_connections = 10000;  // past this a new connection gets a 503 and is closed
  // Bodies of at least this many bytes are gzipped for clients that accept it; 0: never.
  int gzip_min_bytes = 1024;
  // Read queries waiting for a PostgreSQL thread at most; past it a 503 with Retry-After.
  int max_queued_queries = 1024;
  // Requests per second per API key, by its role (token bucket, bursts of 2 s); 0 = no limit.
  int rate_limit_reader = 1000;
  int rate_limit_operator = 1000;
  int rate_limit_admin = 100;
  // Origins browsers may call from (CORS), e.g. https://desk.example.org; empty: none.
  std::vector<std::string> cors_origins;
  // Send Strict-Transport-Security on HTTPS answers: cauce's own TLS, or X-Forwarded-Proto:
  // https from a trusted proxy (with neither TLS nor trusted proxies, on every answer).
  bool hsts = false;
  // cauce's own listener over TLS (1.2 and later): a PEM certificate (chain) file and its PEM
  // private key file, both or neither; reloaded from the same paths on SIGHUP. Empty: plain HTTP.
  std::string tls_certificate_file;
  std::string tls_key_file;
  // Reverse proxies (CIDRs, IPv4 or IPv6) whose X-Forwarded-For and X-Forwarded-Proto are
  // believed; from any other peer those headers are ignored. Canonical text ("10.0.0.0/8").
  std::vector<std::string> trusted_proxies;
};

struct KafkaConfig {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string commands_topic = "cauce.commands";
  std::string events_topic = "cauce.events";
  std::string replies_topic = "cauce.replies";
  std::string outcomes_topic = "cauce.outcomes";          // remembered rejections (compacted)
  std::string dead_letters_topic = "cauce.dead-letters";  // records no one could decode
  std::string jobs_dlq_topic = "cauce.jobs.dlq";          // jobs that failed for good
  std::string snapshots_topic = "cauce.snapshots";        // processor state (compacted)
  int partitions = 12;
  int replication_factor = 1;
  // min.insync.replicas of the topics cauce creates, at most their replication factor: with the
  // producers' acks=all, an acknowledged record is on this many replicas (2 of 3 survives one
  // broker's loss; the partition refuses writes rather than keep one copy).
  int min_insync_replicas = 2;
  int request_timeout_ms = 5000;
  // Codec of every batch cauce produces (none, gzip, snappy, lz4, zstd); consumers read any.
  std::string compression = "zstd";
  // How every client of cauce reaches the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl.
  std::string security_protocol = "plaintext";
  // With sasl_*: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN, as this user with this password.
  std::string sasl_mechanism = "SCRAM-SHA-512";
  std::string sasl_username;
  Secret sasl_password;            // CAUCE_KAFKA_SASL_PASSWORD or sasl_password_file only
  std::string sasl_password_file;  // a file holding the password (first line)
  // With ssl or sasl_ssl: the PEM CA bundle brokers' certificates are verified with (empty: the
  // system's), and for mutual TLS a PEM client certificate with its unencrypted key.
  std::string ssl_ca_file;
  std::string ssl_certificate_file;
  std::string ssl_key_file;
};

// Names every cauce topic "<prefix>.<role>" (commands, events, replies, outcomes, snapshots,
// dead-letters, jobs.dlq): one set of topics per test or benchmark run on a shared broker.
void use_topic_prefix(KafkaConfig& kafka, const std::string& prefix);

struct PostgresConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5432;
  std::string database = "cauce";
  std::string user = "cauce";
  Secret password;            // CAUCE_POSTGRES_PASSWORD or password_file only
  std::string password_file;  // a file holding the password (first line)
  int connect_timeout_s = 2;  // per connection attempt
  int pool_size = 8;
  // Connections in libpq's pipeline mode that read contacts by id on the HTTP I/O threads
  // (api/src/pg_pipeline.hpp), besides the pool; 0: every read on the pool's threads.
  int read_pipelines = 2;
  int statement_timeout_ms = 5000;  // a query of the API running longer is cancelled (503)
  std::string migrations_dir;       // empty: the migrations compiled into the binary
  // libpq's sslmode: disable, allow, prefer, require, verify-ca or verify-full. The verify modes
  // check the server's certificate against sslrootcert (a PEM CA file), which they need.
  std::string sslmode = "prefer";
  std::string sslrootcert;
};

// The write side: how the processor batches and how long the API waits for a reply.
struct CommandsConfig {
  int batch_max = 1000;  // commands decided in one Kafka transaction at most
  // A batch waits this long for more commands before committing. 0 (the default): a lane takes
  // what queued while its previous transaction committed, which under load is a full batch
  // already; lingering only added its wait to every command (bench/README.md, commands).
  int linger_ms = 0;
  // Transactions a processor keeps in flight: each has its own transactional producer and
  // thread, and owns the partitions p with p % transactions_in_flight == its number.
  int transactions_in_flight = 2;
  int reply_timeout_ms = 4000;  // the API answers 503 when no reply came within this
  // Names this process's replies partition and its processor's transactional id. Give each
  // process a stable one (e.g. its host or pod name) so that after a crash the restarted process
  // aborts its own open transaction at once. Empty: host-pid-random (replies), a fresh id per
  // start (processor).
  std::string instance_id;
  std::string processor_group = "cauce-processor";  // consumer group + transactional id prefix
  // A partition's state is snapshotted after this many new events (0: never), so that the next
  // owner replays only the events after the snapshot.
  int snapshot_every_events = 100000;
};

// The read side: the projector's batches, queries waiting for a position, live notifications.
struct ProjectionsConfig {
  std::string group = "cauce-projector";  // consumer group of the projectors
  std::string name = "main";              // the projection's name in projection_checkpoints
  int batch_max = 5000;                   // events applied in one PostgreSQL transaction at most
  int min_position_wait_ms = 5000;        // Cauce-Min-Position waits this long, then 503
  int max_lag_events = 10000;             // /readyz is 503 while the projector lags more
  int notifications_retention_h = 168;    // notifications older than this are deleted (7 days)
  int heartbeat_s = 15;                   // SSE comment / WebSocket ping interval
  int client_buffer = 1000;               // notifications queued for one slow client, at most
  int max_stream_clients = 20000;         // SSE + WebSocket clients of one process, at most
  int max_stream_clients_per_key = 100;   // of one API key, at most
  int replay_batch_max = 20000;           // a replay's batches (larger: it writes no notifications)
  int replay_grace_s = 3600;              // a replaced generation is dropped this long after
};

// Report downloads (workers/download.hpp): limits and the SSRF guard.
struct DownloadConfig {
  bool allow_private = false;  // loopback, private, link-local, CGNAT sources (local use, tests)
  int connect_timeout_ms = 5000;
  int total_timeout_ms = 60000;
  int max_redirects = 5;
  std::int64_t max_bytes = 50LL * 1024 * 1024;
};

// The job workers (workers/README.md): runners, retries, leases.
struct WorkersConfig {
  int concurrency = 2;                  // jobs one process runs at once
  int max_attempts = 8;                 // per round; then the job fails and goes to the DLQ
  int backoff_base_ms = 1000;           // full jitter: a delay in [0, min(cap, base * 2^(n-1))]
  int backoff_cap_ms = 300000;          // 5 min
  int lease_ms = 30000;                 // a claimed job not renewed for this long runs elsewhere
  int poll_ms = 500;                    // how often an idle runner looks for due jobs
  std::string group = "cauce-workers";  // consumer group reading the jobs' events
};

// Scheduled backups and their retention.
struct BackupsConfig {
  int interval_s = 1800;       // a backup every 30 min (0: only on request)
  int retention_h = 24 * 7;    // complete backups older than this are deleted
  int export_timeout_s = 600;  // the log export of one backup must finish within this
  // The off-box copy (workers/README.md "Copies off the box"): an absolute directory on another
  // mount each completed backup is copied into (empty: none), and how many copies it keeps.
  std::string copy_to;
  int copy_keep = 7;
  // One copy (and its retention) must finish within this: a mount that hangs fails the attempt.
  int copy_timeout_s = 1800;
};

// Alert deadlines (workers/README.md "Deadlines"): an open alert not acknowledged within its
// level's deadline escalates itself one level. 0: that level has none.
struct AlertsConfig {
  int deadline_critical_s = 300;
  int deadline_warning_s = 1800;
  int deadline_info_s = 0;
};

// Scheduled reports (workers/README.md "Scheduled reports").
struct ReportsConfig {
  // The secrets report downloads may send, one file per name (`bearer <token>` or
  // `basic <user>:<password>`, and `origins https://host[:port],...`: where it may be sent); a
  // schedule's source_auth names one. Empty: none configured.
  std::string source_auth_dir;
  int schedule_min_every_s = 60;                     // the shortest `every` a schedule may have
  std::string zoneinfo_dir = "/usr/share/zoneinfo";  // the tz database (TZif files, tzdata)
};

// Signed webhooks (api/README.md "Webhooks", workers/README.md "Webhook deliveries").
struct WebhooksConfig {
  bool allow_private = false;  // URLs resolving to loopback, private, link-local, CGNAT addresses
  int disable_after = 10;      // failed delivery attempts in a row that disable a webhook
  int max_attempts = 8;        // attempts of one delivery before it is dead-lettered
  int concurrency = 2;         // webhooks one process delivers to at once
  int connect_timeout_ms = 5000;
  int timeout_ms = 10000;  // one delivery attempt, connect to last byte
};

// Bulk imports (POST /v1/imports, api/README.md): the body's limit, how many run per API key,
// how many of an import's rows are in flight to the processor at once, the longest row.
struct ImportsConfig {
  std::int64_t max_bytes = 100LL * 1024 * 1024;  // a larger body is a 413
  int max_running_per_key = 2;                   // the next import of that key is a 429
  int max_in_flight = 512;                       // rows sent and not answered yet, per import
  int max_row_bytes = 64 * 1024;                 // a longer row is a row error
  // An import still running with no event for this long was left by a process that died
  // mid-upload (a live one records progress every second and ends an upload silent for
  // http.body_timeout_s): the workers record it failed.
  int abandoned_after_s = 600;
};

// What /readyz reports degraded besides its dependencies (api/README.md "Readiness").
struct ReadinessConfig {
  // Free bytes of data_dir's file system (statvfs f_bavail) below which /readyz is degraded.
  std::int64_t min_free_bytes = 1024LL * 1024 * 1024;
};

struct Config {
  std::string data_dir = ".data";
  std::string log_level = "info";
  std::vector<std::string> roles = {"api", "processor", "projector", "workers"};
  int startup_timeout_s = 30;  // how long start-up retries an unreachable Kafka/PostgreSQL
  HttpConfig http;
  KafkaConfig kafka;
  PostgresConfig postgres;
  CommandsConfig commands;
  ProjectionsConfig projections;
  DownloadConfig download;
  WorkersConfig workers;
  BackupsConfig backups;
  AlertsConfig alerts;
  ReportsConfig reports;
  WebhooksConfig webhooks;
  ImportsConfig imports;
  ReadinessConfig readiness;
};

// Where the layers come from, lowest priority first: defaults < file < env < flags.
struct ConfigSources {
  std::optional<std::filesystem::path> file;               // JSON, nested objects
  std::vector<std::pair<std::string, std::string>> env;    // every CAUCE_* variable
  std::vector<std::pair<std::string, std::string>> flags;  // dotted key -> value
};

// One configurable setting: its dotted key ("http.port"), environment variable
// (CAUCE_HTTP_PORT), flag (--http-port) and help text.
struct ConfigOption {
  std::string key;
  std::string env;
  std::string flag;
  std::string help;
  bool secret = false;
};

const std::vector<ConfigOption>& config_options();

// Builds the effective configuration. Throws ConfigError naming the key for an unknown key,
// a value of the wrong type or out of range, or a secret given anywhere but env or a file.
Config load_config(const ConfigSources& sources);

// The CAUCE_* variables of this process's environment (CAUCE_CONFIG excluded: it names the
// file and is read by the caller).
std::vector<std::pair<std::string, std::string>> cauce_environment();

// key -> value for every option, secrets masked. For `cauce config --print` and the start log.
std::vector<std::pair<std::string, std::string>> describe(const Config& config);

}  // namespace cauce::core
