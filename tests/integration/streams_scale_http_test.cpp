// Streams at scale (issue 17) on the real `cauce serve`: 2,000 live clients, SSE and WebSocket
// mixed, on mixed topics (alerts, contacts, both), each receive exactly the notifications of
// their topics, once, in id order, and the same order as every other client of the same topics;
// a quarter of them drop mid-stream and resume with Last-Event-ID (SSE) or last_event_id
// (WebSocket) and still miss nothing and repeat nothing. Behaviour only, no timings.
#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/resource.h>

#include "served.hpp"

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace beast_http = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr int kClients = 2000;
constexpr unsigned kAlerts = 1;
constexpr unsigned kContacts = 2;

struct Received {
  std::int64_t id = 0;
  std::string topic;
  std::string aggregate_id;
};

// One live client. Its coroutine runs on the fleet's thread; the test reads under the mutex.
struct Fan {
  unsigned topics = 0;
  bool ws = false;
  std::mutex mutex;
  std::vector<Received> received;  // every notification, over every connection it had
  bool open = false;               // the stream answered (SSE 200, WebSocket subscribed)
  std::string failure;
  // The fleet's thread only: the connection, to drop it.
  tcp::socket* socket = nullptr;
  std::int64_t last_id() {
    const std::lock_guard lock(mutex);
    return received.empty() ? 0 : received.back().id;
  }
  std::size_t count() {
    const std::lock_guard lock(mutex);
    return received.size();
  }
};

std::string topic_names(unsigned topics) {
  if (topics == (kAlerts | kContacts)) return "alerts,contacts";
  return topics == kAlerts ? "alerts" : "contacts";
}

void keep(Fan& fan, std::int64_t id, std::string topic, const std::string& data) {
  const std::lock_guard lock(fan.mutex);
  fan.received.push_back(Received{id, std::move(topic), json_member(data, "id")});
}

asio::awaitable<void> sse_fan(std::uint16_t port, std::string key, Fan& fan, std::int64_t after) {
  beast::error_code ec;
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    const std::lock_guard lock(fan.mutex);
    fan.failure = "connect: " + ec.message();
    co_return;
  }
  fan.socket = &socket;
  const std::string request = "GET /v1/stream?topics=" + topic_names(fan.topics) +
                              " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + key +
                              "\r\nLast-Event-ID: " + std::to_string(after) + "\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request),
                             asio::redirect_error(asio::use_awaitable, ec));
  std::string pending;
  std::array<char, 8192> chunk{};
  bool head = false;
  while (!ec) {
    const auto n = co_await socket.async_read_some(asio::buffer(chunk),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    pending.append(chunk.data(), n);
    if (!head) {
      const auto end = pending.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      const std::lock_guard lock(fan.mutex);
      if (!pending.starts_with("HTTP/1.1 200")) {
        fan.failure = pending.substr(0, 300);
        break;
      }
      head = true;
      fan.open = true;
      pending.erase(0, end + 4);
    }
    std::size_t start = 0;
    for (std::size_t end; (end = pending.find("\n\n", start)) != std::string::npos;
         start = end + 2) {
      std::int64_t id = 0;
      std::string event;
      std::string data;
      for (std::size_t at = start; at < end;) {
        auto nl = pending.find('\n', at);
        if (nl == std::string::npos || nl > end) nl = end;
        const std::string_view line(pending.data() + at, nl - at);
        if (line.starts_with("id: ")) id = std::stoll(std::string(line.substr(4)));
        if (line.starts_with("event: ")) event = line.substr(7);
        if (line.starts_with("data: ")) data = line.substr(6);
        at = nl + 1;
      }
      if (event == "alerts" || event == "contacts") {
        keep(fan, id, event, data);
      } else if (!event.empty()) {
        const std::lock_guard lock(fan.mutex);
        fan.failure = "event " + event + ": " + data;
      }
    }
    pending.erase(0, start);
  }
  fan.socket = nullptr;
}

asio::awaitable<void> ws_fan(std::uint16_t port, std::string key, Fan& fan, std::int64_t after) {
  beast::error_code ec;
  websocket::stream<tcp::socket> ws(co_await asio::this_coro::executor);
  co_await ws.next_layer().async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                         asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    fan.socket = &ws.next_layer();
    ws.set_option(websocket::stream_base::decorator([key](websocket::request_type& r) {
      r.set(beast_http::field::authorization, "Bearer " + key);
    }));
    co_await ws.async_handshake("127.0.0.1", "/v1/ws",
                                asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec) {
    std::string subscribe = "{\"subscribe\":[";
    if ((fan.topics & kAlerts) != 0) subscribe += "\"alerts\"";
    if (fan.topics == (kAlerts | kContacts)) subscribe += ",";
    if ((fan.topics & kContacts) != 0) subscribe += "\"contacts\"";
    subscribe += "],\"last_event_id\":" + std::to_string(after) + "}";
    co_await ws.async_write(asio::buffer(subscribe), asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    const std::lock_guard lock(fan.mutex);
    fan.failure = "websocket: " + ec.message();
    fan.socket = nullptr;
    co_return;
  }
  {
    const std::lock_guard lock(fan.mutex);
    fan.open = true;
  }
  beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    rapidjson::Document d;
    const auto text = beast::buffers_to_string(buffer.data());
    d.Parse(text.c_str());
    if (d.HasParseError() || !d.IsObject()) continue;
    if (!d.HasMember("event")) continue;  // {"id"} alone: what the topics left out
    const std::string event = d["event"].GetString();
    if ((event == "alerts" || event == "contacts") && d.HasMember("id") && d["id"].IsInt64()) {
      rapidjson::StringBuffer data;
      rapidjson::Writer<rapidjson::StringBuffer> w(data);
      d["data"].Accept(w);
      keep(fan, d["id"].GetInt64(), event, data.GetString());
    } else {
      const std::lock_guard lock(fan.mutex);
      fan.failure = "message " + text;
    }
  }
  fan.socket = nullptr;
}

class StreamsAtScaleTest : public ServedTest {
 protected:
  void SetUp() override {
    // 2,000 clients here and as many connections in the server: each a file. The server raises
    // its own soft limit; this process raises its own (and the server inherits it).
    rlimit limit{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    if (limit.rlim_cur < 2 * kClients + 200) {
      GTEST_SKIP() << "the hard open-file limit (" << limit.rlim_max << ") is below "
                   << 2 * kClients + 200;
    }
    settings["CAUCE_HTTP_RATE_LIMIT_OPERATOR"] = "0";
    settings["CAUCE_HTTP_RATE_LIMIT_READER"] = "0";
    settings["CAUCE_HTTP_RATE_LIMIT_ADMIN"] = "0";
    settings["CAUCE_ALERTS_DEADLINE_CRITICAL_S"] = "0";  // no escalations of their own
    settings["CAUCE_ALERTS_DEADLINE_WARNING_S"] = "0";
    // The caps raised for the test, not removed.
    settings["CAUCE_HTTP_MAX_CONNECTIONS"] = std::to_string(kClients + 500);
    settings["CAUCE_PROJECTIONS_MAX_STREAM_CLIENTS"] = std::to_string(kClients + 500);
    settings["CAUCE_PROJECTIONS_MAX_STREAM_CLIENTS_PER_KEY"] = std::to_string(kClients + 500);
    ServedTest::SetUp();
    serve();
    const auto made =
        call(beast_http::verb::post, "/v1/keys", R"({"name":"the wall","role":"reader"})");
    ASSERT_EQ(made.status, 201u) << made.body;
    reader_ = json_member(made.body, "key");
    work_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        ioc_.get_executor());
    thread_ = std::thread([this] { ioc_.run(); });
  }

  void TearDown() override {
    if (thread_.joinable()) {
      asio::post(ioc_, [this] {
        for (auto& f : fans_) {
          beast::error_code ignored;
          if (f.socket != nullptr) f.socket->close(ignored);
        }
      });
      work_.reset();
      thread_.join();
    }
    ServedTest::TearDown();
  }

  void open(Fan& fan, std::int64_t after) {
    {
      const std::lock_guard lock(fan.mutex);
      fan.open = false;
    }
    if (fan.ws) {
      asio::co_spawn(ioc_, ws_fan(port_, reader_, fan, after), asio::detached);
    } else {
      asio::co_spawn(ioc_, sse_fan(port_, reader_, fan, after), asio::detached);
    }
  }

  // Polls `done` until it holds or `timeout` passes.
  template <typename Done>
  bool eventually(Done done, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  }

  // `n` alerts and `n` contacts, alternating; their aggregate ids by topic.
  void send(int n, std::map<std::string, std::vector<std::string>>& sent) {
    for (int i = 0; i < n; ++i) {
      const auto a =
          call(beast_http::verb::post, "/v1/alerts", R"({"level":"warning","title":"wall"})");
      ASSERT_EQ(a.status, 201u) << a.body;
      sent["alerts"].push_back(json_member(a.body, "id"));
      const auto c =
          call(beast_http::verb::post, "/v1/contacts",
               R"({"name":"Fan )" + std::to_string(i) + R"(","phone":"+44 20 7946 0958"})");
      ASSERT_EQ(c.status, 201u) << c.body;
      sent["contacts"].push_back(json_member(c.body, "id"));
    }
  }

  std::size_t expected(const Fan& fan,
                       const std::map<std::string, std::vector<std::string>>& sent) {
    std::size_t n = 0;
    if ((fan.topics & kAlerts) != 0) n += sent.at("alerts").size();
    if ((fan.topics & kContacts) != 0) n += sent.at("contacts").size();
    return n;
  }

  bool all_have(std::map<std::string, std::vector<std::string>>& sent) {
    for (auto& f : fans_) {
      if (f.count() < expected(f, sent)) return false;
    }
    return true;
  }

  std::string reader_;
  asio::io_context ioc_{1};
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::vector<Fan> fans_ = std::vector<Fan>(kClients);
};

TEST_F(StreamsAtScaleTest, TwoThousandClientsEachGetTheirNotificationsOnceInOrderAcrossResumes) {
  // Half SSE, half WebSocket; a third alerts, a third contacts, a third both.
  for (int i = 0; i < kClients; ++i) {
    auto& f = fans_[static_cast<std::size_t>(i)];
    f.topics = i % 3 == 0 ? kAlerts : i % 3 == 1 ? kContacts : (kAlerts | kContacts);
    f.ws = (i / 3) % 2 == 1;
    open(f, 0);  // the database is this test's: everything after id 0 is what it sends
  }
  ASSERT_TRUE(eventually([&] {
    for (auto& f : fans_) {
      const std::lock_guard lock(f.mutex);
      if (!f.open && f.failure.empty()) return false;
    }
    return true;
  }));
  for (auto& f : fans_) ASSERT_TRUE(f.open) << f.failure;

  std::map<std::string, std::vector<std::string>> sent{{"alerts", {}}, {"contacts", {}}};
  send(20, sent);
  ASSERT_TRUE(eventually([&] { return all_have(sent); }));

  // A quarter drop mid-stream (every fourth: both transports, every topic mix) and miss what
  // comes meanwhile; then they resume after the last id they received.
  std::vector<std::size_t> dropped;
  for (std::size_t i = 0; i < fans_.size(); i += 4) dropped.push_back(i);
  asio::post(ioc_, [this, dropped] {
    for (const auto i : dropped) {
      beast::error_code ignored;
      if (fans_[i].socket != nullptr) fans_[i].socket->close(ignored);
    }
  });
  // Their coroutines must be over before they connect again (each clears its connection).
  ASSERT_TRUE(eventually([&] {
    // Asked on the fleet's thread, which alone touches the connections.
    auto gone = std::make_shared<std::atomic<int>>(-1);
    asio::post(ioc_, [this, &dropped, gone] {
      bool all = true;
      for (const auto i : dropped) all = all && fans_[i].socket == nullptr;
      gone->store(all ? 1 : 0);
    });
    while (gone->load() < 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return gone->load() == 1;
  }));
  send(20, sent);
  for (const auto i : dropped) open(fans_[i], fans_[i].last_id());
  send(10, sent);
  ASSERT_TRUE(eventually([&] { return all_have(sent); }));
  // Anything more than expected (a repeat) would have come with the rest by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  std::map<unsigned, std::vector<std::int64_t>> order;  // topics -> the ids, as the first saw them
  for (std::size_t i = 0; i < fans_.size(); ++i) {
    auto& f = fans_[i];
    const std::lock_guard lock(f.mutex);
    EXPECT_TRUE(f.failure.empty() || f.failure.starts_with("connect")) << i << ": " << f.failure;
    std::map<std::string, std::multiset<std::string>> got;
    std::vector<std::int64_t> ids;
    for (const auto& r : f.received) {
      got[r.topic].insert(r.aggregate_id);
      ids.push_back(r.id);
    }
    for (const auto& [topic, bit] :
         {std::pair{"alerts", kAlerts}, std::pair{"contacts", kContacts}}) {
      const auto& want = sent.at(topic);
      const std::multiset<std::string> expected_ids =
          (f.topics & bit) != 0 ? std::multiset<std::string>(want.begin(), want.end())
                                : std::multiset<std::string>{};
      EXPECT_EQ(got[topic], expected_ids) << "client " << i << " (" << topic_names(f.topics)
                                          << (f.ws ? ", WebSocket" : ", SSE") << "): " << topic;
    }
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()) &&
                std::adjacent_find(ids.begin(), ids.end()) == ids.end())
        << "client " << i << " received ids out of order or twice";
    auto [it, first] = order.emplace(f.topics, ids);
    if (!first) {
      EXPECT_EQ(ids, it->second) << "client " << i << " saw another order";
    }
    if (HasFailure()) break;  // one client's story is enough
  }
}

}  // namespace
}  // namespace cauce::testing
