#pragma once

// A minimal EventSource for the tests: a raw socket reading a /v1/stream answer.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <poll.h>
#include <sys/socket.h>

namespace cauce::testing {

inline void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

struct SseEvent {
  std::int64_t id = 0;
  std::string event;
  std::string data;
};

// A minimal EventSource: raw socket, parses `id:`, `event:`, `data:` and blank lines.
class SseClient {
 public:
  SseClient(std::uint16_t port, const std::string& token, const std::string& target,
            std::optional<std::int64_t> last_event_id = std::nullopt, bool tiny_buffer = false)
      : socket_(ioc_) {
    socket_.open(boost::asio::ip::tcp::v4());
    if (tiny_buffer) socket_.set_option(boost::asio::socket_base::receive_buffer_size(4096));
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    set_receive_timeout(socket_.native_handle(), 500ms);
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: " +
                          "text/event-stream\r\nAuthorization: Bearer " + token + "\r\n";
    if (last_event_id) request += "Last-Event-ID: " + std::to_string(*last_event_id) + "\r\n";
    boost::asio::write(socket_, boost::asio::buffer(request + "\r\n"));
  }

  // Reads until `count` events arrived or `timeout` passed.
  std::vector<SseEvent> read(std::size_t count, std::chrono::milliseconds timeout = 30s) {
    std::vector<SseEvent> out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
      parse_into(out, count);
      if (out.size() >= count) break;
      if (!readable_before(deadline)) break;
      char chunk[8192];
      boost::beast::error_code ec;
      const auto n = socket_.read_some(boost::asio::buffer(chunk), ec);
      if (ec && ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) break;
      buffer_.append(chunk, n);
    }
    return out;
  }
  const std::string& head() const { return head_; }
  // The id an EventSource would resume after: the last `id:` line read, also one without data
  // (0: none yet).
  std::int64_t last_id() const { return last_id_; }
  // Waits for the response head: the server subscribes before it sends it.
  bool wait_for_head(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (head_.empty() && std::chrono::steady_clock::now() < deadline) {
      std::vector<SseEvent> ignored;
      parse_into(ignored, 0);
      if (!head_.empty()) break;
      if (!readable_before(deadline)) break;
      char chunk[4096];
      boost::beast::error_code ec;
      const auto n = socket_.read_some(boost::asio::buffer(chunk), ec);
      if (ec && ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) break;
      buffer_.append(chunk, n);
    }
    return !head_.empty();
  }

 private:
  // Waits until the socket has bytes (or the peer closed) or `deadline` passed: Asio's blocking
  // read does not honour SO_RCVTIMEO, so a read never waits past the caller's timeout.
  bool readable_before(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{socket_.native_handle(), POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0))) > 0;
  }

  void parse_into(std::vector<SseEvent>& out, std::size_t count) {
    if (head_.empty()) {
      const auto end = buffer_.find("\r\n\r\n");
      if (end == std::string::npos) return;
      head_ = buffer_.substr(0, end);
      buffer_.erase(0, end + 4);
    }
    std::size_t block_end;
    while (out.size() < count && (block_end = buffer_.find("\n\n")) != std::string::npos) {
      const auto block = buffer_.substr(0, block_end);
      buffer_.erase(0, block_end + 2);
      SseEvent e;
      std::size_t start = 0;
      while (start < block.size()) {
        auto nl = block.find('\n', start);
        if (nl == std::string::npos) nl = block.size();
        const auto line = block.substr(start, nl - start);
        if (line.starts_with("id: ")) e.id = last_id_ = std::stoll(line.substr(4));
        if (line.starts_with("event: ")) e.event = line.substr(7);
        if (line.starts_with("data: ")) e.data = line.substr(6);
        start = nl + 1;
      }
      if (!e.event.empty()) out.push_back(std::move(e));
    }
  }

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  std::string buffer_;
  std::string head_;
  std::int64_t last_id_ = 0;
};

}  // namespace cauce::testing
