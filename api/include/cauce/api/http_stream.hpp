#pragma once

// One connection's byte stream, plain TCP or TLS over it, chosen when the connection is
// accepted: the server's request loop, uploads, SSE and WebSocket sessions are written once
// against this type. Reads and writes go to the TLS layer when there is one; deadlines,
// cancellation and closing act on the TCP stream beneath (Beast's tcp_stream), so one
// expires_after() bounds a TLS handshake, a request's headers or a write the same way.

#include <cstddef>
#include <memory>
#include <optional>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>

namespace cauce::api {

class HttpStream {
 public:
  using tcp_stream = boost::beast::tcp_stream;
  using tls_stream = boost::beast::ssl_stream<tcp_stream>;
  using executor_type = tcp_stream::executor_type;
  // Beast's get_lowest_layer() (WebSocket time-outs close it) reaches the TCP stream.
  using next_layer_type = tcp_stream;

  // Plain HTTP when `context` is null. Else HTTPS: the handshake (server side) is still to be
  // done, and the connection keeps `context` (the certificate it is served with) while it lives.
  HttpStream(boost::asio::ip::tcp::socket socket,
             std::shared_ptr<boost::asio::ssl::context> context)
      : context_(std::move(context)) {
    if (context_) {
      tls_ = std::make_unique<tls_stream>(std::move(socket), *context_);
      tcp_ = &tls_->next_layer();
    } else {
      plain_.emplace(std::move(socket));
      tcp_ = &*plain_;
    }
  }
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  bool tls() const { return tls_ != nullptr; }
  executor_type get_executor() { return tcp_->get_executor(); }
  tcp_stream& next_layer() { return *tcp_; }
  tls_stream& tls_layer() { return *tls_; }  // only when tls()
  boost::asio::ip::tcp::socket& socket() { return tcp_->socket(); }

  template <typename Duration>
  void expires_after(Duration d) {
    tcp_->expires_after(d);
  }
  void expires_never() { tcp_->expires_never(); }
  void cancel() { tcp_->cancel(); }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto&& handler, const MutableBuffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::forward<decltype(handler)>(handler));
          } else {
            plain_->async_read_some(b, std::forward<decltype(handler)>(handler));
          }
        },
        token, buffers);
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto&& handler, const ConstBuffers& b) {
          if (tls_) {
            tls_->async_write_some(b, std::forward<decltype(handler)>(handler));
          } else {
            plain_->async_write_some(b, std::forward<decltype(handler)>(handler));
          }
        },
        token, buffers);
  }

  // TLS only: the server's side of the handshake.
  template <typename Token>
  auto async_handshake(Token&& token) {
    return tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Token>(token));
  }
  // TLS only: sends close_notify and waits for the peer's (bounded by the deadline set).
  template <typename Token>
  auto async_shutdown(Token&& token) {
    return tls_->async_shutdown(std::forward<Token>(token));
  }

 private:
  std::shared_ptr<boost::asio::ssl::context> context_;  // before tls_, which refers to it
  std::optional<tcp_stream> plain_;
  std::unique_ptr<tls_stream> tls_;
  tcp_stream* tcp_ = nullptr;
};

// A WebSocket over an HttpStream closes the way its transport does (Beast finds these by ADL).
template <typename TeardownHandler>
void async_teardown(boost::beast::role_type role, HttpStream& stream, TeardownHandler&& handler) {
  if (stream.tls()) {
    async_teardown(role, stream.tls_layer(), std::forward<TeardownHandler>(handler));
  } else {
    async_teardown(role, stream.next_layer(), std::forward<TeardownHandler>(handler));
  }
}

inline void teardown(boost::beast::role_type role, HttpStream& stream,
                     boost::system::error_code& ec) {
  if (stream.tls()) {
    teardown(role, stream.tls_layer(), ec);
  } else {
    teardown(role, stream.next_layer(), ec);
  }
}

}  // namespace cauce::api
