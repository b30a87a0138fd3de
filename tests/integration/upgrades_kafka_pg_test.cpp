// Rolling upgrades (issue 18, part 4), against a real `cauce serve`:
// - events a newer build wrote (written here in cauce's envelope, on the aggregate's partition)
//   between this build's commands are never fatal: the processor keeps the aggregate's version
//   exact and refuses commands on it until the upgrade, the projector parks them, and
//   `cauce parked retry|skip` handle them;
// - SIGTERM: /readyz answers 503 first while requests are still served, then the drain answers
//   every command already accepted, and each one answered is in the log.
#include <array>
#include <atomic>
#include <csignal>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/kafka_client.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/parked_events.hpp>

#include "event_log.hpp"
#include "read_models.hpp"
#include "served.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// How many lines of `text` contain both `a` and `b`.
int lines_with(const std::string& text, const std::string& a, const std::string& b) {
  int count = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const auto line = text.substr(start, end - start);
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) ++count;
    start = end + 1;
  }
  return count;
}

// Threads that end when `stop` is called, joined when the test ends (an ASSERT included).
class Threads {
 public:
  explicit Threads(std::function<void()> stop) : stop_(std::move(stop)) {}
  ~Threads() { join(); }
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;
  template <typename F>
  void start(F&& f) {
    threads_.emplace_back(std::forward<F>(f));
  }
  void join() {
    stop_();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::function<void()> stop_;
  std::vector<std::thread> threads_;
};

class UpgradesTest : public ServedTest {
 protected:
  HttpResult register_contact(const std::string& name, const std::string& key = "") {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!key.empty()) headers.emplace_back("Idempotency-Key", key);
    return call(http::verb::post, "/v1/contacts",
                R"({"name":")" + name + R"(","phone":"+44 20 7946 0958"})", "", std::move(headers));
  }

  HttpResult update_contact(const std::string& id, const std::string& body,
                            std::optional<int> if_match) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (if_match) headers.emplace_back("If-Match", "\"" + std::to_string(*if_match) + "\"");
    return call(http::verb::patch, "/v1/contacts/" + id, body, "", std::move(headers));
  }

  // SIGTERM, a clean exit, and the same settings served again (the processor rebuilds).
  void restart() {
    serve_->signal(SIGTERM);
    ASSERT_EQ(serve_->wait_exit(), 0) << serve_->output();
    serve();
  }

  projections::ParkedEvents parked() {
    return projections::ParkedEvents(core::postgres_conninfo(db_.config()),
                                     core::ProjectionsConfig{}.name, kafka_.events_topic);
  }

  // The open parked events of `aggregate_id`, in log order.
  std::vector<projections::ParkedEvent> parked_of(const std::string& aggregate_id) {
    std::vector<projections::ParkedEvent> out;
    for (auto& e : parked().list(false, 0, 100)) {
      if (e.aggregate_id == aggregate_id) out.push_back(std::move(e));
    }
    return out;
  }
};

TEST_F(UpgradesTest, ANewerBuildsEventsKeepOccExactAndAreParkedUntilTheUpgrade) {
  // A snapshot after every commit, unless the partition holds unread aggregates.
  settings["CAUCE_COMMANDS_SNAPSHOT_EVERY_EVENTS"] = "1";
  serve();
  const auto registered = register_contact("Ana");
  ASSERT_EQ(registered.status, 201u) << registered.body;
  const auto id = json_member(registered.body, "id");
  const auto updated = update_contact(id, R"({"name":"Ana B"})", 1);
  ASSERT_EQ(updated.status, 200u) << updated.body;
  ASSERT_EQ(json_member(updated.body, "version"), "2");

  // A newer build's events for the same contact: a type this build does not know, a known type
  // at schema_version current+1, then an event this build can read (newer builds write those
  // too). And an aggregate type this build does not know at all.
  const auto invoice = commands::uuid_v7(1);
  write_records_on_cauce_partitions(
      kafka_,
      {{id, synthetic_envelope("contact", id, 3, "contact.nicknamed", 1, R"({"nickname":"Nana"})")},
       {id, synthetic_envelope("contact", id, 4, "contact.updated", 2,
                               R"({"name":{"given":"Ana","family":"C"}})")},
       {id, synthetic_envelope("contact", id, 5, "contact.updated", 1, R"({"name":"Ana D"})")},
       {invoice,
        synthetic_envelope("invoice", invoice, 1, "invoice.issued", 1, R"({"total":1})")}});
  // The processor meets them when it rebuilds the partition's state.
  restart();

  // The version is the newest event's: a stale If-Match is a 412 as always...
  const auto stale = update_contact(id, R"({"name":"Ana E"})", 4);
  EXPECT_EQ(stale.status, 412u) << stale.body;
  EXPECT_EQ(json_member(stale.body, "current_version"), "5");
  // ...and the right one is refused until every process reads the whole history: 503, never
  // remembered, naming why.
  for (const std::optional<int> if_match : {std::optional<int>(5), std::optional<int>()}) {
    const auto refused = update_contact(id, R"({"name":"Ana E"})", if_match);
    EXPECT_EQ(refused.status, 503u) << refused.body;
    EXPECT_THAT(refused.body, HasSubstr("unreadable-history"));
    EXPECT_THAT(refused.body, HasSubstr("contact.nicknamed v1"));
    EXPECT_EQ(json_member(refused.body, "current_version"), "5");
    EXPECT_FALSE(header(refused, "retry-after").empty());
  }
  // The processor keeps going: other aggregates are decided as usual, those of the same
  // partition included (the API picks the ids: register until one lands there).
  const auto partition = core::kafka_key_partition(id, kafka_.partitions);
  bool same_partition = false;
  for (int i = 0; i < 100 && !same_partition; ++i) {
    const auto other = register_contact("Other " + std::to_string(i));
    ASSERT_EQ(other.status, 201u) << other.body;
    same_partition =
        core::kafka_key_partition(json_member(other.body, "id"), kafka_.partitions) == partition;
  }
  ASSERT_TRUE(same_partition);
  // That commit wrote no snapshot of the partition: one would carry version 5 without the
  // unread mark, and the next rebuild would decide on a state it cannot know.
  restart();
  const auto after_restart = update_contact(id, R"({"name":"Ana E"})", 5);
  EXPECT_EQ(after_restart.status, 503u) << after_restart.body;
  // Logged once per event type, not once per event or per command.
  const auto log = serve_->output();  // once per process
  EXPECT_EQ(lines_with(log, "events this build cannot read", R"("event":"contact.nicknamed v1")"),
            1)
      << log;
  EXPECT_EQ(lines_with(log, "events this build cannot read", R"("event":"contact.updated v2")"), 1);
  EXPECT_EQ(lines_with(log, "events this build cannot read", R"("event":"invoice.issued v1")"), 1);

  // The projector parks the two it cannot decode and holds back the one after them.
  ASSERT_TRUE(eventually([&] { return parked_of(id).size() == 3; }, 30s));
  auto open = parked_of(id);
  EXPECT_THAT(open[0].error, HasSubstr("contact.nicknamed"));
  EXPECT_THAT(open[1].error, HasSubstr("schema_version 2 is unknown to this build"));
  EXPECT_THAT(open[2].error, HasSubstr("held back"));
  ASSERT_EQ(parked_of(invoice).size(), 1u);
  EXPECT_TRUE(eventually(
      [&] { return json_member(call(http::verb::get, "/readyz").body, "status") == "degraded"; },
      30s))
      << "ready (200), asking for an operator";

  // `cauce parked retry` decodes again with this build's code: still unknown, so it fails and
  // counts the attempt (after the upgrade the same command applies it and the two behind it).
  const auto retried = run_cauce({"parked", "retry", std::to_string(open[0].id)}, env());
  EXPECT_NE(retried.first, 0);
  EXPECT_THAT(retried.second, HasSubstr("still does not apply"));
  EXPECT_EQ(parked().get(open[0].id)->attempts, 2);
  const auto behind = run_cauce({"parked", "retry", std::to_string(open[2].id)}, env());
  EXPECT_NE(behind.first, 0);
  EXPECT_THAT(behind.second, HasSubstr("retry " + std::to_string(open[0].id) + " first"));
  // An operator who will not upgrade skips them; what they held back then applies.
  for (const auto& e : {open[0], open[1]}) {
    const auto skipped = run_cauce({"parked", "skip", std::to_string(e.id)}, env());
    EXPECT_EQ(skipped.first, 0) << skipped.second;
  }
  const auto applied = run_cauce({"parked", "retry", std::to_string(open[2].id)}, env());
  EXPECT_EQ(applied.first, 0) << applied.second;
  EXPECT_THAT(parked_of(id), IsEmpty());
  const auto row = get("/v1/contacts/" + id);
  EXPECT_EQ(json_member(row.body, "name"), "Ana D");
  EXPECT_EQ(json_member(row.body, "version"), "5");
}

TEST_F(UpgradesTest, SigtermAnswersEveryAcceptedCommandAfterReadyzSaidStopping) {
  settings["CAUCE_HTTP_SHUTDOWN_GRACE_MS"] = "2000";
  serve();
  // Clients behind a "load balancer" that stops routing here once /readyz is not 200.
  std::atomic<bool> routed_away{false};
  std::atomic<int> answered{0};
  std::mutex mutex;
  std::map<std::string, std::string> created;  // Idempotency-Key -> contact id, for every 201
  std::vector<std::string> failures;           // anything else: an answer or a connection error
  std::string stopping_body;
  Threads threads([&] { routed_away = true; });
  threads.start([&] {
    while (!routed_away) {
      try {
        const auto r = http_request(port_, http::verb::get, "/readyz");
        if (r.status != 200) {
          const std::lock_guard lock(mutex);
          stopping_body = r.body;
          routed_away = true;
        }
      } catch (const std::exception& e) {
        const std::lock_guard lock(mutex);
        failures.push_back(std::string("/readyz: ") + e.what());
        routed_away = true;
      }
      std::this_thread::sleep_for(10ms);  // a probe's period, not a wait for a condition
    }
  });
  for (int c = 0; c < 8; ++c) {
    threads.start([&, c] {
      for (int i = 0; !routed_away; ++i) {
        const auto key = "drain-" + std::to_string(c) + "-" + std::to_string(i);
        try {
          const auto r = register_contact("Caller " + std::to_string(i), key);
          const std::lock_guard lock(mutex);
          if (r.status == 201) {
            created[key] = json_member(r.body, "id");
            ++answered;
          } else {
            failures.push_back(key + ": " + std::to_string(r.status) + " " + r.body);
          }
        } catch (const std::exception& e) {
          const std::lock_guard lock(mutex);
          failures.push_back(key + ": " + e.what());
        }
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return answered >= 200; }, 120s));
  serve_->signal(SIGTERM);
  const auto exit_code = serve_->wait_exit(60s);
  threads.join();  // whatever happened, they end
  EXPECT_EQ(exit_code, 0) << serve_->output();

  EXPECT_THAT(failures, IsEmpty()) << "every request sent before /readyz said 503 was answered";
  EXPECT_THAT(stopping_body, HasSubstr(R"("stopping":true)"));
  EXPECT_THAT(stopping_body, HasSubstr("not ready: stopping"));
  const auto output = serve_->output();
  EXPECT_LT(output.find(R"("msg":"stopping")"), output.find(R"("msg":"stopped")"));
  EXPECT_EQ(output.find("drain timeout"), std::string::npos) << output;

  // Every command that was answered is in the log, once.
  std::map<std::string, int> registered;
  for (const auto& e : read_event_log(kafka_)) {
    if (e.envelope.type == "contact.registered") ++registered[e.envelope.aggregate_id];
  }
  for (const auto& [key, id] : created) EXPECT_EQ(registered[id], 1) << key;
  EXPECT_EQ(registered.size(), created.size());
  std::cout << created.size() << " commands answered, the last ones during the grace period\n";
}

// The rolling restart of the cluster drill on the single test broker: two `cauce serve
// --roles=api,processor` of one group, restarted one after the other while a client that
// retries connection errors and 503s (with the same Idempotency-Key, trying the other process)
// keeps sending to both. No command fails; each is in the log once. Prints what each restart
// cost.
TEST_F(UpgradesTest, ARollingRestartOfTwoProcessesFailsNoCommand) {
  settings["CAUCE_ROLES"] = "api,processor";
  settings["CAUCE_HTTP_SHUTDOWN_GRACE_MS"] = "1000";
  serve();  // the first process; it makes the admin key both use
  TempDir second_data;
  auto second_env = env();
  second_env["CAUCE_DATA_DIR"] = second_data.path().string();
  std::array<std::atomic<std::uint16_t>, 2> ports{};
  ports[0] = port_;
  const auto start = [](const std::map<std::string, std::string>& e,
                        std::uint16_t port) -> std::unique_ptr<CauceProcess> {
    auto with_port = e;
    with_port["CAUCE_HTTP_PORT"] = std::to_string(port);
    auto process = std::make_unique<CauceProcess>(std::vector<std::string>{"serve"}, with_port);
    EXPECT_TRUE(eventually(
        [&] {
          try {
            return http_request(port, http::verb::get, "/readyz").status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        60s))
        << process->output();
    return process;
  };
  std::array<std::unique_ptr<CauceProcess>, 2> processes;
  processes[0] = std::move(serve_);
  const auto second_port = free_port();
  processes[1] = start(second_env, second_port);
  ports[1] = second_port;

  std::atomic<bool> sending{true};
  std::atomic<int> next{0};
  std::atomic<int> answered{0};
  std::atomic<int> retries{0};
  std::mutex mutex;
  std::map<std::string, std::string> created;  // Idempotency-Key -> contact id
  std::vector<std::string> failures;
  // The longest a command took, retries included, since the last reset: what a restart cost
  // the client.
  std::atomic<std::int64_t> longest_ms{0};
  Threads clients([&] { sending = false; });
  for (int c = 0; c < 8; ++c) {
    clients.start([&] {
      while (sending) {
        const int i = next++;
        const auto sent_at = std::chrono::steady_clock::now();
        const auto key = "roll-" + std::to_string(i);
        const auto body =
            R"({"name":"Caller )" + std::to_string(i) + R"(","phone":"+44 20 7946 0958"})";
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        for (int attempt = 0;; ++attempt) {
          const auto port = ports[static_cast<std::size_t>((i + attempt) % 2)].load();
          std::string error;
          try {
            const auto r = http_request(
                port, http::verb::post, "/v1/contacts", body,
                {{"Authorization", "Bearer " + admin_}, {"Idempotency-Key", key}}, 30s);
            if (r.status == 201) {
              const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - sent_at)
                                    .count();
              for (auto seen = longest_ms.load();
                   took > seen && !longest_ms.compare_exchange_weak(seen, took);) {
              }
              const std::lock_guard lock(mutex);
              created[key] = json_member(r.body, "id");
              ++answered;
              break;
            }
            if (r.status != 503) {
              const std::lock_guard lock(mutex);
              failures.push_back(key + ": " + std::to_string(r.status) + " " + r.body);
              break;
            }
            error = r.body;
          } catch (const std::exception& e) {
            error = e.what();  // a connection error: refused while a process restarts
          }
          ++retries;
          if (std::chrono::steady_clock::now() > deadline) {
            const std::lock_guard lock(mutex);
            failures.push_back(key + ": still failing after 60 s: " + error);
            break;
          }
          std::this_thread::sleep_for(50ms);  // a client's backoff
        }
      }
    });
  }
  const auto sent_past = [&](int n) { return eventually([&] { return answered >= n; }, 120s); };
  ASSERT_TRUE(sent_past(200));
  for (std::size_t p = 0; p < 2; ++p) {
    longest_ms = 0;
    const auto began = std::chrono::steady_clock::now();
    processes[p]->signal(SIGTERM);
    EXPECT_EQ(processes[p]->wait_exit(60s), 0) << processes[p]->output();
    const auto stopped = std::chrono::steady_clock::now();
    processes[p] = start(p == 0 ? env() : second_env, ports[p]);
    const auto ready = std::chrono::steady_clock::now();
    ASSERT_TRUE(sent_past(answered + 200)) << "commands flow again after the restart";
    std::cout << "restart of process " << p + 1 << ": stop "
              << std::chrono::duration<double>(stopped - began).count() << " s, start to ready "
              << std::chrono::duration<double>(ready - stopped).count()
              << " s, the slowest command meanwhile (retries included) "
              << static_cast<double>(longest_ms) / 1000 << " s\n";
  }
  clients.join();
  EXPECT_THAT(failures, IsEmpty());

  std::map<std::string, int> registered;
  for (const auto& e : read_event_log(kafka_)) {
    if (e.envelope.type == "contact.registered") ++registered[e.envelope.aggregate_id];
  }
  for (const auto& [key, id] : created) EXPECT_EQ(registered[id], 1) << key;
  EXPECT_EQ(registered.size(), created.size());
  std::cout << created.size() << " commands, " << retries
            << " retries (connection refused or 503)\n";
  for (auto& process : processes) process->signal(SIGTERM);
}

}  // namespace
}  // namespace cauce::testing
