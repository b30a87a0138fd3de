// Live notifications (API.md): GET /v1/stream as Server-Sent Events, GET /v1/ws as WebSocket.
// Both are fed by the NotificationHub: each connection has one Subscription whose queue the
// connection drains on its own strand; the hub wakes it. Each notification's bytes are built once
// by the hub and shared by every client (projections::Delivery); heartbeats, key re-checks and
// write deadlines run on one StreamTicker for all the streams.
#include <algorithm>
#include <atomic>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <prometheus/gauge.h>
#include <rapidjson/document.h>

#include <cauce/api/http_stream.hpp>
#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/api/stream_slots.hpp>
#include <cauce/api/stream_ticker.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/json.hpp>
#include <cauce/core/log.hpp>
#include <cauce/projections/notification_hub.hpp>

#include "query_params.hpp"

namespace cauce::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using projections::NotificationHub;
using projections::StreamFilter;
using projections::Subscription;

const core::Logger& log() {
  static const core::Logger logger("stream");
  return logger;
}

// "contacts,alerts" -> its names.
std::vector<std::string> split_commas(std::string_view text) {
  std::vector<std::string> out;
  for (;;) {
    const auto comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) return out;
    text = text.substr(comma + 1);
  }
}

ApiError forbidden_field(const std::string& field, const std::string& message) {
  return ApiError(http::status::forbidden, "forbidden", field + " " + message,
                  {FieldError{field, message}});
}

// What a client asked to see: topics (nullopt: the default) and filters, as given.
struct StreamAsk {
  std::optional<std::vector<std::string>> topics;
  std::string topics_field = "topics";  // how the request names them (WebSocket: subscribe)
  std::optional<std::string> min_level;
  std::optional<std::string> region;  // comma-separated
  std::optional<std::string> assigned_to;
};

struct StreamView {
  std::set<std::string> topics;
  StreamFilter filter;
};

// The topics and filter a stream gets: what the client asked, within what its key may read
// (issue 16 part 6). A name that is not a topic or a filter that is malformed, or that filters a
// topic the stream does not include, is a 400; a topic or region outside the key's scope a 403;
// each naming the field.
StreamView stream_view(const Principal& principal, const StreamAsk& ask) {
  const auto& known = projections::subscribable_topics();
  auto allowed = principal.scope.topics ? *principal.scope.topics : known;
  // The dashboard's figures count every region: a key limited to regions gets them only when
  // its topics name stats.
  if (principal.scope.regions && !principal.scope.topics) allowed.erase("stats");
  StreamView view;
  if (!ask.topics) {
    for (const auto& t : projections::notification_topics()) {
      if (allowed.contains(t)) view.topics.insert(t);
    }
    if (view.topics.empty()) view.topics = allowed;
  } else {
    if (ask.topics->empty()) throw invalid_field(ask.topics_field, "must name at least one topic");
    for (const auto& name : *ask.topics) {
      if (!known.contains(name)) {
        throw invalid_field(ask.topics_field,
                            "\"" + name + "\" is not a topic (" + projections::topic_list() + ")");
      }
      if (!allowed.contains(name)) {
        throw forbidden_field(ask.topics_field,
                              "names \"" + name + "\", which this API key may not read");
      }
      view.topics.insert(name);
    }
  }
  auto needs = [&view](const char* field, const char* topic) {
    if (!view.topics.contains(topic)) {
      throw invalid_field(
          field, std::string("filters topic ") + topic + ", which this stream does not include");
    }
  };
  if (ask.min_level) {
    if (projections::level_rank(*ask.min_level) == 0) {
      throw invalid_field("min_level", "must be info, warning or critical");
    }
    needs("min_level", "alerts");
    view.filter.min_level = *ask.min_level;
  }
  if (ask.region) {
    needs("region", "alerts");
    std::set<std::string> regions;
    for (auto& r : split_commas(*ask.region)) {
      if (r.empty() || core::utf8_length(r) > 100) {
        throw invalid_field("region",
                            "must be region names of 1 to 100 characters, comma-separated");
      }
      if (principal.scope.regions && !principal.scope.regions->contains(r)) {
        throw forbidden_field("region", "names \"" + r + "\", a region this API key may not read");
      }
      regions.insert(std::move(r));
    }
    view.filter.regions = std::move(regions);
  } else if (principal.scope.regions) {
    view.filter.regions = principal.scope.regions;
  }
  if (ask.assigned_to) {
    if (*ask.assigned_to != "me") {
      throw invalid_field("assigned_to", "must be me (the contacts of this key's actor)");
    }
    needs("assigned_to", "contacts");
    view.filter.person = principal.actor;
  }
  return view;
}

// A client that stops reading fills the socket's buffers and then a write waits forever: every
// write to a stream gets this long, then the connection is closed (its subscription ends). The
// deadline is kept by the shared StreamTicker, not by a timer armed per write.
constexpr std::chrono::seconds kStreamWriteTimeout{30};

// What a connection's coroutine waits on, shared with the hub's thread (wake) and the ticker's
// (tick): one allocation per client.
struct WakeState {
  explicit WakeState(const asio::any_io_executor& executor)
      : timer(executor, asio::steady_timer::time_point::max()) {}
  asio::steady_timer timer;  // never expires: a wake cancels the wait (strand)
  std::atomic<bool> flag{false};
  std::atomic<bool> closed{false};
  // Strand only: the stream while a write to it is in flight, and since when.
  HttpStream* writing = nullptr;
  std::chrono::steady_clock::time_point write_since{};
};

// Wakes a connection's coroutine from the hub's thread and on the shared ticker's beat: sets a
// flag (so a wake between taking the queue and waiting is not lost) and cancels the wait. On
// each beat it also cuts a write that has waited past kStreamWriteTimeout.
class Waker {
 public:
  Waker(const asio::any_io_executor& executor, StreamTicker& ticker)
      : state_(std::make_shared<WakeState>(executor)), beat_(ticker.add([state = state_] {
          asio::post(state->timer.get_executor(), [state] {
            if (state->writing != nullptr &&
                std::chrono::steady_clock::now() - state->write_since > kStreamWriteTimeout) {
              beast::error_code ignored;
              state->writing->socket().cancel(ignored);
            }
            state->flag.store(true);
            state->timer.cancel();
          });
        })) {}

  // The hub calls it after it queued something: one post per wake-up, however many calls came
  // before the connection ran (a set flag means a post is on its way, or the connection has not
  // taken its queue since and will find it without waiting).
  std::function<void()> callback() {
    return [state = state_] {
      if (state->flag.exchange(true)) return;
      asio::post(state->timer.get_executor(), [state] { state->timer.cancel(); });
    };
  }
  void close() {
    state_->closed.store(true);
    callback()();
  }
  bool closed() const { return state_->closed.load(); }
  // Waits until woken: by the hub, a close, or the ticker's beat.
  asio::awaitable<void> wait() {
    if (state_->flag.exchange(false)) co_return;
    beast::error_code ec;
    co_await state_->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    state_->flag.store(false);
  }
  // Marks a write in flight (the ticker cuts it past the deadline) and its end.
  void writing(HttpStream* stream) {
    state_->writing = stream;
    state_->write_since = std::chrono::steady_clock::now();
  }

 private:
  std::shared_ptr<WakeState> state_;
  std::unique_ptr<StreamTicker::Registration> beat_;
};

// A beat may come a moment before a heartbeat is due (the beats are a heartbeat apart, give or
// take the time a post takes): what is due within this slack counts.
constexpr std::chrono::milliseconds kBeatSlack{50};

// The client resumed after an id older than the notifications kept (retention): what it missed
// is gone. It learns the oldest id it could resume after, and the stream goes on live; a client
// that keeps state re-reads it with queries.
std::string reset_data(std::int64_t oldest) {
  return R"({"reason":"last_event_id_expired","oldest_event_id":)" + std::to_string(oldest) +
         R"(,"detail":"notifications up to this id were deleted by the retention; re-read )"
         R"(state with queries, the stream continues live"})";
}

std::string reset_event(std::int64_t oldest) {
  return "event: reset\ndata: " + reset_data(oldest) + "\n\n";
}

// How often a stream asks whether its key still holds (the key cache's time: a revocation
// reaches a stream about as fast as it reaches a request).
constexpr std::chrono::seconds kKeyRecheck{5};

// Whether the key a stream was opened with still holds, asked on the stream's strand without
// blocking: from the key cache; when the cache has expired, a lookup runs on the blocking
// executor and the last known answer stands until the lookup's answer is read.
class KeyCheck {
 public:
  KeyCheck(ApiKeys& keys, std::string key_id, BlockingExecutor run_blocking)
      : keys_(keys), key_id_(std::move(key_id)), run_blocking_(std::move(run_blocking)) {}

  bool still_valid() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check_ < kKeyRecheck) return valid_;
    last_check_ = now;
    if (const auto active = keys_.cached_active(key_id_)) {
      valid_ = *active;
      return valid_;
    }
    // Only this strand leaves kIdle and takes an answer; only the lookup leaves kLooking.
    const auto state = lookup_->load();
    if (state == kActive || state == kRevoked) {
      valid_ = state == kActive;
      lookup_->store(kIdle);
    } else if (state == kIdle) {
      lookup_->store(kLooking);
      run_blocking_([keys = &keys_, id = key_id_, lookup = lookup_] {
        int answer = kIdle;  // PostgreSQL away: the key stays as last known (README Auth)
        try {
          answer = keys->refresh(id) ? kActive : kRevoked;
        } catch (const std::exception&) {
        }
        lookup->store(answer);
      });
    }
    return valid_;
  }

 private:
  static constexpr int kIdle = 0;
  static constexpr int kLooking = 1;
  static constexpr int kActive = 2;
  static constexpr int kRevoked = 3;

  ApiKeys& keys_;
  std::string key_id_;
  BlockingExecutor run_blocking_;
  std::chrono::steady_clock::time_point last_check_ = std::chrono::steady_clock::now();
  bool valid_ = true;  // it was valid when the stream was opened
  std::shared_ptr<std::atomic<int>> lookup_ = std::make_shared<std::atomic<int>>(kIdle);
};

constexpr const char* kKeyRevoked = "the API key was revoked";

template <typename Buffers>
asio::awaitable<void> write_within(Waker& waker, HttpStream& stream, const Buffers& bytes,
                                   beast::error_code& ec) {
  waker.writing(&stream);
  co_await asio::async_write(stream, bytes, asio::redirect_error(asio::use_awaitable, ec));
  waker.writing(nullptr);
}

// One live client for as long as its session exists: its slot under the caps, and one in
// cauce_stream_clients{transport}.
class ClientCount {
 public:
  ClientCount(std::unique_ptr<StreamSlots::Slot> slot, prometheus::Gauge& gauge)
      : slot_(std::move(slot)), gauge_(gauge) {
    gauge_.Increment();
  }
  ~ClientCount() { gauge_.Decrement(); }
  ClientCount(const ClientCount&) = delete;
  ClientCount& operator=(const ClientCount&) = delete;

 private:
  std::unique_ptr<StreamSlots::Slot> slot_;
  prometheus::Gauge& gauge_;
};

// A slot for one more live client of the request's key, or a 503 naming the cap.
std::unique_ptr<StreamSlots::Slot> stream_slot(StreamSlots& slots, const Request& request) {
  StreamSlots::Refusal refusal{};
  auto slot = slots.take(request.principal->key_id, refusal);
  if (slot) return slot;
  ApiError full(http::status::service_unavailable, "too-many-streams",
                refusal == StreamSlots::Refusal::kKeyFull
                    ? "this key has " + std::to_string(slots.per_key_cap()) +
                          " live streams open already (projections.max_stream_clients_per_key)"
                    : "this server holds " + std::to_string(slots.total_cap()) +
                          " live streams already (projections.max_stream_clients)");
  full.retry_after_s = 5;
  throw full;
}

class SseSession final : public StreamSession {
 public:
  SseSession(NotificationHub& hub, std::shared_ptr<StreamTicker> ticker, StreamView view,
             std::optional<std::int64_t> last_event_id, std::string request_id,
             core::TraceParent trace, int heartbeat_s, KeyCheck key,
             std::unique_ptr<StreamSlots::Slot> slot, prometheus::Gauge& clients)
      : hub_(hub),
        ticker_(std::move(ticker)),
        view_(std::move(view)),
        last_event_id_(last_event_id),
        request_id_(std::move(request_id)),
        trace_(trace),
        heartbeat_(heartbeat_s),
        key_(std::move(key)),
        count_(std::move(slot), clients) {}

  asio::awaitable<void> run(HttpStream& stream) override {
    stream.expires_never();
    waker_.emplace(stream.get_executor(), *ticker_);
    if (closing_) waker_->close();
    // The subscription keeps the view (as a topic mask); the session needs it no more.
    auto subscription = hub_.subscribe(std::move(view_.topics), std::move(view_.filter),
                                       last_event_id_, waker_->callback());
    view_ = {};
    beast::error_code ec;
    {
      const std::string head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
          "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"
          "X-Accel-Buffering: no\r\n"
          "X-Request-Id: " +
          request_id_ + "\r\ntraceparent: " + std::string(trace_.text()) +
          "\r\n\r\nretry: 1000\n\n";
      co_await write_within(*waker_, stream, asio::buffer(head), ec);
    }
    const auto heartbeat_due = heartbeat_ - kBeatSlack;
    auto last_write = std::chrono::steady_clock::now();
    std::int64_t last_id = last_event_id_.value_or(-1);  // the client's Last-Event-ID now
    while (!ec && !waker_->closed()) {
      co_await waker_->wait();
      // Everything queued since the last write goes out in one write: the events' bytes are the
      // hub's, shared with every other client; only what is this client's own is built here.
      std::string head;  // a reset
      std::string tail;  // an id-only line, an error, a heartbeat
      if (const auto oldest = subscription->take_reset()) head = reset_event(*oldest);
      std::int64_t through = -1;
      const auto batch = subscription->take(&through);
      // A stats event has no id: a client resumes by the events' ids only.
      for (const auto& d : batch) {
        if (d->id != 0) last_id = d->id;
      }
      const bool nothing = head.empty() && batch.empty();
      const auto now = std::chrono::steady_clock::now();
      if (through > last_id && (last_id < 0 || (nothing && now - last_write >= heartbeat_due))) {
        // What the client's topics and filters left out since (told at once, then with the
        // heartbeats): an id without data moves its Last-Event-ID without an event, so a
        // reconnect resumes here, not "from now" when it never received anything, nor at an
        // old id the retention may have deleted.
        tail += "id: " + std::to_string(through) + "\n\n";
        last_id = through;
      }
      auto reason = subscription->closed_reason();
      if (!reason && !key_.still_valid()) reason = kKeyRevoked;
      if (reason) tail += "event: error\ndata: {\"reason\":\"" + *reason + "\"}\n\n";
      if (nothing && tail.empty() && now - last_write >= heartbeat_due) tail = ": heartbeat\n\n";
      if (!nothing || !tail.empty()) {
        last_write = now;
        if (batch.size() <= kGatherMax) {
          // Few events (the usual case): one gathering write straight from the shared bytes.
          std::vector<asio::const_buffer> buffers;
          buffers.reserve(batch.size() + 2);
          if (!head.empty()) buffers.push_back(asio::buffer(head));
          for (const auto& d : batch) buffers.push_back(asio::buffer(d->sse));
          if (!tail.empty()) buffers.push_back(asio::buffer(tail));
          co_await write_within(*waker_, stream, buffers, ec);
        } else {
          // Many (a resume, a burst): one copy beats one system call per kGatherMax events.
          std::size_t size = head.size() + tail.size();
          for (const auto& d : batch) size += d->sse.size();
          std::string out;
          out.reserve(size);
          out += head;
          for (const auto& d : batch) out += d->sse;
          out += tail;
          co_await write_within(*waker_, stream, asio::buffer(out), ec);
        }
      }
      if (reason) {
        log().info("stream client closed", {{"request_id", request_id_}, {"reason", *reason}});
        break;
      }
    }
    hub_.unsubscribe(subscription);
  }

  void close() override {
    closing_ = true;
    if (waker_) waker_->close();
  }

 private:
  // Events gathered into one write without copying, at most (Asio passes up to 64 buffers to
  // one writev).
  static constexpr std::size_t kGatherMax = 60;

  NotificationHub& hub_;
  std::shared_ptr<StreamTicker> ticker_;  // outlives waker_'s place on it
  StreamView view_;
  std::optional<std::int64_t> last_event_id_;
  std::string request_id_;
  core::TraceParent trace_;  // answered in the head, as every response is
  std::chrono::seconds heartbeat_;
  KeyCheck key_;  // strand only
  ClientCount count_;
  std::optional<Waker> waker_;  // strand only
  bool closing_ = false;        // strand only
};

// The WebSocket: the client subscribes with {"subscribe": ["alerts"], "last_event_id": N?} (again
// to change topics); the server sends {"id", "event", "data"} per notification, pings every
// heartbeat, and answers a malformed message with {"error": {...}} without closing.
class WsSession final : public StreamSession {
 public:
  WsSession(NotificationHub& hub, std::shared_ptr<StreamTicker> ticker,
            http::request<http::string_body> request, Principal principal, int heartbeat_s,
            KeyCheck key, std::unique_ptr<StreamSlots::Slot> slot, prometheus::Gauge& clients)
      : hub_(hub),
        ticker_(std::move(ticker)),
        request_(std::move(request)),
        principal_(std::move(principal)),
        heartbeat_(heartbeat_s),
        key_(std::move(key)),
        count_(std::move(slot), clients) {}

  asio::awaitable<void> run(HttpStream& stream) override {
    stream.expires_never();
    waker_.emplace(stream.get_executor(), *ticker_);
    if (closing_) waker_->close();
    websocket::stream<HttpStream&> ws(stream);
    beast::error_code ec;
    // Beast bounds the handshakes; pings, the idle check and write deadlines run on the shared
    // ticker's beat, not on a timer per client: a peer that sends nothing, not even the pong to
    // the ping sent every heartbeat, for two heartbeats is closed.
    ws.set_option(websocket::stream_base::timeout{kStreamWriteTimeout,
                                                  websocket::stream_base::none(), false});
    waker_->writing(&stream);
    co_await ws.async_accept(request_, asio::redirect_error(asio::use_awaitable, ec));
    waker_->writing(nullptr);
    request_ = {};  // its headers are not needed any more
    if (ec) co_return;
    auto state = std::make_shared<ReaderState>();
    state->last_heard = std::chrono::steady_clock::now();
    ws.control_callback([state](websocket::frame_type, beast::string_view) {
      state->last_heard = std::chrono::steady_clock::now();
    });
    asio::co_spawn(stream.get_executor(),
                   read_loop(ws, state, std::move(principal_), waker_->callback()), asio::detached);
    std::shared_ptr<Subscription> subscription;
    std::int64_t last_sent = -1;
    const auto heartbeat_due = heartbeat_ - kBeatSlack;
    auto last_write = std::chrono::steady_clock::now();
    auto last_ping = last_write;
    while (!waker_->closed() && !state->done) {
      co_await waker_->wait();
      std::vector<std::string> replies = std::move(state->replies);
      state->replies.clear();
      if (state->subscribe) {
        // (Re)subscribe without a gap: continue after the last id sent, else as asked.
        if (subscription) hub_.unsubscribe(subscription);
        const auto after =
            last_sent >= 0 ? std::optional<std::int64_t>(last_sent) : state->subscribe->after;
        // The id the client resumes after is where it stands (as SSE's Last-Event-ID): an id-only
        // message repeating it would tell it nothing.
        if (last_sent < 0 && after) last_sent = *after;
        subscription =
            hub_.subscribe(std::move(state->subscribe->view.topics),
                           std::move(state->subscribe->view.filter), after, waker_->callback());
        state->subscribe.reset();
      }
      std::optional<std::string> reason;
      std::vector<std::shared_ptr<const projections::Delivery>> batch;
      const auto now = std::chrono::steady_clock::now();
      if (subscription) {
        if (const auto oldest = subscription->take_reset()) {
          replies.push_back("{\"event\":\"reset\",\"data\":" + reset_data(*oldest) + "}");
        }
        std::int64_t through = -1;
        batch = subscription->take(&through);
        for (const auto& d : batch) {
          if (d->id != 0) last_sent = d->id;  // stats: no id to resume after
        }
        // What the topics and filters left out since, with the heartbeats: {"id"} alone moves
        // the id a client resumes after (as SSE's id-only lines do).
        if (through > last_sent && replies.empty() && batch.empty() &&
            now - last_write >= heartbeat_due) {
          replies.push_back("{\"id\":" + std::to_string(through) + "}");
          last_sent = through;
        }
        reason = subscription->closed_reason();
      }
      const bool revoked = !reason && !key_.still_valid();
      if (revoked) reason = kKeyRevoked;
      const bool silent = now - state->last_heard > 2 * heartbeat_ + ticker_->cycle();
      // One WebSocket message per notification (API.md), each written from the shared bytes.
      waker_->writing(&stream);
      for (const auto& m : replies) {
        co_await ws.async_write(asio::buffer(m), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      for (const auto& d : batch) {
        if (ec) break;
        co_await ws.async_write(asio::buffer(d->ws), asio::redirect_error(asio::use_awaitable, ec));
      }
      waker_->writing(nullptr);
      if (ec) break;
      if (!replies.empty() || !batch.empty()) last_write = now;
      if (silent) {
        log().info("stream client closed", {{"reason", "no answer to the pings"}});
        break;
      }
      if (reason) {
        websocket::close_reason close(revoked ? websocket::close_code::policy_error
                                              : websocket::close_code::try_again_later);
        close.reason = reason->substr(0, 120);
        waker_->writing(&stream);
        co_await ws.async_close(close, asio::redirect_error(asio::use_awaitable, ec));
        waker_->writing(nullptr);
        break;
      }
      if (now - last_ping >= heartbeat_due) {
        last_ping = now;
        if (replies.empty() && batch.empty()) last_write = now;
        waker_->writing(&stream);
        co_await ws.async_ping({}, asio::redirect_error(asio::use_awaitable, ec));
        waker_->writing(nullptr);
        if (ec) break;
      }
    }
    if (waker_->closed() && !state->done) {
      waker_->writing(&stream);
      co_await ws.async_close(websocket::close_code::going_away,
                              asio::redirect_error(asio::use_awaitable, ec));
      waker_->writing(nullptr);
    }
    if (subscription) hub_.unsubscribe(subscription);
    // The reader ends with the connection; wait for it so `ws` outlives it.
    while (!state->reader_finished) {
      stream.socket().cancel(ec);
      asio::steady_timer pause(stream.get_executor(), std::chrono::milliseconds(5));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  void close() override {
    closing_ = true;
    if (waker_) waker_->close();
  }

 private:
  struct Subscribe {
    StreamView view;
    std::optional<std::int64_t> after;
  };
  static constexpr std::size_t kMaxPendingReplies = 64;
  struct ReaderState {  // strand only
    std::optional<Subscribe> subscribe;
    std::chrono::steady_clock::time_point last_heard;  // any message or control frame
    std::vector<std::string> replies;
    bool done = false;
    bool reader_finished = false;
  };

  // The problem a message caused: 400 invalid-message, or 403 forbidden for a topic or region
  // outside the key's scope.
  static std::string error_message(const ApiError& error) {
    const bool forbidden = error.status() == http::status::forbidden;
    const auto& field = error.errors().front().field;
    const auto& message = error.errors().front().message;
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    w.Key("error");
    w.StartObject();
    write_string(w, "type",
                 forbidden ? "urn:cauce:problem:forbidden" : "urn:cauce:problem:invalid-message");
    write_string(w, "title", forbidden ? "Forbidden" : "Bad Request");
    w.Key("status");
    w.Int(forbidden ? 403 : 400);
    write_string(w, "detail", field + " " + message);
    w.Key("errors");
    w.StartArray();
    w.StartObject();
    write_string(w, "field", field);
    write_string(w, "message", message);
    w.EndObject();
    w.EndArray();
    w.EndObject();
    w.EndObject();
    return {buffer.GetString(), buffer.GetSize()};
  }

  // One message from the client: a subscribe (kept for the writer), or the problem it caused
  // (queued as a reply). A plain function: its locals stay out of the reader's coroutine frame,
  // which lives as long as the connection.
  static void take_message(const std::string& text, const Principal& principal,
                           ReaderState& state) {
    try {
      const auto d = parse_json_message(text, "message");
      for (const auto& m : d.GetObject()) {
        const std::string name = m.name.GetString();
        if (name != "subscribe" && name != "last_event_id" && name != "min_level" &&
            name != "region" && name != "assigned_to") {
          throw invalid_field(name, "is not a field of a subscribe message");
        }
      }
      if (!d.HasMember("subscribe") || !d["subscribe"].IsArray()) {
        throw invalid_field("subscribe", "must be an array of topics");
      }
      StreamAsk ask;
      ask.topics_field = "subscribe";
      ask.topics.emplace();
      for (const auto& t : d["subscribe"].GetArray()) {
        if (!t.IsString()) throw invalid_field("subscribe", "must hold topic names");
        ask.topics->emplace_back(t.GetString(), t.GetStringLength());
      }
      for (auto [field, target] :
           {std::pair{"min_level", &ask.min_level}, std::pair{"region", &ask.region},
            std::pair{"assigned_to", &ask.assigned_to}}) {
        if (!d.HasMember(field)) continue;
        if (!d[field].IsString()) throw invalid_field(field, "must be a string");
        *target = std::string(d[field].GetString(), d[field].GetStringLength());
      }
      Subscribe s{stream_view(principal, ask), std::nullopt};
      if (d.HasMember("last_event_id")) {
        if (!d["last_event_id"].IsInt64() || d["last_event_id"].GetInt64() < 0) {
          throw invalid_field("last_event_id", "must be a notification id");
        }
        s.after = d["last_event_id"].GetInt64();
      }
      state.subscribe = std::move(s);
    } catch (const ApiError& e) {
      state.replies.push_back(error_message(e));
    }
  }

  static asio::awaitable<void> read_loop(websocket::stream<HttpStream&>& ws,
                                         std::shared_ptr<ReaderState> state, Principal principal,
                                         std::function<void()> wake) {
    beast::flat_buffer buffer;
    ws.read_message_max(64 * 1024);
    for (;;) {
      beast::error_code ec;
      co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      state->last_heard = std::chrono::steady_clock::now();
      take_message(beast::buffers_to_string(buffer.data()), principal, *state);
      // Clients send a message now and then: the buffer is not kept between them.
      buffer.clear();
      buffer.shrink_to_fit();
      // A client that keeps sending bad messages without reading the answers is cut off rather
      // than queued for without bound.
      if (state->replies.size() >= kMaxPendingReplies) break;
      wake();
    }
    state->done = true;
    state->reader_finished = true;
    wake();
  }

  NotificationHub& hub_;
  std::shared_ptr<StreamTicker> ticker_;  // outlives waker_'s place on it
  http::request<http::string_body> request_;
  Principal principal_;
  std::chrono::seconds heartbeat_;
  KeyCheck key_;  // strand only
  ClientCount count_;
  std::optional<Waker> waker_;
  bool closing_ = false;
};

}  // namespace

void add_stream_routes(Router& router, NotificationHub& hub, const core::ProjectionsConfig& config,
                       ApiKeys& keys, BlockingExecutor run_blocking,
                       prometheus::Registry& registry) {
  const int heartbeat_s = config.heartbeat_s;
  auto& clients = prometheus::BuildGauge()
                      .Name("cauce_stream_clients")
                      .Help("Live notification clients connected, by transport")
                      .Register(registry);
  auto& sse_clients = clients.Add({{"transport", "sse"}});
  auto& ws_clients = clients.Add({{"transport", "websocket"}});
  auto slots =
      std::make_shared<StreamSlots>(static_cast<std::size_t>(config.max_stream_clients),
                                    static_cast<std::size_t>(config.max_stream_clients_per_key));
  auto key_check = [&keys, run_blocking](const Request& request) {
    return KeyCheck(keys, request.principal->key_id, run_blocking);
  };
  // Every stream's beat: each one's tick once every min(heartbeat, key re-check) seconds, a
  // second's worth of the streams at a time.
  auto ticker = std::make_shared<StreamTicker>(
      std::chrono::seconds(1),
      static_cast<std::size_t>(std::clamp<std::int64_t>(
          std::min<std::int64_t>(heartbeat_s, kKeyRecheck.count()), 1, kKeyRecheck.count())));
  router.add_stream(
      http::verb::get, "/v1/stream", Role::kReader,
      [&hub, heartbeat_s, key_check, &sse_clients, slots,
       ticker](Request& request) -> std::shared_ptr<StreamSession> {
        const auto params =
            query_params(request.message.target(),
                         {"topics", "last_event_id", "min_level", "region", "assigned_to"});
        StreamAsk ask;
        auto param = [&params](const char* name) -> std::optional<std::string> {
          const auto it = params.find(name);
          if (it == params.end()) return std::nullopt;
          return it->second;
        };
        if (const auto topics = param("topics")) ask.topics = split_commas(*topics);
        ask.min_level = param("min_level");
        ask.region = param("region");
        ask.assigned_to = param("assigned_to");
        auto view = stream_view(*request.principal, ask);
        // Both are checked; the header (what EventSource sends on a reconnect) wins.
        std::optional<std::int64_t> after;
        if (const auto q = params.find("last_event_id"); q != params.end()) {
          after = event_id(q->second, "last_event_id");
        }
        if (const auto it = request.message.find("Last-Event-ID"); it != request.message.end()) {
          after = event_id(it->value(), "Last-Event-ID");
        }
        if (!hub.connected()) {
          throw core::DependencyError("postgres", "live notifications are unavailable", true);
        }
        return std::make_shared<SseSession>(hub, ticker, std::move(view), after, request.request_id,
                                            request.trace, heartbeat_s, key_check(request),
                                            stream_slot(*slots, request), sse_clients);
      });
  router.add_stream(
      http::verb::get, "/v1/ws", Role::kReader,
      [&hub, heartbeat_s, key_check, &ws_clients, slots,
       ticker](Request& request) -> std::shared_ptr<StreamSession> {
        query_params(request.message.target(), {});
        if (!websocket::is_upgrade(request.message)) {
          throw ApiError(http::status::upgrade_required, "upgrade-required",
                         "GET /v1/ws is a WebSocket: send Connection: Upgrade, Upgrade: websocket");
        }
        return std::make_shared<WsSession>(hub, ticker, request.message, *request.principal,
                                           heartbeat_s, key_check(request),
                                           stream_slot(*slots, request), ws_clients);
      });
}

}  // namespace cauce::api
