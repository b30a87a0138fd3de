// cauce's own HTTPS listener (issue 18, part 3) on the real `cauce serve`, with certificates made
// by TestCerts: a client trusting the test CA gets answers, one trusting another CA refuses the
// server, TLS 1.1 is refused, a client that never says hello is cut off; SIGHUP swaps the
// certificate for new connections while an established keep-alive connection and an SSE stream
// go on; a bad reload keeps the old certificate; an expired certificate or a key that is not the
// certificate's stops the start with the setting named; no key material is ever logged.
#include <csignal>
#include <fstream>
#include <sstream>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "served.hpp"
#include "sse_client.hpp"
#include "test_certs.hpp"

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// One HTTPS connection from a client that trusts `ca` and checks the name "localhost". Every
// step has a deadline: a server that does not answer fails the test instead of hanging it.
class HttpsConnection {
 public:
  // `only_version`: TLS1_1_VERSION etc. to offer that version alone (0: the library's range).
  HttpsConnection(std::uint16_t port, const fs::path& ca, int only_version = 0)
      : port_(port), context_(ssl::context::tls_client) {
    context_.load_verify_file(ca.string());
    context_.set_verify_mode(ssl::verify_peer);
    if (only_version != 0) {
      SSL_CTX_set_security_level(context_.native_handle(), 0);  // TLS 1.1 needs SHA-1
      SSL_CTX_set_min_proto_version(context_.native_handle(), only_version);
      SSL_CTX_set_max_proto_version(context_.native_handle(), only_version);
    }
    stream_.emplace(ioc_, context_);
    static char host[] = "localhost";  // SNI (SSL_set_tlsext_host_name, without its C cast)
    SSL_ctrl(stream_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             host);
    SSL_set1_host(stream_->native_handle(), "localhost");
  }

  // TCP connect and TLS handshake; the handshake's error (none when it worked).
  beast::error_code connect() {
    beast::error_code result;
    beast::get_lowest_layer(*stream_).expires_after(10s);
    beast::get_lowest_layer(*stream_).async_connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_),
        [&](beast::error_code ec) {
          if (ec) {
            result = ec;
            return;
          }
          stream_->async_handshake(ssl::stream_base::client,
                                   [&](beast::error_code hs) { result = hs; });
        });
    run();
    return result;
  }

  // The subject CN of the certificate the server presented.
  std::string server_cn() {
    X509* cert = SSL_get1_peer_certificate(stream_->native_handle());
    if (cert == nullptr) return "";
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    X509_free(cert);
    return cn;
  }

  std::string protocol() { return SSL_get_version(stream_->native_handle()); }

  // One request on this connection (kept alive unless the server closes it).
  HttpResult request(http::verb method, const std::string& target, const std::string& token = "",
                     const std::vector<std::pair<std::string, std::string>>& headers = {},
                     const std::string& body = "") {
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, "localhost");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = body;
    req.prepare_payload();
    http::response<http::string_body> res;
    beast::error_code result;
    beast::get_lowest_layer(*stream_).expires_after(10s);
    http::async_write(*stream_, req, [&](beast::error_code ec, std::size_t) {
      if (ec) {
        result = ec;
        return;
      }
      http::async_read(*stream_, buffer_, res,
                       [&](beast::error_code read, std::size_t) { result = read; });
    });
    run();
    if (result) throw std::runtime_error("HTTPS request failed: " + result.message());
    HttpResult out;
    out.status = res.result_int();
    for (const auto& field : res) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      out.headers[name] = std::string(field.value());
    }
    out.body = res.body();
    return out;
  }

  // Sends raw bytes (a request whose answer does not end, e.g. SSE).
  void send(const std::string& bytes) {
    beast::error_code result;
    beast::get_lowest_layer(*stream_).expires_after(10s);
    asio::async_write(*stream_, asio::buffer(bytes),
                      [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    if (result) throw std::runtime_error("HTTPS send failed: " + result.message());
  }

  // Reads until what arrived since the last call contains `needle` (true), or `timeout` passes
  // or the connection ends (false).
  bool read_until(const std::string& needle, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (received_.find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      beast::error_code result;
      std::size_t n = 0;
      std::array<char, 4096> chunk{};
      beast::get_lowest_layer(*stream_).expires_at(deadline);
      stream_->async_read_some(asio::buffer(chunk), [&](beast::error_code ec, std::size_t got) {
        result = ec;
        n = got;
      });
      run();
      received_.append(chunk.data(), n);
      if (result) return received_.find(needle) != std::string::npos;
    }
    received_.erase(0, received_.find(needle) + needle.size());
    return true;
  }

 private:
  void run() {
    ioc_.restart();
    ioc_.run_for(15s);
    if (!ioc_.stopped()) throw std::runtime_error("HTTPS client: no answer within 15 s");
  }

  std::uint16_t port_;
  asio::io_context ioc_;
  ssl::context context_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream_;
  beast::flat_buffer buffer_;
  std::string received_;
};

// The base64 lines of a PEM key: none of them may ever show in a log.
std::vector<std::string> key_lines(const fs::path& key) {
  std::vector<std::string> out;
  std::ifstream in(key);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && !line.starts_with("-----")) out.push_back(line);
  }
  return out;
}

void expect_no_key_material(const std::string& log, const fs::path& key) {
  const auto lines = key_lines(key);
  ASSERT_FALSE(lines.empty());
  for (const auto& line : lines) {
    EXPECT_THAT(log, Not(HasSubstr(line.substr(0, 24)))) << "key material of " << key;
  }
  EXPECT_THAT(log, Not(HasSubstr("PRIVATE KEY")));
}

// A sample of a /metrics text (the value of the first line starting with `series`), -1 if none.
double metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

class TlsTest : public ServedTest {
 protected:
  void SetUp() override {
    settings = {{"CAUCE_ROLES", "api,processor,projector"},
                {"CAUCE_HTTP_TLS_CERTIFICATE_FILE", certs_.server_cert.string()},
                {"CAUCE_HTTP_TLS_KEY_FILE", certs_.server_key.string()},
                {"CAUCE_HTTP_HEADER_TIMEOUT_S", "2"},
                {"CAUCE_HTTP_HSTS", "true"},
                // The test client is the "proxy": its X-Forwarded-* headers are believed.
                {"CAUCE_HTTP_TRUSTED_PROXIES", "127.0.0.1"},
                {"CAUCE_LOG_LEVEL", "debug"},  // "command accepted" lines
                {"CAUCE_PROJECTIONS_HEARTBEAT_S", "1"}};
    for (const auto& [name, value] : extra_settings()) settings[name] = value;
    ServedTest::SetUp();
    serve_https();
  }
  virtual std::map<std::string, std::string> extra_settings() const { return {}; }

  void TearDown() override {
    if (serve_) expect_no_key_material(serve_->output(), certs_.server_key);
  }

  // `cauce serve` over HTTPS, once /readyz answers 200 over it.
  void serve_https() {
    serve_ = std::make_unique<CauceProcess>(std::vector<std::string>{"serve"}, env());
    const auto listening = serve_->wait_for_line(R"("msg":"listening")");
    ASSERT_TRUE(listening) << serve_->output();
    EXPECT_THAT(*listening, HasSubstr(R"("scheme":"https")"));
    port_ = listening_port(*listening);
    std::getline(std::ifstream(data_.path() / "admin.key"), admin_);
    ASSERT_TRUE(eventually(
        [&] {
          try {
            HttpsConnection c(port_, certs_.ca_cert);
            return !c.connect() && c.request(http::verb::get, "/readyz").status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        60s))
        << serve_->output();
  }

  std::string metrics_text() {
    HttpsConnection c(port_, certs_.ca_cert);
    EXPECT_FALSE(c.connect());
    return c.request(http::verb::get, "/metrics").body;
  }

  TestCerts certs_;
};

TEST_F(TlsTest, HttpsWorksWithTheTestCaAndIsRefusedByAClientTrustingAnotherCa) {
  HttpsConnection trusting(port_, certs_.ca_cert);
  ASSERT_FALSE(trusting.connect());
  EXPECT_EQ(trusting.server_cn(), "localhost-1");
  const auto ready = trusting.request(http::verb::get, "/readyz");
  EXPECT_EQ(ready.status, 200U);
  // Over cauce's own TLS every answer is HTTPS: Strict-Transport-Security when http.hsts.
  EXPECT_EQ(header(ready, "strict-transport-security"), "max-age=31536000");
  // Keep-alive: the same connection serves an authenticated request next.
  EXPECT_EQ(trusting.request(http::verb::get, "/v1/contacts?limit=1", admin_).status, 200U);

  HttpsConnection other(port_, certs_.other_ca_cert);
  const auto refused = other.connect();
  ASSERT_TRUE(refused);
  EXPECT_THAT(refused.message(), HasSubstr("certificate verify failed"));

  // Plain HTTP to the HTTPS port gets no HTTP answer (and is counted, not logged each time).
  for (int i = 0; i < 3; ++i) {
    std::string answer;
    try {
      answer = raw_exchange(port_, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 10s);
    } catch (const std::exception&) {
    }
    EXPECT_THAT(answer, Not(HasSubstr("HTTP/1.1 200")));
  }
  const auto text = metrics_text();
  EXPECT_GE(metric(text, R"(cauce_http_tls_handshake_failures_total{reason="plain_http"})"), 3);
  EXPECT_GE(
      metric(text, R"(cauce_http_tls_handshake_failures_total{reason="certificate_refused"})"), 1);
  EXPECT_GT(metric(text, "cauce_http_tls_certificate_expiry_timestamp_seconds"),
            static_cast<double>(std::time(nullptr)));
  // What infra/prometheus/alerts.yml reads (InfraTest's server speaks HTTP and has none).
  EXPECT_THAT(text, HasSubstr("# TYPE cauce_http_tls_reloads_total counter"));
  EXPECT_THAT(text, HasSubstr("# TYPE cauce_http_tls_certificate_expiry_timestamp_seconds gauge"));
  ASSERT_TRUE(serve_->wait_for_line(R"("reason":"plain_http")", 10s));
  const auto output = serve_->output();
  std::size_t logged = 0;
  for (auto at = output.find(R"("reason":"plain_http")"); at != std::string::npos;
       at = output.find(R"("reason":"plain_http")", at + 1)) {
    ++logged;
  }
  EXPECT_EQ(logged, 1U) << "one warning per reason, not one per connection";
}

TEST_F(TlsTest, Tls11IsRefusedAndTls12And13AreServed) {
  HttpsConnection old(port_, certs_.ca_cert, TLS1_1_VERSION);
  EXPECT_TRUE(old.connect());
  for (const int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    HttpsConnection current(port_, certs_.ca_cert, version);
    ASSERT_FALSE(current.connect()) << version;
    EXPECT_EQ(current.request(http::verb::get, "/healthz").status, 200U);
  }
  EXPECT_GE(metric(metrics_text(),
                   R"(cauce_http_tls_handshake_failures_total{reason="protocol_version"})"),
            1);
}

TEST_F(TlsTest, AClientThatNeverSaysHelloIsCutOffByTheHeaderTimeout) {
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), port_});
  set_receive_timeout(socket.native_handle(), 15s);
  const auto started = std::chrono::steady_clock::now();
  std::array<char, 64> byte{};
  beast::error_code ec;
  socket.read_some(asio::buffer(byte), ec);  // the server closes it (http.header_timeout_s 2)
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 12s);
  EXPECT_TRUE(eventually([&] {
    return metric(metrics_text(), R"(cauce_http_tls_handshake_failures_total{reason="timeout"})") >=
           1;
  }));
}

TEST_F(TlsTest, SighupSwapsTheCertificateWhileEstablishedConnectionsGoOn) {
  HttpsConnection kept(port_, certs_.ca_cert);
  ASSERT_FALSE(kept.connect());
  ASSERT_EQ(kept.request(http::verb::get, "/healthz").status, 200U);
  EXPECT_EQ(kept.server_cn(), "localhost-1");

  HttpsConnection stream(port_, certs_.ca_cert);
  ASSERT_FALSE(stream.connect());
  stream.send(
      "GET /v1/stream?topics=contacts HTTP/1.1\r\nHost: localhost\r\n"
      "Accept: text/event-stream\r\nAuthorization: Bearer " +
      admin_ + "\r\n\r\n");
  ASSERT_TRUE(stream.read_until("retry: 1000"));

  const auto renewed = certs_.reissue_server_cert();
  ASSERT_EQ(renewed, "localhost-2");
  serve_->signal(SIGHUP);
  ASSERT_TRUE(serve_->wait_for_line("TLS certificate reloaded", 20s)) << serve_->output();

  HttpsConnection fresh(port_, certs_.ca_cert);
  ASSERT_FALSE(fresh.connect());
  EXPECT_EQ(fresh.server_cn(), "localhost-2");
  EXPECT_EQ(fresh.request(http::verb::get, "/healthz").status, 200U);

  // The established ones go on, with the certificate they were served.
  EXPECT_EQ(kept.request(http::verb::get, "/healthz").status, 200U);
  EXPECT_EQ(kept.server_cn(), "localhost-1");
  // The stream still delivers: the contact the kept connection creates is notified on it.
  const auto created =
      kept.request(http::verb::post, "/v1/contacts", admin_, {{"Content-Type", "application/json"}},
                   R"({"name":"Ada","phone":"+44 20 7946 0958"})");
  ASSERT_EQ(created.status, 201U) << created.body;
  EXPECT_TRUE(stream.read_until("event: contacts", 30s)) << "the SSE stream goes on";
  EXPECT_EQ(stream.server_cn(), "localhost-1");

  EXPECT_EQ(metric(metrics_text(), R"(cauce_http_tls_reloads_total{outcome="success"})"), 1);
}

// The rest of the server over TLS: an upload streamed in pieces, a WebSocket, and the drain on
// SIGTERM with a keep-alive connection open.
TEST_F(TlsTest, UploadsWebSocketsAndTheDrainWorkOverTls) {
  HttpsConnection upload(port_, certs_.ca_cert);
  ASSERT_FALSE(upload.connect());
  std::string csv = "name,phone\r\n";
  for (int i = 0; i < 200; ++i) csv += "Tls Person " + std::to_string(i) + ",+44 20 7946 0958\r\n";
  const auto imported =
      upload.request(http::verb::post, "/v1/imports", admin_, {{"Content-Type", "text/csv"}}, csv);
  ASSERT_EQ(imported.status, 201U) << imported.body;
  EXPECT_EQ(json_member(imported.body, "accepted"), "200");

  namespace websocket = beast::websocket;
  asio::io_context ioc;
  ssl::context context(ssl::context::tls_client);
  context.load_verify_file(certs_.ca_cert.string());
  context.set_verify_mode(ssl::verify_peer);
  websocket::stream<beast::ssl_stream<asio::ip::tcp::socket>> ws(ioc, context);
  auto& socket = beast::get_lowest_layer(ws);
  socket.connect({asio::ip::make_address("127.0.0.1"), port_});
  set_receive_timeout(socket.native_handle(), 20s);  // a read that hangs fails instead
  SSL_set1_host(ws.next_layer().native_handle(), "localhost");
  ws.next_layer().handshake(ssl::stream_base::client);
  ws.set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
    req.set(http::field::authorization, "Bearer " + admin_);
  }));
  ws.handshake("localhost", "/v1/ws");
  ws.write(asio::buffer(std::string(R"({"subscribe":["alerts"]})")));
  HttpsConnection writer(port_, certs_.ca_cert);
  ASSERT_FALSE(writer.connect());
  const auto raised =
      writer.request(http::verb::post, "/v1/alerts", admin_, {{"Content-Type", "application/json"}},
                     R"({"level":"info","title":"over tls"})");
  ASSERT_EQ(raised.status, 201U) << raised.body;
  beast::flat_buffer buffer;
  std::string message;
  for (int i = 0; i < 20 && message.find("alert.raised") == std::string::npos; ++i) {
    buffer.clear();
    ws.read(buffer);  // id-only messages may come first
    message = beast::buffers_to_string(buffer.data());
  }
  EXPECT_THAT(message, HasSubstr(json_member(raised.body, "id"))) << message;
  ws.close(websocket::close_code::normal);

  // SIGTERM: the keep-alive connection is closed by the drain, and the process exits 0 at once.
  HttpsConnection idle(port_, certs_.ca_cert);
  ASSERT_FALSE(idle.connect());
  ASSERT_EQ(idle.request(http::verb::get, "/healthz").status, 200U);
  serve_->signal(SIGTERM);
  const auto code = serve_->wait_exit(30s);
  ASSERT_TRUE(code) << serve_->output();
  EXPECT_EQ(*code, 0) << serve_->output();
  EXPECT_THAT(serve_->output(), Not(HasSubstr("drain timeout")));
  EXPECT_FALSE(idle.read_until("HTTP/1.1", 5s)) << "closed, nothing more sent";
}

// Behind a trusted proxy (here: the test, from 127.0.0.1) the logged client is the right-most
// forwarded address that is not a proxy, and X-Forwarded-Proto says the scheme.
TEST_F(TlsTest, TrustedProxyHeadersSetTheLoggedClientAndTheScheme) {
  HttpsConnection proxy(port_, certs_.ca_cert);
  ASSERT_FALSE(proxy.connect());
  const auto created = proxy.request(http::verb::post, "/v1/contacts", admin_,
                                     {{"Content-Type", "application/json"},
                                      {"X-Forwarded-For", "198.51.100.1, 203.0.113.7, 127.0.0.1"},
                                      {"X-Request-Id", "tls-proxied-1"}},
                                     R"({"name":"Proxied","phone":"+44 20 7946 0958"})");
  ASSERT_EQ(created.status, 201U) << created.body;
  const auto line = serve_->wait_for_line(R"("request_id":"tls-proxied-1")", 20s);
  ASSERT_TRUE(line) << serve_->output();
  EXPECT_THAT(*line, HasSubstr(R"("client":"203.0.113.7")"));

  // A malformed header is not believed (the peer is the client), and never a 500.
  const auto malformed = proxy.request(http::verb::post, "/v1/contacts", admin_,
                                       {{"Content-Type", "application/json"},
                                        {"X-Forwarded-For", "203.0.113.7:4711"},
                                        {"X-Request-Id", "tls-proxied-2"}},
                                       R"({"name":"Proxied","phone":"+44 20 7946 0958"})");
  ASSERT_EQ(malformed.status, 201U) << malformed.body;
  const auto fallback = serve_->wait_for_line(R"("request_id":"tls-proxied-2")", 20s);
  ASSERT_TRUE(fallback);
  EXPECT_THAT(*fallback, HasSubstr(R"("client":"127.0.0.1")"));

  // The proxy took the request over plain HTTP: no Strict-Transport-Security.
  EXPECT_EQ(header(proxy.request(http::verb::get, "/healthz", "", {{"X-Forwarded-Proto", "http"}}),
                   "strict-transport-security"),
            "");
  EXPECT_EQ(header(proxy.request(http::verb::get, "/healthz"), "strict-transport-security"),
            "max-age=31536000");
}

// Past http.max_connections a new HTTPS connection is still answered in HTTP (a 503 after the
// handshake), not with bytes a TLS client cannot read.
class TlsCappedTest : public TlsTest {
 protected:
  std::map<std::string, std::string> extra_settings() const override {
    return {{"CAUCE_HTTP_MAX_CONNECTIONS", "2"}};
  }
};

TEST_F(TlsCappedTest, PastMaxConnectionsANewConnectionGetsA503OverTls) {
  HttpsConnection first(port_, certs_.ca_cert);
  HttpsConnection second(port_, certs_.ca_cert);
  ASSERT_FALSE(first.connect());
  ASSERT_FALSE(second.connect());
  ASSERT_EQ(first.request(http::verb::get, "/healthz").status, 200U);
  ASSERT_EQ(second.request(http::verb::get, "/healthz").status, 200U);
  HttpsConnection third(port_, certs_.ca_cert);
  ASSERT_FALSE(third.connect());
  EXPECT_TRUE(third.read_until("HTTP/1.1 503", 10s));
  EXPECT_TRUE(third.read_until("too-many-connections", 10s));
}

TEST_F(TlsTest, ABadReloadKeepsServingTheOldCertificate) {
  const auto key_before = key_lines(certs_.server_key);
  // A renewal gone wrong: the new certificate in place, its key not (the old key stays).
  const fs::path staged_key = certs_.dir() / "staged.key";
  const fs::path staged_cert = certs_.dir() / "staged.crt";
  certs_.issue_server_cert(staged_cert, staged_key);
  fs::copy_file(staged_cert, certs_.server_cert, fs::copy_options::overwrite_existing);
  serve_->signal(SIGHUP);
  const auto failed = serve_->wait_for_line("TLS certificate reload failed", 20s);
  ASSERT_TRUE(failed) << serve_->output();
  EXPECT_THAT(*failed, HasSubstr(R"("setting":"http.tls_key_file")"));
  EXPECT_THAT(*failed, HasSubstr(R"("level":"error")"));

  HttpsConnection after(port_, certs_.ca_cert);
  ASSERT_FALSE(after.connect());
  EXPECT_EQ(after.server_cn(), "localhost-1");
  EXPECT_EQ(after.request(http::verb::get, "/healthz").status, 200U);

  // A key file that is not a key at all: refused the same way, naming the setting.
  std::ofstream(certs_.server_key) << "not a key\n";
  serve_->signal(SIGHUP);
  EXPECT_TRUE(eventually([&] {
    return metric(metrics_text(), R"(cauce_http_tls_reloads_total{outcome="failure"})") == 2;
  }));
  HttpsConnection still(port_, certs_.ca_cert);
  ASSERT_FALSE(still.connect());
  EXPECT_EQ(still.server_cn(), "localhost-1");
  for (const auto& line : key_before) {
    EXPECT_THAT(serve_->output(), Not(HasSubstr(line.substr(0, 24))));
  }
  expect_no_key_material(serve_->output(), staged_key);
}

// Start-up with a certificate that cannot be used stops at once (before Kafka or PostgreSQL
// are asked anything), exit code 2, the setting named, no key in the output.
TEST(TlsStartTest, AnExpiredCertificateOrAKeyThatIsNotItsStopsTheStartNamingTheSetting) {
  const TestCerts certs;
  const TempDir data;
  auto env = cauce_env(test_postgres(), test_kafka());
  env["CAUCE_DATA_DIR"] = data.path().string();
  const auto start = [&](const fs::path& cert, const fs::path& key) {
    auto e = env;
    e["CAUCE_HTTP_TLS_CERTIFICATE_FILE"] = cert.string();
    e["CAUCE_HTTP_TLS_KEY_FILE"] = key.string();
    CauceProcess process({"serve"}, e);
    const auto code = process.wait_exit(30s);
    EXPECT_TRUE(code) << "no hang";
    if (!code) process.signal(SIGKILL);
    return std::pair{code.value_or(-1), process.output()};
  };

  const auto [expired_code, expired] = start(certs.expired_cert, certs.expired_key);
  EXPECT_EQ(expired_code, 2) << expired;
  EXPECT_THAT(expired, HasSubstr("http.tls_certificate_file"));
  EXPECT_THAT(expired, HasSubstr("expired on 2020-02-01"));
  expect_no_key_material(expired, certs.expired_key);

  const auto [mismatch_code, mismatch] = start(certs.server_cert, certs.client_key);
  EXPECT_EQ(mismatch_code, 2) << mismatch;
  EXPECT_THAT(mismatch, HasSubstr("http.tls_key_file"));
  EXPECT_THAT(mismatch, HasSubstr("is not the private key"));
  expect_no_key_material(mismatch, certs.client_key);

  const auto [missing_code, missing] = start(certs.dir() / "nothing.crt", certs.server_key);
  EXPECT_EQ(missing_code, 2) << missing;
  EXPECT_THAT(missing, HasSubstr("http.tls_certificate_file"));
  EXPECT_THAT(missing, HasSubstr("cannot read"));

  // A certificate given where the key belongs: no key in it.
  const auto [swapped_code, swapped] = start(certs.server_cert, certs.server_cert);
  EXPECT_EQ(swapped_code, 2) << swapped;
  EXPECT_THAT(swapped, HasSubstr("http.tls_key_file"));

  auto half = env;
  half["CAUCE_HTTP_TLS_CERTIFICATE_FILE"] = certs.server_cert.string();
  const auto [half_code, half_out] = run_cauce({"serve"}, half);
  EXPECT_EQ(half_code, 2) << half_out;
  EXPECT_THAT(half_out, HasSubstr("http.tls_key_file"));
}

}  // namespace
}  // namespace cauce::testing
