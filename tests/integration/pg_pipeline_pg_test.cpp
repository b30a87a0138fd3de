// Pipelined reads (api/src/pg_pipeline.hpp) against a real PostgreSQL, driven from many threads
// at once (label concurrency: also under ThreadSanitizer). Every query gets exactly one answer:
// its own rows, or nullopt when the pipeline hands it back to the blocking path — never another
// query's rows, never none.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <gtest/gtest.h>

#include <cauce/core/postgres.hpp>

#include "fixtures.hpp"
#include "pg_pipeline.hpp"

namespace cauce::testing {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using api::PgPipelineOptions;
using api::PgPipelines;
using api::PgRows;

constexpr int kRows = 2000;

class PgPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = core::connect_postgres(core::postgres_conninfo(db_.config()));
    pqxx::nontransaction(*pg_).exec(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, " +
        std::to_string(kRows) + ") i");
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }

  void TearDown() override {
    pipelines_.reset();
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    opener_.join();
  }

  void start(int connections, PgPipelineOptions options = {}) {
    options.conninfo = core::postgres_conninfo(db_.config());
    options.statements = {{"item", "SELECT name FROM items WHERE id = $1::int"},
                          {"slow", "SELECT pg_sleep($1::float8)::text"},
                          {"ratio", "SELECT (100 / $1::int)::text"}};
    options.open_on = [this](std::function<void()> work) { asio::post(opener_, std::move(work)); };
    pipelines_ = std::make_unique<PgPipelines>(io_, std::move(options), connections);
    ASSERT_TRUE(eventually([&] { return pipelines_->ready() == connections; }))
        << "the pipelined connections did not open";
  }

  // Runs one query and waits for its one answer: the first column of its first row, "" for no
  // rows, nullopt when handed back.
  // rows ("" for none), "<error SQLSTATE>" for a statement that failed, nullopt when handed
  // back; "<no answer>" when none came within 30 s.
  std::optional<std::string> ask(const std::string& statement, const std::string& param) {
    auto answer = std::make_shared<std::promise<std::optional<std::string>>>();
    auto future = answer->get_future();
    pipelines_->query(statement, {param}, [answer](std::optional<PgRows> rows) {
      if (!rows) return answer->set_value(std::nullopt);
      if (!rows->ok()) return answer->set_value("<error " + std::string(rows->sqlstate()) + ">");
      answer->set_value(rows->size() > 0 ? std::string(rows->text(0, 0)) : std::string());
    });
    if (future.wait_for(30s) != std::future_status::ready) return "<no answer>";
    return future.get();
  }

  void terminate_pipelined_connections() {
    pqxx::nontransaction(*pg_).exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  }

  TempDatabase db_;
  std::unique_ptr<pqxx::connection> pg_;
  asio::io_context io_{2};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  std::vector<std::thread> threads_;
  asio::thread_pool opener_{1};
  std::unique_ptr<PgPipelines> pipelines_;
};

TEST_F(PgPipelineTest, QueriesFromManyThreadsEachGetTheirOwnRowsOnce) {
  start(2, {.max_in_flight = 100000});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1000;
  std::atomic<int> answers{0};
  std::atomic<int> wrong{0};
  std::atomic<int> handed_back{0};
  std::mutex mutex;
  std::condition_variable all_answered;
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int id = 1 + (t * kPerThread + i) % kRows;
        pipelines_->query("item", {std::to_string(id)}, [&, id](std::optional<PgRows> rows) {
          if (!rows) {
            ++handed_back;
          } else if (rows->size() != 1 || rows->text(0, 0) != "item " + std::to_string(id)) {
            ++wrong;
          }
          if (++answers == kThreads * kPerThread) {
            const std::lock_guard lock(mutex);
            all_answered.notify_all();
          }
        });
      }
    });
  }
  for (auto& c : clients) c.join();
  std::unique_lock lock(mutex);
  ASSERT_TRUE(
      all_answered.wait_for(lock, 60s, [&] { return answers.load() >= kThreads * kPerThread; }))
      << answers.load() << " answers";
  lock.unlock();
  std::this_thread::sleep_for(100ms);  // a second answer to any query would land by now
  EXPECT_EQ(answers.load(), kThreads * kPerThread);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(handed_back.load(), 0);
  EXPECT_EQ(pipelines_->answered(), static_cast<std::uint64_t>(kThreads * kPerThread));
}

// One query at a time per thread: each answer must wake its connection (a lost wake-up would
// leave the read to the watchdog, an hour away here, and hand it back).
TEST_F(PgPipelineTest, EveryAnswerWakesItsConnectionWithoutTheWatchdog) {
  start(2, {.answer_timeout = std::chrono::hours(1)});
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 300 && wrong.load() == 0; ++i) {
        const int id = 1 + (t * 300 + i) % kRows;
        if (ask("item", std::to_string(id)) != "item " + std::to_string(id)) ++wrong;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(pipelines_->handed_back(), 0u);
}

TEST_F(PgPipelineTest, AnIdWithoutARowIsAnEmptyAnswer) {
  start(1);
  EXPECT_EQ(ask("item", std::to_string(kRows + 1)), std::optional<std::string>(""));
  EXPECT_EQ(ask("item", "7"), std::optional<std::string>("item 7"));
}

TEST_F(PgPipelineTest, AFailingStatementIsAnsweredWithItsErrorAndTheConnectionGoesOn) {
  start(1);
  EXPECT_EQ(ask("ratio", "0"), std::optional<std::string>("<error 22012>"));  // division by zero
  EXPECT_EQ(ask("ratio", "4"), std::optional<std::string>("25"));
  EXPECT_EQ(pipelines_->ready(), 1);
  EXPECT_EQ(pipelines_->handed_back(), 0u);
}

// The caller can tell a statement timeout from the rest (the route answers 503 rather than run
// the read a second time on the pool).
TEST_F(PgPipelineTest, AStatementTimeoutIsAnsweredAsOne) {
  start(1, {.statement_timeout = 200ms, .answer_timeout = std::chrono::hours(1)});
  EXPECT_EQ(ask("slow", "5"), std::optional<std::string>("<error 57014>"));
  EXPECT_EQ(ask("item", "2"), std::optional<std::string>("item 2"));
}

TEST_F(PgPipelineTest, QueriesPastTheBoundAreHandedBackAtOnce) {
  start(1, {.max_in_flight = 1});
  std::promise<bool> slow_answered;
  pipelines_->query("slow", {"1"},
                    [&](std::optional<PgRows> rows) { slow_answered.set_value(rows.has_value()); });
  // The slow query holds the only place: the next one is handed back while it runs.
  EXPECT_EQ(ask("item", "1"), std::nullopt);
  EXPECT_TRUE(slow_answered.get_future().get());
  EXPECT_EQ(ask("item", "1"), std::optional<std::string>("item 1"));
}

TEST_F(PgPipelineTest, ALostConnectionHandsItsQueriesBackAndOpensAgain) {
  start(1);
  std::promise<bool> slow_answered;  // with rows: never, once its backend is gone
  pipelines_->query("slow", {"30"}, [&](std::optional<PgRows> rows) {
    slow_answered.set_value(rows && rows->ok());
  });
  std::this_thread::sleep_for(200ms);
  terminate_pipelined_connections();
  auto lost = slow_answered.get_future();
  ASSERT_EQ(lost.wait_for(10s), std::future_status::ready) << "a lost query was never answered";
  EXPECT_FALSE(lost.get());
  ASSERT_TRUE(eventually([&] { return ask("item", "9") == std::optional<std::string>("item 9"); }))
      << "the pipeline did not come back";
}

TEST_F(PgPipelineTest, AConnectionThatStopsAnsweringIsDroppedAtTheAnswerTimeout) {
  start(1, {.answer_timeout = 300ms});
  EXPECT_EQ(ask("slow", "10"), std::nullopt);  // answered, it would be a row ("")
  ASSERT_TRUE(eventually([&] { return ask("item", "3") == std::optional<std::string>("item 3"); }))
      << "the pipeline did not come back";
}

TEST(PgPipelineDownTest, WithPostgreSQLUnreachableEveryQueryIsHandedBackAtOnce) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  asio::thread_pool opener(1);
  {
    auto config = test_postgres();
    config.port = free_port();  // nobody listens
    PgPipelines pipelines(
        io,
        {.conninfo = core::postgres_conninfo(config),
         .statements = {{"one", "SELECT 1"}},
         .open_on = [&](std::function<void()> w) { asio::post(opener, std::move(w)); }},
        1);
    for (int i = 0; i < 20; ++i) {
      std::promise<bool> answered;
      pipelines.query("one", {},
                      [&](std::optional<PgRows> rows) { answered.set_value(rows.has_value()); });
      auto f = answered.get_future();
      ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
      EXPECT_FALSE(f.get());
    }
    EXPECT_EQ(pipelines.ready(), 0);
  }
  work.reset();
  io.stop();
  runner.join();
  opener.join();
}

}  // namespace
}  // namespace cauce::testing
