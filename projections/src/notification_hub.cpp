#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <thread>

#include <pqxx/pqxx>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/queries.hpp>

#include "pg_projection.hpp"

namespace cauce::projections {
namespace {

using Clock = std::chrono::steady_clock;

const core::Logger& log() {
  static const core::Logger logger("notifications");
  return logger;
}

// Rows read from the table per round; a client far behind catches up over several rounds.
constexpr int kPageRows = 5000;
// Distinct cursors served per round: clients resuming from many different ids cost a bounded
// number of page reads per round (the furthest behind first); the others wait for the next one.
constexpr std::size_t kCursorsPerRound = 32;
// A client whose queue stays full this long is closed as too slow.
constexpr auto kSlowClientGrace = std::chrono::seconds(5);
// Topic stats: figures at most once a second, and at least every minute while anyone listens.
constexpr auto kStatsRefresh = std::chrono::seconds(60);

}  // namespace

std::string notification_data(const Notification& n) {
  if (n.topic == "stats") return n.data;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("type");
  w.String(n.type.c_str(), static_cast<rapidjson::SizeType>(n.type.size()));
  w.Key("id");
  w.String(n.aggregate_id.c_str(), static_cast<rapidjson::SizeType>(n.aggregate_id.size()));
  w.Key("version");
  w.Int64(n.version);
  w.Key("position");
  w.String(n.position.c_str(), static_cast<rapidjson::SizeType>(n.position.size()));
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

const std::set<std::string>& notification_topics() {
  static const std::set<std::string> topics = {"contacts", "alerts", "reports", "backups",
                                               "report_schedules"};
  return topics;
}

const std::set<std::string>& subscribable_topics() {
  static const std::set<std::string> topics = {"contacts",         "alerts",  "reports", "backups",
                                               "report_schedules", "imports", "stats"};
  return topics;
}

std::string topic_list() {
  std::string out;
  for (const auto& t : subscribable_topics()) out += (out.empty() ? "" : ", ") + t;
  return out;
}

int level_rank(std::string_view level) {
  if (level == "info") return 1;
  if (level == "warning") return 2;
  if (level == "critical") return 3;
  return 0;
}

bool StreamFilter::matches(const Notification& n) const {
  if (n.topic == "alerts") {
    if (min_level && level_rank(n.level) < level_rank(*min_level)) return false;
    if (regions && !regions->contains(n.region)) return false;
  } else if (n.topic == "contacts") {
    if (person && std::find(n.people.begin(), n.people.end(), *person) == n.people.end()) {
      return false;
    }
  }
  return true;
}

std::shared_ptr<const Delivery> make_delivery(const Notification& n) {
  auto d = std::make_shared<Delivery>();
  d->id = n.id;
  d->aggregate_id = n.aggregate_id;
  d->version = n.version;
  const auto data = notification_data(n);
  const auto id = std::to_string(n.id);
  if (n.id != 0) {
    d->sse.reserve(id.size() + n.topic.size() + data.size() + 22);
    d->sse.append("id: ").append(id).append("\n");
  }
  d->sse.append("event: ").append(n.topic).append("\ndata: ").append(data).append("\n\n");
  d->ws.reserve(id.size() + n.topic.size() + data.size() + 28);
  d->ws.append("{");
  if (n.id != 0) d->ws.append("\"id\":").append(id).append(",");
  d->ws.append("\"event\":\"").append(n.topic).append("\",\"data\":").append(data).append("}");
  return d;
}

std::uint32_t topic_bit(std::string_view topic) {
  std::uint32_t bit = 1;
  for (const auto& t : subscribable_topics()) {
    if (t == topic) return bit;
    bit <<= 1;
  }
  return 0;
}

std::vector<std::shared_ptr<const Delivery>> Subscription::take(std::int64_t* through) {
  std::vector<std::shared_ptr<const Delivery>> out;
  const std::lock_guard lock(mutex_);
  if (through != nullptr) *through = through_;
  out.swap(queue_);
  return out;
}

std::optional<std::int64_t> Subscription::take_reset() {
  const std::lock_guard lock(mutex_);
  return std::exchange(reset_, std::nullopt);
}

std::optional<std::string> Subscription::closed_reason() const {
  const std::lock_guard lock(mutex_);
  return closed_;
}

struct NotificationHub::Impl {
  struct Waiter {
    std::int32_t partition;
    std::int64_t offset;
    Clock::time_point deadline;
    std::function<void(bool)> done;
  };

  // Parses the projector's progress payloads into the hub's view (hub thread).
  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, Impl& impl)
        : pqxx::notification_receiver(c, kProgressChannel), impl_(impl) {}
    void operator()(const std::string& payload, int) override { impl_.on_progress(payload); }

   private:
    Impl& impl_;
  };

  Impl(core::PostgresConfig pg, std::string p, std::string t, core::ProjectionsConfig c)
      : conninfo(core::postgres_conninfo(pg)),
        projection(std::move(p)),
        topic(std::move(t)),
        config(std::move(c)) {}

  const std::string conninfo;
  const std::string projection;
  const std::string topic;
  const core::ProjectionsConfig config;

  std::thread thread;
  std::atomic<bool> running{false};
  std::atomic<bool> is_connected{false};

  mutable std::mutex mutex;  // guards what other threads touch: the lists below, latest_id
  std::condition_variable changed;
  std::vector<std::shared_ptr<Subscription>> subscriptions;
  std::vector<Waiter> waiters;
  std::int64_t latest_id = -1;  // -1: not known yet (not connected once)
  bool kick = false;            // something to do without waiting for PostgreSQL

  std::map<std::int32_t, std::int64_t> checkpoints;  // partition -> next offset applied

  // Hub thread only.
  std::string live_schema;  // the read-model generation queries read (read_model_live)
  // Topic stats: the figures last sent, when, and the notification id they reflect.
  std::string stats_sent;
  Clock::time_point stats_at{};
  std::int64_t stats_id = -2;
  core::ConditionLog stats_condition{log()};
  std::unique_ptr<pqxx::connection> connection;
  std::unique_ptr<Receiver> receiver;

  void on_progress(const std::string& payload) {
    rapidjson::Document d;
    d.Parse(payload.c_str());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("projection") ||
        !d["projection"].IsString() || d["projection"].GetString() != projection ||
        !d.HasMember("topic") || !d["topic"].IsString() || d["topic"].GetString() != topic) {
      return;
    }
    // Positions are answered from the live generation's checkpoints only: a replay building the
    // next one (infra/sql/0008) may be ahead of what queries read. Its switch announces itself
    // with the new generation's checkpoints, which are at or past the old one's.
    const bool has_schema = d.HasMember("schema") && d["schema"].IsString();
    const std::string schema = has_schema ? d["schema"].GetString() : live_schema;
    if (d.HasMember("switch") && d["switch"].IsBool() && d["switch"].GetBool()) {
      live_schema = schema;
      log().info("read models switched to a new generation", {{"schema", schema}});
    }
    const std::lock_guard lock(mutex);
    if (schema == live_schema && d.HasMember("checkpoints") && d["checkpoints"].IsObject()) {
      for (const auto& m : d["checkpoints"].GetObject()) {
        if (!m.value.IsInt64()) continue;
        const auto partition = std::atoi(m.name.GetString());
        checkpoints[partition] = std::max(checkpoints[partition], m.value.GetInt64());
      }
    }
    if (d.HasMember("last_notification_id") && d["last_notification_id"].IsInt64()) {
      latest_id = std::max(latest_id, d["last_notification_id"].GetInt64());
    }
  }

  void connect() {
    auto c = core::connect_postgres(conninfo);
    auto r = std::make_unique<Receiver>(*c, *this);  // LISTEN before reading the state
    pqxx::read_transaction txn(*c);
    std::map<std::int32_t, std::int64_t> stored;
    for (const auto& row :
         txn.exec_params("SELECT partition, next_offset FROM projection_checkpoints "
                         "WHERE projection = $1 AND topic = $2",
                         projection, topic)) {
      stored[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
    }
    const auto max_id =
        txn.exec1("SELECT coalesce(max(id), 0) FROM notifications")[0].as<std::int64_t>();
    live_schema = txn.exec1("SELECT schema FROM read_model_live")[0].as<std::string>();
    txn.commit();
    {
      const std::lock_guard lock(mutex);
      for (const auto& [p, next] : stored) checkpoints[p] = std::max(checkpoints[p], next);
      latest_id = std::max(latest_id, max_id);
      for (auto& s : subscriptions) {
        if (s->cursor_ < 0) {  // subscribed "from now" while disconnected
          s->cursor_ = latest_id;
          const std::lock_guard queue_lock(s->mutex_);
          s->through_ = latest_id;
        }
      }
    }
    receiver = std::move(r);
    connection = std::move(c);
    is_connected = true;
  }

  void disconnect(const std::exception& e) {
    if (is_connected.exchange(false)) {
      log().warn("lost PostgreSQL; live notifications pause until it is back",
                 {{"error", e.what()}});
    }
    receiver.reset();
    connection.reset();
  }

  // Under `mutex`.
  bool applied(std::int32_t partition, std::int64_t offset) const {
    const auto it = checkpoints.find(partition);
    return it != checkpoints.end() && it->second > offset;
  }

  void settle_waiters() {
    std::vector<std::pair<std::function<void(bool)>, bool>> due;
    {
      const std::lock_guard lock(mutex);
      const auto now = Clock::now();
      auto keep = waiters.begin();
      for (auto& w : waiters) {
        if (is_connected && applied(w.partition, w.offset)) {
          due.emplace_back(std::move(w.done), true);
        } else if (!is_connected || now >= w.deadline) {
          due.emplace_back(std::move(w.done), false);
        } else {
          *keep++ = std::move(w);
        }
      }
      waiters.erase(keep, waiters.end());
    }
    for (auto& [done, ok] : due) done(ok);
  }

  std::vector<Notification> page_after(std::int64_t cursor, std::int64_t latest) {
    std::vector<Notification> rows;
    pqxx::read_transaction txn(*connection);
    for (const auto& row : txn.exec_params(
             "SELECT id, topic, type, aggregate_id::text, version, position, "
             "       coalesce(level, ''), coalesce(region, ''), array_to_json(people)::text "
             "FROM notifications WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
             cursor, latest, kPageRows)) {
      Notification n{row[0].as<std::int64_t>(),
                     row[1].as<std::string>(),
                     row[2].as<std::string>(),
                     row[3].as<std::string>(),
                     row[4].as<std::int64_t>(),
                     row[5].as<std::string>(),
                     "",
                     row[6].as<std::string>(),
                     row[7].as<std::string>(),
                     {}};
      if (!row[8].is_null()) {
        rapidjson::Document people;
        people.Parse(row[8].c_str());
        if (people.IsArray()) {
          for (const auto& p : people.GetArray()) {
            if (p.IsString()) n.people.emplace_back(p.GetString(), p.GetStringLength());
          }
        }
      }
      rows.push_back(std::move(n));
    }
    return rows;
  }

  // A client that resumes after an id the retention delete has removed missed notifications
  // that no longer exist, and one that resumes after an id no notification has (made up, from
  // another deployment or a restored database) would wait silently until ids pass it: either
  // is told so (Subscription::take_reset) and continues live. The newest id is read from the
  // table, not this hub's view, which may trail another instance's by a moment.
  void check_resumes(const std::vector<std::shared_ptr<Subscription>>& subs, std::int64_t latest) {
    std::optional<std::pair<std::int64_t, std::int64_t>> bounds;  // pruned through, newest id
    for (const auto& s : subs) {
      if (!s->check_resume_) continue;
      if (!bounds) {
        pqxx::read_transaction txn(*connection);
        const auto row = txn.exec1(
            "SELECT pruned_through, (SELECT coalesce(max(id), 0) FROM notifications) "
            "FROM notification_retention");
        bounds.emplace(row[0].as<std::int64_t>(), row[1].as<std::int64_t>());
      }
      s->check_resume_ = false;
      const auto [pruned_through, newest] = *bounds;
      if (s->cursor_ >= pruned_through && s->cursor_ <= newest) continue;
      s->cursor_ = latest;
      {
        const std::lock_guard lock(s->mutex_);
        s->reset_ = pruned_through;
        s->through_ = latest;
      }
      s->wake_();
    }
  }

  // Hands every subscription the rows after its cursor, as many as its queue takes. Live
  // clients share a cursor, so one read serves them all; a client far behind (a resume) or
  // stuck reads its own pages and never holds the others back. Returns whether a page was cut
  // short for a client that took it all (so the next round should not wait).
  bool deliver() {
    std::vector<std::shared_ptr<Subscription>> subs;
    std::int64_t latest = 0;
    {
      const std::lock_guard lock(mutex);
      subs = subscriptions;
      latest = latest_id;
    }
    check_resumes(subs, latest);
    std::map<std::int64_t, std::vector<std::shared_ptr<Subscription>>> by_cursor;
    const auto now = Clock::now();
    for (const auto& s : subs) {
      if (s->cursor_ < 0 || s->cursor_ >= latest) continue;
      const std::lock_guard lock(s->mutex_);
      if (s->closed_) continue;
      if (s->queue_.size() >= s->capacity_) {
        // Full: it gets nothing this round; closed if it stays full past the grace period.
        if (s->full_since_ == Clock::time_point{}) s->full_since_ = now;
        if (now - s->full_since_ > kSlowClientGrace) {
          s->closed_ = "too slow: " + std::to_string(s->queue_.size()) +
                       " notifications were waiting; reconnect with Last-Event-ID";
          s->wake_();
        }
        continue;
      }
      s->full_since_ = {};
      by_cursor[s->cursor_].push_back(s);
    }
    bool more = by_cursor.size() > kCursorsPerRound;
    // The live clients (the highest cursor) first, then the furthest behind: resuming clients
    // never hold back the live ones.
    std::vector<const std::pair<const std::int64_t, std::vector<std::shared_ptr<Subscription>>>*>
        round;
    if (!by_cursor.empty()) round.push_back(&*by_cursor.rbegin());
    for (auto it = by_cursor.begin();
         it != by_cursor.end() && round.size() < kCursorsPerRound && &*it != round.front(); ++it) {
      round.push_back(&*it);
    }
    for (const auto* entry : round) {
      const auto& [cursor, group] = *entry;
      const auto rows = page_after(cursor, latest);
      // The rows end where the page ended, else at `latest` (ids may have gaps: rolled back
      // batches, deleted old rows).
      const auto upto = static_cast<int>(rows.size()) == kPageRows ? rows.back().id : latest;
      // Each row's topic bit once, and its delivery built once, by the first client it reaches,
      // then shared with every other.
      std::vector<std::uint32_t> bits;
      bits.reserve(rows.size());
      for (const auto& n : rows) bits.push_back(topic_bit(n.topic));
      std::vector<std::shared_ptr<const Delivery>> built(rows.size());
      for (const auto& s : group) {
        bool pushed = false;
        bool took_all = true;
        {
          const std::lock_guard lock(s->mutex_);
          for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& n = rows[i];
            if (s->queue_.size() >= s->capacity_) {
              took_all = false;
              break;
            }
            s->cursor_ = n.id;
            if ((s->topics_ & bits[i]) != 0 && s->filter_.matches(n)) {
              if (!built[i]) built[i] = make_delivery(n);
              s->queue_.push_back(built[i]);
              pushed = true;
            }
          }
          if (took_all) s->cursor_ = upto;
          s->through_ = s->cursor_;
        }
        if (pushed) s->wake_();
        if (took_all && upto < latest) more = true;
      }
    }
    return more;
  }

  // Topic stats: once a second at most, when notifications came since (or a subscriber has no
  // figures yet), the figures again; sent to every stats subscriber when they changed, and to a
  // new one at once. One query on the hub's connection, whatever the number of subscribers.
  void publish_stats() {
    const auto now = Clock::now();
    if (now - stats_at < std::chrono::seconds(1)) return;
    std::vector<std::shared_ptr<Subscription>> subs;
    std::int64_t latest = 0;
    {
      const std::lock_guard lock(mutex);
      for (const auto& s : subscriptions) {
        if ((s->topics_ & topic_bit("stats")) != 0) subs.push_back(s);
      }
      latest = latest_id;
    }
    const bool newcomer =
        std::any_of(subs.begin(), subs.end(), [](const auto& s) { return !s->has_stats_; });
    // Without events the figures still move (claims lapse, the hours and the day roll over):
    // computed again every kStatsRefresh too.
    if (subs.empty() || (latest == stats_id && !newcomer && now - stats_at < kStatsRefresh)) {
      return;
    }
    stats_at = now;
    std::string figures;
    try {
      pqxx::read_transaction txn(*connection);
      figures = txn.exec(ReadModels::stats_sql())[0][0].as<std::string>();
      stats_condition.cleared("the stats topic has its figures again");
    } catch (const pqxx::broken_connection&) {
      throw;  // the hub reconnects
    } catch (const std::exception& e) {
      // Not the hub's business to stop for: the figures wait for the next round.
      stats_condition.failing("the stats topic cannot compute its figures", {{"error", e.what()}});
      return;
    }
    const bool differ = figures != stats_sent;
    stats_sent = figures;
    stats_id = latest;
    Notification n;
    n.topic = "stats";
    n.type = "stats";
    n.data = figures;
    const auto delivery = make_delivery(n);
    for (const auto& s : subs) {
      if (!differ && s->has_stats_) continue;
      {
        const std::lock_guard lock(s->mutex_);
        if (s->closed_ || s->queue_.size() >= s->capacity_) {
          s->has_stats_ = false;  // it gets them next round
          continue;
        }
        s->queue_.push_back(delivery);
      }
      s->has_stats_ = true;
      s->wake_();
    }
  }

  void loop() {
    int failures = 0;
    while (running) {
      if (!connection) {
        try {
          connect();
          failures = 0;
          log().info("listening for projection progress", {{"projection", projection}});
        } catch (const std::exception& e) {
          disconnect(e);
          settle_waiters();
          std::unique_lock lock(mutex);
          changed.wait_for(lock, std::chrono::milliseconds(std::min(100 << failures, 1000)),
                           [this] { return !running; });
          failures = std::min(failures + 1, 4);
          continue;
        }
      }
      bool more = false;
      try {
        settle_waiters();
        more = deliver();
        publish_stats();
        bool kicked = false;
        {
          const std::lock_guard lock(mutex);
          kicked = std::exchange(kick, false);
        }
        // Sleeps until PostgreSQL notifies (or 50 ms pass, for deadlines and new clients).
        if (!more && !kicked) connection->await_notification(0, 50'000);
        connection->get_notifs();
      } catch (const std::exception& e) {
        disconnect(e);
      }
    }
    receiver.reset();
    connection.reset();
  }
};

NotificationHub::NotificationHub(core::PostgresConfig postgres, std::string projection,
                                 std::string topic, core::ProjectionsConfig config)
    : impl_(std::make_unique<Impl>(std::move(postgres), std::move(projection), std::move(topic),
                                   std::move(config))) {}

NotificationHub::~NotificationHub() { stop(); }

void NotificationHub::start() {
  if (impl_->running.exchange(true)) return;
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

void NotificationHub::stop() {
  if (!impl_->running.exchange(false)) return;
  impl_->changed.notify_all();
  impl_->thread.join();
  std::vector<Impl::Waiter> waiters;
  {
    const std::lock_guard lock(impl_->mutex);
    waiters.swap(impl_->waiters);
  }
  for (auto& w : waiters) w.done(false);
}

std::shared_ptr<Subscription> NotificationHub::subscribe(std::set<std::string> topics,
                                                         StreamFilter filter,
                                                         std::optional<std::int64_t> after_id,
                                                         std::function<void()> wake) {
  const std::lock_guard lock(impl_->mutex);
  const auto cursor = after_id ? *after_id : impl_->latest_id;
  auto s = std::make_shared<Subscription>(std::move(topics), std::move(filter), cursor,
                                          static_cast<std::size_t>(impl_->config.client_buffer),
                                          std::move(wake), after_id.has_value());
  impl_->subscriptions.push_back(s);
  impl_->kick = true;
  return s;
}

void NotificationHub::unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  const std::lock_guard lock(impl_->mutex);
  std::erase(impl_->subscriptions, subscription);
}

void NotificationHub::when_applied(std::int32_t partition, std::int64_t offset,
                                   Clock::time_point deadline, std::function<void(bool)> done) {
  {
    std::unique_lock lock(impl_->mutex);
    if (!impl_->is_connected || !impl_->applied(partition, offset)) {
      impl_->waiters.push_back(Impl::Waiter{partition, offset, deadline, std::move(done)});
      impl_->kick = true;
      lock.unlock();
      impl_->changed.notify_all();
      return;
    }
  }
  done(true);  // already there: no need to involve the hub's thread
}

bool NotificationHub::connected() const { return impl_->is_connected; }

}  // namespace cauce::projections
