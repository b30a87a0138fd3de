#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/client_address.hpp>
#include <cauce/api/http_metrics.hpp>
#include <cauce/api/http_stream.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/rate_limit.hpp>
#include <cauce/api/server.hpp>
#include <cauce/api/tls.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/fatal_signals.hpp>
#include <cauce/core/log.hpp>

#include "gzip.hpp"

namespace cauce::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

constexpr std::size_t kHeaderLimit = 16 * 1024;

// The 401 of a route that needs a key: none was sent (or it is malformed), or it is unknown or
// revoked. Answered from the headers alone when the key cache already knows, else after the
// lookup.
ApiError unauthenticated(bool had_token) {
  ApiError error(http::status::unauthorized, "unauthenticated",
                 had_token ? "the API key is unknown or revoked"
                           : "this route needs an API key: Authorization: Bearer <key>");
  error.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"cauce\"");
  return error;
}

// What a browser may send and read across origins (CORS): the request headers API.md uses, and
// the response headers a client acts on.
constexpr const char* kCorsAllowHeaders =
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, Cauce-Min-Position, "
    "Last-Event-ID, X-Request-Id, traceparent";
constexpr const char* kCorsExposeHeaders =
    "ETag, Location, Retry-After, Cauce-Position, Idempotent-Replayed, X-Request-Id, traceparent";
constexpr std::string_view kTraceParentHeader = "traceparent";
constexpr int kCorsMaxAgeS = 600;

// "GET, POST": an Allow or Access-Control-Allow-Methods value.
template <typename Verbs>
std::string verb_list(const Verbs& verbs) {
  std::string out;
  for (const auto verb : verbs) {
    if (!out.empty()) out += ", ";
    out += http::to_string(verb);
  }
  return out;
}

// A client-supplied X-Request-Id is kept when it is short and plain, else we mint one.
bool usable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// W3C Trace Context: the request's traceparent continued in a span of ours; a new trace when
// it has none, or one that is malformed (ignored, never refused), or more than one.
core::TraceParent trace_of(const http::request_header<>& message) {
  if (message.count(kTraceParentHeader) == 1) {
    if (const auto incoming = core::TraceParent::parse(message[kTraceParentHeader])) {
      return incoming->child();
    }
  }
  return core::TraceParent::start();
}

std::optional<std::string_view> bearer_token(std::string_view header) {
  constexpr std::string_view kScheme = "Bearer ";
  if (header.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i]))) {
      return std::nullopt;
    }
  }
  auto token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

bool is_disconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
         ec == beast::error::timeout || ec == asio::error::broken_pipe;
}

struct Connection {
  // `tls`: the context of an HTTPS listener (the handshake is still to come); null for HTTP.
  Connection(tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
      : peer(peer_of(socket)), stream(std::move(socket), std::move(tls)) {}
  static std::optional<core::IpAddress> peer_of(const tcp::socket& socket) {
    beast::error_code ec;
    const auto endpoint = socket.remote_endpoint(ec);
    if (ec) return std::nullopt;
    return core::IpAddress::parse(endpoint.address().to_string());
  }
  const std::optional<core::IpAddress> peer;  // the TCP peer
  HttpStream stream;
  bool idle = true;  // waiting for a request's header; touched only on the connection's strand
  std::shared_ptr<StreamSession> session;  // set while a stream owns the connection (strand)
  bool uploading = false;                  // an upload's body is being read (strand)
};

// What routing produced besides a response: a session that takes the connection over, or one
// that takes the body of an upload (its answer comes at the end, decorated by `decorate`: the
// headers and metrics every answer gets).
struct Handover {
  std::shared_ptr<StreamSession> stream;
  std::shared_ptr<UploadSession> upload;
  std::function<void(Response&)> decorate;
};
using Done = std::function<void(Response, Handover)>;

// Why an upload's body stopped being read, from the read's error.
UploadEnd upload_end(const beast::error_code& ec, bool draining) {
  if (ec == http::error::body_limit) return UploadEnd::kTooLarge;
  if (ec == beast::error::timeout) return UploadEnd::kTimedOut;
  if (draining && ec == asio::error::operation_aborted) return UploadEnd::kStopping;
  return UploadEnd::kDisconnected;  // gone, or the framing broke: either way no more body
}

}  // namespace

struct HttpServer::Impl {
  Impl(const core::HttpConfig& c, const Router& r, ApiKeys& k, HttpMetrics& m,
       asio::io_context* shared_io, std::shared_ptr<TlsCertificate> certificate)
      : config(c),
        router(r),
        keys(k),
        metrics(m),
        limiter({.reader = static_cast<double>(c.rate_limit_reader),
                 .operator_ = static_cast<double>(c.rate_limit_operator),
                 .admin = static_cast<double>(c.rate_limit_admin)}),
        cors_origins(c.cors_origins.begin(), c.cors_origins.end()),
        own_ioc(shared_io == nullptr ? std::make_unique<asio::io_context>(c.threads) : nullptr),
        ioc(shared_io == nullptr ? *own_ioc : *shared_io),
        acceptor(asio::make_strand(ioc)),
        tls(certificate != nullptr || c.tls_certificate_file.empty()
                ? std::move(certificate)
                : std::make_shared<TlsCertificate>(c.tls_certificate_file, c.tls_key_file)),
        trusted(c.trusted_proxies),
        // Without TLS or trusted proxies cauce cannot tell HTTPS from HTTP: http.hsts then means
        // that a TLS proxy fronts it, and every answer carries the header.
        hsts_everywhere(tls == nullptr && trusted.empty()) {}

  void dispatch(http::request<http::string_body>&& message, const ClientOrigin& origin,
                Done done) const;
  // The answer to a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method).
  Response preflight(const Request& request) const;
  // Headers every answer carries: security headers, and CORS for an allowed Origin (no-store
  // too when the request was authenticated).
  void add_common_headers(const Request& request, Response& response) const;
  // A body of http.gzip_min_bytes or more, gzipped when the client accepts it (Vary tells caches
  // that the answer depends on Accept-Encoding; the ETag becomes weak, as the bytes differ).
  void compress(const http::request<http::string_body>& request, Response& response) const;
  void add_common_headers(const http::request_header<>& header, bool https,
                          Response& response) const;
  // A 401 when the headers alone show that the route needs a key the request does not carry (or
  // carries malformed, or the cache knows to be invalid); nullopt to read the body and go on.
  std::optional<Response> refuse_before_body(const http::request_header<>& header,
                                             const ClientOrigin& origin) const;
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> refuse_connection(std::shared_ptr<HttpStream> stream);
  // HTTPS: the TLS handshake, within http.header_timeout_s (a client that connects and says
  // nothing is cut off like one that trickles its headers); false when it failed (counted).
  asio::awaitable<bool> handshake(HttpStream& stream);
  // Counts a failed handshake by reason; the first of each reason is logged (at warn), the rest
  // only counted: a scanner or a misconfigured client must not flood the log.
  void handshake_failed(const beast::error_code& ec);
  // Ends a connection: close_notify first on HTTPS (briefly bounded), then the TCP close.
  static asio::awaitable<void> close(HttpStream& stream, bool handshaken);
  asio::awaitable<void> serve(std::shared_ptr<Connection> connection);
  // A live stream that took a connection over, until it ends; then the connection closes.
  asio::awaitable<void> run_stream(std::shared_ptr<Connection> connection);
  // An upload route's request, from its headers: routed and authorised without its body, which
  // its session then takes piece by piece. Answers, then the connection closes.
  asio::awaitable<void> serve_upload(Connection& connection, beast::flat_buffer& buffer,
                                     http::request_parser<http::string_body>& parser,
                                     const ClientOrigin& origin);
  // After an answer that left the body unread: lets the client's bytes drain before the close.
  static asio::awaitable<void> linger(HttpStream& stream);
  static constexpr std::size_t kLingerBytes = 4 * 1024 * 1024;
  void forget(const std::shared_ptr<Connection>& connection);

  core::HttpConfig config;
  const Router& router;
  ApiKeys& keys;
  HttpMetrics& metrics;
  mutable RateLimiter limiter;
  const std::set<std::string, std::less<>> cors_origins;
  core::Logger log{"http"};

  // Writing one response may take this long (a client that does not read is cut off).
  static constexpr std::chrono::seconds kWriteTimeout{30};
  // API keys missing from the cache are looked up here, off the I/O threads.
  static constexpr int kMaxPendingKeyLookups = 256;
  mutable asio::thread_pool auth_threads{2};
  mutable std::atomic<int> auth_pending{0};

  std::unique_ptr<asio::io_context> own_ioc;  // unless the process gave it one to share
  asio::io_context& ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> draining{false};
  std::mutex mutex;
  std::condition_variable connections_closed;
  std::set<std::shared_ptr<Connection>> connections;

  std::shared_ptr<TlsCertificate> tls;  // null: plain HTTP
  const TrustedProxies trusted;
  const bool hsts_everywhere;
  std::mutex handshake_mutex;
  std::set<std::string, std::less<>> handshake_reasons_logged;  // under handshake_mutex
};

std::optional<Response> HttpServer::Impl::refuse_before_body(const http::request_header<>& header,
                                                             const ClientOrigin& origin) const {
  const auto match = router.match(header.method(), header.target());
  if (match.route == nullptr || !match.route->role) return std::nullopt;
  const auto token = bearer_token(header[http::field::authorization]);
  if (token) {
    const auto known = keys.cached_principal(*token);
    if (!known || *known) return std::nullopt;  // a lookup is needed, or the key is fine
  }
  auto response = render_problem(unauthenticated(token.has_value()), core::random_hex(8),
                                 header.version(), false);
  response.set(kTraceParentHeader, trace_of(header).text());
  add_common_headers(header, origin.https, response);
  metrics.observe(match.route->pattern,
                  header.method() == http::verb::unknown
                      ? std::string("OTHER")
                      : std::string(http::to_string(header.method())),
                  response.result_int(), 0.0);
  return response;
}

void HttpServer::Impl::compress(const http::request<http::string_body>& request,
                                Response& response) const {
  if (config.gzip_min_bytes <= 0 ||
      response.body().size() < static_cast<std::size_t>(config.gzip_min_bytes) ||
      response.count(http::field::content_encoding) != 0) {
    return;
  }
  response.set(http::field::vary, "Accept-Encoding");
  const auto accept = request.find(http::field::accept_encoding);
  if (accept == request.end() || !accepts_gzip(accept->value())) return;
  response.body() = gzip(response.body());
  response.set(http::field::content_encoding, "gzip");
  if (const auto etag = response.find(http::field::etag);
      etag != response.end() && !etag->value().starts_with("W/")) {
    response.set(http::field::etag, "W/" + std::string(etag->value()));
  }
  response.prepare_payload();
}

void HttpServer::Impl::add_common_headers(const Request& request, Response& response) const {
  if (request.principal) response.set(http::field::cache_control, "no-store");
  add_common_headers(request.message.base(), request.https, response);
}

void HttpServer::Impl::add_common_headers(const http::request_header<>& header, bool https,
                                          Response& response) const {
  response.set("X-Content-Type-Options", "nosniff");
  if (config.hsts && (https || hsts_everywhere)) {
    response.set(http::field::strict_transport_security, "max-age=31536000");
  }
  const auto origin = header[http::field::origin];
  if (!origin.empty() && cors_origins.contains(origin)) {
    // The origin itself, never "*": the answer depends on the key the request carries.
    response.set(http::field::access_control_allow_origin, origin);
    response.set(http::field::access_control_expose_headers, kCorsExposeHeaders);
  }
  if (!cors_origins.empty()) response.set(http::field::vary, "Origin");
}

Response HttpServer::Impl::preflight(const Request& request) const {
  const auto origin = request.message[http::field::origin];
  if (!cors_origins.contains(origin)) {
    throw ApiError(
        http::status::forbidden, "cors-origin-denied",
        "the origin " + std::string(origin) + " may not call this API (http.cors_origins)");
  }
  const auto target = request.message.target();
  const auto path = std::string(target.substr(0, target.find('?')));
  const auto asked = request.message[http::field::access_control_request_method];
  // No route answers the unknown verb: the match lists every method the path has.
  const auto allowed = router.match(http::verb::unknown, target).allowed;
  if (allowed.empty()) {
    throw ApiError(http::status::not_found, "not-found", "there is nothing at " + path);
  }
  if (std::find(allowed.begin(), allowed.end(), http::string_to_verb(asked)) == allowed.end()) {
    throw ApiError(http::status::forbidden, "cors-method-denied",
                   std::string(asked) + " is not allowed on " + path);
  }
  Response response(http::status::no_content, request.message.version());
  response.set(http::field::access_control_allow_methods, verb_list(allowed));
  response.set(http::field::access_control_allow_headers, kCorsAllowHeaders);
  response.set(http::field::access_control_max_age, std::to_string(kCorsMaxAgeS));
  return response;
}

void HttpServer::Impl::dispatch(http::request<http::string_body>&& message,
                                const ClientOrigin& origin, Done done) const {
  const auto started = std::chrono::steady_clock::now();
  auto request = std::make_shared<Request>();
  request->message = std::move(message);
  request->client = origin.address;
  request->https = origin.https;
  const auto incoming_id = request->message["X-Request-Id"];
  request->request_id =
      usable_request_id(incoming_id) ? std::string(incoming_id) : core::random_hex(8);
  request->trace = trace_of(request->message);
  auto route_label = std::make_shared<std::string>("unmatched");
  // Headers, metrics and hand-over: the same for sync, async, stream and failed requests.
  auto decorate = [this, request, route_label, started](Response& response) {
    response.set("X-Request-Id", request->request_id);
    response.set(kTraceParentHeader, request->trace.text());
    add_common_headers(*request, response);
    compress(request->message, response);
    response.keep_alive(request->message.keep_alive());
    const auto method = request->message.method() == http::verb::unknown
                            ? std::string("OTHER")
                            : std::string(http::to_string(request->message.method()));
    metrics.observe(
        *route_label, method, response.result_int(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  };
  // An upload's answer comes once its body is in: headers and metrics then.
  auto hand_over_upload = [decorate, done](std::shared_ptr<UploadSession> session) {
    done(Response{http::status::continue_, 11}, Handover{nullptr, std::move(session), decorate});
  };
  auto finish = [decorate, done = std::move(done)](Response response,
                                                   std::shared_ptr<StreamSession> session) {
    decorate(response);
    done(std::move(response), Handover{std::move(session), nullptr, {}});
  };
  try {
    const auto target = request->message.target();
    if (request->message.method() == http::verb::options &&
        request->message.count(http::field::origin) != 0 &&
        request->message.count(http::field::access_control_request_method) != 0) {
      *route_label = "preflight";
      finish(preflight(*request), nullptr);
      return;
    }
    auto match = router.match(request->message.method(), target);
    if (match.route == nullptr) {
      const auto path = std::string(target.substr(0, target.find('?')));
      if (!match.allowed.empty()) {
        const auto allow = verb_list(match.allowed);
        ApiError error(http::status::method_not_allowed, "method-not-allowed",
                       std::string(request->message.method_string()) + " is not allowed on " +
                           path + "; allowed: " + allow);
        error.headers.emplace_back("Allow", allow);
        throw error;
      }
      throw ApiError(http::status::not_found, "not-found", "there is nothing at " + path);
    }
    *route_label = match.route->pattern;
    request->route = match.route->pattern;
    request->path_params = std::move(match.params);
    const Route* route = match.route;
    // Runs the route once its caller is known (or it needs no key); on whatever thread that is.
    auto run = [this, request, finish, hand_over_upload, route](std::optional<Principal> principal,
                                                                bool had_token) {
      try {
        if (route->role) {
          if (!principal) throw unauthenticated(had_token);
          if (principal->role < *route->role) {
            throw ApiError(http::status::forbidden, "forbidden",
                           "this route needs the " + std::string(role_name(*route->role)) +
                               " role; the key has the " + std::string(role_name(principal->role)) +
                               " role");
          }
          const auto wait = limiter.take(principal->key_id, principal->role);
          if (wait.count() > 0) {
            ApiError limited(http::status::too_many_requests, "rate-limited",
                             "this key sent more than " +
                                 std::to_string(static_cast<int>(limiter.rate(principal->role))) +
                                 " requests per second (its role's http.rate_limit_" +
                                 std::string(role_name(principal->role)) + ")");
            limited.retry_after_s = static_cast<int>((wait.count() + 999) / 1000);
            request->principal = std::move(principal);
            throw limited;
          }
          request->principal = std::move(principal);
        }
        if (route->upload_handler) {
          hand_over_upload(route->upload_handler(request));
          return;
        }
        if (route->stream_handler) {
          auto session = route->stream_handler(*request);
          finish(Response{http::status::ok, request->message.version()}, std::move(session));
          return;
        }
        if (route->async_handler) {
          // The responder may be called on another thread, once; a throw before it returns is
          // mapped like a synchronous handler's.
          auto answered = std::make_shared<std::atomic<bool>>(false);
          auto respond = [finish, answered](Response response) {
            if (!answered->exchange(true)) finish(std::move(response), nullptr);
          };
          try {
            route->async_handler(request, respond);
          } catch (...) {
            if (!answered->exchange(true)) {
              finish(problem_response(*request, std::current_exception()), nullptr);
            }
          }
          return;
        }
        finish(route->handler(*request), nullptr);
      } catch (...) {
        finish(problem_response(*request, std::current_exception()), nullptr);
      }
    };
    const auto token =
        route->role ? bearer_token(request->message[http::field::authorization]) : std::nullopt;
    if (!token) {
      run(std::nullopt, false);
      return;
    }
    if (auto known = keys.cached_principal(*token)) {
      run(std::move(*known), true);
      return;
    }
    // A key not in the cache is looked up in PostgreSQL, never on an I/O thread: a flood of
    // unknown keys must not stall the other connections (/healthz included). The lookups wait
    // in a bounded queue; past it the answer is a 503 at once.
    if (auth_pending.fetch_add(1) >= kMaxPendingKeyLookups) {
      --auth_pending;
      ApiError busy(http::status::service_unavailable, "busy",
                    "too many API keys are being looked up; try again shortly");
      busy.retry_after_s = 1;
      throw busy;
    }
    asio::post(auth_threads, [this, run, request, finish, token = std::string(*token)] {
      std::optional<Principal> principal;
      try {
        principal = keys.authenticate(token);
      } catch (...) {
        --auth_pending;
        finish(problem_response(*request, std::current_exception()), nullptr);
        return;
      }
      --auth_pending;
      run(std::move(principal), true);
    });
  } catch (...) {
    finish(problem_response(*request, std::current_exception()), nullptr);
  }
}

asio::awaitable<void> HttpServer::Impl::refuse_connection(std::shared_ptr<HttpStream> stream) {
  static const std::string kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
      "Retry-After: 1\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"
      "Content-Length: 140\r\n\r\n"
      R"({"type":"urn:cauce:problem:too-many-connections","title":"Service Unavailable",)"
      R"("status":503,"detail":"too many open connections; try again"})";
  beast::error_code ec;
  const bool handshaken = !stream->tls() || co_await handshake(*stream);
  if (handshaken) {
    stream->expires_after(std::chrono::seconds(5));
    co_await asio::async_write(*stream, asio::buffer(kBusy),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  co_await close(*stream, handshaken);
}

namespace {

// A failed handshake's reason as a label: a few fixed values, whatever the peer sent.
std::string_view handshake_reason(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timeout";
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated) {
    return "closed";
  }
  if (ec.category() == asio::error::get_ssl_category()) {
    switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
      case SSL_R_UNSUPPORTED_PROTOCOL:
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_VERSION_TOO_LOW:
      case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return "protocol_version";
      case SSL_R_HTTP_REQUEST:
        return "plain_http";
      case SSL_R_NO_SHARED_CIPHER:
      case SSL_R_NO_SHARED_GROUPS:
        return "no_shared_cipher";
      case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
        return "certificate_refused";
      default:
        break;
    }
  }
  return "other";
}

}  // namespace

asio::awaitable<bool> HttpServer::Impl::handshake(HttpStream& stream) {
  beast::error_code ec;
  stream.expires_after(std::chrono::seconds(config.header_timeout_s));
  co_await stream.async_handshake(asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) co_return true;
  handshake_failed(ec);
  co_return false;
}

void HttpServer::Impl::handshake_failed(const beast::error_code& ec) {
  const auto reason = handshake_reason(ec);
  metrics.tls_handshake_failed(std::string(reason));
  {
    const std::lock_guard lock(handshake_mutex);
    if (!handshake_reasons_logged.emplace(reason).second) return;
  }
  log.warn(
      "TLS handshake failed (the first of each reason is logged; "
      "cauce_http_tls_handshake_failures_total counts them all)",
      {{"reason", reason}, {"error", ec.message()}});
}

asio::awaitable<void> HttpServer::Impl::close(HttpStream& stream, bool handshaken) {
  beast::error_code ec;
  if (stream.tls() && handshaken) {
    // close_notify tells the client that the answer is whole (an SSE stream has no length); the
    // peer's own close_notify is awaited briefly, never for long.
    stream.expires_after(std::chrono::seconds(1));
    co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.next_layer().close();
}

asio::awaitable<void> HttpServer::Impl::accept_loop() {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket(asio::make_strand(ioc));
    co_await acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    // The certificate current now serves this connection for its whole life.
    auto context = tls ? tls->context() : nullptr;
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // e.g. EMFILE: back off briefly instead of spinning.
      log.warn("accept failed", {{"error", ec.message()}});
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    bool full = false;
    {
      const std::lock_guard lock(mutex);
      full = connections.size() >= static_cast<std::size_t>(config.max_connections);
    }
    if (full) {
      // Past the cap a connection costs one short answer, not a coroutine and a file forever.
      const auto executor = socket.get_executor();
      asio::co_spawn(
          executor,
          refuse_connection(std::make_shared<HttpStream>(std::move(socket), std::move(context))),
          asio::detached);
      continue;
    }
    auto connection = std::make_shared<Connection>(std::move(socket), std::move(context));
    {
      const std::lock_guard lock(mutex);
      connections.insert(connection);
    }
    asio::co_spawn(connection->stream.get_executor(), serve(connection), asio::detached);
  }
}

asio::awaitable<void> HttpServer::Impl::serve(std::shared_ptr<Connection> connection) {
  auto& stream = connection->stream;
  beast::flat_buffer buffer;
  beast::error_code ec;
  bool handshaken = !stream.tls();
  try {
    if (!handshaken) handshaken = co_await handshake(stream);
    while (handshaken && !draining.load()) {
      http::request_parser<http::string_body> parser;
      // The route, known once the headers are in, sets the body's limit (an upload has its own):
      // none while they are read (boost::none would refuse every Content-Length in Beast 1.74).
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      parser.header_limit(kHeaderLimit);
      connection->idle = true;
      stream.expires_after(std::chrono::seconds(config.idle_timeout_s));
      if (buffer.size() == 0) {
        // Waiting for a request may take the idle timeout; once its first byte is here, its
        // headers must follow within the header timeout (a client trickling bytes is cut).
        const auto n = co_await stream.async_read_some(
            buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
        buffer.commit(n);
      }
      if (!ec) {
        stream.expires_after(std::chrono::seconds(config.header_timeout_s));
        co_await http::async_read_header(stream, buffer, parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
      }
      // Until a request's headers are in, a drain may cut the connection (nothing was asked).
      connection->idle = false;
      bool upload = false;
      ClientOrigin origin;
      if (!ec) {
        origin = trusted.resolve(connection->peer, stream.tls(), parser.get());
        const auto match = router.match(parser.get().method(), parser.get().target());
        upload = match.route != nullptr && static_cast<bool>(match.route->upload_handler);
        if (!upload) {
          parser.body_limit(config.body_limit_bytes);
          const auto length = parser.content_length();
          if (length && *length > config.body_limit_bytes) ec = http::error::body_limit;
        }
      }
      if (!ec && !parser.is_done()) {
        // A request that can only be refused is answered before its body is read (and before
        // `100 Continue`): an anonymous client cannot make the server take in a body. Requests
        // without a body skip this (dispatch checks the key anyway).
        if (auto refusal = refuse_before_body(parser.get(), origin)) {
          stream.expires_after(kWriteTimeout);
          co_await http::async_write(stream, *refusal,
                                     asio::redirect_error(asio::use_awaitable, ec));
          break;
        }
      }
      if (!ec && upload) {
        co_await serve_upload(*connection, buffer, parser, origin);
        break;
      }
      if (!ec && parser.get()[http::field::expect] == "100-continue") {
        http::response<http::empty_body> go_on(http::status::continue_, parser.get().version());
        co_await http::async_write(stream, go_on, asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec && !parser.is_done()) {
        // The body gets a deadline of its own, not what is left of the header's.
        stream.expires_after(std::chrono::seconds(config.body_timeout_s));
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        if (is_disconnect(ec)) break;
        std::optional<ApiError> problem;
        if (ec == http::error::body_limit) {
          problem.emplace(http::status::payload_too_large, "payload-too-large",
                          "the body exceeds the limit of " +
                              std::to_string(config.body_limit_bytes) + " bytes");
        } else if (ec == http::error::header_limit) {
          problem.emplace(http::status::request_header_fields_too_large, "headers-too-large",
                          "the request headers exceed " + std::to_string(kHeaderLimit) + " bytes");
        } else {
          problem.emplace(http::status::bad_request, "bad-request",
                          "the request is not valid HTTP/1.1: " + ec.message());
        }
        auto response = render_problem(*problem, core::random_hex(8), 11, false);
        // Past the body limit the headers are whole: the request's trace goes on.
        response.set(kTraceParentHeader,
                     (ec == http::error::body_limit ? trace_of(parser.get().base())
                                                    : core::TraceParent::start())
                         .text());
        metrics.observe("unmatched", "OTHER", response.result_int(), 0.0);
        co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
        break;
      }
      // Most answers come within dispatch(), on this thread (a 304 from the version cache, a
      // probe, a refusal); they are taken as they are. Any other comes later from another thread
      // (a query, a command, a key lookup): the coroutine parks on a timer that the responder
      // cancels on this connection's strand.
      struct Pending {
        explicit Pending(const HttpStream::executor_type& executor)
            : parked(executor, asio::steady_timer::time_point::max()) {}
        asio::steady_timer parked;
        std::optional<Response> answer;
        std::shared_ptr<StreamSession> session;
        std::atomic<std::thread::id> dispatching{std::this_thread::get_id()};
      };
      auto pending = std::make_shared<Pending>(stream.get_executor());
      dispatch(parser.release(), origin, [pending](Response r, Handover h) {
        if (pending->dispatching.load() == std::this_thread::get_id()) {
          pending->answer = std::move(r);
          pending->session = std::move(h.stream);
          return;
        }
        auto& parked = pending->parked;
        asio::post(parked.get_executor(),
                   [pending, r = std::move(r), s = std::move(h.stream)]() mutable {
                     pending->answer = std::move(r);
                     pending->session = std::move(s);
                     pending->parked.cancel();
                   });
      });
      pending->dispatching.store(std::thread::id());
      if (!pending->answer) {
        // The handler bounds its own time (reply timeout, statement timeout); the socket's
        // deadline must not run out under it and reset a connection whose command was applied.
        stream.expires_never();
        co_await pending->parked.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        ec = {};
      }
      if (pending->session) {
        // The stream owns the connection from here; it ends with the connection. It runs in a
        // coroutine of its own so that this one's frame (the parser, the read buffer, the
        // request's state: a few KiB) is given back for as long as the stream lives.
        connection->session = pending->session;
        if (!draining.load()) {
          asio::co_spawn(stream.get_executor(), run_stream(connection), asio::detached);
          co_return;
        }
        connection->session.reset();
        break;
      }
      auto response = std::move(*pending->answer);
      const bool keep_alive = response.keep_alive() && !draining.load();
      response.keep_alive(keep_alive);
      stream.expires_after(kWriteTimeout);
      co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) break;
    }
  } catch (const std::exception& e) {
    log.error("connection failed", {{"error", e.what()}});
  }
  co_await close(stream, handshaken);
  forget(connection);
}

asio::awaitable<void> HttpServer::Impl::run_stream(std::shared_ptr<Connection> connection) {
  auto& stream = connection->stream;
  try {
    co_await connection->session->run(stream);
  } catch (const std::exception& e) {
    log.error("connection failed", {{"error", e.what()}});
  }
  connection->session.reset();
  co_await close(stream, true);
  forget(connection);
}

asio::awaitable<void> HttpServer::Impl::serve_upload(
    Connection& connection, beast::flat_buffer& buffer,
    http::request_parser<http::string_body>& parser, const ClientOrigin& origin) {
  auto& stream = connection.stream;
  beast::error_code ec;
  // Routed, authorised and checked from the headers alone; the answer may come later from
  // another thread (a key looked up), so it is parked like any asynchronous answer.
  auto parked = std::make_shared<asio::steady_timer>(stream.get_executor(),
                                                     asio::steady_timer::time_point::max());
  auto answer = std::make_shared<std::optional<Response>>();
  auto handover = std::make_shared<Handover>();
  dispatch(http::request<http::string_body>(parser.get().base()), origin,
           [parked, answer, handover](Response r, Handover h) {
             asio::post(parked->get_executor(),
                        [parked, answer, handover, r = std::move(r), h = std::move(h)]() mutable {
                          *answer = std::move(r);
                          *handover = std::move(h);
                          parked->cancel();
                        });
           });
  if (!*answer) {
    stream.expires_never();
    co_await parked->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    ec = {};
  }
  auto session = handover->upload;
  if (!session) {
    // Refused before a byte of the body was read: answered, and the connection closed (its body,
    // if the client sends it anyway, is never read).
    auto refusal = std::move(**answer);
    refusal.keep_alive(false);
    stream.expires_after(kWriteTimeout);
    co_await http::async_write(stream, refusal, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) co_await linger(stream);
    co_return;
  }
  if (parser.get()[http::field::expect] == "100-continue") {
    http::response<http::empty_body> go_on(http::status::continue_, parser.get().version());
    stream.expires_after(kWriteTimeout);
    co_await http::async_write(stream, go_on, asio::redirect_error(asio::use_awaitable, ec));
  }
  // The body, piece by piece into a fixed buffer: the parser takes chunked transfer encoding
  // apart and enforces the session's limit; each read has the body timeout, the whole body none.
  http::request_parser<http::buffer_body> body(std::move(parser));
  body.body_limit(session->body_limit());
  std::vector<char> piece(64 * 1024);
  auto end = ec ? UploadEnd::kDisconnected : UploadEnd::kComplete;
  connection.uploading = true;
  while (!ec && !body.is_done()) {
    if (draining.load()) {
      end = UploadEnd::kStopping;
      break;
    }
    body.get().body().data = piece.data();
    body.get().body().size = piece.size();
    stream.expires_after(std::chrono::seconds(config.body_timeout_s));
    co_await http::async_read_some(stream, buffer, body,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    const auto n = piece.size() - body.get().body().size;
    stream.expires_never();  // the session may wait for its work in flight
    if (n > 0 && !co_await session->consume(std::string_view(piece.data(), n))) {
      end = UploadEnd::kRefused;
      break;
    }
    if (ec) end = upload_end(ec, draining.load());
  }
  connection.uploading = false;
  auto response = co_await session->finish(end);
  handover->decorate(response);
  response.keep_alive(false);
  if (end == UploadEnd::kDisconnected || end == UploadEnd::kTimedOut) co_return;
  ec = {};
  stream.expires_after(kWriteTimeout);
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec && end != UploadEnd::kComplete) co_await linger(stream);
}

asio::awaitable<void> HttpServer::Impl::linger(HttpStream& stream) {
  // Closing a socket with unread bytes resets the connection, and the client may then lose the
  // answer it has not read yet: say no more, and take (and drop) what the client still sends for
  // a moment, a bounded amount.
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::array<char, 16 * 1024> sink{};
  std::size_t dropped = 0;
  stream.expires_after(std::chrono::seconds(2));
  while (!ec && dropped < kLingerBytes) {
    dropped += co_await stream.async_read_some(asio::buffer(sink),
                                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

void HttpServer::Impl::forget(const std::shared_ptr<Connection>& connection) {
  const std::lock_guard lock(mutex);
  connections.erase(connection);
  if (connections.empty()) connections_closed.notify_all();
}

HttpServer::HttpServer(const core::HttpConfig& config, const Router& router, ApiKeys& keys,
                       HttpMetrics& metrics, std::shared_ptr<TlsCertificate> tls)
    : impl_(std::make_unique<Impl>(config, router, keys, metrics, nullptr, std::move(tls))) {}

HttpServer::HttpServer(const core::HttpConfig& config, const Router& router, ApiKeys& keys,
                       HttpMetrics& metrics, asio::io_context& io,
                       std::shared_ptr<TlsCertificate> tls)
    : impl_(std::make_unique<Impl>(config, router, keys, metrics, &io, std::move(tls))) {}

HttpServer::~HttpServer() { stop(); }

std::uint16_t HttpServer::start() {
  auto& acceptor = impl_->acceptor;
  beast::error_code ec;
  const auto address = asio::ip::make_address(impl_->config.host, ec);
  if (ec)
    throw std::system_error(ec, "http.host \"" + impl_->config.host + "\" is not an IP address");
  const tcp::endpoint endpoint(address, impl_->config.port);
  const auto where = impl_->config.host + ":" + std::to_string(impl_->config.port);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint, ec);
  if (ec) throw std::system_error(ec, "cannot listen on " + where);
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::system_error(ec, "cannot listen on " + where);
  asio::co_spawn(acceptor.get_executor(), impl_->accept_loop(), asio::detached);
  for (int i = 0; i < impl_->config.threads; ++i) {
    impl_->threads.emplace_back([this] {
      // Requests are parsed here: a stack overflow on these threads is reported too.
      const core::FatalSignalStack fatal_signal_stack;
      impl_->ioc.run();
    });
  }
  return acceptor.local_endpoint().port();
}

void HttpServer::stop() {
  if (impl_->threads.empty()) return;
  impl_->draining.store(true);
  asio::post(impl_->acceptor.get_executor(), [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  });
  std::vector<std::shared_ptr<Connection>> open;
  {
    const std::lock_guard lock(impl_->mutex);
    open.assign(impl_->connections.begin(), impl_->connections.end());
  }
  for (const auto& connection : open) {
    asio::post(connection->stream.get_executor(), [connection] {
      if (connection->idle || connection->uploading) connection->stream.cancel();
      if (connection->session) connection->session->close();
    });
  }
  {
    std::unique_lock lock(impl_->mutex);
    const bool drained = impl_->connections_closed.wait_for(
        lock, std::chrono::seconds(impl_->config.drain_timeout_s),
        [this] { return impl_->connections.empty(); });
    if (!drained) {
      impl_->log.warn("drain timeout: closing connections with requests still in flight",
                      {{"connections", impl_->connections.size()}});
    }
  }
  impl_->auth_threads.join();  // lookups in flight answer (or find their connection gone)
  impl_->ioc.stop();
  for (auto& thread : impl_->threads) thread.join();
  impl_->threads.clear();
}

void HttpServer::dispatch(http::request<http::string_body>&& message,
                          std::function<void(Response)> done, const ClientOrigin& origin) const {
  impl_->dispatch(std::move(message), origin,
                  [done = std::move(done)](Response r, Handover) { done(std::move(r)); });
}

Response HttpServer::handle(http::request<http::string_body>&& message,
                            const ClientOrigin& origin) const {
  std::promise<Response> promise;
  auto future = promise.get_future();
  impl_->dispatch(std::move(message), origin,
                  [&promise](Response r, Handover) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace cauce::api
