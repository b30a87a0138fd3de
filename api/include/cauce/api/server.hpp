#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <cauce/api/client_address.hpp>
#include <cauce/api/http.hpp>
#include <cauce/core/config.hpp>

namespace boost::asio {
class io_context;
}

namespace cauce::api {

class ApiKeys;
class HttpMetrics;
class TlsCertificate;

// HTTP/1.1 server (Boost.Beast) running the router on `threads` I/O threads. Each connection
// is a coroutine on its own strand; bodies above the limit get 413, idle keep-alive
// connections close after the idle timeout.
//
// HTTPS when the config names http.tls_certificate_file and http.tls_key_file: with `tls`, the
// certificate the process loaded (and reloads on SIGHUP; each new connection takes the one
// current when it is accepted), else one the server loads (a core::ConfigError naming the
// setting when it cannot be used). Every request carries its client (ClientOrigin): the TCP
// peer, or what a proxy of http.trusted_proxies forwarded.
class HttpServer {
 public:
  HttpServer(const core::HttpConfig& config, const Router& router, ApiKeys& keys,
             HttpMetrics& metrics, std::shared_ptr<TlsCertificate> tls = nullptr);
  // Runs its connections on `io`, which other work of the process shares (the read pipelines:
  // routes that answer on the I/O threads without a thread of their own). `io` must outlive
  // the server; stop() stops it.
  HttpServer(const core::HttpConfig& config, const Router& router, ApiKeys& keys,
             HttpMetrics& metrics, boost::asio::io_context& io,
             std::shared_ptr<TlsCertificate> tls = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; returns the bound port. Throws std::system_error naming the
  // address when it cannot bind (e.g. the port is in use).
  std::uint16_t start();

  // Graceful shutdown: stops accepting, closes idle connections, lets in-flight requests
  // finish (up to the drain timeout), then stops the I/O threads.
  void stop();

  // The whole request pipeline without the network: request id, routing, auth, handler,
  // problem mapping, metrics. `done` gets the response exactly once, possibly later and on
  // another thread (asynchronous routes). Used by the connections.
  void dispatch(http::request<http::string_body>&& message, std::function<void(Response)> done,
                const ClientOrigin& origin = {}) const;

  // dispatch() that waits for the response: for tests and benchmarks.
  Response handle(http::request<http::string_body>&& message,
                  const ClientOrigin& origin = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::api
