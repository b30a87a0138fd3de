// Reads at scale (issue 17) on the real `cauce serve`, real Kafka and PostgreSQL, over real
// sockets: gzip bodies decode to the same JSON as plain ones; a conditional GET is a 304 (from
// the version cache too) that turns into a 200 once the contact changed; past the query
// queue's bound the answer is a 503 with Retry-After, and the server recovers when the load
// stops.
#include <atomic>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <zlib.h>

#include <cauce/core/postgres.hpp>

#include "served.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;
using ::testing::HasSubstr;

std::string gunzip(const std::string& data) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return "<inflateInit2 failed>";
  std::string out;
  char chunk[16384];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  }
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : "<not one gzip member>";
}

class ReadsTest : public ServedTest {
 protected:
  void SetUp() override {
    ServedTest::SetUp();
    serve();
  }

  HttpResult get(const std::string& target,
                 std::vector<std::pair<std::string, std::string>> headers = {}) const {
    return call(beast_http::verb::get, target, "", "", std::move(headers));
  }

  // A new contact; its id, and the position its command reached in `position`.
  std::string contact(const std::string& name, std::string* position = nullptr) const {
    const auto r = call(beast_http::verb::post, "/v1/contacts",
                        R"({"name":")" + name + R"(","phone":"+44 20 7946 0958","notes":")" +
                            std::string(60, 'n') + R"("})");
    EXPECT_EQ(r.status, 201u) << r.body;
    if (position != nullptr) *position = header(r, "cauce-position");
    return json_member(r.body, "id");
  }

  // Holds the contacts table locked (every read of it waits) until released or destroyed.
  class TableLock {
   public:
    explicit TableLock(const TempDatabase& db)
        : connection_(core::postgres_conninfo(db.config())), txn_(connection_) {
      txn_.exec("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE");
    }
    void release() { txn_.abort(); }

   private:
    pqxx::connection connection_;
    pqxx::work txn_;
  };
};

// A sample's value on /metrics (the whole series, labels included), 0 when absent.
double metric(std::uint16_t port, const std::string& series) {
  const auto text = http_request(port, beast_http::verb::get, "/metrics").body;
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? 0 : std::stod(text.substr(at + series.size() + 2));
}

TEST_F(ReadsTest, ReadsByIdArePipelinedAndAnswerTheSameWhenThePipelineIsLost) {
  std::string position;
  const auto id = contact("Piped", &position);
  const auto expected = get("/v1/contacts/" + id, {{"Cauce-Min-Position", position}});
  ASSERT_EQ(expected.status, 200u);
  const std::string answered = R"(cauce_pg_read_pipeline_queries_total{outcome="answered"})";
  const std::string handed_back = R"(cauce_pg_read_pipeline_queries_total{outcome="handed_back"})";
  ASSERT_TRUE(eventually([&] { return metric(port_, "cauce_pg_read_pipelines_ready") == 2; }));
  const auto same = [&] {
    const auto r = get("/v1/contacts/" + id);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, expected.body);
    EXPECT_EQ(header(r, "etag"), header(expected, "etag"));
  };
  for (int i = 0; i < 4; ++i) same();
  EXPECT_EQ(metric(port_, answered), 4);

  // PostgreSQL drops the pipelined connections: the reads that find them gone are answered by
  // the pool, the same; then the pipelines open again and answer.
  pqxx::connection admin(core::postgres_conninfo(db_.config()));
  pqxx::nontransaction(admin).exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE application_name = 'cauce-read-pipeline'");
  for (int i = 0; i < 4; ++i) same();
  EXPECT_GE(metric(port_, handed_back), 1);
  ASSERT_TRUE(eventually([&] {
    same();
    return metric(port_, "cauce_pg_read_pipelines_ready") == 2 && metric(port_, answered) > 4;
  })) << "the pipelines did not come back";
}

TEST_F(ReadsTest, GzipBodiesDecodeToTheSameJsonAsPlainOnes) {
  std::string position;
  std::string id;
  for (int i = 0; i < 30; ++i) id = contact("Gz " + std::to_string(i), &position);
  const std::string list = "/v1/contacts?limit=50";
  const auto plain = get(list, {{"Cauce-Min-Position", position}});
  ASSERT_EQ(plain.status, 200u) << plain.body;
  ASSERT_GT(plain.body.size(), 1024u) << "a list past http.gzip_min_bytes";
  EXPECT_EQ(header(plain, "content-encoding"), "");
  EXPECT_EQ(header(plain, "vary"), "Accept-Encoding") << "caches learn the answer may vary";

  const auto packed = get(list, {{"Accept-Encoding", "gzip, deflate"}});
  ASSERT_EQ(packed.status, 200u);
  EXPECT_EQ(header(packed, "content-encoding"), "gzip");
  EXPECT_EQ(header(packed, "vary"), "Accept-Encoding");
  EXPECT_EQ(header(packed, "content-length"), std::to_string(packed.body.size()));
  EXPECT_LT(packed.body.size(), plain.body.size() / 2);
  EXPECT_EQ(gunzip(packed.body), plain.body);
  // The same representation: a weak ETag with the same value, which If-None-Match matches.
  EXPECT_EQ(header(packed, "etag"), "W/" + header(plain, "etag"));
  EXPECT_EQ(get(list, {{"If-None-Match", header(packed, "etag")}}).status, 304u);

  // Refused, or not asked for: plain. A body under the threshold is never compressed.
  EXPECT_EQ(header(get(list, {{"Accept-Encoding", "gzip;q=0, br"}}), "content-encoding"), "");
  const auto small = get("/v1/contacts/" + id, {{"Accept-Encoding", "gzip"}});
  ASSERT_EQ(small.status, 200u);
  EXPECT_LT(small.body.size(), 1024u);
  EXPECT_EQ(header(small, "content-encoding"), "");
  // Problems are JSON too: a large one would be compressed, a small one is plain.
  const auto missing =
      get("/v1/contacts/01900000-0000-7000-8000-000000000001", {{"Accept-Encoding", "gzip"}});
  EXPECT_EQ(missing.status, 404u);
  EXPECT_THAT(missing.body, HasSubstr("not-found"));
}

TEST_F(ReadsTest, A304TurnsIntoA200OnceTheContactChanged) {
  std::string position;
  const auto id = contact("Etag", &position);
  const auto first = get("/v1/contacts/" + id, {{"Cauce-Min-Position", position}});
  ASSERT_EQ(first.status, 200u);
  const auto etag = header(first, "etag");
  ASSERT_EQ(etag, "\"1\"");
  // Asked again and again: 304s without a body (the first from PostgreSQL, the rest from what the
  // cache learnt), with or without a position the read model has passed.
  for (int i = 0; i < 3; ++i) {
    const auto again = get("/v1/contacts/" + id, {{"If-None-Match", etag}});
    EXPECT_EQ(again.status, 304u);
    EXPECT_EQ(again.body, "");
    EXPECT_EQ(header(again, "etag"), etag);
  }
  EXPECT_EQ(
      get("/v1/contacts/" + id, {{"If-None-Match", etag}, {"Cauce-Min-Position", position}}).status,
      304u);

  const auto changed = call(beast_http::verb::patch, "/v1/contacts/" + id, R"({"name":"Etag 2"})",
                            "", {{"If-Match", etag}});
  ASSERT_EQ(changed.status, 200u) << changed.body;
  // With the change's position: a 200 at once, with the new version.
  const auto after =
      get("/v1/contacts/" + id,
          {{"If-None-Match", etag}, {"Cauce-Min-Position", header(changed, "cauce-position")}});
  EXPECT_EQ(after.status, 200u);
  EXPECT_EQ(header(after, "etag"), "\"2\"");
  EXPECT_THAT(after.body, HasSubstr("Etag 2"));
  // Without it: the old ETag is never a 304 again once the read model (and so the cache) has
  // the change, which it has now.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(get("/v1/contacts/" + id, {{"If-None-Match", etag}}).status, 200u);
  }
  EXPECT_EQ(get("/v1/contacts/" + id, {{"If-None-Match", "\"2\""}}).status, 304u);
  EXPECT_EQ(get("/v1/contacts/" + id, {{"If-None-Match", "W/\"2\""}}).status, 304u);
  EXPECT_EQ(get("/v1/contacts/" + id, {{"If-None-Match", "\"3\""}}).status, 200u);
}

TEST_F(ReadsTest, AContactChangedElsewhereReachesTheCacheThroughTheNotifications) {
  // Read once (the cache learns version 1), then changed: the notification alone raises the
  // cache to 2. Shown with PostgreSQL's contacts table locked: a read of it would wait, so a
  // prompt 304 for "2" can only come from the cache.
  std::string position;
  const auto id = contact("Feed", &position);
  ASSERT_EQ(get("/v1/contacts/" + id, {{"Cauce-Min-Position", position}}).status, 200u);
  ASSERT_EQ(get("/v1/contacts/" + id, {{"If-None-Match", "\"1\""}}).status, 304u);
  const auto changed = call(beast_http::verb::post, "/v1/contacts/" + id + "/archive", "");
  ASSERT_EQ(changed.status, 200u) << changed.body;
  ASSERT_EQ(get("/v1/stats", {{"Cauce-Min-Position", header(changed, "cauce-position")}}).status,
            200u)
      << "the read model has the change";
  TableLock locked(db_);
  const auto conditional = [&](const std::string& etag) {
    try {
      return http_request(port_, beast_http::verb::get, "/v1/contacts/" + id, "",
                          {{"Authorization", "Bearer " + admin_}, {"If-None-Match", etag}},
                          std::chrono::seconds(1))
          .status;
    } catch (const std::runtime_error&) {
      return 0u;  // it waited on the lock: it went to PostgreSQL
    }
  };
  EXPECT_TRUE(eventually([&] { return conditional("\"2\"") == 304u; }, std::chrono::seconds(10)));
  locked.release();
  EXPECT_EQ(get("/v1/contacts/" + id, {{"If-None-Match", "\"1\""}}).status, 200u);
}

class ReadsBackpressureTest : public ReadsTest {
 protected:
  void SetUp() override {
    // Two PostgreSQL threads, two queries waiting at most.
    settings["CAUCE_POSTGRES_POOL_SIZE"] = "2";
    settings["CAUCE_HTTP_MAX_QUEUED_QUERIES"] = "2";
    ReadsTest::SetUp();
  }
};

TEST_F(ReadsBackpressureTest, PastTheQueryQueuesBoundA503WithRetryAfterAndTheServerRecovers) {
  std::string position;
  const auto id = contact("Busy", &position);
  ASSERT_EQ(get("/v1/contacts/" + id, {{"Cauce-Min-Position", position}}).status, 200u);
  ASSERT_EQ(get("/v1/keys").status, 200u);  // the key is cached: no lookup queues behind the lock

  // PostgreSQL stalls: the contacts table is locked, so every read of it waits.
  TableLock locked(db_);
  constexpr int kClients = 12;
  std::vector<std::future<HttpResult>> answers;
  for (int i = 0; i < kClients; ++i) {
    answers.push_back(std::async(std::launch::async, [&] {
      return http_request(port_, beast_http::verb::get, "/v1/contacts/" + id, "",
                          {{"Authorization", "Bearer " + admin_}}, std::chrono::seconds(60));
    }));
  }
  // Two places for reads waiting on PostgreSQL: a read by id takes one and waits on a pipelined
  // connection; one handed back to the pool (the pipelines not open yet) takes a place again,
  // and runs or waits for one of the two threads. So eight or more are refused at once while
  // the lock holds (ten with the pipelines open; more than eight also when a query thread was
  // busy with other work as the burst came: the bound counts what waits, not what runs). The
  // refusals are gathered until eight have come and nothing more has for half a second.
  std::vector<bool> answered(kClients, false);
  int refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto quiet_since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < deadline &&
         (refused < kClients - 4 ||
          std::chrono::steady_clock::now() - quiet_since < std::chrono::milliseconds(500))) {
    for (int i = 0; i < kClients; ++i) {
      if (answered[i] ||
          answers[i].wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
        continue;
      }
      answered[i] = true;
      const auto r = answers[i].get();
      EXPECT_EQ(r.status, 503u) << r.body;
      EXPECT_EQ(header(r, "retry-after"), "1");
      EXPECT_THAT(r.body, HasSubstr("too many queries are waiting for PostgreSQL"));
      ++refused;
      quiet_since = std::chrono::steady_clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(refused, kClients - 4);
  EXPECT_LT(refused, kClients) << "some were held, not all refused";
  EXPECT_EQ(get("/healthz").status, 200u) << "the I/O threads are not the ones waiting";

  locked.release();  // the load stops: those held back are served
  for (int i = 0; i < kClients; ++i) {
    if (answered[i]) continue;
    const auto r = answers[i].get();
    EXPECT_EQ(r.status, 200u) << r.body;
  }
  for (int i = 0; i < 5; ++i) EXPECT_EQ(get("/v1/contacts/" + id).status, 200u);
}

}  // namespace
}  // namespace cauce::testing
