#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http.hpp>

#include <cauce/api/auth.hpp>
#include <cauce/core/trace.hpp>

namespace cauce::api {

namespace http = boost::beast::http;
class HttpStream;  // http_stream.hpp
using Response = http::response<http::string_body>;

struct Request {
  http::request<http::string_body> message;
  std::string request_id;
  // cauce's span for this request (W3C traceparent, answered in `traceparent`): a child of the
  // request's `traceparent` when it has one well-formed, else a new trace. Commands carry it.
  core::TraceParent trace;
  std::string route;  // the matched pattern, e.g. "/v1/keys/{id}"
  std::vector<std::pair<std::string, std::string>> path_params;
  std::optional<Principal> principal;
  // The client's address (X-Forwarded-For from a proxy of http.trusted_proxies, else the TCP
  // peer; "" off the network) and whether it asked over HTTPS (cauce's own TLS, or
  // X-Forwarded-Proto from such a proxy). For logs; never for authorisation.
  std::string client;
  bool https = false;

  // The value of a {name} segment of the route ("" when absent).
  std::string_view path_param(std::string_view name) const;
};

// A handler answers a request or throws ApiError (problem.hpp) / core::DependencyError; the
// server maps every exception to problem+json in one place.
using Handler = std::function<Response(Request&)>;

// Completes an asynchronous request; call it exactly once, from any thread.
using Responder = std::function<void(Response)>;
// A handler that answers later (e.g. when the command's reply arrives from Kafka) without
// holding an I/O thread. It may also throw like a Handler, before it returns.
using AsyncHandler = std::function<void(const std::shared_ptr<Request>&, Responder)>;

// A response that keeps its connection (Server-Sent Events, WebSocket): once the request is
// routed and authorised, run() owns the connection until it returns; then it is closed.
class StreamSession {
 public:
  virtual ~StreamSession() = default;
  // Runs on the connection's strand.
  virtual boost::asio::awaitable<void> run(HttpStream& stream) = 0;
  // Asks run() to end soon (server shutdown). Any thread.
  virtual void close() = 0;
};
// Validates the request (throwing like a Handler: the client then gets problem+json) and
// returns the session that takes the connection over.
using StreamHandler = std::function<std::shared_ptr<StreamSession>(Request&)>;

// How the body of an upload ended.
enum class UploadEnd {
  kComplete,      // every byte of it arrived
  kRefused,       // the session stopped reading it (consume() said so)
  kTooLarge,      // it passed the session's body limit
  kDisconnected,  // the client went away (or broke the HTTP framing) before its end
  kTimedOut,      // no byte came for http.body_timeout_s
  kStopping,      // the server is stopping
};

// A request whose body is taken piece by piece as it arrives, never held whole (POST
// /v1/imports). The route decides from the headers alone (auth, role, content type, limits;
// a refusal is answered before any byte of the body is read or `100 Continue` is sent), then
// its session takes the body: each piece as it is read (a deadline per read, not for the whole
// body), then the end, and answers. The connection closes after the answer.
class UploadSession {
 public:
  virtual ~UploadSession() = default;
  // The largest body taken; past it the upload ends kTooLarge.
  virtual std::uint64_t body_limit() const = 0;
  // The next bytes of the body, on the connection's strand. May wait (bounded work in flight);
  // false: read no more (finish(kRefused) answers why).
  virtual boost::asio::awaitable<bool> consume(std::string_view bytes) = 0;
  // The body ended, or stopped being read: the answer (not sent when the client is gone).
  virtual boost::asio::awaitable<Response> finish(UploadEnd end) = 0;
};
// Validates the request from its headers (throwing like a Handler: the client then gets
// problem+json) and returns the session that takes its body.
using UploadHandler =
    std::function<std::shared_ptr<UploadSession>(const std::shared_ptr<Request>&)>;

struct Route {
  http::verb method;
  std::string pattern;       // "/v1/keys/{id}": literal segments and {param} segments
  std::optional<Role> role;  // nullopt: public (health, metrics)
  Handler handler;  // exactly one of handler, async_handler, stream_handler, upload_handler is set
  AsyncHandler async_handler;
  StreamHandler stream_handler;
  UploadHandler upload_handler;
  std::vector<std::string> segments = {};  // the pattern's, split once when the route is added
};

// Matches method + path to a route. A path that exists with another method is a 405 (with the
// allowed methods); a path that matches nothing is a 404.
class Router {
 public:
  void add(http::verb method, std::string pattern, std::optional<Role> role, Handler handler);
  void add_async(http::verb method, std::string pattern, std::optional<Role> role,
                 AsyncHandler handler);
  void add_stream(http::verb method, std::string pattern, std::optional<Role> role,
                  StreamHandler handler);
  void add_upload(http::verb method, std::string pattern, std::optional<Role> role,
                  UploadHandler handler);

  struct Match {
    const Route* route = nullptr;
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<http::verb> allowed;  // filled when the path exists with other methods
  };
  Match match(http::verb method, std::string_view path) const;

  const std::vector<Route>& routes() const { return routes_; }
  // Paths of more segments than this match no route (404).
  static constexpr std::size_t kMaxSegments = 12;

 private:
  void insert(Route route);
  std::vector<Route> routes_;
};

// A JSON response with the request's id and no caching.
Response json_response(const Request& request, http::status status, std::string body);

}  // namespace cauce::api
