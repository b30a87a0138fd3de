#include "pg_pipeline.hpp"

#include <cerrno>
#include <deque>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <libpq-fe.h>
#include <unistd.h>

#include <cauce/core/backoff.hpp>
#include <cauce/core/log.hpp>

namespace cauce::api {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

PgRows::PgRows(pg_result* result) : result_(result) {}

void PgRows::Clear::operator()(pg_result* result) const { PQclear(result); }

bool PgRows::ok() const { return PQresultStatus(result_.get()) == PGRES_TUPLES_OK; }

std::string_view PgRows::sqlstate() const {
  const char* code = PQresultErrorField(result_.get(), PG_DIAG_SQLSTATE);
  return code == nullptr ? std::string_view() : std::string_view(code);
}

int PgRows::size() const { return PQntuples(result_.get()); }

std::string_view PgRows::text(int row, int column) const {
  return {PQgetvalue(result_.get(), row, column),
          static_cast<std::size_t>(PQgetlength(result_.get(), row, column))};
}

namespace {

struct Finish {
  void operator()(PGconn* connection) const { PQfinish(connection); }
};
using Conn = std::unique_ptr<PGconn, Finish>;

std::string trimmed(const char* message) {
  std::string text = message == nullptr ? "" : message;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// A connection in pipeline mode with the statements prepared, or the reason there is none
// (libpq's message: host, port and cause, never the password).
struct Opened {
  Conn connection;
  std::string error;
};

Opened open(const PgPipelineOptions& options) {
  Conn c(PQconnectdb(options.conninfo.c_str()));
  if (!c) return {nullptr, "out of memory"};
  if (PQstatus(c.get()) != CONNECTION_OK) return {nullptr, trimmed(PQerrorMessage(c.get()))};
  const auto run = [&c](PGresult* raw) {
    const PgRows result(raw);
    return PQresultStatus(raw) == PGRES_COMMAND_OK ? std::string()
                                                   : trimmed(PQresultErrorMessage(raw));
  };
  if (options.statement_timeout.count() > 0) {
    const auto set = "SET statement_timeout = " + std::to_string(options.statement_timeout.count());
    if (auto error = run(PQexec(c.get(), set.c_str())); !error.empty()) return {nullptr, error};
  }
  for (const auto& s : options.statements) {
    auto error = run(PQprepare(c.get(), s.name.c_str(), s.sql.c_str(), 0, nullptr));
    if (!error.empty()) return {nullptr, "preparing " + s.name + ": " + error};
  }
  if (PQsetnonblocking(c.get(), 1) != 0 || PQenterPipelineMode(c.get()) != 1) {
    return {nullptr, trimmed(PQerrorMessage(c.get()))};
  }
  return {std::move(c), ""};
}

}  // namespace

struct PgPipelines::Shared {
  explicit Shared(PgPipelineOptions o) : options(std::move(o)) {}
  const PgPipelineOptions options;
  std::atomic<std::uint64_t> answered{0};
  std::atomic<std::uint64_t> handed_back{0};
};

// One pipelined connection. Everything but query() and ready() runs on its strand.
class PgPipelines::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, std::shared_ptr<Shared> shared)
      : shared_(std::move(shared)),
        options_(shared_->options),
        strand_(asio::make_strand(io)),
        retry_(io),
        watchdog_(io) {}

  ~Connection() { close(); }

  void start() {
    asio::post(strand_, [self = shared_from_this()] { self->open_soon(); });
  }

  // Stops opening connections (the process is stopping).
  void shut() { shut_.store(true); }

  bool ready() const { return ready_.load(std::memory_order_relaxed); }

  void query(std::string_view statement, std::vector<std::string> params, Done done) {
    asio::post(strand_, [self = shared_from_this(), statement = std::string(statement),
                         params = std::move(params), done = std::move(done)]() mutable {
      self->send(statement, params, std::move(done));
    });
  }

 private:
  struct InFlight {
    Done done;  // wrapped: counts what it is given
    std::optional<PgRows> rows;
    bool answered = false;  // its result came; the NULL that ends it is next
    Clock::time_point sent;
  };

  void send(const std::string& statement, const std::vector<std::string>& params, Done done) {
    done = [shared = shared_, done = std::move(done)](std::optional<PgRows> rows) {
      ++(rows ? shared->answered : shared->handed_back);
      try {
        done(std::move(rows));
      } catch (const std::exception& e) {  // a responder must not throw: the strand goes on
        core::Logger("postgres").error("a pipelined read's answer threw", {{"error", e.what()}});
      }
    };
    if (!connection_ || in_flight_.size() >= options_.max_in_flight) {
      done(std::nullopt);
      return;
    }
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    if (PQsendQueryPrepared(connection_.get(), statement.c_str(), static_cast<int>(values.size()),
                            values.data(), nullptr, nullptr, 0) != 1) {
      done(std::nullopt);
      drop("sending a query: " + trimmed(PQerrorMessage(connection_.get())));
      return;
    }
    in_flight_.push_back({std::move(done), std::nullopt, false, Clock::now()});
    watch();
    // The queries posted together go out together: one Sync and one write after them.
    if (!sync_due_) {
      sync_due_ = true;
      asio::post(strand_, [self = shared_from_this(), generation = generation_] {
        if (generation == self->generation_) self->sync();
      });
    }
  }

  void sync() {
    sync_due_ = false;
    if (PQpipelineSync(connection_.get()) != 1) {
      drop("ending a pipeline: " + trimmed(PQerrorMessage(connection_.get())));
      return;
    }
    ++syncs_;
    flush();
    wait_readable();
  }

  // A wait re-arms the descriptor in Asio's epoll reactor (EPOLL_CTL_MOD), so bytes waiting
  // in the socket wake it even if they came first. Bytes already pulled into memory do not:
  // answers libpq read while a flush found the socket full, and under TLS, records OpenSSL
  // decrypted beyond what libpq asked for. So results are taken after a partial flush, and
  // under TLS a read goes on while it yields results.
  void flush() {
    if (!connection_) return;
    const int left = PQflush(connection_.get());
    if (left < 0) {
      drop("writing: " + trimmed(PQerrorMessage(connection_.get())));
      return;
    }
    if (left == 0) return;
    take_results();
    if (!writing_)
      wait(asio::posix::descriptor_base::wait_write, &Connection::writing_, &Connection::flush);
  }

  void wait_readable() {
    if (!connection_ || reading_ || (in_flight_.empty() && syncs_ == 0)) return;
    wait(asio::posix::descriptor_base::wait_read, &Connection::reading_, &Connection::read);
  }

  // Waits until the socket is ready for `type` (`armed` is set meanwhile), then runs `then`.
  void wait(asio::posix::descriptor_base::wait_type type, bool Connection::*armed,
            void (Connection::*then)()) {
    this->*armed = true;
    socket_->async_wait(
        type, asio::bind_executor(strand_, [self = shared_from_this(), generation = generation_,
                                            type, armed, then](auto error) {
          if (generation != self->generation_) return;
          (*self).*armed = false;
          if (error) {
            const bool read = type == asio::posix::descriptor_base::wait_read;
            return self->drop((read ? "waiting to read: " : "waiting to write: ") +
                              error.message());
          }
          ((*self).*then)();
        }));
  }

  void read() {
    if (!connection_) return;
    const bool tls = PQsslInUse(connection_.get()) == 1;
    for (int round = 0; round < 64; ++round) {  // bounded: other work shares this I/O thread
      if (PQconsumeInput(connection_.get()) != 1) {
        drop("reading: " + trimmed(PQerrorMessage(connection_.get())));
        return;
      }
      if (take_results() == 0 || !tls) break;
    }
    flush();  // a full socket may have been waiting on these reads
    wait_readable();
  }

  // Hands each query the results libpq has parsed for it, in the order they were sent; how many
  // results it took.
  int take_results() {
    if (!connection_) return 0;
    int taken = 0;
    int nulls = 0;  // in a row: two mean libpq has nothing more for now
    while ((!in_flight_.empty() || syncs_ > 0) && PQisBusy(connection_.get()) == 0 && nulls < 2) {
      PGresult* raw = PQgetResult(connection_.get());
      if (raw == nullptr) {
        ++nulls;
        if (!in_flight_.empty() && in_flight_.front().answered) {
          auto finished = std::move(in_flight_.front());
          in_flight_.pop_front();
          finished.done(std::move(finished.rows));
        }
        continue;
      }
      nulls = 0;
      ++taken;
      PgRows result(raw);
      switch (PQresultStatus(raw)) {
        case PGRES_PIPELINE_SYNC:
          --syncs_;
          break;
        case PGRES_FATAL_ERROR:  // the statement's own error: an answer, the caller decides
          if (Clock::now() >= next_failure_log_) {
            next_failure_log_ = Clock::now() + std::chrono::minutes(1);  // not one per query
            log_.warn("a pipelined read failed (logged once a minute)",
                      {{"error", trimmed(PQresultErrorMessage(raw))}});
          }
          [[fallthrough]];
        case PGRES_TUPLES_OK:
          if (!in_flight_.empty()) {
            in_flight_.front().rows = std::move(result);
            in_flight_.front().answered = true;
          }
          break;
        default:  // a query after an error in the same pipeline (aborted): handed back
          if (!in_flight_.empty()) in_flight_.front().answered = true;
          break;
      }
    }
    return taken;
  }

  // Arms the timer that finds a connection that stopped answering.
  void watch() {
    if (watching_) return;
    watching_ = true;
    const auto due = in_flight_.front().sent + options_.answer_timeout;
    watchdog_.expires_at(due);
    watchdog_.async_wait(asio::bind_executor(
        strand_, [self = shared_from_this(), generation = generation_](auto error) {
          if (error || generation != self->generation_) return;
          self->watching_ = false;
          if (self->in_flight_.empty()) return;
          if (self->in_flight_.front().sent + self->options_.answer_timeout <= Clock::now()) {
            return self->drop("no answer within " +
                              std::to_string(self->options_.answer_timeout.count()) + " ms");
          }
          self->watch();
        }));
  }

  // Gives up the connection: its queries go the blocking way, and a new one opens after a pause.
  void drop(const std::string& why) {
    if (!warned_) {
      warned_ = true;  // once per outage, not once per query
      log_.warn(
          "pipelined PostgreSQL reads lost their connection; reads take the blocking path "
          "until it is back",
          {{"reason", why}});
    }
    close();
    auto lost = std::move(in_flight_);
    in_flight_.clear();
    for (auto& q : lost) q.done(std::nullopt);
    retry_.expires_after(backoff_.next());
    retry_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](auto error) {
      if (!error) self->open_soon();
    }));
  }

  void close() {
    ++generation_;  // handlers of the old connection find they are stale
    ready_.store(false);
    if (socket_) {
      boost::system::error_code ignored;
      socket_->close(ignored);  // Asio's own descriptor; PQfinish closes libpq's
      socket_.reset();
    }
    connection_.reset();
    reading_ = writing_ = sync_due_ = watching_ = false;
    syncs_ = 0;
    watchdog_.cancel();
  }

  void open_soon() {
    if (shut_.load()) return;
    options_.open_on([self = shared_from_this()] {
      auto opened = open(self->options_);
      asio::post(self->strand_,
                 [self, opened = std::move(opened)]() mutable { self->adopt(std::move(opened)); });
    });
  }

  void adopt(Opened opened) {
    if (!opened.connection) {
      if (!warned_) {
        warned_ = true;
        log_.warn(
            "cannot open a pipelined PostgreSQL connection; reads take the blocking path "
            "until it opens",
            {{"reason", opened.error}});
      }
      retry_.expires_after(backoff_.next());
      retry_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](auto error) {
        if (!error) self->open_soon();
      }));
      return;
    }
    if (warned_) log_.info("pipelined PostgreSQL reads are back");
    warned_ = false;
    backoff_.reset();
    // Asio gets a descriptor of its own: libpq closes its socket itself when the server goes,
    // and closing Asio's then would unregister whatever took that number meanwhile.
    const int descriptor = ::dup(PQsocket(opened.connection.get()));
    if (descriptor < 0) {
      log_.warn("cannot duplicate the pipelined connection's socket", {{"errno", errno}});
      retry_.expires_after(backoff_.next());
      retry_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](auto error) {
        if (!error) self->open_soon();
      }));
      return;
    }
    connection_ = std::move(opened.connection);
    socket_.emplace(strand_, descriptor);
    ready_.store(true);
  }

  const std::shared_ptr<Shared> shared_;
  const PgPipelineOptions& options_;  // shared_'s
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer retry_;
  asio::steady_timer watchdog_;
  core::Backoff backoff_{std::chrono::milliseconds(200), std::chrono::milliseconds(5000)};
  core::Logger log_{"postgres"};
  Conn connection_;
  std::optional<asio::posix::stream_descriptor> socket_;
  std::deque<InFlight> in_flight_;
  Clock::time_point next_failure_log_{};
  int syncs_ = 0;  // Syncs sent whose PGRES_PIPELINE_SYNC has not come back
  std::uint64_t generation_ = 0;
  bool sync_due_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool warned_ = false;
  std::atomic<bool> ready_{false};
  std::atomic<bool> shut_{false};
};

PgPipelines::PgPipelines(asio::io_context& io, PgPipelineOptions options, int connections)
    : shared_(std::make_shared<Shared>(std::move(options))) {
  for (int i = 0; i < connections; ++i) {
    connections_.push_back(std::make_shared<Connection>(io, shared_));
    connections_.back()->start();
  }
}

PgPipelines::~PgPipelines() {
  for (auto& c : connections_) c->shut();
}

void PgPipelines::query(std::string_view statement, std::vector<std::string> params, Done done) {
  if (connections_.empty()) {
    ++shared_->handed_back;
    done(std::nullopt);
    return;
  }
  // In turn, passing over connections that are not open (one that is down hands reads back).
  const auto first = next_.fetch_add(1, std::memory_order_relaxed);
  auto* chosen = connections_[first % connections_.size()].get();
  for (std::size_t i = 0; i < connections_.size() && !chosen->ready(); ++i) {
    chosen = connections_[(first + i) % connections_.size()].get();
  }
  chosen->query(statement, std::move(params), std::move(done));
}

int PgPipelines::ready() const {
  int n = 0;
  for (const auto& c : connections_) n += c->ready() ? 1 : 0;
  return n;
}

std::uint64_t PgPipelines::answered() const { return shared_->answered.load(); }

std::uint64_t PgPipelines::handed_back() const { return shared_->handed_back.load(); }

}  // namespace cauce::api
