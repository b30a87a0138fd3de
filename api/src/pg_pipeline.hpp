#pragma once

// PostgreSQL reads in libpq's pipeline mode, on the HTTP server's I/O threads (api/README.md
// "Reads at scale").
//
// Each connection sends queries without waiting for the answers to earlier ones, and reads the
// answers as its socket becomes readable, all on a strand of the server's io_context: a read
// takes no thread of its own, no hand-over between threads and no blocking poll, and queries
// that arrive together leave in one write and come back in one read.
//
// It is an accelerator, never the only way to an answer: whenever a connection cannot answer
// (not connected yet, too many queries in flight, the connection lost or silent, a query aborted
// by another's error), `done` gets nullopt and the caller takes the blocking path, which answers
// or maps the failure (a 503 while PostgreSQL is down). Reads are idempotent, so running one
// again there is harmless. A statement that failed is an answer (PgRows::ok() false), so that
// the caller can tell a statement timeout, which running it again would only double, from the
// rest.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct pg_result;  // libpq's PGresult

namespace boost::asio {
class io_context;
}

namespace cauce::api {

// One answer (owns libpq's result): its rows, or the statement's error.
class PgRows {
 public:
  explicit PgRows(pg_result* result);
  // False when the statement failed; then sqlstate() names why (57014: the statement timeout).
  bool ok() const;
  std::string_view sqlstate() const;
  int size() const;
  // A column's text; empty for NULL.
  std::string_view text(int row, int column) const;

 private:
  struct Clear {
    void operator()(pg_result* result) const;
  };
  std::unique_ptr<pg_result, Clear> result_;
};

struct PgStatement {
  std::string name;
  std::string sql;
};

struct PgPipelineOptions {
  std::string conninfo = {};                       // holds the password: never logged
  std::vector<PgStatement> statements = {};        // prepared on every connection as it opens
  std::chrono::milliseconds statement_timeout{0};  // 0: none
  // Queries one connection carries at once at most; past it the caller takes the blocking path.
  std::size_t max_in_flight = 512;
  // The oldest query unanswered this long: the connection is taken for dead and dropped (its
  // queries go the blocking way) and opened again, with backoff.
  std::chrono::milliseconds answer_timeout{5000};
  // Where connections are opened (blocking: connect, prepare), off the I/O threads.
  std::function<void(std::function<void()>)> open_on = {};
};

class PgPipelines {
 public:
  // `connections` pipelined connections on `io`, opened at once in the background.
  PgPipelines(boost::asio::io_context& io, PgPipelineOptions options, int connections);
  ~PgPipelines();
  PgPipelines(const PgPipelines&) = delete;
  PgPipelines& operator=(const PgPipelines&) = delete;

  using Done = std::function<void(std::optional<PgRows>)>;
  // Runs the prepared `statement` with text `params` on one of the connections (in turn). Any
  // thread; `done` runs once, on an I/O thread, with the rows or nullopt (take the blocking path).
  void query(std::string_view statement, std::vector<std::string> params, Done done);

  // Connections ready for queries right now.
  int ready() const;
  // Queries answered here so far, and those handed back (nullopt) for the blocking path.
  std::uint64_t answered() const;
  std::uint64_t handed_back() const;

 private:
  class Connection;
  struct Shared;  // the options and counters, which outlive this object while handlers run
  std::shared_ptr<Shared> shared_;
  std::vector<std::shared_ptr<Connection>> connections_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace cauce::api
