// TlsCertificate (api/tls.hpp) shared between threads: one thread reloads the certificate over
// and over (renewals landing, some half-written: a certificate whose key is not there yet)
// while eight threads run TLS handshakes against whatever context is current. Every handshake
// completes with a certificate the client verifies; a failed reload never leaves a context
// without a certificate. Also under the tsan preset (label `concurrency`).
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/ssl/context.hpp>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cauce/api/tls.hpp>

#include "test_certs.hpp"

namespace cauce::testing {
namespace {

namespace fs = std::filesystem;

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// One handshake in memory (a BIO pair) between a client trusting `client` and a server on
// `server`; the CN the client verified, "" when it failed.
std::string handshake(SSL_CTX* client, SSL_CTX* server) {
  const SslPtr c(SSL_new(client));
  const SslPtr s(SSL_new(server));
  if (!c || !s) return "";
  BIO* client_end = nullptr;
  BIO* server_end = nullptr;
  if (BIO_new_bio_pair(&client_end, 0, &server_end, 0) != 1) return "";
  SSL_set_bio(c.get(), client_end, client_end);  // each SSL owns its end from here
  SSL_set_bio(s.get(), server_end, server_end);
  SSL_set1_host(c.get(), "localhost");
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 100 && !(client_done && server_done); ++round) {
    if (!client_done) {
      const int r = SSL_do_handshake(c.get());
      if (r == 1) {
        client_done = true;
      } else if (const int e = SSL_get_error(c.get(), r);
                 e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        return "";
      }
    }
    if (!server_done) {
      const int r = SSL_do_handshake(s.get());
      if (r == 1) {
        server_done = true;
      } else if (const int e = SSL_get_error(s.get(), r);
                 e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        return "";
      }
    }
  }
  if (!client_done || !server_done || SSL_get_verify_result(c.get()) != X509_V_OK) return "";
  X509* peer = SSL_get1_peer_certificate(c.get());
  if (peer == nullptr) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
  X509_free(peer);
  return cn;
}

TEST(TlsReloadConcurrencyTest, HandshakesRunWhileTheCertificateIsSwappedFromAnotherThread) {
  TestCerts certs;
  // Renewals ready beside the served files (made first: openssl runs are slow under tsan).
  constexpr int kRenewals = 4;
  std::vector<std::pair<fs::path, fs::path>> renewals;
  std::set<std::string> names = {"localhost-1"};
  for (int i = 0; i < kRenewals; ++i) {
    const auto cert = certs.dir() / ("renewal-" + std::to_string(i) + ".crt");
    const auto key = certs.dir() / ("renewal-" + std::to_string(i) + ".key");
    names.insert(certs.issue_server_cert(cert, key));
    renewals.emplace_back(cert, key);
  }
  api::TlsCertificate served(certs.server_cert.string(), certs.server_key.string());

  // Each thread a client of its own (as separate clients are): only the server side is shared.
  const auto make_client = [&certs] {
    SslCtxPtr client(SSL_CTX_new(TLS_client_method()));
    if (!client ||
        SSL_CTX_load_verify_locations(client.get(), certs.ca_cert.c_str(), nullptr) != 1) {
      return SslCtxPtr();
    }
    SSL_CTX_set_verify(client.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(client.get(), SSL_SESS_CACHE_OFF);
    return client;
  };

  std::atomic<bool> stop{false};
  std::atomic<int> handshakes{0};
  std::atomic<int> failures{0};
  std::mutex seen_mutex;
  std::set<std::string> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      const auto client = make_client();
      if (!client) {
        ++failures;
        return;
      }
      std::set<std::string> mine;
      while (!stop.load()) {
        const auto context = served.context();  // kept for the handshake, as a connection does
        const auto cn = handshake(client.get(), context->native_handle());
        if (cn.empty()) {
          ++failures;
        } else {
          mine.insert(cn);
        }
        ++handshakes;
      }
      const std::lock_guard lock(seen_mutex);
      seen.insert(mine.begin(), mine.end());
    });
  }

  int reloaded = 0;
  int refused = 0;
  for (int round = 0; round < 3 * kRenewals; ++round) {
    const auto& [cert, key] = renewals[static_cast<std::size_t>(round % kRenewals)];
    // The certificate lands first, the key a moment later: a reload in between is refused and
    // the previous pair stays.
    fs::copy_file(cert, certs.server_cert, fs::copy_options::overwrite_existing);
    if (!served.reload()) ++refused;
    fs::copy_file(key, certs.server_key, fs::copy_options::overwrite_existing);
    if (served.reload()) ++reloaded;
    const int before = handshakes.load();
    while (handshakes.load() < before + 8) std::this_thread::yield();
    EXPECT_NE(served.served().sha256, "");
  }
  stop.store(true);
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(failures.load(), 0) << "of " << handshakes.load() << " handshakes";
  EXPECT_EQ(reloaded, 3 * kRenewals);
  EXPECT_EQ(refused, 3 * kRenewals) << "a certificate without its key is never served";
  EXPECT_GE(seen.size(), 2U);
  for (const auto& cn : seen) EXPECT_TRUE(names.contains(cn)) << cn;
}

}  // namespace
}  // namespace cauce::testing
