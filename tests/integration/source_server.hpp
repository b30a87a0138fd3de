#pragma once

// HTTP servers on loopback that tests start: LoopbackHttpServer (one thread per connection,
// each answering one request with whatever a handler makes of it), and on it SourceServer (a
// report source: calls and Authorization headers per path, a required Authorization).

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>  // before Boost 1.74's asio, which needs std::exchange
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace cauce::testing {

class LoopbackHttpServer {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;
  // Fills the response (a 200 without body to begin with) on the connection's own thread; the
  // answer is written once it returns, and the connection then closed.
  using Handler = std::function<void(const Request& request, Response& response)>;

  explicit LoopbackHttpServer(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~LoopbackHttpServer() {
    stopping_ = true;
    boost::system::error_code ignored;
    boost::asio::ip::tcp::socket wake(io_);
    wake.connect(acceptor_.local_endpoint(), ignored);  // unblocks accept()
    thread_.join();
    const std::lock_guard lock(mutex_);
    for (auto& t : connections_) t.join();
  }
  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      boost::asio::ip::tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) continue;
      const std::lock_guard lock(mutex_);
      connections_.emplace_back([this, s = std::move(socket)]() mutable { answer(s); });
    }
  }

  void answer(boost::asio::ip::tcp::socket& socket) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    Request request;
    boost::system::error_code ec;
    http::read(socket, buffer, request, ec);
    if (ec) return;
    Response response{http::status::ok, 11};
    handler_(request, response);
    response.keep_alive(false);
    response.prepare_payload();
    http::write(socket, response, ec);
    socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  }

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::thread> connections_;
};

class SourceServer {
 public:
  using Response = LoopbackHttpServer::Response;
  // Fills the response (200 text/csv by default) for a path asked for the n-th time (1, 2, ...).
  using Handler = std::function<void(const std::string& path, int n, Response& response)>;

  explicit SourceServer(Handler handler)
      : handler_(std::move(handler)),
        server_([this](const LoopbackHttpServer::Request& request, Response& response) {
          answer(request, response);
        }) {}

  std::string url(const std::string& path) const { return server_.url(path); }
  // The Authorization header of each request for `path` so far ("" for none), in order.
  std::vector<std::string> authorizations(const std::string& path) const {
    const std::lock_guard lock(mutex_);
    const auto it = authorizations_.find(path);
    return it == authorizations_.end() ? std::vector<std::string>{} : it->second;
  }
  // Requests for `path` without exactly this Authorization header get a 401.
  void require_authorization(const std::string& path, std::string value) {
    const std::lock_guard lock(mutex_);
    required_[path] = std::move(value);
  }
  // How many requests asked for `path` so far.
  int calls(const std::string& path) const {
    const std::lock_guard lock(mutex_);
    const auto it = calls_.find(path);
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  void answer(const LoopbackHttpServer::Request& request, Response& response) {
    namespace http = boost::beast::http;
    const std::string path(request.target());
    const std::string authorization(request[http::field::authorization]);
    int n = 0;
    std::optional<std::string> required;
    {
      const std::lock_guard lock(mutex_);
      n = ++calls_[path];
      authorizations_[path].push_back(authorization);
      if (const auto it = required_.find(path); it != required_.end()) required = it->second;
    }
    response.set(http::field::content_type, "text/csv; charset=utf-8");
    if (required && authorization != *required) {
      response.result(http::status::unauthorized);
      response.set(http::field::content_type, "text/plain");
      response.body() = "who are you?";
      return;
    }
    handler_(path, n, response);
  }

  Handler handler_;
  mutable std::mutex mutex_;
  std::map<std::string, int> calls_;
  std::map<std::string, std::vector<std::string>> authorizations_;
  std::map<std::string, std::string> required_;
  LoopbackHttpServer server_;  // last: its threads stop before the members they use go
};

}  // namespace cauce::testing
