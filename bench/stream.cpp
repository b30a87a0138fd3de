// bench/stream: live streams at scale on a real `cauce serve` (every role, as scripts/run runs
// it), next to a bare Beast server writing the same bytes to the same number of clients.
//
//  1. raises this process's soft RLIMIT_NOFILE to the hard limit (printed; the server does the
//     same at start-up and logs it);
//  2. opens `--clients` stream connections at once from one io_context per core, SSE and
//     WebSocket mixed (`--ws-share`), on mixed topics (alerts, contacts, both), every one resuming
//     after the newest notification id so that it receives exactly what comes next; reports the
//     time until all were served (the SSE 200 / the WebSocket 101) and the server's RSS per idle
//     client (VmRSS of /proc/<pid>/status, before and after, divided by the clients);
//  3. drives `--rate` notifications/s for `--seconds` (POST /v1/alerts and /v1/contacts,
//     alternating, paced, through the API) and measures each delivery from the notification's
//     commit (its row's created_at in PostgreSQL: the projector's transaction, at or a moment
//     before the commit) to its receipt; checks that every client got exactly the notifications
//     of its topics, once, in id order; prints deliveries/s and p50/p95/p99;
//  4. the same clients against a bare Beast server (this executable, `--bare-serve`, in a process
//     of its own: the file limit counts per process) that writes the same bytes at the same rate,
//     coalescing what is pending per client as cauce does.
//
// Settings come from CAUCE_* like the service (scripts/bench stream sets Kafka and PostgreSQL).
// The database must be fresh for each invocation (scripts/bench starts a new PostgreSQL): the
// read models hold one event topic, and every invocation has topics of its own.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>  // before asio/awaitable.hpp (Boost 1.74 misses it)

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fcntl.h>
#include <pqxx/pqxx>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cauce/core/config.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/postgres.hpp>

#include "load.hpp"
#include "served_cauce.hpp"

extern char** environ;

namespace cauce::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string cauce = "build/release/cauce";
  int clients = 10000;
  double ws_share = 0.5;
  double rate = 1000;
  int seconds = 5;
  int runs = 1;
  int threads = 0;  // client io_contexts; 0: one per core
  bool bare = true;
  // Internal: serve as the bare Beast server on this port.
  int bare_serve = 0;
};

std::int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------------
// The file limit and the server's memory.

std::pair<rlim_t, rlim_t> raise_file_limit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  const auto before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = before;
  return {before, limit.rlim_cur};
}

// VmRSS of a process, in KiB (0 when unknown).
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Requests.

// One request over a fresh connection; the answer's status and body.
std::pair<unsigned, std::string> exchange(std::uint16_t port, http::verb verb,
                                          const std::string& target, const std::string& key,
                                          std::chrono::seconds timeout = std::chrono::seconds(5)) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req(verb, target, 11);
  req.set(http::field::host, "127.0.0.1");
  if (!key.empty()) req.set(http::field::authorization, "Bearer " + key);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {res.result_int(), res.body()};
}

// ---------------------------------------------------------------------------------------------
// The clients.

enum Topic : unsigned { kAlerts = 1, kContacts = 2 };

struct Receipt {
  std::int32_t id_offset;  // notification id - the id every client resumed after
  std::uint32_t at_us;     // receipt, µs since the run's origin
};

// One io_context's clients' receipts (its thread only while it runs).
struct Lane {
  asio::io_context ioc{1};
  std::vector<Receipt> receipts;
};

struct Client {
  unsigned topics = 0;
  bool ws = false;
  std::atomic<bool> served{false};
  std::atomic<bool> failed{false};
  std::atomic<std::int64_t> count{0};
  std::atomic<std::int64_t> last_id{0};
  std::atomic<std::int64_t> disorder{0};  // ids not above the previous one (a repeat, a reorder)
  std::string closed;                     // why the stream ended early (error event, close)
  std::mutex closed_mutex;
};

struct Run {
  std::uint16_t port = 0;
  std::string key;
  std::int64_t after = 0;  // every client resumes after this id
  std::int64_t origin_us = 0;
  std::atomic<int> served{0};
  std::atomic<int> failed{0};
  std::atomic<std::int64_t> last_served_us{0};
  std::atomic<bool> stop{false};
};

std::string topics_text(unsigned topics) {
  if (topics == (kAlerts | kContacts)) return "alerts,contacts";
  return topics == kAlerts ? "alerts" : "contacts";
}

void note_served(Run& run, Client& client) {
  client.served = true;
  ++run.served;
  auto now = wall_us();
  auto seen = run.last_served_us.load();
  while (now > seen && !run.last_served_us.compare_exchange_weak(seen, now)) {
  }
}

void note_closed(Client& client, std::string why) {
  const std::lock_guard lock(client.closed_mutex);
  if (client.closed.empty()) client.closed = std::move(why);
}

void deliver(Run& run, Lane& lane, Client& client, std::int64_t id) {
  if (id <= client.last_id.load(std::memory_order_relaxed)) {
    client.disorder.fetch_add(1, std::memory_order_relaxed);
  }
  client.last_id.store(id, std::memory_order_relaxed);
  client.count.fetch_add(1, std::memory_order_relaxed);
  lane.receipts.push_back(Receipt{static_cast<std::int32_t>(id - run.after),
                                  static_cast<std::uint32_t>(wall_us() - run.origin_us)});
}

// "id: 12\nevent: alerts\ndata: {...}" blocks; the id-only and comment blocks are skipped.
void parse_sse(Run& run, Lane& lane, Client& client, std::string& pending) {
  std::size_t start = 0;
  for (;;) {
    const auto end = pending.find("\n\n", start);
    if (end == std::string::npos) break;
    const std::string_view block(pending.data() + start, end - start);
    start = end + 2;
    const auto event_at = block.find("event: ");
    if (event_at == std::string_view::npos) continue;
    const auto event = block.substr(event_at + 7, block.find('\n', event_at) - event_at - 7);
    if (event == "error" || event == "reset") {
      note_closed(client, std::string(block));
      continue;
    }
    if (!block.starts_with("id: ")) continue;
    deliver(run, lane, client, std::atoll(block.data() + 4));
  }
  pending.erase(0, start);
}

asio::awaitable<void> sse_client(Run& run, Lane& lane, Client& client) {
  beast::error_code ec;
  tcp::socket socket(lane.ioc);
  co_await socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), run.port),
                                asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    client.failed = true;
    ++run.failed;
    co_return;
  }
  const std::string request = "GET /v1/stream?topics=" + topics_text(client.topics) +
                              " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                              "Authorization: Bearer " +
                              run.key + "\r\nLast-Event-ID: " + std::to_string(run.after) +
                              "\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request),
                             asio::redirect_error(asio::use_awaitable, ec));
  std::string pending;
  std::array<char, 8192> chunk{};
  bool head = false;
  while (!ec && !run.stop) {
    const auto n = co_await socket.async_read_some(asio::buffer(chunk),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    pending.append(chunk.data(), n);
    if (!head) {
      const auto end = pending.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      if (!pending.starts_with("HTTP/1.1 200")) {
        client.failed = true;
        ++run.failed;
        note_closed(client, pending.substr(0, 200));
        co_return;
      }
      head = true;
      note_served(run, client);
      pending.erase(0, end + 4);
    }
    parse_sse(run, lane, client, pending);
  }
  if (ec && !run.stop) note_closed(client, "connection: " + ec.message());
}

// {"id":12,"event":"alerts","data":{...}}; {"id":12} alone and the rest are skipped.
void parse_ws(Run& run, Lane& lane, Client& client, std::string_view text) {
  const auto event_at = text.find("\"event\":\"");
  if (event_at == std::string_view::npos) return;
  const auto event = text.substr(event_at + 9, text.find('"', event_at + 9) - event_at - 9);
  if (event == "reset") {
    note_closed(client, std::string(text));
    return;
  }
  if (!text.starts_with("{\"id\":")) return;
  deliver(run, lane, client, std::atoll(text.data() + 6));
}

asio::awaitable<void> ws_client(Run& run, Lane& lane, Client& client) {
  beast::error_code ec;
  websocket::stream<beast::tcp_stream> ws(lane.ioc);
  co_await beast::get_lowest_layer(ws).async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), run.port),
      asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    ws.set_option(websocket::stream_base::decorator([key = run.key](websocket::request_type& r) {
      r.set(http::field::authorization, "Bearer " + key);
    }));
    co_await ws.async_handshake("127.0.0.1", "/v1/ws",
                                asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    client.failed = true;
    ++run.failed;
    note_closed(client, "handshake: " + ec.message());
    co_return;
  }
  note_served(run, client);
  std::string subscribe = "{\"subscribe\":[";
  if ((client.topics & kAlerts) != 0) subscribe += "\"alerts\"";
  if (client.topics == (kAlerts | kContacts)) subscribe += ",";
  if ((client.topics & kContacts) != 0) subscribe += "\"contacts\"";
  subscribe += "],\"last_event_id\":" + std::to_string(run.after) + "}";
  co_await ws.async_write(asio::buffer(subscribe), asio::redirect_error(asio::use_awaitable, ec));
  beast::flat_buffer buffer;
  while (!ec && !run.stop) {
    buffer.clear();
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    const auto data = buffer.cdata();
    parse_ws(run, lane, client,
             std::string_view(static_cast<const char*>(data.data()), data.size()));
  }
  if (ec && !run.stop) {
    const auto& why = ws.reason().reason;
    note_closed(client, "connection: " + ec.message() + " " + std::string(why.data(), why.size()));
  }
}

// ---------------------------------------------------------------------------------------------
// The bare Beast server: the same bytes, written the way cauce writes them (pending events
// coalesced into one write per SSE client; one message each for WebSocket), without the hub,
// PostgreSQL, auth or filters.

struct BareSession {
  explicit BareSession(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  unsigned topics = 0;
  bool ws = false;
  std::mutex mutex;
  std::vector<std::shared_ptr<const std::string>> queue;  // under mutex
  bool scheduled = false;                                 // under mutex
  std::optional<websocket::stream<tcp::socket&>> wsock;
};

struct BareServer {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::mutex mutex;
  std::vector<std::shared_ptr<BareSession>> sessions;
};

asio::awaitable<void> bare_flush(std::shared_ptr<BareSession> s) {
  for (;;) {
    std::vector<std::shared_ptr<const std::string>> batch;
    {
      const std::lock_guard lock(s->mutex);
      if (s->queue.empty()) {
        s->scheduled = false;
        co_return;
      }
      batch.swap(s->queue);
    }
    beast::error_code ec;
    if (s->ws) {
      for (const auto& m : batch) {
        co_await s->wsock->async_write(asio::buffer(*m),
                                       asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
    } else {
      std::vector<asio::const_buffer> buffers;
      std::string joined;
      if (batch.size() <= 60) {
        for (const auto& m : batch) buffers.push_back(asio::buffer(*m));
      } else {
        for (const auto& m : batch) joined += *m;
        buffers.push_back(asio::buffer(joined));
      }
      co_await asio::async_write(s->socket, buffers, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) co_return;  // scheduled stays set: no more writes to it
  }
}

unsigned topics_in(std::string_view text) {
  unsigned topics = 0;
  if (text.find("alerts") != std::string_view::npos) topics |= kAlerts;
  if (text.find("contacts") != std::string_view::npos) topics |= kContacts;
  return topics;
}

asio::awaitable<void> bare_accept(BareServer& server, tcp::socket socket) {
  auto s = std::make_shared<BareSession>(std::move(socket));
  beast::error_code ec;
  beast::flat_buffer buffer;
  http::request<http::string_body> req;
  co_await http::async_read(s->socket, buffer, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  if (websocket::is_upgrade(req)) {
    s->ws = true;
    s->wsock.emplace(s->socket);
    co_await s->wsock->async_accept(req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    beast::flat_buffer message;
    co_await s->wsock->async_read(message, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    const auto data = message.cdata();
    s->topics = topics_in(std::string_view(static_cast<const char*>(data.data()), data.size()));
  } else {
    s->topics = topics_in(req.target());
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\nretry: 1000\n\n";
    co_await asio::async_write(s->socket, asio::buffer(head),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
  const std::lock_guard lock(server.mutex);
  server.sessions.push_back(s);
}

asio::awaitable<void> bare_accept_loop(BareServer& server) {
  for (;;) {
    tcp::socket socket(asio::make_strand(server.ioc));
    beast::error_code ec;
    co_await server.acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) continue;
    asio::co_spawn(socket.get_executor(), bare_accept(server, std::move(socket)), asio::detached);
  }
}

// A notification's data as cauce builds it: {"type","id","version","position"}.
std::string fake_data(bool alert, std::int64_t id) {
  char uuid[64];
  std::snprintf(uuid, sizeof uuid, "0193a2b4-0000-7000-8000-%012lld", static_cast<long long>(id));
  return std::string("{\"type\":\"") + (alert ? "alert.raised" : "contact.registered") +
         "\",\"id\":\"" + uuid + "\",\"version\":1,\"position\":\"3:" + std::to_string(id) + "\"}";
}

// The bare server process: serves until stdin closes; on "go <after> <rate> <seconds>\n" writes
// that many notifications (ids after `after`, alerts and contacts alternating, as the pacer
// sends them) to every session of their topic, then prints "<id> <created µs>" per notification
// and "done".
int bare_serve(int port) {
  raise_file_limit();
  BareServer server;
  server.acceptor.open(tcp::v4());
  server.acceptor.set_option(asio::socket_base::reuse_address(true));
  server.acceptor.bind({asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port)});
  server.acceptor.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(server.ioc, bare_accept_loop(server), asio::detached);
  auto guard = asio::make_work_guard(server.ioc);
  std::vector<std::thread> threads;
  const auto n = std::max(1U, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) threads.emplace_back([&server] { server.ioc.run(); });
  std::cout << "ready" << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream in(line);
    std::string word;
    std::int64_t after = 0;
    double rate = 0;
    double seconds = 0;
    in >> word >> after >> rate >> seconds;
    if (word != "go") continue;
    std::vector<std::pair<std::int64_t, std::int64_t>> created;
    const auto total = static_cast<std::int64_t>(rate * seconds);
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < total; ++i) {
      std::this_thread::sleep_until(
          start + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(i) / rate)));
      const auto id = after + 1 + i;
      const bool alert = i % 2 == 0;
      const auto data = fake_data(alert, id);
      const std::string topic = alert ? "alerts" : "contacts";
      auto sse = std::make_shared<const std::string>(
          "id: " + std::to_string(id) + "\nevent: " + topic + "\ndata: " + data + "\n\n");
      auto wsm = std::make_shared<const std::string>(
          "{\"id\":" + std::to_string(id) + ",\"event\":\"" + topic + "\",\"data\":" + data + "}");
      created.emplace_back(id, wall_us());
      const unsigned bit = alert ? kAlerts : kContacts;
      std::vector<std::shared_ptr<BareSession>> sessions;
      {
        const std::lock_guard lock(server.mutex);
        sessions = server.sessions;
      }
      for (const auto& s : sessions) {
        if ((s->topics & bit) == 0) continue;
        bool schedule = false;
        {
          const std::lock_guard lock(s->mutex);
          s->queue.push_back(s->ws ? wsm : sse);
          schedule = !std::exchange(s->scheduled, true);
        }
        if (schedule) asio::co_spawn(s->socket.get_executor(), bare_flush(s), asio::detached);
      }
    }
    for (const auto& [id, at] : created) std::cout << id << ' ' << at << '\n';
    std::cout << "done" << std::endl;
  }
  guard.reset();
  server.ioc.stop();
  for (auto& t : threads) t.join();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// One measurement: connect every client, wait, drive, check, report.

struct Figures {
  double connect_s = 0;
  int served = 0;
  int failed = 0;
  double rss_per_client_kib = 0;
  std::int64_t deliveries = 0;
  std::int64_t expected = 0;
  double deliveries_per_s = 0;
  double notifications_per_s = 0;  // sent (cauce: commands accepted)
  double p50 = 0, p95 = 0, p99 = 0, max = 0;
  int short_clients = 0;      // fewer than their notifications
  int over_clients = 0;       // more (a repeat)
  std::int64_t disorder = 0;  // ids out of order or repeated
  int closed = 0;
  std::string a_closed_reason;
};

double pct(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1))];
}

class Fleet {
 public:
  Fleet(int clients, double ws_share, int threads) : clients_(static_cast<std::size_t>(clients)) {
    lanes_.reserve(static_cast<std::size_t>(threads));
    for (int i = 0; i < threads; ++i) lanes_.push_back(std::make_unique<Lane>());
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      auto& c = clients_[i];
      // 40% alerts, 40% contacts, 20% both; WebSocket spread evenly over the topics.
      const auto k = i % 5;
      c.topics = k < 2 ? kAlerts : k < 4 ? kContacts : (kAlerts | kContacts);
      c.ws = static_cast<double>((i * 7919) % 1000) < ws_share * 1000;
    }
  }

  // Starts every client at once; returns when all were served or failed, or `timeout` passed.
  void connect(Run& run, std::chrono::seconds timeout) {
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      auto& lane = *lanes_[i % lanes_.size()];
      auto& c = clients_[i];
      if (c.ws) {
        asio::co_spawn(lane.ioc, ws_client(run, lane, c), asio::detached);
      } else {
        asio::co_spawn(lane.ioc, sse_client(run, lane, c), asio::detached);
      }
    }
    for (auto& lane : lanes_) {
      threads_.emplace_back([l = lane.get()] { l->ioc.run(); });
    }
    const auto deadline = Clock::now() + timeout;
    while (run.served + run.failed < static_cast<int>(clients_.size()) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Receipts so far; each lane's thread must be stopped first (stop()).
  std::vector<Receipt> receipts() const {
    std::vector<Receipt> all;
    for (const auto& lane : lanes_)
      all.insert(all.end(), lane->receipts.begin(), lane->receipts.end());
    return all;
  }

  void stop(Run& run) {
    run.stop = true;
    for (auto& lane : lanes_) lane->ioc.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  std::vector<Client>& clients() { return clients_; }

 private:
  std::vector<Client> clients_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<std::thread> threads_;
};

// Waits until every client got what it should (`expected` per topic) or nothing moved for a while.
void drain(Fleet& fleet, const std::map<unsigned, std::int64_t>& expected) {
  std::int64_t last_total = -1;
  auto last_change = Clock::now();
  for (;;) {
    std::int64_t total = 0;
    bool all = true;
    for (auto& c : fleet.clients()) {
      if (!c.served) continue;
      const auto want = ((c.topics & kAlerts) != 0 ? expected.at(kAlerts) : 0) +
                        ((c.topics & kContacts) != 0 ? expected.at(kContacts) : 0);
      const auto got = c.count.load();
      total += got;
      if (got < want) all = false;
    }
    if (all) return;
    if (total != last_total) {
      last_total = total;
      last_change = Clock::now();
    } else if (Clock::now() - last_change > std::chrono::seconds(10)) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void judge(Fleet& fleet, const std::map<unsigned, std::int64_t>& expected, Figures& f) {
  for (auto& c : fleet.clients()) {
    if (!c.served) continue;
    const auto want = ((c.topics & kAlerts) != 0 ? expected.at(kAlerts) : 0) +
                      ((c.topics & kContacts) != 0 ? expected.at(kContacts) : 0);
    f.expected += want;
    const auto got = c.count.load();
    f.deliveries += got;
    if (got < want) ++f.short_clients;
    if (got > want) ++f.over_clients;
    f.disorder += c.disorder.load();
    const std::lock_guard lock(c.closed_mutex);
    if (!c.closed.empty()) {
      ++f.closed;
      if (f.a_closed_reason.empty()) f.a_closed_reason = c.closed.substr(0, 200);
    }
  }
}

void latencies(const std::vector<Receipt>& receipts, const std::vector<std::int64_t>& created_us,
               std::int64_t origin_us, Figures& f) {
  std::vector<double> ms;
  ms.reserve(receipts.size());
  std::int64_t first = std::numeric_limits<std::int64_t>::max();
  std::int64_t last = 0;
  for (const auto& r : receipts) {
    const auto i = static_cast<std::size_t>(r.id_offset - 1);
    if (r.id_offset < 1 || i >= created_us.size() || created_us[i] == 0) continue;
    const auto at = origin_us + static_cast<std::int64_t>(r.at_us);
    ms.push_back(static_cast<double>(at - created_us[i]) / 1000.0);
    first = std::min(first, created_us[i]);
    last = std::max(last, at);
  }
  std::sort(ms.begin(), ms.end());
  f.p50 = pct(ms, 50);
  f.p95 = pct(ms, 95);
  f.p99 = pct(ms, 99);
  f.max = ms.empty() ? 0 : ms.back();
  if (last > first) {
    f.deliveries_per_s = static_cast<double>(ms.size()) / (static_cast<double>(last - first) / 1e6);
  }
}

void print(const char* name, const Figures& f, int clients) {
  std::cout << std::fixed << std::setprecision(2);
  std::cout << name << ":\n"
            << "  connect: " << f.served << " of " << clients << " served in " << f.connect_s
            << " s (" << f.failed << " failed)\n";
  if (f.rss_per_client_kib > 0) {
    std::cout << "  server RSS per idle client: " << f.rss_per_client_kib << " KiB\n";
  }
  std::cout << std::setprecision(0) << "  notifications sent: " << f.notifications_per_s
            << "/s; deliveries " << f.deliveries << " of " << f.expected << " expected, "
            << f.deliveries_per_s << " deliveries/s\n"
            << std::setprecision(1) << "  notification -> client: p50 " << f.p50 << " ms  p95 "
            << f.p95 << " ms  p99 " << f.p99 << " ms  max " << f.max << " ms\n"
            << "  clients short: " << f.short_clients << ", with repeats: " << f.over_clients
            << ", ids out of order: " << f.disorder << ", closed early: " << f.closed << "\n";
  if (!f.a_closed_reason.empty()) std::cout << "  e.g. " << f.a_closed_reason << "\n";
}

// Connects the fleet to `server` all at once (the time until the last one is served), then
// lets it sit idle: the server's RSS growth per client, every WebSocket subscribed, nothing
// moving.
void connect_idle(Fleet& fleet, Run& run, pid_t server, Figures& f) {
  const auto rss_before = rss_kib(server);
  const auto started = wall_us();
  fleet.connect(run, std::chrono::seconds(60));
  f.served = run.served;
  f.failed = run.failed;
  f.connect_s = static_cast<double>(run.last_served_us - started) / 1e6;
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto rss_idle = rss_kib(server);
  if (f.served > 0) {
    f.rss_per_client_kib = static_cast<double>(rss_idle - rss_before) / f.served;
  }
  std::cout << "  (server RSS " << rss_before << " KiB before, " << rss_idle << " KiB with "
            << f.served << " idle clients)\n";
}

Figures measure_cauce(const Options& options, std::uint16_t port, pid_t server,
                      const std::string& conninfo, const std::string& reader,
                      const std::string& operator_key) {
  Figures f;
  Run run;
  run.port = port;
  run.key = reader;
  {
    auto c = core::connect_postgres(conninfo);
    pqxx::read_transaction txn(*c);
    run.after = txn.exec1("SELECT coalesce(max(id), 0) FROM notifications")[0].as<std::int64_t>();
  }
  run.origin_us = wall_us();
  // The key in the server's cache first: 10,000 requests with a key it has to look up would
  // queue past the lookups' bound (256) and be refused.
  exchange(port, http::verb::get, "/v1/alerts?limit=1", reader);
  Fleet fleet(options.clients, options.ws_share, options.threads);
  connect_idle(fleet, run, server, f);
  // The pacer: alerts and contacts alternating, through the API.
  std::atomic<std::int64_t> sequence{0};
  const auto load = run_load(
      port, 64, std::chrono::seconds(options.seconds),
      [&](std::mt19937_64& rng) {
        const auto n = sequence++;
        LoadRequest r;
        r.method = http::verb::post;
        r.headers = {{"Authorization", "Bearer " + operator_key}};
        if (n % 2 == 0) {
          r.target = "/v1/alerts";
          r.body = R"({"level":"warning","title":"bench alert )" + std::to_string(n) + "\"}";
        } else {
          r.target = "/v1/contacts";
          r.body = R"({"name":"Bench )" + std::to_string(n) + R"(","phone":"+35191)" +
                   std::to_string(1000000 + rng() % 8000000) + "\"}";
        }
        return r;
      },
      options.rate);
  // Sent per second of the pacing window (run_load's own seconds include the wait for the last
  // answers).
  f.notifications_per_s = static_cast<double>(load.ok) / options.seconds;
  std::cout << "  (commands: " << load.ok << " accepted, " << load.failed << " failed in "
            << options.seconds << " s; command p50 " << load.percentile(50) << " ms, p99 "
            << load.percentile(99) << " ms)\n";
  // What the clients should get: the notifications after `after`, by topic, once the projection
  // has caught up with the commands.
  std::map<unsigned, std::int64_t> expected{{kAlerts, 0}, {kContacts, 0}};
  std::vector<std::int64_t> created;
  {
    auto c = core::connect_postgres(conninfo);
    std::int64_t seen = -1;
    for (int i = 0; i < 100; ++i) {
      pqxx::read_transaction txn(*c);
      const auto n =
          txn.exec_params1("SELECT count(*) FROM notifications WHERE id > $1", run.after)[0]
              .as<std::int64_t>();
      if (n == seen && n >= static_cast<std::int64_t>(load.ok)) break;
      seen = n;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    pqxx::read_transaction txn(*c);
    for (const auto& row :
         txn.exec_params("SELECT id, topic, (extract(epoch FROM created_at) * 1000000)::bigint "
                         "FROM notifications WHERE id > $1 ORDER BY id",
                         run.after)) {
      const auto id = row[0].as<std::int64_t>();
      const auto topic = row[1].as<std::string>();
      if (topic == "alerts") ++expected[kAlerts];
      if (topic == "contacts") ++expected[kContacts];
      const auto i = static_cast<std::size_t>(id - run.after - 1);
      if (created.size() <= i) created.resize(i + 1, 0);
      created[i] = row[2].as<std::int64_t>();
    }
  }
  drain(fleet, expected);
  fleet.stop(run);
  judge(fleet, expected, f);
  latencies(fleet.receipts(), created, run.origin_us, f);
  return f;
}

Figures measure_bare(const Options& options) {
  Figures f;
  const auto port = free_port();
  // The bare server reads its orders on stdin and answers on stdout: two pipes.
  int to_child[2];
  int from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
  posix_spawn_file_actions_addclose(&actions, to_child[1]);
  posix_spawn_file_actions_addclose(&actions, from_child[0]);
  const auto self = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto port_text = std::to_string(port);
  std::vector<char*> argv = {const_cast<char*>(self.c_str()), const_cast<char*>("--bare-serve"),
                             const_cast<char*>(port_text.c_str()), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
    throw std::runtime_error("cannot start the bare server");
  }
  posix_spawn_file_actions_destroy(&actions);
  close(to_child[0]);
  close(from_child[1]);
  FILE* out = fdopen(from_child[0], "r");
  auto read_line = [out] {
    std::string line;
    for (int ch; (ch = std::fgetc(out)) != EOF && ch != '\n';)
      line.push_back(static_cast<char>(ch));
    return line;
  };
  if (read_line() != "ready") throw std::runtime_error("the bare server did not start");
  Run run;
  run.port = port;
  run.key = "bare";
  run.after = 0;
  run.origin_us = wall_us();
  Fleet fleet(options.clients, options.ws_share, options.threads);
  connect_idle(fleet, run, pid, f);
  const std::string go =
      "go 0 " + std::to_string(options.rate) + " " + std::to_string(options.seconds) + "\n";
  if (write(to_child[1], go.data(), go.size()) != static_cast<ssize_t>(go.size())) {
    throw std::runtime_error("cannot talk to the bare server");
  }
  std::vector<std::int64_t> created;
  std::map<unsigned, std::int64_t> expected{{kAlerts, 0}, {kContacts, 0}};
  for (std::string line; (line = read_line()) != "done" && !line.empty();) {
    std::istringstream in(line);
    std::int64_t id = 0;
    std::int64_t at = 0;
    in >> id >> at;
    created.push_back(at);
    ++expected[id % 2 == 1 ? kAlerts : kContacts];
  }
  f.notifications_per_s = static_cast<double>(created.size()) / options.seconds;
  drain(fleet, expected);
  fleet.stop(run);
  judge(fleet, expected, f);
  latencies(fleet.receipts(), created, run.origin_us, f);
  close(to_child[1]);
  fclose(out);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  return f;
}

int run(Options options) {
  if (options.threads <= 0)
    options.threads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  const auto [soft_before, soft] = raise_file_limit();
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  std::cout << "cauce bench/stream: " << options.clients << " clients (" << options.ws_share * 100
            << "% WebSocket; 40% alerts, 40% contacts, 20% both), " << options.rate
            << " notifications/s for " << options.seconds << " s, " << options.threads
            << " client threads, " << std::thread::hardware_concurrency() << " cores\n"
            << "open-file limit of this process: soft " << soft_before << " -> " << soft
            << ", hard " << limit.rlim_max << "\n\n";

  const auto config =
      core::load_config({.file = std::nullopt, .env = core::cauce_environment(), .flags = {}});
  // The caps set high enough for the run, not removed.
  const auto cap = std::to_string(options.clients + 1000);
  const ServedCauce cauce(options.cauce, "bench-stream",
                          {{"CAUCE_HTTP_MAX_CONNECTIONS", cap},
                           {"CAUCE_PROJECTIONS_MAX_STREAM_CLIENTS", cap},
                           {"CAUCE_PROJECTIONS_MAX_STREAM_CLIENTS_PER_KEY", cap}});
  const auto port = cauce.port();
  const auto reader = cauce.key("reader", "bench-stream");
  const auto operator_key = cauce.key("operator", "bench-stream-pacer");
  const auto conninfo = core::postgres_conninfo(config.postgres);

  std::vector<Figures> cauce_runs;
  std::vector<Figures> bare_runs;
  for (int r = 1; r <= options.runs; ++r) {
    std::cout << "run " << r << "\n";
    cauce_runs.push_back(measure_cauce(options, port, cauce.pid(), conninfo, reader, operator_key));
    print("cauce serve", cauce_runs.back(), options.clients);
    if (options.bare) {
      bare_runs.push_back(measure_bare(options));
      print("bare Beast server, the same bytes", bare_runs.back(), options.clients);
    }
    std::cout << std::endl;
  }
  const auto med = [](const std::vector<Figures>& runs, double Figures::*field) {
    std::vector<double> v;
    for (const auto& f : runs) {
      // RSS grows only in the first run of a process (later runs reuse the memory the first
      // run's clients gave back): the others have no figure.
      if (field == &Figures::rss_per_client_kib && f.*field <= 0) continue;
      v.push_back(f.*field);
    }
    return median(v);
  };
  std::cout << std::fixed << "medians over " << options.runs << " runs\n"
            << "| figure | cauce | bare Beast |\n|---|---|---|\n";
  const auto row = [&](const char* name, double Figures::*field, int precision) {
    std::cout << std::setprecision(precision) << "| " << name << " | " << med(cauce_runs, field)
              << " | ";
    if (!bare_runs.empty()) std::cout << med(bare_runs, field);
    std::cout << " |\n";
  };
  row("connect all, s", &Figures::connect_s, 2);
  row("RSS per idle client, KiB", &Figures::rss_per_client_kib, 2);
  row("notifications sent per s", &Figures::notifications_per_s, 0);
  row("deliveries per s", &Figures::deliveries_per_s, 0);
  row("p50 ms", &Figures::p50, 1);
  row("p95 ms", &Figures::p95, 1);
  row("p99 ms", &Figures::p99, 1);
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce live streams benchmark"};
  cauce::bench::Options options;
  app.add_option("--cauce", options.cauce, "The cauce binary to serve with");
  app.add_option("--clients", options.clients, "Stream clients")->check(CLI::PositiveNumber);
  app.add_option("--ws-share", options.ws_share, "Share of WebSocket clients")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--rate", options.rate, "Notifications per second")->check(CLI::PositiveNumber);
  app.add_option("--seconds", options.seconds, "Seconds of notifications")
      ->check(CLI::PositiveNumber);
  app.add_option("--runs", options.runs, "Runs (medians reported)")->check(CLI::PositiveNumber);
  app.add_option("--threads", options.threads, "Client threads (0: one per core)");
  bool no_bare = false;
  app.add_flag("--no-bare", no_bare, "Skip the bare Beast server");
  app.add_option("--bare-serve", options.bare_serve, "(internal) serve as the bare server");
  CLI11_PARSE(app, argc, argv);
  options.bare = !no_bare;
  if (options.bare_serve > 0) return cauce::bench::bare_serve(options.bare_serve);
  return cauce::bench::run_reporting_errors("bench/stream",
                                            [&] { return cauce::bench::run(options); });
}
