#include <algorithm>
#include <string_view>
#include <thread>

#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>

namespace cauce::core {
namespace {

std::string quote(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// Which settings a connection failure points at, when it is a refusal rather than an outage;
// empty otherwise. Matched on libpq's and the server's messages (their wording is stable).
std::string refused_settings(std::string_view reason) {
  const auto has = [&](std::string_view text) {
    return reason.find(text) != std::string_view::npos;
  };
  if (has("password authentication failed") || has("no password supplied")) {
    return "postgres.user, postgres.password_file";
  }
  if (has("no pg_hba.conf entry")) return "postgres.user, postgres.sslmode";
  if (has("certificate verify failed") || has("root certificate file") ||
      has("does not match host name")) {
    return "postgres.sslrootcert, postgres.sslmode, postgres.host";
  }
  // Not every TLS error: an EOF or a reset mid-handshake while the server restarts is an outage.
  if (has("does not support SSL")) return "postgres.sslmode";
  return {};
}

}  // namespace

std::string postgres_conninfo(const PostgresConfig& config) {
  std::string out = "host=" + quote(config.host) + " port=" + std::to_string(config.port) +
                    " dbname=" + quote(config.database) + " user=" + quote(config.user) +
                    " connect_timeout=" + std::to_string(config.connect_timeout_s) +
                    " application_name='cauce'";
  if (!config.password.empty()) out += " password=" + quote(config.password.reveal());
  out += " sslmode=" + config.sslmode;
  if (!config.sslrootcert.empty()) out += " sslrootcert=" + quote(config.sslrootcert);
  return out;
}

std::unique_ptr<pqxx::connection> connect_postgres(const std::string& conninfo) {
  try {
    return std::make_unique<pqxx::connection>(conninfo);
  } catch (const pqxx::broken_connection& e) {
    // libpq's message names host and port and the reason; it never contains the password.
    std::string reason = e.what();
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
    if (auto settings = refused_settings(reason); !settings.empty()) {
      throw RefusedError("postgres", "PostgreSQL refused the connection: " + reason,
                         std::move(settings));
    }
    throw DependencyError("postgres", "cannot connect to PostgreSQL: " + reason, true);
  }
}

std::unique_ptr<pqxx::connection> connect_postgres_with_retry(const std::string& conninfo,
                                                              std::chrono::seconds timeout) {
  const Logger log("postgres");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto backoff = std::chrono::milliseconds(100);
  for (int attempt = 1;; ++attempt) {
    try {
      return connect_postgres(conninfo);
    } catch (const DependencyError& e) {
      if (!e.is_retryable() || std::chrono::steady_clock::now() + backoff >= deadline) throw;
      log.warn("PostgreSQL not reachable yet, retrying",
               {{"attempt", attempt}, {"error", e.what()}});
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }
}

PgPool::PgPool(std::string conninfo, std::size_t max_size,
               std::chrono::milliseconds acquire_timeout,
               std::chrono::milliseconds statement_timeout)
    : conninfo_(std::move(conninfo)), max_size_(max_size), acquire_timeout_(acquire_timeout) {
  if (statement_timeout.count() > 0) {
    conninfo_ +=
        " options='-c statement_timeout=" + std::to_string(statement_timeout.count()) + "'";
  }
}

PgPool::Lease::~Lease() {
  if (pool != nullptr) pool->release(std::move(connection), broken);
}

std::size_t PgPool::in_use() const {
  const std::lock_guard lock(mutex_);
  return leased_;
}

PgPool::Lease PgPool::acquire() {
  std::unique_lock lock(mutex_);
  if (!freed_.wait_for(lock, acquire_timeout_, [this] { return leased_ < max_size_; })) {
    throw DependencyError("postgres", "no PostgreSQL connection free within the timeout", true);
  }
  ++leased_;
  if (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(connection));
  }
  lock.unlock();
  try {
    return Lease(this, connect_postgres(conninfo_));
  } catch (...) {
    release(nullptr, true);
    throw;
  }
}

void PgPool::release(std::unique_ptr<pqxx::connection> connection, bool broken) {
  {
    const std::lock_guard lock(mutex_);
    --leased_;
    if (connection && !broken && connection->is_open()) idle_.push_back(std::move(connection));
  }
  freed_.notify_one();
}

}  // namespace cauce::core
