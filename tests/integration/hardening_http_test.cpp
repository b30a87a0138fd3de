// API hardening (issue 14, item 5) on the real `cauce serve`: the per-key rate limit (429 with
// Retry-After, then recovery), CORS preflights allowed and denied, the security headers, a
// client trickling its headers is cut, and the caps on live streams per key and in all.
#include <fstream>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "served.hpp"
#include "sse_client.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;
namespace beast_http = boost::beast::http;

constexpr const char* kDesk = "https://desk.example.org";

class HardeningTest : public ServedTest {
 protected:
  void SetUp() override {
    settings = {{"CAUCE_ROLES", "api,processor,projector"},
                {"CAUCE_HTTP_RATE_LIMIT_READER", "5"},  // bursts of 10
                // The second as an operator might type it: compared as browsers send it.
                {"CAUCE_HTTP_CORS_ORIGINS", std::string(kDesk) + ",HTTP://LocalHost:80"},
                {"CAUCE_HTTP_HSTS", "true"},
                {"CAUCE_HTTP_HEADER_TIMEOUT_S", "2"},
                {"CAUCE_PROJECTIONS_MAX_STREAM_CLIENTS", "3"},
                {"CAUCE_PROJECTIONS_MAX_STREAM_CLIENTS_PER_KEY", "2"},
                {"CAUCE_PROJECTIONS_HEARTBEAT_S", "1"}};
    ServedTest::SetUp();
    serve();
    reader_ = key("reader");
  }

  std::string key(const std::string& role) const {
    const auto [code, out] = run_cauce({"keys", "create", "--role", role}, env());
    EXPECT_EQ(code, 0) << out;
    const auto at = out.rfind("ck_");
    return at == std::string::npos ? "" : out.substr(at, out.find('\n', at) - at);
  }

  HttpResult get(const std::string& target, const std::string& token,
                 std::vector<std::pair<std::string, std::string>> headers = {}) const {
    headers.emplace_back("Authorization", "Bearer " + token);
    return http_request(port_, beast_http::verb::get, target, "", headers, 10s);
  }

  std::string reader_;
};

TEST_F(HardeningTest, AKeyPastItsRateGets429WithRetryAfterThenRecovers) {
  int ok = 0;
  HttpResult limited;
  for (int i = 0; i < 100 && limited.status == 0; ++i) {  // 10 at once, then 5 a second
    const auto r = get("/v1/contacts?limit=1", reader_);
    if (r.status == 200) ++ok;
    if (r.status == 429) limited = r;
  }
  ASSERT_EQ(limited.status, 429u) << "100 requests back to back from a 5/s key";
  EXPECT_GE(ok, 10) << "the burst (2 s of the rate) is served first";
  EXPECT_EQ(limited.headers["content-type"], "application/problem+json");
  EXPECT_THAT(limited.body, HasSubstr("rate-limited"));
  EXPECT_THAT(limited.body, HasSubstr("http.rate_limit_reader"));
  ASSERT_TRUE(limited.headers.contains("retry-after"));
  const auto retry_after = std::stoi(limited.headers["retry-after"]);
  EXPECT_GE(retry_after, 1);

  EXPECT_EQ(get("/v1/contacts?limit=1", admin_).status, 200u) << "other keys are not slowed";
  std::this_thread::sleep_for(std::chrono::seconds(retry_after));
  EXPECT_EQ(get("/v1/contacts?limit=1", reader_).status, 200u) << "recovered after Retry-After";
}

TEST_F(HardeningTest, CorsPreflightsAreAnsweredForListedOriginsOnlyAndNeverWithAWildcard) {
  const auto preflight = [&](const std::string& origin, const std::string& method) {
    return http_request(port_, beast_http::verb::options, "/v1/contacts", "",
                        {{"Origin", origin},
                         {"Access-Control-Request-Method", method},
                         {"Access-Control-Request-Headers", "authorization, content-type"}});
  };
  auto allowed = preflight(kDesk, "POST");
  EXPECT_EQ(allowed.status, 204u) << allowed.body;
  EXPECT_EQ(allowed.headers["access-control-allow-origin"], kDesk);
  EXPECT_THAT(allowed.headers["access-control-allow-methods"], HasSubstr("POST"));
  EXPECT_THAT(allowed.headers["access-control-allow-headers"], HasSubstr("Authorization"));
  EXPECT_THAT(allowed.headers["access-control-allow-headers"], HasSubstr("Idempotency-Key"));
  EXPECT_EQ(allowed.headers["vary"], "Origin");

  EXPECT_EQ(preflight("http://localhost", "GET").status, 204u) << "case and default port";
  // A 401 answered before the body is read (no key at all) still tells the browser who may
  // read it.
  const auto refused = http_request(port_, beast_http::verb::post, "/v1/contacts", "{}",
                                    {{"Origin", kDesk}, {"Content-Type", "application/json"}});
  EXPECT_EQ(refused.status, 401u);
  EXPECT_EQ(refused.headers.count("access-control-allow-origin"), 1u);
  EXPECT_EQ(refused.headers.count("x-content-type-options"), 1u);

  auto denied = preflight("https://evil.example.com", "POST");
  EXPECT_EQ(denied.status, 403u);
  EXPECT_THAT(denied.body, HasSubstr("cors-origin-denied"));
  EXPECT_FALSE(denied.headers.contains("access-control-allow-origin"));
  auto wrong_method = preflight(kDesk, "DELETE");
  EXPECT_EQ(wrong_method.status, 403u);
  EXPECT_THAT(wrong_method.body, HasSubstr("cors-method-denied"));

  // The actual request: the origin echoed (never "*"), the headers a client reads exposed.
  auto listed = get("/v1/contacts?limit=1", admin_, {{"Origin", kDesk}});
  EXPECT_EQ(listed.status, 200u);
  EXPECT_EQ(listed.headers["access-control-allow-origin"], kDesk);
  EXPECT_THAT(listed.headers["access-control-expose-headers"], HasSubstr("ETag"));
  auto other = get("/v1/contacts?limit=1", admin_, {{"Origin", "https://evil.example.com"}});
  EXPECT_FALSE(other.headers.contains("access-control-allow-origin"));

  // A wildcard is refused at start-up, naming the setting.
  auto wild = env();
  wild["CAUCE_HTTP_CORS_ORIGINS"] = "*";
  const auto [code, out] = run_cauce({"config"}, wild);
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, HasSubstr("http.cors_origins"));
}

TEST_F(HardeningTest, AnswersCarryTheSecurityHeaders) {
  auto authenticated = get("/v1/contacts?limit=1", admin_);
  EXPECT_EQ(authenticated.headers["x-content-type-options"], "nosniff");
  EXPECT_EQ(authenticated.headers["cache-control"], "no-store");
  EXPECT_EQ(authenticated.headers["strict-transport-security"], "max-age=31536000");
  auto health = http_request(port_, beast_http::verb::get, "/healthz");
  EXPECT_EQ(health.headers["x-content-type-options"], "nosniff");
  auto refused = get("/v1/contacts", "ck_not_a_key");
  EXPECT_EQ(refused.status, 401u);
  EXPECT_EQ(refused.headers["x-content-type-options"], "nosniff");
}

TEST_F(HardeningTest, AClientTricklingItsHeadersIsCutWhileOthersAreServed) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket slow(io);
  slow.connect({boost::asio::ip::make_address("127.0.0.1"), port_});
  const std::string request =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(200, 'a') + "\r\n\r\n";
  const auto started = std::chrono::steady_clock::now();
  std::size_t sent = 0;
  boost::system::error_code ec;
  for (; sent < request.size(); ++sent) {  // one byte every 100 ms: 20 s for the whole header
    boost::asio::write(slow, boost::asio::buffer(&request[sent], 1), ec);
    if (ec) break;
    EXPECT_EQ(http_request(port_, beast_http::verb::get, "/healthz").status, 200u);
    std::this_thread::sleep_for(100ms);
    char probe = 0;
    slow.non_blocking(true);
    const auto n = slow.read_some(boost::asio::buffer(&probe, 1), ec);
    slow.non_blocking(false);
    if (ec != boost::asio::error::would_block || n > 0) break;  // closed by the server
    ec = {};
  }
  EXPECT_LT(sent, request.size()) << "the server waited for the whole trickled header";
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s)
      << "cut near http.header_timeout_s (2 s), not at the idle timeout";
}

TEST_F(HardeningTest, LiveStreamsAreCappedPerKeyAndInAll) {
  auto other = key("reader");
  auto a1 = std::make_unique<SseClient>(port_, reader_, "/v1/stream");
  ASSERT_TRUE(a1->wait_for_head());
  SseClient a2(port_, reader_, "/v1/stream");
  ASSERT_TRUE(a2.wait_for_head());
  auto third = get("/v1/stream", reader_, {{"Accept", "text/event-stream"}});
  EXPECT_EQ(third.status, 503u) << third.body;
  EXPECT_THAT(third.body, HasSubstr("max_stream_clients_per_key"));
  EXPECT_TRUE(third.headers.contains("retry-after"));

  SseClient b1(port_, other, "/v1/stream");
  ASSERT_TRUE(b1.wait_for_head());
  EXPECT_THAT(b1.head(), HasSubstr("200 OK")) << "another key, under the total";
  auto fourth = get("/v1/stream", other, {{"Accept", "text/event-stream"}});
  EXPECT_EQ(fourth.status, 503u) << fourth.body;
  EXPECT_THAT(fourth.body, HasSubstr("projections.max_stream_clients)"));

  // A slot comes back when its client leaves (noticed at the next heartbeat, 1 s here).
  a1.reset();
  EXPECT_TRUE(eventually(
      [&] {
        SseClient again(port_, reader_, "/v1/stream");
        return again.wait_for_head() && again.head().find("200 OK") != std::string::npos;
      },
      15s, 500ms));
}

}  // namespace
}  // namespace cauce::testing
