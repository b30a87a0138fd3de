#pragma once

// PostgreSQL adapter plumbing (libpqxx). Only adapter .cpp files include this header.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include <cauce/core/config.hpp>
#include <cauce/core/errors.hpp>

namespace cauce::core {

// libpq keyword/value connection string. Holds the password: never log it.
std::string postgres_conninfo(const PostgresConfig& config);

// Opens one connection, mapping failures to a retryable DependencyError whose message carries
// no secret.
std::unique_ptr<pqxx::connection> connect_postgres(const std::string& conninfo);

// Opens one connection, retrying with backoff until `timeout` has passed (start-up).
std::unique_ptr<pqxx::connection> connect_postgres_with_retry(const std::string& conninfo,
                                                              std::chrono::seconds timeout);

// A bounded pool of connections. acquire() waits up to the acquire timeout for a free slot;
// a connection that broke while leased is dropped, not returned. With a statement timeout, a
// statement running longer is cancelled by PostgreSQL and becomes a retryable DependencyError
// (503 at the HTTP boundary) instead of holding a connection and a thread.
class PgPool {
 public:
  PgPool(std::string conninfo, std::size_t max_size,
         std::chrono::milliseconds acquire_timeout = std::chrono::seconds(2),
         std::chrono::milliseconds statement_timeout = std::chrono::milliseconds(0));
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // Runs fn(pqxx::connection&) on a pooled connection. A broken connection (PostgreSQL down,
  // restarted) becomes a retryable DependencyError and the connection is discarded.
  // Connections lent out right now (cauce_pg_pool_in_use).
  std::size_t in_use() const;

  template <typename Fn>
  auto with_connection(Fn&& fn) {
    Lease lease = acquire();
    try {
      return fn(*lease.connection);
    } catch (const pqxx::broken_connection& e) {
      lease.broken = true;
      throw DependencyError("postgres", "connection to PostgreSQL lost", true);
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "57014") throw;  // query_canceled: the statement timeout
      throw DependencyError("postgres", "a query ran past postgres.statement_timeout_ms", true);
    }
  }

 private:
  struct Lease {
    PgPool* pool = nullptr;
    std::unique_ptr<pqxx::connection> connection;
    bool broken = false;
    Lease(PgPool* p, std::unique_ptr<pqxx::connection> c) : pool(p), connection(std::move(c)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
  };

  Lease acquire();
  void release(std::unique_ptr<pqxx::connection> connection, bool broken);

  std::string conninfo_;
  std::size_t max_size_;
  std::chrono::milliseconds acquire_timeout_;
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t leased_ = 0;
};

}  // namespace cauce::core
