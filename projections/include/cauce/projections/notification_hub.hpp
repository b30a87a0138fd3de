#pragma once

// The API side of live notifications and read-your-writes (DESIGN §4).
//
// One thread holds one PostgreSQL connection that LISTENs on the projector's progress channel.
// From it the hub knows (a) every partition's checkpoint, so a query carrying a position token
// can wait — without polling — until the projection has passed it, and (b) the newest
// notification id, so it can hand each live client (SSE, WebSocket) the rows of the
// `notifications` table after the last one that client has, in id order: the same path serves a
// `Last-Event-ID` resume and live delivery, so neither has gaps or duplicates.
//
// A client never holds the hub up: each has a bounded queue; one whose queue stays full is
// closed with a reason. When PostgreSQL is unreachable the hub reconnects in the background;
// position waits fail fast meanwhile, live clients simply get nothing until it is back.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::projections {

struct Notification {
  std::int64_t id = 0;  // 0: not a row of the notifications table (topic stats): no resume id
  std::string topic;    // contacts, alerts, reports, backups; stats
  std::string type;     // the event type
  std::string aggregate_id;
  std::int64_t version = 0;
  std::string position;
  std::string data;  // topic stats: GET /v1/stats's figures (JSON)
  // What stream filters look at, as the projector stored them with the notification (the
  // aggregate's state when its batch was written): alerts' level and region (empty: none), and
  // the actors a contact is assigned to or claimed by, or was taken from by a reassignment or
  // a release.
  std::string level;
  std::string region;
  std::vector<std::string> people;
};

// Which of its topics' notifications a client receives (API: ?min_level=, ?region=,
// ?assigned_to=me, and the key's regions). Each part narrows only its own topic; decided on the
// notification's stored attributes, so a resume with Last-Event-ID sees the same view.
struct StreamFilter {
  std::optional<std::string> min_level;          // alerts: this level or above
  std::optional<std::set<std::string>> regions;  // alerts: one of these regions
  std::optional<std::string> person;             // contacts: `people` holds this actor

  bool matches(const Notification& n) const;
  bool operator==(const StreamFilter&) const = default;
};

// info < warning < critical: 1, 2, 3; 0 for anything else.
int level_rank(std::string_view level);

// The topics a client may name, for messages: "contacts, alerts, ...".
std::string topic_list();

// API.md's message data: {"type","id","version","position"}; for stats, the figures.
std::string notification_data(const Notification& n);

// One notification as every live client receives it: serialised once by the hub and shared,
// read-only, by every queue it is put in (API.md's SSE event and WebSocket message), so a
// notification that reaches 10,000 clients is built once, not 10,000 times.
struct Delivery {
  std::int64_t id = 0;  // 0: no resume id (topic stats)
  std::string sse;      // "id: <id>\nevent: <topic>\ndata: <data>\n\n" (stats: no id line)
  std::string ws;       // {"id":<id>,"event":"<topic>","data":<data>} (stats: no id)
  // The aggregate and the version it reached (topic stats: none), for subscribers inside the
  // process (the API's version cache).
  std::string aggregate_id;
  std::int64_t version = 0;
};
std::shared_ptr<const Delivery> make_delivery(const Notification& n);

// The bit of a subscribable topic in a subscription's topic mask (0 for any other name).
std::uint32_t topic_bit(std::string_view topic);

// The notification topics a client gets when it names none (the events' topics).
const std::set<std::string>& notification_topics();

// Every topic a client may name: those, `imports` (bulk imports' events: started, rows
// rejected, progress about once a second, completed or failed; named, never by default) and
// `stats` (the dashboard's figures, GET /v1/stats, sent when they changed, at most once a
// second, and once when the client subscribes).
const std::set<std::string>& subscribable_topics();

// One live client's queue. The hub pushes, the client's connection takes.
class Subscription {
 public:
  // Made by NotificationHub::subscribe().
  Subscription(const std::set<std::string>& topics, StreamFilter filter, std::int64_t cursor,
               std::size_t capacity, std::function<void()> wake, bool resumes = false)
      : topics_(mask_of(topics)),
        filter_(std::move(filter)),
        cursor_(cursor),
        check_resume_(resumes),
        capacity_(capacity),
        wake_(std::move(wake)),
        through_(cursor) {}

  // Everything queued, oldest first. Empty when nothing is there. With `through`: the id up to
  // which the hub has gone through the notifications for this client (-1: not known yet),
  // those its topics and filter left out included: a client that resumes after it misses
  // nothing of its view, even when the last notification it received is much older.
  // The deliveries are shared with every other subscriber: read them, never change them.
  std::vector<std::shared_ptr<const Delivery>> take(std::int64_t* through = nullptr);
  // Set (once) when the client resumed after an id older than the notifications kept: what it
  // missed no longer exists. The value is the oldest id it could resume after; the
  // subscription goes on with the live stream. Taking it clears it.
  std::optional<std::int64_t> take_reset();
  // Set once the hub ended the subscription (e.g. the client was too slow); the client should
  // say why and close.
  std::optional<std::string> closed_reason() const;

 private:
  friend class NotificationHub;

  static std::uint32_t mask_of(const std::set<std::string>& topics) {
    std::uint32_t mask = 0;
    for (const auto& t : topics) mask |= topic_bit(t);
    return mask;
  }

  const std::uint32_t topics_;  // topic_bit()s
  const StreamFilter filter_;
  std::int64_t cursor_;     // hub thread only: the last id considered for this client
  bool check_resume_;       // hub thread only: compare the cursor with the retention first
  bool has_stats_ = false;  // hub thread only: topic stats: the figures last sent reached it
  const std::size_t capacity_;
  const std::function<void()> wake_;
  std::chrono::steady_clock::time_point full_since_{};  // hub thread only
  mutable std::mutex mutex_;
  // A vector, not a deque: an idle client's empty queue holds no memory (a libstdc++ deque
  // allocates ~600 bytes as soon as it exists), and take() hands the whole of it over.
  std::vector<std::shared_ptr<const Delivery>> queue_;
  std::int64_t through_;  // the cursor as of the queue's newest state
  std::optional<std::string> closed_;
  std::optional<std::int64_t> reset_;
};

class NotificationHub {
 public:
  NotificationHub(core::PostgresConfig postgres, std::string projection, std::string topic,
                  core::ProjectionsConfig config);
  ~NotificationHub();  // stop()
  NotificationHub(const NotificationHub&) = delete;
  NotificationHub& operator=(const NotificationHub&) = delete;

  void start();
  void stop();

  // Notifications of `topics` that `filter` lets through, with ids above `after_id`, or from
  // now on when nullopt. `wake` is called on the hub's thread whenever take() has something or
  // the subscription closed; it must only schedule work, never block.
  std::shared_ptr<Subscription> subscribe(std::set<std::string> topics, StreamFilter filter,
                                          std::optional<std::int64_t> after_id,
                                          std::function<void()> wake);
  void unsubscribe(const std::shared_ptr<Subscription>& subscription);

  // Calls `done(true)` on the hub thread once the projection has applied the record at
  // (partition, offset), or `done(false)` at `deadline` or at once while PostgreSQL is
  // unreachable.
  void when_applied(std::int32_t partition, std::int64_t offset,
                    std::chrono::steady_clock::time_point deadline, std::function<void(bool)> done);

  bool connected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::projections
