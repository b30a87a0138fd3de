#pragma once

// An HTTP server on loopback that the tests start as a report source: one thread per
// connection, each answering one request with whatever the test's handler makes of it.

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

class SourceServer {
 public:
  using Response = boost::beast::http::response<boost::beast::http::string_body>;
  // Fills the response (200 text/csv by default) for a path asked for the n-th time (1, 2, ...).
  using Handler = std::function<void(const std::string& path, int n, Response& response)>;

  explicit SourceServer(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~SourceServer() {
    stopping_ = true;
    boost::system::error_code ignored;
    boost::asio::ip::tcp::socket wake(io_);
    wake.connect(acceptor_.local_endpoint(), ignored);  // unblocks accept()
    thread_.join();
    const std::lock_guard lock(mutex_);
    for (auto& t : connections_) t.join();
  }
  SourceServer(const SourceServer&) = delete;
  SourceServer& operator=(const SourceServer&) = delete;

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
  }
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
    http::request<http::string_body> request;
    boost::system::error_code ec;
    http::read(socket, buffer, request, ec);
    if (ec) return;
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
    Response response{http::status::ok, 11};
    response.set(http::field::content_type, "text/csv; charset=utf-8");
    if (required && authorization != *required) {
      response.result(http::status::unauthorized);
      response.set(http::field::content_type, "text/plain");
      response.body() = "who are you?";
    } else {
      handler_(path, n, response);
    }
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
  mutable std::mutex mutex_;
  std::map<std::string, int> calls_;
  std::map<std::string, std::vector<std::string>> authorizations_;
  std::map<std::string, std::string> required_;
  std::vector<std::thread> connections_;
};

}  // namespace cauce::testing
