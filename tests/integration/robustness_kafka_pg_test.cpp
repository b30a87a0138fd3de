// Issue 11 against a real `cauce serve` process: nothing a client or the log sends crashes it or
// stops a read model. 64 keep-alive clients send 20,000 mixed commands (valid, conflicting and
// malformed): the same process answers every one with a 2xx or a problem, and the log holds
// exactly the acknowledged commands. Poison records produced by hand onto the event topic are
// parked while later commands still project, read-your-writes still answers, and the log of
// that run is a few lines.

#include <atomic>
#include <csignal>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/kafka_admin.hpp>

#include "read_models.hpp"

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;

using Headers = std::vector<std::pair<std::string, std::string>>;

class RobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core::KafkaAdmin(kafka_).ensure_topics(core::cauce_topics(kafka_), kafka_.partitions, 1);
    env_ = cauce_env(db_.config(), kafka_);
    env_["CAUCE_DATA_DIR"] = data_.path().string();
    env_["CAUCE_COMMANDS_PROCESSOR_GROUP"] = unique_name("processor");
    env_["CAUCE_PROJECTIONS_GROUP"] = unique_name("projector");
    cauce_ = std::make_unique<CauceProcess>(std::vector<std::string>{"serve"}, env_);
    const auto listening = cauce_->wait_for_line("\"msg\":\"listening\"");
    ASSERT_TRUE(listening) << cauce_->output();
    port_ = listening_port(*listening);
    std::string key;
    std::getline(std::ifstream(data_.path() / "admin.key"), key);
    auth_ = {{"Authorization", "Bearer " + key}};
    ASSERT_TRUE(eventually(
        [&] { return http_request(port_, http::verb::get, "/readyz").status == 200; }, 60s))
        << http_request(port_, http::verb::get, "/readyz").body;
  }

  HttpResult send(http::verb method, const std::string& target, const std::string& body = "",
                  Headers extra = {}) {
    auto headers = auth_;
    headers.insert(headers.end(), extra.begin(), extra.end());
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return http_request(port_, method, target, body, headers, 15s);
  }

  TempDatabase db_;
  core::KafkaConfig kafka_ = test_kafka(3);
  TempDir data_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<CauceProcess> cauce_;
  std::uint16_t port_ = 0;
  Headers auth_;
};

std::string json_field(const std::string& body, const char* name) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  if (!d.IsObject() || !d.HasMember(name)) return "";
  if (d[name].IsString()) return d[name].GetString();
  if (d[name].IsInt64()) return std::to_string(d[name].GetInt64());
  return "";
}

// One keep-alive HTTP/1.1 connection (what a real client pool holds).
class Connection {
 public:
  explicit Connection(std::uint16_t port) : stream_(io_) {
    stream_.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  HttpResult request(http::verb method, const std::string& target, const std::string& body,
                     const Headers& headers) {
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    stream_.expires_after(std::chrono::seconds(30));
    http::write(stream_, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream_, buffer, res);
    HttpResult out;
    out.status = res.result_int();
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(field.value());
    }
    out.body = res.body();
    return out;
  }

 private:
  asio::io_context io_;
  beast::tcp_stream stream_;
};

// /readyz is what a load balancer asks: once it says ready, commands are decided, not 503.
TEST_F(RobustnessTest, ReadyMeansThePartitionsAreOwnedAndRebuilt) {
  const auto ready = send(http::verb::get, "/readyz");
  EXPECT_NE(ready.body.find("\"processor\":{\"ok\":true"), std::string::npos) << ready.body;
  const auto r =
      send(http::verb::post, "/v1/contacts", R"({"name":"First","phone":"+351912345678"})");
  EXPECT_EQ(r.status, 201u) << r.body;
}

TEST_F(RobustnessTest, SixtyFourClientsAndTwentyThousandMixedCommandsOneProcessExactLog) {
  constexpr int kClients = 64;
  constexpr int kPerClient = 20'000 / kClients + 1;  // 20,032 commands
  std::mutex mutex;
  std::set<std::pair<std::string, std::int64_t>> acknowledged;  // (aggregate id, version)
  std::vector<std::string> bad_answers;
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      try {
        Connection connection(port_);
        std::vector<std::string> contacts;
        std::vector<std::string> alerts;
        for (int i = 0; i < kPerClient; ++i) {
          const auto tag = std::to_string(c) + "-" + std::to_string(i);
          auto headers = auth_;
          headers.emplace_back("Idempotency-Key", "soak-" + tag);
          http::verb method = http::verb::post;
          std::string target;
          std::string body;
          switch (contacts.empty() ? 0 : i % 8) {
            case 0:
            case 1:  // a contact with a client-chosen id: the pattern keyword raced here
              target = "/v1/contacts";
              body = R"({"id":")" + commands::uuid_v7(1'700'000'000'000 + c * 100000 + i) +
                     R"(","name":"Soak )" + tag + R"(","phone":"+351912345678","tags":["a"]})";
              break;
            case 2:
              target = "/v1/contacts/" + contacts[static_cast<std::size_t>(i) % contacts.size()] +
                       "/calls";
              body = R"({"outcome":"answered","duration_s":)" + std::to_string(i % 600) + "}";
              break;
            case 3:  // a stale If-Match half the time: 412
              method = http::verb::patch;
              target = "/v1/contacts/" + contacts.back();
              body = R"({"notes":"n)" + tag + "\"}";
              headers.emplace_back("If-Match", i % 2 ? "\"1\"" : "\"999\"");
              break;
            case 4:
              target = "/v1/alerts";
              body = R"({"level":"warning","title":"Soak )" + tag + "\"}";
              break;
            case 5:  // acknowledged once (200), again (409)
              target = alerts.empty() ? "/v1/contacts/" + contacts.front() + "/assign"
                                      : "/v1/alerts/" + alerts.back() + "/acknowledge";
              body = alerts.empty() ? R"({"operator":"op"})" : "{}";
              break;
            case 6:  // what crashed or poisoned the server: each a 400
              target = "/v1/contacts";
              body = i % 3 == 0   ? std::string(5000, '[') + std::string(5000, ']')
                     : i % 3 == 1 ? R"({"name":"A\u0000B","phone":"+351912345678"})"
                                  : R"({"name":"A","name":"B","phone":"+351912345678"})";
              break;
            default:  // unknown aggregate: 404
              target = "/v1/contacts/" + commands::uuid_v7(1) + "/archive";
              body = "{}";
          }
          const auto r = connection.request(method, target, body, headers);
          ++answered;
          const bool problem = header(r, "content-type") == "application/problem+json";
          const bool ok = r.status >= 200 && r.status < 300;
          const bool fine = ok ||
                            (problem && r.status >= 400 && r.status < 500 && r.status != 429) ||
                            (problem && r.status == 503 && r.headers.contains("retry-after"));
          const std::lock_guard lock(mutex);
          if (!fine) {
            bad_answers.push_back(std::to_string(r.status) + " " + target + " " + r.body);
            continue;
          }
          if (!ok) continue;
          const auto id = json_field(r.body, "id");
          const auto version = std::stoll(json_field(r.body, "version"));
          acknowledged.emplace(id, version);
          if (target == "/v1/contacts") contacts.push_back(id);
          if (target == "/v1/alerts") alerts.push_back(id);
        }
      } catch (const std::exception& e) {
        const std::lock_guard lock(mutex);
        bad_answers.push_back(std::string("client failed: ") + e.what());
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_TRUE(bad_answers.empty())
      << bad_answers.size() << " bad answers, e.g. " << bad_answers.front();
  EXPECT_EQ(answered.load(), kClients * kPerClient);
  EXPECT_FALSE(cauce_->wait_exit(0ms)) << "the same process serves: " << cauce_->output();
  EXPECT_EQ(http_request(port_, http::verb::get, "/healthz").status, 200u);

  // The log holds exactly the acknowledged commands: one event each, nothing else (but what the
  // workers add: their attempts at the reports' sources, a scheduled backup).
  std::set<std::pair<std::string, std::int64_t>> logged;
  for (const auto& e : read_event_log(kafka_)) {
    if (e.envelope.actor == "workers" || e.envelope.actor == "schedule") continue;
    logged.emplace(e.envelope.aggregate_id, e.envelope.version);
  }
  EXPECT_EQ(logged.size(), acknowledged.size());
  EXPECT_TRUE(logged == acknowledged);
}

TEST_F(RobustnessTest, APoisonEventIsParkedWhileCommandsStillProjectWithAFewLogLines) {
  const auto first =
      send(http::verb::post, "/v1/contacts", R"({"name":"Before","phone":"+351912345678"})");
  ASSERT_EQ(first.status, 201u) << first.body;
  // What the API now refuses, written straight onto the event topic (like `kcat -P`).
  const auto nul = commands::uuid_v7(2);
  write_records(kafka_, {{nul, synthetic_envelope("contact", nul, 1, "contact.registered", 1,
                                                  R"({"name":"A\u0000B","phone":"+351912345678",)"
                                                  R"("tags":[]})")},
                         {"junk", "\x01\x02 not an event"}});
  std::string position;
  for (int i = 0; i < 20; ++i) {
    const auto r = send(http::verb::post, "/v1/contacts",
                        R"({"name":"After )" + std::to_string(i) + R"(","phone":"+351912345678"})");
    ASSERT_EQ(r.status, 201u) << r.body;
    position = header(r, "cauce-position");
  }
  const auto read =
      send(http::verb::get, "/v1/contacts?limit=100", "", {{"Cauce-Min-Position", position}});
  ASSERT_EQ(read.status, 200u) << "read-your-writes answers: " << read.body;
  EXPECT_NE(read.body.find("After 19"), std::string::npos);

  ASSERT_TRUE(eventually(
      [&] {
        return send(http::verb::get, "/readyz").body.find("\"status\":\"degraded\"") !=
               std::string::npos;
      },
      20s))
      << send(http::verb::get, "/readyz").body;
  EXPECT_EQ(send(http::verb::get, "/readyz").status, 200u) << "degraded still serves";
  const auto parked = send(http::verb::get, "/v1/admin/parked");
  ASSERT_EQ(parked.status, 200u) << parked.body;
  rapidjson::Document d;
  d.Parse(parked.body.c_str());
  ASSERT_EQ(d["items"].Size(), 2u) << parked.body;
  const auto id = std::to_string(d["items"][0]["id"].GetInt64());
  EXPECT_EQ(send(http::verb::post, "/v1/admin/parked/" + id + "/retry").status, 409u);
  EXPECT_EQ(send(http::verb::post, "/v1/admin/parked/" + id + "/skip").status, 200u);
  EXPECT_EQ(send(http::verb::post, "/v1/admin/parked/" + id + "/skip").status, 409u);
  EXPECT_EQ(send(http::verb::post, "/v1/admin/parked/999999/skip").status, 404u);
  // Ids past 32 bits (parked ids are bigint) are a 404 too, not a 500 (found by schemathesis).
  EXPECT_EQ(send(http::verb::get, "/v1/admin/parked/2147483648").status, 404u);
  EXPECT_EQ(send(http::verb::post, "/v1/admin/parked/2147483648/skip").status, 404u);
  EXPECT_EQ(send(http::verb::get, "/v1/admin/parked/x").status, 400u);
  EXPECT_TRUE(eventually(
      [&] {
        return http_request(port_, http::verb::get, "/metrics")
                   .body.find("cauce_parked_events 1") != std::string::npos;
      },
      20s));

  // A few lines, not the 154,000 of issue 11.
  std::size_t projector_lines = 0;
  const auto output = cauce_->output();
  for (std::size_t at = output.find("\"component\":\"projector\""); at != std::string::npos;
       at = output.find("\"component\":\"projector\"", at + 1)) {
    ++projector_lines;
  }
  EXPECT_LT(projector_lines, 15u) << output;
}

// What a person told the call centre stays in the read models and the log, never in cauce's own
// log lines: every command and query a contact's data passes through (the failing ones too),
// then every line cauce wrote is searched for it, and for the keys and the database password.
TEST_F(RobustnessTest, NoPersonalDataKeyOrPasswordReachesTheLog) {
  const std::string name = "Zelda Quixotic-Pemberton";
  const std::string email = "zelda.qp.private@example.org";
  const std::string note = "lives at 7 Rua Secreta, Lisboa";
  const auto registered = send(http::verb::post, "/v1/contacts",
                               R"({"name":")" + name + R"(","phone":"+351 912 000 777","email":")" +
                                   email + R"(","notes":")" + note + R"("})");
  ASSERT_EQ(registered.status, 201u) << registered.body;
  const auto id = json_field(registered.body, "id");
  for (const auto& [method, target, body] :
       std::vector<std::tuple<http::verb, std::string, std::string>>{
           {http::verb::patch, "/v1/contacts/" + id, R"({"notes":")" + note + R"x( (again)"})x"},
           {http::verb::post, "/v1/contacts/" + id + "/calls",
            R"({"outcome":"answered","duration_s":60,"notes":")" + note + R"("})"},
           {http::verb::post, "/v1/contacts/" + id + "/assign",
            R"({"operator":")" + name + R"("})"},
           // Refused ones: a bad phone, a bad e-mail, a duplicate key with another body.
           {http::verb::post, "/v1/contacts", R"({"name":")" + name + R"(","phone":"call me"})"},
           {http::verb::post, "/v1/contacts",
            R"({"name":")" + name + R"(","phone":"+351912000777","email":"zelda at home"})"},
           {http::verb::patch, "/v1/contacts/" + id, R"({"email":")" + email + R"(","x":1})"},
       }) {
    const auto r = send(method, target, body);
    EXPECT_LT(r.status, 500u) << r.body;
  }
  EXPECT_EQ(send(http::verb::get, "/v1/contacts?q=quixotic").status, 200u);
  EXPECT_EQ(send(http::verb::get, "/v1/contacts/" + id + "?q=zelda").status, 400u);
  ASSERT_TRUE(eventually([&] {
    const auto r = send(http::verb::get, "/v1/contacts/" + id);
    return r.status == 200 && r.headers.count("etag") && r.headers.at("etag") == "\"4\"";
  }));
  cauce_->signal(SIGTERM);
  ASSERT_EQ(cauce_->wait_exit(), 0);
  const auto log = cauce_->output();
  const auto bearer = auth_[0].second.substr(std::string("Bearer ").size());
  for (const auto& secret :
       {name, std::string("Zelda"), std::string("Quixotic"), std::string("912000777"), email,
        std::string("Rua Secreta"), bearer, db_.config().password.reveal()}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << "the log holds \"" << secret << "\"";
  }
  EXPECT_NE(log.find(R"("msg":"stopped")"), std::string::npos) << "the log was read whole";
}

}  // namespace
}  // namespace cauce::testing
