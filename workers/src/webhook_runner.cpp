#include "webhook_runner.hpp"

#include <algorithm>
#include <set>
#include <vector>

#include <pqxx/pqxx>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <rapidjson/document.h>

#include <cauce/core/crypto.hpp>
#include <cauce/core/log.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/workers/schedule.hpp>

#include "json_writer.hpp"

namespace cauce::workers {
namespace {

using Clock = std::chrono::steady_clock;

const core::Logger& log() {
  static const core::Logger logger("webhooks");
  return logger;
}

// Notifications taken into deliveries per read, open deliveries looked at per round.
constexpr int kIntakeRows = 500;
constexpr int kOpenRows = 1000;
// One claim delivers for about this long, then gives the webhook back (another process may take
// it; the lease is renewed meanwhile).
constexpr auto kClaimBudget = std::chrono::seconds(5);

const char* const kWebhook = R"(
  SELECT w.url, array_to_json(w.topics)::text, w.filters::text, w.status, s.secret
  FROM webhooks w LEFT JOIN webhook_secrets s ON s.webhook_id = w.id
  WHERE w.id = $1::uuid)";

// The feed starts after the newest notification at registration (webhook_secrets.start_after).
const char* const kEnsureFeed = R"(
  INSERT INTO webhook_feeds (webhook_id, cursor)
  SELECT $1::uuid, coalesce((SELECT start_after FROM webhook_secrets WHERE webhook_id = $1::uuid),
                            (SELECT coalesce(max(id), 0) FROM notifications))
  ON CONFLICT (webhook_id) DO NOTHING)";
const char* const kFeed = R"(
  SELECT cursor, consecutive_failures, coalesce(last_error, '') FROM webhook_feeds
  WHERE webhook_id = $1::uuid)";

// Ids become visible in increasing order (the projector draws them under a lock held until
// commit), so nothing ever appears behind the cursor.
const char* const kNotificationsAfter = R"(
  SELECT id, topic, type, aggregate_id::text, version, position, coalesce(level, ''),
         coalesce(region, ''), array_to_json(people)::text
  FROM notifications WHERE id > $1 ORDER BY id LIMIT $2)";
const char* const kInsertDelivery = R"(
  INSERT INTO webhook_deliveries (webhook_id, notification_id, topic, type, aggregate_id, version,
                                  position, status)
  VALUES ($1::uuid, $2, $3, $4, $5::uuid, $6, $7, 'pending')
  ON CONFLICT (webhook_id, notification_id) DO NOTHING)";
const char* const kMoveCursor = R"(
  UPDATE webhook_feeds SET cursor = greatest(cursor, $2), updated_at = now()
  WHERE webhook_id = $1::uuid)";

const char* const kOpenDeliveries = R"(
  SELECT id, notification_id, topic, type, aggregate_id::text, version, position, attempts,
         coalesce(next_attempt_at <= now(), true),
         coalesce(ceil(extract(epoch FROM next_attempt_at - now()) * 1000)::bigint, 0)
  FROM webhook_deliveries
  WHERE webhook_id = $1::uuid AND status IN ('pending', 'retrying') AND id > $3
  ORDER BY id LIMIT $2)";

const char* const kDelivered = R"(
  UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, response_code = $3,
         error = NULL, last_attempt_at = now(), next_attempt_at = NULL, delivered_at = now()
  WHERE id = $1)";
const char* const kAttemptFailed = R"(
  UPDATE webhook_deliveries SET status = $2, attempts = $3, response_code = nullif($4, 0),
         error = $5, last_attempt_at = now(),
         next_attempt_at = CASE WHEN $2 = 'retrying'
                                THEN now() + make_interval(secs => $6::double precision / 1e3) END
  WHERE id = $1)";
const char* const kFeedSucceeded = R"(
  UPDATE webhook_feeds SET consecutive_failures = 0, last_error = NULL, updated_at = now()
  WHERE webhook_id = $1::uuid)";
const char* const kFeedFailed = R"(
  UPDATE webhook_feeds SET consecutive_failures = consecutive_failures + 1, last_error = $2,
         updated_at = now()
  WHERE webhook_id = $1::uuid RETURNING consecutive_failures)";
const char* const kDeadLetter = R"(
  INSERT INTO worker_dead_letters (event_id, key, value) VALUES ($1::uuid, $2, $3)
  ON CONFLICT (event_id) DO NOTHING)";

const char* const kPrune = R"(
  DELETE FROM webhook_deliveries
  WHERE status IN ('delivered', 'failed')
    AND created_at < now() - make_interval(hours => $1))";

std::set<std::string> string_set(const std::string& json_array) {
  std::set<std::string> out;
  rapidjson::Document d;
  d.Parse(json_array.c_str(), json_array.size());
  if (d.IsArray()) {
    for (const auto& v : d.GetArray()) {
      if (v.IsString()) out.emplace(v.GetString(), v.GetStringLength());
    }
  }
  return out;
}

// A webhook's filters as a stream's (webhook.registered's `filters`).
projections::StreamFilter stream_filter(const std::string& json) {
  projections::StreamFilter f;
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  if (!d.IsObject()) return f;
  if (d.HasMember("min_level") && d["min_level"].IsString()) {
    f.min_level = d["min_level"].GetString();
  }
  if (d.HasMember("region") && d["region"].IsArray()) {
    std::set<std::string> regions;
    for (const auto& r : d["region"].GetArray()) {
      if (r.IsString()) regions.emplace(r.GetString(), r.GetStringLength());
    }
    f.regions = std::move(regions);
  }
  if (d.HasMember("assigned_to") && d["assigned_to"].IsString()) {
    f.person = d["assigned_to"].GetString();
  }
  return f;
}

std::vector<std::string> people_of(const pqxx::field& json) {
  std::vector<std::string> out;
  if (json.is_null()) return out;
  const auto set = string_set(json.as<std::string>());
  return {set.begin(), set.end()};
}

}  // namespace

struct WebhookRunner::Delivery {
  std::int64_t id = 0;
  projections::Notification notification;
  std::int64_t attempts = 0;
  bool due = true;
  std::int64_t wait_ms = 0;
};

WebhookRunner::WebhookRunner(const WorkerOptions& options, const SendCommand& send,
                             const std::atomic<bool>& running, prometheus::Registry& registry)
    : options_(options),
      send_(send),
      running_(running),
      limits_(DeliveryLimits::from(options.webhooks)),
      deliveries_(prometheus::BuildCounter()
                      .Name("cauce_webhook_deliveries_total")
                      .Help("Webhook delivery attempts, by outcome (delivered; retrying: failed, "
                            "tried again later; failed: given up and dead-lettered)")
                      .Register(registry)),
      disabled_(prometheus::BuildCounter()
                    .Name("cauce_webhooks_disabled_total")
                    .Help("Webhooks this process disabled after failures in a row")
                    .Register(registry)) {
  for (const auto* outcome : {"delivered", "retrying", "failed"}) {
    deliveries_.Add({{"outcome", outcome}});
  }
  disabled_.Add({});
}

void WebhookRunner::prune(pqxx::connection& pg, int retention_h) {
  pqxx::work txn(pg);
  txn.exec_params(kPrune, retention_h);
  txn.commit();
}

std::pair<std::int64_t, std::chrono::milliseconds> WebhookRunner::disable(
    pqxx::connection& pg, const std::string& id, std::int64_t version, const std::string& reason,
    std::int64_t failures, const std::string& last_error) {
  commands::CommandEnvelope e;
  // One disabling per time the webhook is active (its row's version moves when it is enabled).
  e.command_id =
      commands::uuid_from_name("cauce webhook disable\n" + id + "\n" + std::to_string(version));
  e.type = "webhook.disable";
  e.aggregate_type = "webhook";
  e.aggregate_id = id;
  e.issued_at_us = options_.now_us();
  e.actor = "system:webhooks";
  e.correlation_id = id;
  e.request_hash = core::sha256_hex(e.command_id);
  e.data = json_object([&](JsonWriter& w) {
    put(w, "reason", reason);
    put(w, "consecutive_failures", failures);
    if (!last_error.empty()) put(w, "last_error", printable_error(last_error));
  });
  const auto result = send_(e);
  const auto* reply = std::get_if<commands::Reply>(&result);
  if (reply == nullptr) {  // no answer: asked again at the next claim
    return {version, std::chrono::milliseconds(options_.workers.backoff_base_ms)};
  }
  const bool taken = reply->outcome == commands::ReplyOutcome::kApplied ||
                     reply->outcome == commands::ReplyOutcome::kDuplicate;
  if (taken || (reply->rejection && reply->rejection->code == "conflict")) {
    // Disabled (here or before): when an admin enables it, it starts counting afresh.
    pqxx::work txn(pg);
    txn.exec_params(kFeedSucceeded, id);
    txn.commit();
    if (reply->outcome == commands::ReplyOutcome::kApplied) {
      disabled_.Add({}).Increment();
      log().warn("webhook disabled", {{"id", id}, {"consecutive_failures", failures}});
    }
    return {reply->version, std::chrono::milliseconds(0)};
  }
  log().error(
      "disabling a webhook was refused",
      {{"id", id}, {"detail", reply->rejection ? reply->rejection->message : std::string("?")}});
  return {version, std::chrono::milliseconds(options_.workers.backoff_cap_ms)};
}

std::pair<std::int64_t, std::chrono::milliseconds> WebhookRunner::run(pqxx::connection& pg,
                                                                      const std::string& id,
                                                                      std::int64_t version,
                                                                      std::mt19937_64& random) {
  const auto poll = std::chrono::milliseconds(options_.workers.poll_ms);
  const auto started = Clock::now();
  std::string url;
  std::set<std::string> topics;
  projections::StreamFilter filter;
  std::string secret;
  std::int64_t cursor = 0;
  std::int64_t failures = 0;
  std::string last_error;
  {
    pqxx::work txn(pg);
    const auto rows = txn.exec_params(kWebhook, id);
    // Not projected yet (the projector and the workers read the log apart), or disabled: the
    // feeder's row follows the events; look again later.
    if (rows.empty() || rows[0][3].as<std::string>() != "active") return {version, poll};
    url = rows[0][0].as<std::string>();
    topics = string_set(rows[0][1].as<std::string>());
    filter = stream_filter(rows[0][2].as<std::string>());
    if (!rows[0][4].is_null()) secret = rows[0][4].as<std::string>();
    txn.exec_params(kEnsureFeed, id);
    const auto feed = txn.exec_params1(kFeed, id);
    cursor = feed[0].as<std::int64_t>();
    failures = feed[1].as<std::int64_t>();
    last_error = feed[2].as<std::string>();
    txn.commit();
  }
  if (secret.empty()) {
    // Nothing can be signed: e.g. a system restored from a backup (the secrets are not in the
    // log). Said once, as the webhook's state, rather than tried forever.
    return disable(pg, id, version,
                   "no signing secret is stored for this webhook (a system restored from a "
                   "backup has none): register it again",
                   failures, last_error);
  }
  if (failures >= options_.webhooks.disable_after) {
    return disable(pg, id, version, std::to_string(failures) + " delivery attempts in a row failed",
                   failures, last_error);
  }

  // Intake: the notifications after the cursor that this webhook takes.
  bool more = false;
  {
    pqxx::work txn(pg);
    const auto rows = txn.exec_params(kNotificationsAfter, cursor, kIntakeRows);
    for (const auto& row : rows) {
      projections::Notification n{row[0].as<std::int64_t>(),
                                  row[1].as<std::string>(),
                                  row[2].as<std::string>(),
                                  row[3].as<std::string>(),
                                  row[4].as<std::int64_t>(),
                                  row[5].as<std::string>(),
                                  "",
                                  row[6].as<std::string>(),
                                  row[7].as<std::string>(),
                                  people_of(row[8])};
      if (!topics.contains(n.topic) || !filter.matches(n)) continue;
      txn.exec_params(kInsertDelivery, id, n.id, n.topic, n.type, n.aggregate_id, n.version,
                      n.position);
    }
    if (!rows.empty()) {
      txn.exec_params(kMoveCursor, id, rows.back()[0].as<std::int64_t>());
      more = rows.size() == static_cast<std::size_t>(kIntakeRows);
    }
    txn.commit();
  }

  // Delivery: in id order (= notification order); an aggregate whose delivery waits for a retry
  // holds back its later deliveries, other aggregates go on. Open deliveries are read a page at
  // a time: a page whose every row is held back (a backlog behind one aggregate's retry) leads
  // to the next, so no aggregate waits behind another's backlog; a full page that attempted
  // something ends the round and the next comes at once; otherwise the next round waits for
  // the poll or the earliest retry, never spinning.
  std::set<std::string> held_back;
  std::optional<std::int64_t> next_due_ms;
  for (std::int64_t after = 0;;) {
    std::vector<Delivery> open;
    {
      pqxx::work txn(pg);
      for (const auto& row : txn.exec_params(kOpenDeliveries, id, kOpenRows, after)) {
        Delivery d;
        d.id = row[0].as<std::int64_t>();
        d.notification.id = row[1].as<std::int64_t>();
        d.notification.topic = row[2].as<std::string>();
        d.notification.type = row[3].as<std::string>();
        d.notification.aggregate_id = row[4].as<std::string>();
        d.notification.version = row[5].as<std::int64_t>();
        d.notification.position = row[6].as<std::string>();
        d.attempts = row[7].as<std::int64_t>();
        d.due = row[8].as<bool>();
        d.wait_ms = row[9].as<std::int64_t>();
        open.push_back(std::move(d));
      }
      txn.commit();
    }
    if (open.empty()) break;
    after = open.back().id;
    bool attempted = false;
    bool out_of_time = false;
    for (const auto& d : open) {
      const auto& aggregate = d.notification.aggregate_id;
      if (held_back.contains(aggregate)) continue;
      if (!d.due) {
        held_back.insert(aggregate);
        next_due_ms = std::min(next_due_ms.value_or(d.wait_ms), d.wait_ms);
        continue;
      }
      if (!running_ || Clock::now() - started > kClaimBudget) {
        out_of_time = true;
        break;
      }
      attempted = true;
      const auto body = projections::notification_data(d.notification);
      const auto signature = webhook_signature(secret, options_.now_us() / 1'000'000, body);
      const auto result =
          post_webhook(url,
                       {{"Content-Type", "application/json"},
                        {"Cauce-Signature", signature},
                        {"Cauce-Webhook-Id", id},
                        {"Cauce-Delivery-Id", std::to_string(d.id)},
                        {"Cauce-Notification-Id", std::to_string(d.notification.id)},
                        {"Cauce-Topic", d.notification.topic}},
                       body, limits_);
      const auto attempts = d.attempts + 1;
      pqxx::work txn(pg);
      if (result.delivered) {
        txn.exec_params(kDelivered, d.id, attempts, static_cast<std::int64_t>(result.status));
        txn.exec_params(kFeedSucceeded, id);
        txn.commit();
        deliveries_.Add({{"outcome", "delivered"}}).Increment();
        failures = 0;
        continue;
      }
      const auto error = printable_error(result.error);
      const bool again = result.retryable && attempts < options_.webhooks.max_attempts;
      const auto delay =
          again ? retry_delay(attempts, std::chrono::milliseconds(options_.workers.backoff_base_ms),
                              std::chrono::milliseconds(options_.workers.backoff_cap_ms), random())
                : std::chrono::milliseconds(0);
      txn.exec_params(kAttemptFailed, d.id, again ? "retrying" : "failed", attempts,
                      static_cast<std::int64_t>(result.status), error, delay.count());
      failures = txn.exec_params1(kFeedFailed, id, error)[0].as<std::int64_t>();
      if (!again) {
        // A dead letter as a failed job's (cauce.jobs.dlq, published by housekeeping).
        const auto letter_id =
            commands::uuid_from_name("cauce webhook delivery\n" + id + "\n" + std::to_string(d.id));
        txn.exec_params(kDeadLetter, letter_id, id, json_object([&](JsonWriter& w) {
                          put(w, "kind", "webhook");
                          put(w, "job_id", id);
                          put(w, "attempts", attempts);
                          put(w, "last_error", error);
                          put(w, "failed_at", core::format_utc_micros(options_.now_us()));
                          put(w, "event_id", letter_id);
                          put(w, "version", d.notification.version);
                          put(w, "delivery_id", d.id);
                          put(w, "notification_id", d.notification.id);
                          put(w, "topic", d.notification.topic);
                          put(w, "type", d.notification.type);
                          put(w, "aggregate_id", aggregate);
                        }));
      }
      txn.commit();
      deliveries_.Add({{"outcome", again ? "retrying" : "failed"}}).Increment();
      if (again) {
        held_back.insert(aggregate);
        next_due_ms = std::min(next_due_ms.value_or(delay.count()), delay.count());
      } else {
        log().warn("a webhook delivery failed for good; dead-lettered",
                   {{"id", id}, {"delivery", d.id}, {"attempts", attempts}, {"error", error}});
      }
      if (failures >= options_.webhooks.disable_after) {
        return disable(pg, id, version,
                       std::to_string(failures) + " delivery attempts in a row failed", failures,
                       error);
      }
    }
    const bool full = open.size() == static_cast<std::size_t>(kOpenRows);
    if (out_of_time || (attempted && full)) {
      more = true;
      break;
    }
    if (!full) break;
  }
  if (more) return {version, std::chrono::milliseconds(0)};
  auto delay = poll;
  if (next_due_ms)
    delay = std::min(delay, std::chrono::milliseconds(std::max<std::int64_t>(*next_due_ms, 1)));
  return {version, delay};
}

}  // namespace cauce::workers
