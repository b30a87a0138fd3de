// POST /v1/imports (issue 16, part 4): a CSV or NDJSON file of contacts, streamed. The route
// decides from the headers alone (operator role, content type, declared length, the key's
// running imports); its session then reads the body piece by piece (HttpServer's upload
// routes), turns each row into a contact.register command of its own, sends those through the
// command bus with a bounded number in flight, records rejected rows and progress on the import
// aggregate, and answers once every row is accounted for. api/README.md ("Bulk imports") says
// what is kept when an upload ends early.

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <prometheus/counter.h>
#include <rapidjson/document.h>

#include <cauce/api/import_slots.hpp>
#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/commands/import.hpp>
#include <cauce/core/backoff.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/log.hpp>

#include "import_rows.hpp"
#include "query_params.hpp"

namespace cauce::api {
namespace {

namespace asio = boost::asio;
using commands::CommandEnvelope;
using commands::Reply;
using commands::ReplyOutcome;
using commands::SendResult;
using commands::import::RowError;

// A command that found the bus unavailable (or no reply in time) is sent again, the same
// command (its id is derived, so a repeat is a duplicate, never a second contact), this many
// times with backoff; then the import fails.
constexpr int kSendAttempts = 5;
// Progress is recorded at most this often.
constexpr auto kProgressEvery = std::chrono::seconds(1);
// The import's own steps (start, rejections, progress) queued at most while rows are read.
constexpr std::size_t kMaxQueuedSteps = 4;
// Retry-After of a 429: the key's running imports end in their own time.
constexpr int kBusyRetryAfterS = 10;

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const core::Logger& logger() {
  static const core::Logger log("imports");
  return log;
}

struct ImportMetrics {
  explicit ImportMetrics(prometheus::Registry& registry)
      : imports(prometheus::BuildCounter()
                    .Name("cauce_imports_total")
                    .Help("Imports (POST /v1/imports) by how they ended")
                    .Register(registry)),
        rows(prometheus::BuildCounter()
                 .Name("cauce_import_rows_total")
                 .Help("Rows of imports by what became of them")
                 .Register(registry)),
        completed(imports.Add({{"outcome", "completed"}})),
        failed(imports.Add({{"outcome", "failed"}})),
        refused(imports.Add({{"outcome", "refused"}})),
        accepted(rows.Add({{"result", "accepted"}})),
        rejected(rows.Add({{"result", "rejected"}})),
        duplicate(rows.Add({{"result", "duplicate"}})) {}
  prometheus::Family<prometheus::Counter>& imports;
  prometheus::Family<prometheus::Counter>& rows;
  prometheus::Counter& completed;
  prometheus::Counter& failed;
  prometheus::Counter& refused;
  prometheus::Counter& accepted;
  prometheus::Counter& rejected;
  prometheus::Counter& duplicate;
};

struct Shared {
  commands::CommandBus& bus;
  std::shared_ptr<ImportSlots> slots;
  core::ImportsConfig config;
  std::filesystem::path spool_dir;
  ImportMetrics metrics;
};

// The media type's format; a charset other than UTF-8 or another type is a 415.
ImportFormat format_of(const Request& request) {
  const auto lower = [](std::string_view s) {
    std::string out;
    for (const char c : s) {
      if (c != ' ' && c != '\t') {
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      }
    }
    return out;
  };
  const auto unsupported = [](std::string message) {
    return ApiError(http::status::unsupported_media_type, "unsupported-media-type", message,
                    {{"Content-Type", message}});
  };
  std::string_view header = request.message[http::field::content_type];
  const auto media = lower(header.substr(0, header.find(';')));
  // Parameters: only the charset matters (text/csv's `header=present` is taken as it is).
  for (auto rest = header.substr(std::min(header.size(), header.find(';'))); !rest.empty();) {
    rest.remove_prefix(1);
    const auto param = lower(rest.substr(0, rest.find(';')));
    rest.remove_prefix(std::min(rest.size(), rest.find(';')));
    if (param.starts_with("charset=") && param != "charset=utf-8" && param != "charset=\"utf-8\"") {
      throw unsupported("the file must be UTF-8 (charset=utf-8, or no charset)");
    }
  }
  if (media == "text/csv") return ImportFormat::kCsv;
  if (media == "application/x-ndjson" || media == "application/ndjson") {
    return ImportFormat::kNdjson;
  }
  throw unsupported("must be text/csv or application/x-ndjson");
}

// A spooled upload (chunked transfer encoding: its length is unknown until it ends): the rows
// are parsed and checked as they arrive and kept in a file under <data dir>/imports, one JSON
// array per line, then sent once the body ended within the limit. Removed with the session.
class Spool {
 public:
  explicit Spool(std::filesystem::path path) : path_(std::move(path)) {
    std::filesystem::create_directories(path_.parent_path());
    out_.open(path_, std::ios::binary | std::ios::trunc);
    if (!out_) throw core::DependencyError("disk", "cannot write " + path_.string(), true);
  }
  ~Spool() {
    out_.close();
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  void write(const ImportRow& row) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartArray();
    w.Int64(row.number);
    if (row.error) {
      w.Null();
      w.String(row.error->field.c_str());
      w.String(row.error->message.c_str());
    } else {
      w.String(row.contact_id.c_str());
      w.String(row.data.c_str());
    }
    w.EndArray();
    out_.write(buffer.GetString(), static_cast<std::streamsize>(buffer.GetSize()));
    out_.put('\n');
    if (!out_) throw core::DependencyError("disk", "cannot write " + path_.string(), true);
  }

  // Reads the rows back, `batch` at a time.
  class Reader {
   public:
    explicit Reader(const std::filesystem::path& path) : in_(path, std::ios::binary) {}
    bool next(std::vector<ImportRow>& out, std::size_t batch) {
      out.clear();
      std::string line;
      while (out.size() < batch && std::getline(in_, line)) {
        rapidjson::Document d;
        d.Parse(line.c_str(), line.size());
        ImportRow row;
        row.number = d[0].GetInt64();
        if (d[1].IsNull()) {
          row.error = RowError{row.number, d[2].GetString(), d[3].GetString()};
        } else {
          row.contact_id = d[1].GetString();
          row.data = d[2].GetString();
        }
        out.push_back(std::move(row));
      }
      return !out.empty();
    }

   private:
    std::ifstream in_;
  };

  Reader read() {
    out_.flush();
    if (!out_) throw core::DependencyError("disk", "cannot write " + path_.string(), true);
    return Reader(path_);
  }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

class ImportSession final : public UploadSession,
                            public std::enable_shared_from_this<ImportSession> {
 public:
  ImportSession(std::shared_ptr<Shared> shared, std::shared_ptr<Request> request,
                ImportFormat format, bool spooled, std::unique_ptr<ImportSlots::Slot> slot)
      : shared_(std::move(shared)),
        request_(std::move(request)),
        format_(format),
        slot_(std::move(slot)),
        id_(commands::uuid_v7(now_us() / 1000)),
        reader_(format,
                {.max_row_bytes = static_cast<std::size_t>(shared_->config.max_row_bytes)}) {
    if (spooled) spool_ = std::make_unique<Spool>(shared_->spool_dir / (id_ + ".rows"));
    logger().info("import receiving", {{"import_id", id_},
                                       {"format", std::string(format_name(format_))},
                                       {"staged", spooled},
                                       {"request_id", request_->request_id},
                                       {"client", request_->client},
                                       {"trace_id", request_->trace.trace_id()},
                                       {"span_id", request_->trace.span_id()}});
  }

  std::uint64_t body_limit() const override {
    return static_cast<std::uint64_t>(shared_->config.max_bytes);
  }

  asio::awaitable<bool> consume(std::string_view bytes) override {
    co_await bind();
    bytes_ += static_cast<std::int64_t>(bytes.size());
    std::vector<ImportRow> rows;
    try {
      reader_.feed(bytes, rows);
    } catch (...) {
      refusal_ = std::current_exception();
      co_return false;
    }
    if (spool_) {
      try {
        for (const auto& row : rows) spool_->write(row);
      } catch (const core::DependencyError&) {
        // The disk refused (full?): nothing was registered yet, so the file is refused whole
        // with a 503 the client may retry.
        refusal_ = std::current_exception();
        co_return false;
      }
      co_return true;
    }
    co_await apply(rows);
    co_return !fatal_;
  }

  asio::awaitable<Response> finish(UploadEnd end) override {
    co_await bind();
    auto response = co_await conclude(end);
    slot_.reset();  // the key may start another import
    co_return response;
  }

 private:
  // Where the bus's answers come back to: the connection's strand (every member is touched
  // there only).
  asio::awaitable<void> bind() {
    if (!wake_) {
      executor_ = co_await asio::this_coro::executor;
      wake_ = std::make_unique<asio::steady_timer>(executor_);
    }
  }

  // Waits until something the session waits for may have changed (a reply came).
  asio::awaitable<void> wait() {
    boost::system::error_code ignored;
    wake_->expires_at(asio::steady_timer::time_point::max());
    co_await wake_->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  void notify() { wake_->cancel(); }

  asio::awaitable<Response> conclude(UploadEnd end) {
    std::vector<ImportRow> rows;
    if (end == UploadEnd::kComplete && !refusal_) {
      try {
        reader_.finish(rows);
      } catch (...) {
        refusal_ = std::current_exception();
      }
    }
    if (refusal_ && !started_) {
      // The file as a whole is refused (its header, its encoding): nothing was sent.
      shared_->metrics.refused.Increment();
      co_return problem_response(*request_, refusal_);
    }
    if (end == UploadEnd::kTooLarge && (spool_ || !started_)) {
      // Past the limit before anything was registered (a chunked body is spooled until its end):
      // nothing is left behind, not even an import.
      shared_->metrics.refused.Increment();
      const auto limit = std::to_string(shared_->config.max_bytes);
      co_return problem_response(
          *request_,
          std::make_exception_ptr(ApiError(
              http::status::payload_too_large, "payload-too-large",
              "the file exceeds imports.max_bytes (" + limit + " bytes); nothing was imported",
              {{"body", "must be at most " + limit + " bytes"}})));
    }
    if (end == UploadEnd::kComplete && !fatal_) {
      if (spool_) {
        auto spooled = spool_->read();
        std::vector<ImportRow> batch;
        while (!fatal_ && spooled.next(batch, 1000)) co_await apply(batch);
      }
      co_await apply(rows);
    }
    // Every row sent is answered before the import's outcome is recorded: its counts are exact.
    while (in_flight_ > 0) co_await wait();
    start();  // an import that read no row still has a record
    flush_errors();
    if (end == UploadEnd::kComplete && !fatal_) {
      enqueue("import.complete", counts_json([&](JsonWriter& w) {
                w.Key("bytes");
                w.Int64(bytes_);
              }));
    } else {
      reason_ = failure_reason(end);
      enqueue("import.fail", counts_json([&](JsonWriter& w) {
                w.Key("bytes");
                w.Int64(bytes_);
                write_string(w, "reason", commands::import::clip(reason_, 1000));
              }));
    }
    while (!lane_.empty()) co_await wait();
    const bool completed = end == UploadEnd::kComplete && !fatal_;
    (completed ? shared_->metrics.completed : shared_->metrics.failed).Increment();
    logger().info(completed ? "import completed" : "import failed",
                  {{"import_id", id_},
                   {"rows_total", rows_total_},
                   {"accepted", accepted_},
                   {"rejected", rejected_},
                   {"duplicates", duplicates_},
                   {"bytes", bytes_},
                   {"trace_id", request_->trace.trace_id()},
                   {"span_id", request_->trace.span_id()}});
    if (completed) co_return summary();
    ApiError error(fatal_ || end == UploadEnd::kStopping ? http::status::service_unavailable
                                                         : http::status::bad_request,
                   fatal_ ? "dependency-unavailable"
                          : (end == UploadEnd::kStopping ? "server-stopping" : "import-failed"),
                   "import " + id_ + " failed: " + reason_, {{"body", reason_}});
    if (fatal_ || end == UploadEnd::kStopping) error.retry_after_s = 1;
    error.headers.emplace_back("Location", "/v1/imports/" + id_);
    co_return problem_response(*request_, std::make_exception_ptr(error));
  }

  std::string failure_reason(UploadEnd end) const {
    const auto after =
        " after " + std::to_string(bytes_) + " bytes and " + std::to_string(rows_total_) + " rows";
    const std::string kept =
        spool_ ? "; nothing was registered (a body without Content-Length is registered only once "
                 "it has all arrived)"
               : "; the rows counted were registered, the rest were not read";
    if (fatal_) return *fatal_ + after + kept;
    switch (end) {
      case UploadEnd::kDisconnected:
        return "the client went away before the end of the file" + after + kept;
      case UploadEnd::kTimedOut:
        return "no byte came for http.body_timeout_s" + after + kept;
      case UploadEnd::kStopping:
        return "the server stopped" + after + kept;
      case UploadEnd::kTooLarge:
        return "the file exceeds imports.max_bytes" + after + kept;
      case UploadEnd::kRefused:
      case UploadEnd::kComplete:
        break;
    }
    return "the file was refused" + after + kept;
  }

  // Sends `rows` (in file order), waiting while too many are in flight.
  asio::awaitable<void> apply(std::vector<ImportRow>& rows) {
    for (auto& row : rows) {
      if (fatal_) co_return;
      start();
      ++rows_total_;
      if (row.error) {
        reject(std::move(*row.error));
        // Rejected rows cost no round trip of their own, but their listings do: read on only
        // once the lane has room, so a file of bad rows is paced by the import's own steps
        // instead of queueing them (and their memory) without bound.
        while (lane_.size() > kMaxQueuedSteps && !fatal_) co_await wait();
        continue;
      }
      while (in_flight_ >= static_cast<std::size_t>(shared_->config.max_in_flight) && !fatal_) {
        co_await wait();
      }
      if (fatal_) co_return;
      send_row(row);
    }
    progress();
  }

  void start() {
    if (started_) return;
    started_ = true;
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_string(w, "format", format_name(format_));
    w.EndObject();
    enqueue("import.start", std::string(buffer.GetString(), buffer.GetSize()));
  }

  CommandEnvelope envelope(std::string type, std::string aggregate_type, std::string aggregate_id,
                           std::string data) const {
    CommandEnvelope c;
    c.type = std::move(type);
    c.aggregate_type = std::move(aggregate_type);
    c.aggregate_id = std::move(aggregate_id);
    c.issued_at_us = now_us();
    c.actor = request_->principal->actor;
    c.correlation_id = id_;            // every event of an import carries its id
    c.trace_parent = request_->trace;  // and the upload's trace
    c.request_hash = core::sha256_hex(c.type + "\n" + data);
    c.data = std::move(data);
    return c;
  }

  // A row: contact.register with an id derived from the contact's id and the request, so the
  // same row posted again is the same command (a duplicate), and a taken id is `already_exists`.
  void send_row(const ImportRow& row) {
    auto c = envelope("contact.register", "contact", row.contact_id, row.data);
    c.command_id = commands::uuid_from_name("import\n" + c.aggregate_id + "\n" + c.request_hash);
    ++in_flight_;
    send(std::make_shared<const CommandEnvelope>(std::move(c)), row.number, 1);
  }

  void send(std::shared_ptr<const CommandEnvelope> c, std::int64_t row, int attempt) {
    shared_->bus.send(*c, [self = shared_from_this(), c, row, attempt](SendResult result) {
      asio::post(self->executor_, [self, c, row, attempt, result = std::move(result)] {
        self->on_row(c, row, attempt, result);
      });
    });
  }

  void on_row(const std::shared_ptr<const CommandEnvelope>& c, std::int64_t row, int attempt,
              const SendResult& result) {
    if (std::holds_alternative<commands::SendError>(result)) {
      if (attempt < kSendAttempts && !fatal_) {
        later(attempt,
              [self = shared_from_this(), c, row, attempt] { self->send(c, row, attempt + 1); });
        return;
      }
      fail_for_good("the command bus did not take the rows (Kafka unavailable or no reply)");
    } else {
      const auto& reply = std::get<Reply>(result);
      if (reply.outcome == ReplyOutcome::kApplied) {
        ++accepted_;
        shared_->metrics.accepted.Increment();
      } else if (reply.outcome == ReplyOutcome::kDuplicate ||
                 (reply.rejection && reply.rejection->code == "already_exists")) {
        ++duplicates_;
        shared_->metrics.duplicate.Increment();
      } else {
        const auto r = reply.rejection.value_or(
            commands::Rejection{"invalid", "row", "the contact could not be registered"});
        reject(RowError{row, commands::import::clip(r.field.empty() ? "row" : r.field, 100),
                        commands::import::clip(r.message, 500)});
      }
    }
    --in_flight_;
    progress();
    notify();
  }

  void reject(RowError error) {
    ++rejected_;
    shared_->metrics.rejected.Increment();
    errors_.push_back(std::move(error));
    if (errors_.size() >= commands::import::kMaxRowsPerEvent) flush_errors();
  }

  void flush_errors() {
    while (!errors_.empty()) {
      const auto n = std::min(errors_.size(), commands::import::kMaxRowsPerEvent);
      rapidjson::StringBuffer buffer;
      JsonWriter w(buffer);
      w.StartObject();
      w.Key("rows");
      w.StartArray();
      for (std::size_t i = 0; i < n; ++i) {
        w.StartObject();
        w.Key("row");
        w.Int64(errors_[i].row);
        write_string(w, "field", errors_[i].field);
        write_string(w, "message", errors_[i].message);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
      errors_.erase(errors_.begin(), errors_.begin() + static_cast<std::ptrdiff_t>(n));
      enqueue("import.record_rejections", std::string(buffer.GetString(), buffer.GetSize()));
    }
  }

  // The counts so far, about once a second while rows are answered.
  void progress() {
    if (!started_ || fatal_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_progress_ < kProgressEvery || lane_.size() > 1) return;
    last_progress_ = now;
    flush_errors();  // the errors counted are listed by the time the counts say so
    enqueue("import.record_progress", counts_json([](JsonWriter&) {}));
  }

  template <typename Extra>
  std::string counts_json(Extra&& extra) const {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    for (const auto& [name, value] :
         {std::pair{"rows_total", rows_total_}, std::pair{"accepted", accepted_},
          std::pair{"rejected", rejected_}, std::pair{"duplicates", duplicates_}}) {
      w.Key(name);
      w.Int64(value);
    }
    extra(w);
    w.EndObject();
    return {buffer.GetString(), buffer.GetSize()};
  }

  // The import's own commands go one at a time, in order (its events' order is theirs).
  void enqueue(std::string type, std::string data) {
    auto c = envelope(std::move(type), "import", id_, std::move(data));
    c.command_id =
        commands::uuid_from_name("import-step\n" + id_ + "\n" + std::to_string(steps_++));
    lane_.push_back(std::make_shared<const CommandEnvelope>(std::move(c)));
    if (lane_.size() == 1) send_step(1);
  }

  void send_step(int attempt) {
    auto c = lane_.front();
    shared_->bus.send(*c, [self = shared_from_this(), attempt](SendResult result) {
      asio::post(self->executor_,
                 [self, attempt, result = std::move(result)] { self->on_step(attempt, result); });
    });
  }

  void on_step(int attempt, const SendResult& result) {
    if (std::holds_alternative<commands::SendError>(result) && attempt < kSendAttempts) {
      later(attempt, [self = shared_from_this(), attempt] { self->send_step(attempt + 1); });
      return;
    }
    const auto& c = *lane_.front();
    if (const auto* reply = std::get_if<Reply>(&result)) {
      if (reply->outcome == ReplyOutcome::kApplied || reply->outcome == ReplyOutcome::kDuplicate) {
        version_ = reply->version;
        if (!reply->position.empty()) position_ = reply->position;
      } else {
        // The aggregate refused its own session's step: a bug, not an input problem.
        logger().error("an import step was refused",
                       {{"import_id", id_},
                        {"type", c.type},
                        {"error", reply->rejection ? reply->rejection->message : "key reused"},
                        {"trace_id", request_->trace.trace_id()},
                        {"span_id", request_->trace.span_id()}});
        fail_for_good("the import's record was refused");
      }
    } else {
      fail_for_good("the import's record could not be written (Kafka unavailable or no reply)");
    }
    lane_.pop_front();
    if (!lane_.empty()) send_step(1);
    notify();
  }

  void fail_for_good(std::string why) {
    if (!fatal_) {
      logger().warn("import failing", {{"import_id", id_},
                                       {"error", why},
                                       {"trace_id", request_->trace.trace_id()},
                                       {"span_id", request_->trace.span_id()}});
      fatal_ = std::move(why);
    }
  }

  template <typename Fn>
  void later(int attempt, Fn fn) {
    core::Backoff backoff(std::chrono::milliseconds(200), std::chrono::milliseconds(3000));
    core::Backoff::Duration delay{};
    for (int i = 0; i < attempt; ++i) delay = backoff.next();
    auto timer = std::make_shared<asio::steady_timer>(executor_, delay);
    timer->async_wait([timer, fn = std::move(fn)](const boost::system::error_code&) { fn(); });
  }

  Response summary() const {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_string(w, "id", id_);
    write_string(w, "status", "completed");
    write_string(w, "format", format_name(format_));
    for (const auto& [name, value] :
         {std::pair{"rows_total", rows_total_}, std::pair{"accepted", accepted_},
          std::pair{"rejected", rejected_}, std::pair{"duplicates", duplicates_},
          std::pair{"bytes", bytes_}, std::pair{"version", version_}}) {
      w.Key(name);
      w.Int64(value);
    }
    w.EndObject();
    auto response = json_response(*request_, http::status::created,
                                  std::string(buffer.GetString(), buffer.GetSize()));
    response.set(http::field::location, "/v1/imports/" + id_);
    response.set(http::field::etag, "\"" + std::to_string(version_) + "\"");
    if (!position_.empty()) response.set("Cauce-Position", position_);
    return response;
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<Request> request_;
  const ImportFormat format_;
  std::unique_ptr<ImportSlots::Slot> slot_;
  const std::string id_;
  RowReader reader_;
  std::unique_ptr<Spool> spool_;

  asio::any_io_executor executor_;
  std::unique_ptr<asio::steady_timer> wake_;
  std::exception_ptr refusal_;        // the file as a whole is refused (400)
  std::optional<std::string> fatal_;  // the bus failed for good: the import fails
  std::string reason_;
  bool started_ = false;
  std::int64_t bytes_ = 0;
  std::int64_t rows_total_ = 0, accepted_ = 0, rejected_ = 0, duplicates_ = 0;
  std::size_t in_flight_ = 0;
  std::vector<RowError> errors_;  // not recorded yet
  std::deque<std::shared_ptr<const CommandEnvelope>> lane_;
  std::int64_t steps_ = 0;
  std::int64_t version_ = 0;
  std::string position_;
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

// Spool files a process left behind when it was killed mid-upload (a clean stop removes its
// own): those untouched for an hour are removed at start. Not the newer ones: another process
// sharing the data directory may be writing them.
void sweep_spool(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto now = std::filesystem::file_time_type::clock::now();
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec) || entry.path().extension() != ".rows") continue;
    const auto written = entry.last_write_time(ec);
    if (!ec && now - written > std::chrono::hours(1) && std::filesystem::remove(entry.path(), ec)) {
      ++removed;
    }
  }
  if (removed > 0) logger().info("removed stale import spool files", {{"files", removed}});
}

}  // namespace

void add_import_routes(Router& router, ImportDeps deps) {
  sweep_spool(deps.spool_dir);
  auto shared = std::make_shared<Shared>(Shared{
      deps.bus,
      std::make_shared<ImportSlots>(static_cast<std::size_t>(deps.config.max_running_per_key)),
      deps.config, deps.spool_dir, ImportMetrics(deps.registry)});
  router.add_upload(
      http::verb::post, "/v1/imports", Role::kOperator,
      [shared](const std::shared_ptr<Request>& request) -> std::shared_ptr<UploadSession> {
        query_params(request->message.target(), {});
        const auto format = format_of(*request);
        const auto limit = static_cast<std::uint64_t>(shared->config.max_bytes);
        const auto length = request->message.find(http::field::content_length);
        if (length != request->message.end()) {
          const auto declared =
              parse_decimal(length->value(), std::numeric_limits<std::int64_t>::max());
          if (declared && static_cast<std::uint64_t>(*declared) > limit) {
            throw ApiError(http::status::payload_too_large, "payload-too-large",
                           "the file exceeds imports.max_bytes (" + std::to_string(limit) +
                               " bytes); nothing was imported",
                           {{"Content-Length", "must be at most " + std::to_string(limit)}});
          }
        }
        auto slot = shared->slots->take(request->principal->key_id);
        if (!slot) {
          ApiError busy(http::status::too_many_requests, "too-many-imports",
                        "this key has " + std::to_string(shared->slots->per_key()) +
                            " imports running (imports.max_running_per_key); try again once "
                            "one has ended",
                        {{"imports.max_running_per_key",
                          "at most " + std::to_string(shared->slots->per_key()) + " at once"}});
          busy.retry_after_s = kBusyRetryAfterS;
          throw busy;
        }
        const bool spooled = length == request->message.end();
        return std::make_shared<ImportSession>(shared, request, format, spooled, std::move(slot));
      });
}

}  // namespace cauce::api
