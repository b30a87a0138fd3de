#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace boost::asio::ssl {
class context;
}
namespace prometheus {
class Registry;
}

namespace cauce::api {

// The HTTPS listener's certificate and private key (http.tls_certificate_file,
// http.tls_key_file) as an OpenSSL server context: TLS 1.2 at least, forward-secret AEAD
// ciphers chosen by the server, no compression, no renegotiation. reload() builds a new context
// from the same paths and swaps it whole: a handshake takes the context current when it starts
// and its connection keeps it, so established connections keep the certificate they were
// served with and are never dropped.
//
// With a registry: cauce_http_tls_certificate_expiry_timestamp_seconds (of the certificate new
// handshakes get) and cauce_http_tls_reloads_total{outcome="success"|"failure"}.
class TlsCertificate {
 public:
  // Loads both files. Throws core::ConfigError naming the setting when a file cannot be read or
  // holds no PEM certificate (key), when the key is not the certificate's, or when the
  // certificate has expired or is not valid yet. The key's bytes (and OpenSSL's view of them)
  // are never in a message.
  TlsCertificate(std::string certificate_file, std::string key_file,
                 prometheus::Registry* registry = nullptr);
  ~TlsCertificate();
  TlsCertificate(const TlsCertificate&) = delete;
  TlsCertificate& operator=(const TlsCertificate&) = delete;

  // The context for a new handshake; any thread.
  std::shared_ptr<boost::asio::ssl::context> context() const;

  // Loads the files again (SIGHUP): true when new handshakes now get them; false when they
  // could not be used (logged at error, naming the setting), the previous certificate stays.
  bool reload();

  // What is served now: the certificate's subject (one line), its notAfter as Unix seconds,
  // and its SHA-256 fingerprint (hex). For logs and tests.
  struct Served {
    std::string subject;
    std::int64_t not_after_s = 0;
    std::string sha256;
  };
  Served served() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::api
