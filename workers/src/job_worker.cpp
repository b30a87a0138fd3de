#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include <pqxx/pqxx>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <rapidjson/document.h>
#include <sys/stat.h>

#include <cauce/commands/jobs.hpp>
#include <cauce/core/backoff.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/workers/backup.hpp>
#include <cauce/workers/backup_metrics.hpp>
#include <cauce/workers/download.hpp>
#include <cauce/workers/job_worker.hpp>
#include <cauce/workers/render.hpp>
#include <cauce/workers/schedule.hpp>
#include <cauce/workers/source_auth.hpp>

#include "job_table.hpp"
#include "json_writer.hpp"
#include "mount_calls.hpp"
#include "webhook_runner.hpp"

namespace cauce::workers {
namespace {

using commands::CommandEnvelope;
using commands::Reply;
using commands::ReplyOutcome;
using Clock = std::chrono::steady_clock;

const core::Logger& log() {
  static const core::Logger logger("workers");
  return logger;
}

std::int64_t system_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A deadline whose command was refused because the alert moved on (acknowledged, closed, another
// level): done, if the row still holds that deadline (the feeder may have set the next level's
// meanwhile: that one stays).
const char* const kDeadlineOff = R"(
  UPDATE worker_jobs SET step = 'done', lease_owner = NULL, lease_until = NULL
  WHERE kind = 'alert' AND id = $1::uuid AND lease_owner = $2 AND deadline_level = $3
    AND deadline_at = to_timestamp($4::double precision / 1e6))";

// Only the claims a runner here is still running (each claim has its own lease token): a claim
// whose release failed lapses, and a claim taken over elsewhere is not renewed from here.
const char* const kRenewLeases = R"(
  UPDATE worker_jobs SET lease_until = now() + make_interval(secs => $2::double precision / 1e3)
  WHERE lease_owner = ANY($1::text[]))";

// Dead letters wait here, written with the rows in the feeder's transaction, until published.
const char* const kInsertDeadLetter = R"(
  INSERT INTO worker_dead_letters (event_id, key, value) VALUES ($1::uuid, $2, $3)
  ON CONFLICT (event_id) DO NOTHING)";
const char* const kPendingDeadLetters = R"(
  SELECT id, key, value FROM worker_dead_letters WHERE published_at IS NULL ORDER BY id LIMIT 500)";
const char* const kPublishedDeadLetters = R"(
  UPDATE worker_dead_letters SET published_at = now() WHERE id = ANY($1::bigint[]))";

struct Claim {
  std::string token;  // this claim's lease owner: the process's instance and a random part
  std::string kind;
  std::string id;
  std::int64_t version = 0;
  std::int64_t round = 0;
  std::int64_t attempt = 0;
  std::string step;
  bool started = false;
  std::string title;
  std::string source_url;
  std::string content_type;
  std::int64_t step_at_us = 0;      // when the event that set the step happened
  std::string deadline_level;       // alerts: the level whose deadline is due ...
  std::int64_t deadline_at_us = 0;  // ... and when it was
  std::string source_auth;          // reports: the secret their download sends (its name)
  std::string schedule_id;          // a slot's report: its schedule ...
  std::int64_t slot_at_us = 0;      // ... and slot
  std::string recurrence;           // report schedules: "every 15m", "cron 0 7 * * *" ...
  std::string timezone;             // ... in this zone,
  std::int64_t revision = 0;        // the revision a trigger names,
  std::int64_t slot_after_us = 0;   // the instant the slots count after
  // This runner's span for the claimed step: a child of the trace of the event that wrote the
  // row (a new trace when it has none). The step's commands carry it.
  core::TraceParent trace;
};

// The outcome of a job command: taken (applied, or applied before), refused (the job is
// elsewhere; wait for its row to catch up), or unknown (Kafka did not answer; run again).
struct Sent {
  // kRefused: the job is elsewhere than this step (wait for its row); kInvalid: the command
  // itself was refused (a bug or an unstorable text): the step fails.
  enum Kind { kTaken, kRefused, kInvalid, kUnknown } kind = kUnknown;
  std::int64_t version = 0;
  std::string detail;
  std::int64_t issued_at_us = 0;  // the command's time: its events' occurred_at
  std::string code;               // a refusal's code (Rejection::code)
};

// What a runner thread claims: jobs (reports' and backups' steps), timed steps (alerts'
// deadlines, report schedules' slots and their reports' requests), webhooks' deliveries.
enum class Runs { kJobs, kDeadlines, kWebhooks };

// The row class kClaimJob compares with.
const char* kinds_of(Runs runs) {
  switch (runs) {
    case Runs::kJobs:
      return "job";
    case Runs::kDeadlines:
      return "timed";
    case Runs::kWebhooks:
      return "webhook";
  }
  return "";
}

// Counts the dead letters the broker did not take (called on the housekeeping thread, in flush).
class DeliveryReports : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& message) override {
    if (message.err() != RdKafka::ERR_NO_ERROR) ++failed;
  }
  std::atomic<int> failed{0};
};

// Whether two paths (or, for one not made yet, their nearest existing ancestors) are on one
// filesystem; nullopt when that cannot be told.
std::optional<bool> same_filesystem(std::filesystem::path a, std::filesystem::path b) {
  const auto device = [](std::filesystem::path p) -> std::optional<dev_t> {
    std::error_code ec;
    p = std::filesystem::absolute(p, ec);
    if (ec) return std::nullopt;
    for (;;) {
      struct stat st {};
      if (::stat(p.c_str(), &st) == 0) return st.st_dev;
      if (!p.has_relative_path()) return std::nullopt;
      p = p.parent_path();
    }
  };
  const auto da = device(std::move(a));
  const auto db = device(std::move(b));
  if (!da || !db) return std::nullopt;
  return *da == *db;
}

// Temporary directories of runs (backups, copies) that crashed under `root`: gone once older
// than `retention`.
void remove_crashed_runs(const std::filesystem::path& root, std::chrono::hours retention) {
  std::error_code ec;
  const auto horizon = std::filesystem::file_time_type::clock::now() - retention;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const auto name = entry.path().filename().string();
    if (entry.is_directory() && name.starts_with(".") && name.ends_with(".tmp") &&
        entry.last_write_time() < horizon) {
      std::filesystem::remove_all(entry.path(), ec);
    }
  }
}

// What a failed step tells the job.
struct StepFailure {
  std::string step;
  std::string error;
  bool retryable = false;
};

}  // namespace

SendCommand send_through(commands::CommandBus& bus) {
  return [&bus](const CommandEnvelope& command) {
    auto promise = std::make_shared<std::promise<commands::SendResult>>();
    auto result = promise->get_future();
    bus.send(command, [promise](commands::SendResult r) { promise->set_value(std::move(r)); });
    return result.get();  // the bus answers every send, within its reply timeout
  };
}

struct Workers::Impl {
  Impl(WorkerOptions o, SendCommand s, prometheus::Registry& registry)
      : options(std::move(o)),
        send(std::move(s)),
        conninfo(core::postgres_conninfo(options.postgres)),
        instance(commands::uuid_v7(system_now_us() / 1000)),
        steps(prometheus::BuildCounter()
                  .Name("cauce_worker_steps_total")
                  .Help("Job steps run by the workers, by job kind, step and result")
                  .Register(registry)),
        jobs(prometheus::BuildCounter()
                 .Name("cauce_jobs_total")
                 .Help("Jobs finished by the workers here, by kind and outcome (done, failed)")
                 .Register(registry)),
        attempts(prometheus::BuildHistogram()
                     .Name("cauce_job_attempts")
                     .Help("Attempts a job took in its round, when it finished, by kind")
                     .Register(registry)),
        last_backup_success(registry) {
    if (!options.now_us) options.now_us = system_now_us;
    // Every series known in advance exists from the start, at 0 (rates need a starting point).
    for (const auto* kind : {"report", "backup"}) {
      for (const auto* outcome : {"done", "failed"})
        jobs.Add({{"kind", kind}, {"outcome", outcome}});
      attempts.Add({{"kind", kind}}, attempt_buckets());
    }
    for (const auto& [kind, step] : {std::pair{"report", "download"}, std::pair{"report", "render"},
                                     std::pair{"backup", "backup"}, std::pair{"backup", "copy"}}) {
      for (const auto* result : {"ok", "retryable", "permanent"}) {
        steps.Add({{"kind", kind}, {"step", step}, {"result", result}});
      }
    }
    for (const auto* result : {"ok", "off"}) {
      steps.Add({{"kind", "alert"}, {"step", "deadline"}, {"result", result}});
      steps.Add({{"kind", "report_schedule"}, {"step", "slot"}, {"result", result}});
    }
    steps.Add({{"kind", "report"}, {"step", "request"}, {"result", "ok"}});
    webhooks = std::make_unique<WebhookRunner>(options, send, running, registry);
  }

  static prometheus::Histogram::BucketBoundaries attempt_buckets() {
    return {1, 2, 3, 4, 5, 8, 13};
  }

  WorkerOptions options;
  SendCommand send;
  Deadlines deadlines{options.alerts.deadline_info_s, options.alerts.deadline_warning_s,
                      options.alerts.deadline_critical_s};
  std::string conninfo;
  std::string instance;  // lease owner: this process, this start
  prometheus::Family<prometheus::Counter>& steps;
  prometheus::Family<prometheus::Counter>& jobs;
  prometheus::Family<prometheus::Histogram>& attempts;
  BackupSuccessGauge last_backup_success;  // set at a completion or a copy's event time
  // Copies and their retention pass, into backups.copy_to: a mount that stops answering fails
  // them within backups.copy_timeout_s, and holds no more than the calls that were stuck then.
  // What a stuck call does if the mount comes back is harmless (copy_backup publishes without
  // replacing anything; a retention pass deletes what the next one would).
  MountCalls copy_to_calls;
  std::string installation;  // backups.copy_to set: this installation's name

  // Whether a backup's success is its copy (backups.copy_to set) or its completion.
  bool copies_backups() const { return !options.backups.copy_to.empty(); }

  // A job this worker finished (its final step's command taken).
  void finished(const Claim& c, const char* outcome) {
    jobs.Add({{"kind", c.kind}, {"outcome", outcome}}).Increment();
    attempts.Add({{"kind", c.kind}}, attempt_buckets()).Observe(static_cast<double>(c.attempt));
  }

  std::atomic<bool> running{false};  // feeder and runners
  std::mutex mutex;
  std::condition_variable wake;  // runners and housekeeping sleep on it; stop and the feeder wake
  std::uint64_t schedule_changes = 0;  // under mutex: the feeder wrote rows
  std::set<std::string> held;          // under mutex: the lease tokens of the claims being run here
  std::atomic<bool> leasing{false};    // the lease thread: stops after the runners
  DeliveryReports dlq_reports;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::unique_ptr<RdKafka::Producer> dlq;
  std::vector<std::thread> threads;
  std::unique_ptr<WebhookRunner> webhooks;  // made last: it refers to options, send and running

  bool sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex);
    wake.wait_for(lock, d, [this] { return !running.load(); });
    return running.load();
  }

  // An idle runner: until the poll interval passes, the feeder writes rows, or stop.
  void idle() {
    std::unique_lock lock(mutex);
    const auto seen = schedule_changes;
    wake.wait_for(lock, std::chrono::milliseconds(options.workers.poll_ms),
                  [&] { return !running.load() || schedule_changes != seen; });
  }

  void count(const std::string& kind, const std::string& step, const char* result) {
    steps.Add({{"kind", kind}, {"step", step}, {"result", result}}).Increment();
  }

  // A connection for one thread, reopened with backoff while PostgreSQL is away.
  std::unique_ptr<pqxx::connection> connect(core::ConditionLog& condition) {
    return connect(condition, running);
  }
  std::unique_ptr<pqxx::connection> connect(core::ConditionLog& condition,
                                            const std::atomic<bool>& alive) {
    core::Backoff backoff;
    while (alive) {
      try {
        auto c = core::connect_postgres(conninfo);
        condition.cleared("workers reconnected to PostgreSQL");
        return c;
      } catch (const std::exception& e) {
        condition.failing("workers cannot reach PostgreSQL, retrying", {{"error", e.what()}});
        std::unique_lock lock(mutex);
        wake.wait_for(lock, backoff.next(), [&] { return !alive.load(); });
      }
    }
    return nullptr;
  }

  // ---- the feeder: the jobs' events into worker_jobs, failed jobs to the DLQ ----

  void feeder_loop() {
    core::ConditionLog condition(log());
    std::unique_ptr<pqxx::connection> pg;
    while (running) {
      std::vector<ScheduleEntry> entries;
      std::vector<std::array<std::string, 3>> dead;       // event id, key, value: for the DLQ
      std::map<std::int32_t, std::int64_t> next_offsets;  // to commit once written
      const auto deadline = Clock::now() + std::chrono::milliseconds(100);
      std::size_t consumed = 0;
      while (running && consumed < 500 && Clock::now() < deadline) {
        std::unique_ptr<RdKafka::Message> m(consumer->consume(100));
        if (m->err() == RdKafka::ERR__TIMED_OUT || m->err() == RdKafka::ERR__PARTITION_EOF) break;
        if (m->err() != RdKafka::ERR_NO_ERROR) {
          condition.failing("workers cannot read the event log", {{"error", m->errstr()}});
          break;
        }
        ++consumed;
        next_offsets[m->partition()] = m->offset() + 1;
        const auto type = core::kafka_header(*m, commands::header::kAggregateType);
        if (type && *type != "report" && *type != "backup" && *type != "alert" &&
            *type != "report_schedule" && *type != "webhook") {
          continue;
        }
        try {
          const auto event = commands::event_from_json(core::kafka_payload(*m));
          for (auto& entry : schedule_entries_after(event, deadlines)) {
            entries.push_back(std::move(entry));
          }
          if (event.type == "report.failed" || event.type == "backup.failed" ||
              copy_given_up(event)) {
            dead.push_back({event.event_id, event.aggregate_id, dead_letter(event)});
          }
        } catch (const std::exception& e) {
          // The projector parks what it cannot read; the workers just pass it by.
          log().debug("workers skip a record they cannot read", {{"error", e.what()}});
        }
      }
      if (consumed == 0) continue;
      // Retried until it holds: the offsets are committed only after the rows (and dead
      // letters) are written, so a crash re-reads them (the upsert is version-guarded).
      core::Backoff backoff;
      while (running) {
        try {
          if (!pg) pg = connect(condition);
          if (!pg) return;
          write_entries(*pg, entries, dead);
          commit(next_offsets);
          condition.cleared("workers write their schedule again");
          break;
        } catch (const pqxx::broken_connection& e) {
          pg.reset();
          condition.failing("workers cannot write their schedule, retrying", {{"error", e.what()}});
        } catch (const std::exception& e) {
          condition.failing("workers cannot write their schedule, retrying", {{"error", e.what()}});
        }
        sleep_for(backoff.next());
      }
      if (!entries.empty()) {
        const std::lock_guard lock(mutex);
        ++schedule_changes;
        wake.notify_all();
      }
    }
  }

  void commit(const std::map<std::int32_t, std::int64_t>& next_offsets) {
    std::vector<RdKafka::TopicPartition*> offsets;
    for (const auto& [partition, offset] : next_offsets) {
      offsets.push_back(
          RdKafka::TopicPartition::create(options.kafka.events_topic, partition, offset));
    }
    const auto rc = consumer->commitSync(offsets);
    RdKafka::TopicPartition::destroy(offsets);
    // A partition that moved away meanwhile is re-read by its new owner: harmless, the rows
    // are version-guarded.
    if (rc != RdKafka::ERR_NO_ERROR && rc != RdKafka::ERR_REBALANCE_IN_PROGRESS &&
        rc != RdKafka::ERR_ILLEGAL_GENERATION && rc != RdKafka::ERR_UNKNOWN_MEMBER_ID) {
      throw core::DependencyError("kafka", "commit: " + RdKafka::err2str(rc), true);
    }
  }

  // A backup's copy attempt after which none follows: the copy is given up (the backup itself
  // stays completed) and dead-lettered like a failed job.
  static bool copy_given_up(const commands::EventEnvelope& e) {
    if (e.type != "backup.copy_attempt_failed") return false;
    rapidjson::Document d;
    d.Parse(e.data.c_str());
    return d.IsObject() && !d.HasMember("next_attempt_at");
  }

  // A failed job's dead letter, or a given-up copy's (step "copy": its error and attempts).
  static std::string dead_letter(const commands::EventEnvelope& e) {
    const bool copy = e.type == "backup.copy_attempt_failed";
    std::string reason;
    std::int64_t attempts = 0;
    rapidjson::Document d;
    d.Parse(e.data.c_str());
    const char* const reason_key = copy ? "error" : "reason";
    const char* const attempts_key = copy ? "attempt" : "attempts";
    if (d.IsObject()) {
      if (d.HasMember(reason_key) && d[reason_key].IsString()) reason = d[reason_key].GetString();
      if (d.HasMember(attempts_key) && d[attempts_key].IsInt64()) {
        attempts = d[attempts_key].GetInt64();
      }
    }
    return json_object([&](JsonWriter& w) {
      put(w, "kind", e.aggregate_type);
      put(w, "job_id", e.aggregate_id);
      if (copy) put(w, "step", "copy");
      put(w, "attempts", attempts);
      put(w, "last_error", reason);
      put(w, "failed_at", core::format_utc_micros(e.occurred_at_us));
      put(w, "event_id", e.event_id);
      put(w, "version", e.version);
    });
  }

  static void write_entries(pqxx::connection& pg, const std::vector<ScheduleEntry>& entries,
                            const std::vector<std::array<std::string, 3>>& dead) {
    if (entries.empty() && dead.empty()) return;
    pqxx::work txn(pg);
    for (const auto& [event_id, key, value] : dead) {
      txn.exec_params(kInsertDeadLetter, event_id, key, value);
    }
    for (const auto& s : entries) upsert_entry(txn, s);
    txn.commit();
  }

  // ---- runners ----

  // Job runners take reports and backups; the deadline runner, alerts' deadlines only, so that a
  // long download never holds a deadline up past one poll; webhook runners, webhooks' deliveries.
  void runner_loop(Runs runs) {
    core::ConditionLog condition(log());
    std::unique_ptr<pqxx::connection> pg;
    std::mt19937_64 random(std::random_device{}());
    core::Backoff backoff;
    while (running) {
      std::optional<Claim> claim;
      try {
        if (!pg) pg = connect(condition);
        if (!pg) return;
        claim = claim_job(*pg, runs);
        condition.cleared("workers claim jobs again");
        backoff.reset();
      } catch (const std::exception& e) {
        pg.reset();
        condition.failing("workers cannot claim jobs, retrying", {{"error", e.what()}});
        sleep_for(backoff.next());
        continue;
      }
      if (!claim) {
        idle();
        continue;
      }
      if (runs == Runs::kDeadlines) {
        try {
          if (claim->kind == "report_schedule") {
            run_schedule_slot(pg, *claim, condition);
          } else if (claim->step == "request") {
            run_scheduled_request(pg, *claim, condition);
          } else {
            run_deadline(pg, *claim, condition);
          }
        } catch (const std::exception& e) {
          log().warn("a timed step stopped unexpectedly; it runs again",
                     {{"kind", claim->kind},
                      {"id", claim->id},
                      {"error", e.what()},
                      {"trace_id", claim->trace.trace_id()},
                      {"span_id", claim->trace.span_id()}});
          release(pg, *claim, claim->version,
                  std::chrono::milliseconds(options.workers.backoff_base_ms), condition);
        }
        continue;
      }
      if (runs == Runs::kWebhooks) {
        run_webhook(pg, *claim, condition, random);
        continue;
      }
      std::int64_t awaits = claim->version;
      std::chrono::milliseconds delay{0};
      try {
        const auto outcome = run(*claim, random);
        awaits = outcome.first;
        delay = outcome.second;
      } catch (const std::exception& e) {
        log().warn("a job step stopped unexpectedly; it runs again",
                   {{"kind", claim->kind},
                    {"id", claim->id},
                    {"error", e.what()},
                    {"trace_id", claim->trace.trace_id()},
                    {"span_id", claim->trace.span_id()}});
        delay = std::chrono::milliseconds(options.workers.backoff_base_ms);
      }
      release(pg, *claim, awaits, delay, condition);
    }
  }

  std::optional<Claim> claim_job(pqxx::connection& pg, Runs runs) {
    auto token = instance + "/" + core::random_hex(8);
    pqxx::work txn(pg);
    const auto rows =
        txn.exec_params(kClaimJob, token, options.workers.lease_ms, std::string(kinds_of(runs)));
    txn.commit();
    if (rows.empty()) return std::nullopt;
    const auto& r = rows[0];
    {
      const std::lock_guard lock(mutex);
      held.insert(token);
    }
    return Claim{
        std::move(token),
        r[0].as<std::string>(),
        r[1].as<std::string>(),
        r[2].as<std::int64_t>(),
        r[3].as<std::int64_t>(),
        r[4].as<std::int64_t>(),
        r[5].as<std::string>(),
        r[6].as<bool>(),
        r[7].as<std::string>(),
        r[8].as<std::string>(),
        r[9].as<std::string>(),
        r[10].as<std::int64_t>(),
        r[11].as<std::string>(),
        r[12].as<std::int64_t>(),
        r[13].as<std::string>(),
        r[14].as<std::string>(),
        r[15].as<std::int64_t>(),
        r[16].as<std::string>(),
        r[17].as<std::string>(),
        r[18].as<std::int64_t>(),
        r[19].as<std::int64_t>(),
        core::TraceParent::parse(r[20].as<std::string>()).value_or(core::TraceParent{}).child()};
  }

  void release(std::unique_ptr<pqxx::connection>& pg, const Claim& c, std::int64_t awaits,
               std::chrono::milliseconds delay, core::ConditionLog& condition) {
    // No longer renewed either way: if the release does not reach PostgreSQL, the lease runs
    // out and the job is claimed again.
    {
      const std::lock_guard lock(mutex);
      held.erase(c.token);
    }
    try {
      if (!pg) pg = connect(condition);
      if (!pg) return;
      pqxx::work txn(*pg);
      txn.exec_params(kReleaseJob, c.kind, c.id, awaits, delay.count(), c.token);
      txn.commit();
    } catch (const std::exception& e) {
      pg.reset();
      log().warn("could not release a job; its lease will expire",
                 {{"id", c.id}, {"error", e.what()}});
    }
  }

  // A job step's command (its id from the job, round, attempt and step).
  Sent command(const Claim& c, const std::string& type, const std::string& data) {
    return send_command(c, step_command_id(c.kind, c.id, c.round, c.attempt, type), type, data,
                        "workers");
  }

  Sent send_command(const Claim& c, std::string command_id, const std::string& type,
                    const std::string& data, const std::string& actor) {
    CommandEnvelope e;
    e.command_id = std::move(command_id);
    e.type = type;
    e.aggregate_type = c.kind;
    e.aggregate_id = c.id;
    e.issued_at_us = options.now_us();
    e.actor = actor;
    e.correlation_id = c.id;
    e.trace_parent = c.trace;
    // The command id alone is the request: the same step sent again with other figures (a
    // rerun that downloaded again) is the same command, and its first outcome stands.
    e.request_hash = core::sha256_hex(e.command_id);
    e.data = data;
    // An unknown outcome is asked again with the same command (a few times, backing off), not
    // answered by doing the work again: the work's second result could differ from the first.
    core::Backoff backoff(std::chrono::milliseconds(200), std::chrono::milliseconds(2000));
    for (int attempt = 1;; ++attempt) {
      const auto result = send(e);
      if (const auto* error = std::get_if<commands::SendError>(&result)) {
        if (attempt < 6 && sleep_for(backoff.next())) continue;
        return {Sent::kUnknown, 0,
                *error == commands::SendError::kTimeout ? "no reply in time" : "Kafka unavailable",
                e.issued_at_us, ""};
      }
      const auto& reply = std::get<Reply>(result);
      if (reply.outcome == ReplyOutcome::kApplied || reply.outcome == ReplyOutcome::kDuplicate) {
        return {Sent::kTaken, reply.version, "", e.issued_at_us, ""};
      }
      const auto detail = reply.rejection ? reply.rejection->code + ": " + reply.rejection->message
                                          : std::string(commands::outcome_name(reply.outcome));
      // A processor of an older build than the log or this worker (a rolling upgrade): not an
      // answer about the job, asked again like no answer.
      if (reply.rejection && commands::refused_until_upgrade(*reply.rejection)) {
        if (attempt < 6 && sleep_for(backoff.next())) continue;
        return {Sent::kUnknown, 0, detail, e.issued_at_us, ""};
      }
      const bool elsewhere = reply.rejection && reply.rejection->code != "invalid";
      return {elsewhere ? Sent::kRefused : Sent::kInvalid, reply.version, detail, e.issued_at_us,
              reply.rejection ? reply.rejection->code : ""};
    }
  }

  // A due deadline: the alert's miss_deadline command, once (its id is the alert's, the level's
  // and the instant's, whoever sends it). Taken: the feeder moves the row on from the events
  // (done, or the next level's deadline). Refused because the alert moved on (acknowledged,
  // closed, escalated by hand): the row is done. Not due yet (this clock behind the one that set
  // it): again at the instant.
  void run_deadline(std::unique_ptr<pqxx::connection>& pg, const Claim& c,
                    core::ConditionLog& condition) {
    // Due by PostgreSQL's clock but not by this one: wait for it here (a command sent early is
    // refused, and would only be sent again).
    if (const auto early_us = c.deadline_at_us - options.now_us(); early_us > 0) {
      release(pg, c, c.version, std::chrono::milliseconds(early_us / 1000 + 1), condition);
      return;
    }
    const auto sent =
        send_command(c, deadline_command_id(c.id, c.deadline_level, c.deadline_at_us),
                     "alert.miss_deadline", json_object([&](JsonWriter& w) {
                       put(w, "level", c.deadline_level);
                       put(w, "deadline_at", core::format_utc_micros(c.deadline_at_us));
                     }),
                     "system:deadlines");
    std::int64_t awaits = c.version;
    auto delay = std::chrono::milliseconds(0);
    bool off = false;
    if (sent.kind == Sent::kUnknown) {
      delay = std::chrono::milliseconds(options.workers.backoff_base_ms);  // asked again soon
    } else if (sent.kind == Sent::kTaken) {
      awaits = sent.version;
      log().info("alert deadline missed", {{"id", c.id},
                                           {"level", c.deadline_level},
                                           {"trace_id", c.trace.trace_id()},
                                           {"span_id", c.trace.span_id()}});
      count("alert", "deadline", "ok");
    } else if (sent.code == "too_early") {
      delay = std::chrono::milliseconds(
          std::max<std::int64_t>(0, (c.deadline_at_us - options.now_us()) / 1000) + 1);
    } else {
      awaits = sent.version;
      off = true;  // the alert moved on: its deadline is off
      count("alert", "deadline", "off");
    }
    if (off) {
      try {
        if (!pg) pg = connect(condition);
        if (!pg) throw std::runtime_error("stopping");
        pqxx::work txn(*pg);
        const auto rows =
            txn.exec_params(kDeadlineOff, c.id, c.token, c.deadline_level, c.deadline_at_us);
        txn.commit();
        if (rows.affected_rows() == 1) {
          const std::lock_guard lock(mutex);
          held.erase(c.token);
          return;
        }
        // The row holds a newer deadline now: released below, due when that one is.
      } catch (const std::exception& ex) {
        pg.reset();
        log().warn("could not put a deadline off; it is released instead",
                   {{"id", c.id}, {"error", ex.what()}});
      }
    }
    release(pg, c, awaits, delay, condition);
  }

  // A report schedule's row: its next slot after `slot_after`. Still to come: the row is put off
  // until then (no command). Due: the latest slot due now (slots missed while cauce was down, or
  // while this runner was busy, fire once, as the most recent one), sent as the schedule's
  // trigger; its command id comes from the schedule, the revision and the slot, so runners in
  // several processes that find it due send one command, and the schedule takes one slot once.
  // Taken: the feeder moves the row on from the triggered event (and writes the slot's report
  // row, which run_scheduled_request sends). Refused: the schedule moved on (paused, changed,
  // deleted); the row waits for the feeder to show it.
  void run_schedule_slot(std::unique_ptr<pqxx::connection>& pg, const Claim& c,
                         core::ConditionLog& condition) {
    std::optional<commands::Recurrence> recurrence;
    try {
      recurrence = recurrence_of(c.recurrence, c.timezone, options.reports.zoneinfo_dir);
    } catch (const std::invalid_argument& e) {
      log().error("a report schedule's recurrence cannot be computed here; trying again later",
                  {{"id", c.id}, {"error", e.what()}});
      release(pg, c, c.version, std::chrono::milliseconds(options.workers.backoff_cap_ms),
              condition);
      return;
    }
    const auto now = options.now_us();
    const auto next_s = recurrence->next_after(core::floor_div(c.slot_after_us, 1'000'000));
    if (!next_s) {
      release(pg, c, c.version, std::chrono::hours(24), condition);  // nothing for a century
      return;
    }
    const auto next = *next_s * 1'000'000;
    if (next > now) {
      release(pg, c, c.version, std::chrono::milliseconds((next - now) / 1000 + 1), condition);
      return;
    }
    const auto latest = recurrence->latest_between(*next_s, core::floor_div(now, 1'000'000));
    const auto slot = latest.value_or(*next_s) * 1'000'000;
    const auto report_id = slot_report_id(c.id, slot);
    const auto sent = send_command(c, slot_command_id(c.id, c.revision, slot),
                                   "report_schedule.trigger", json_object([&](JsonWriter& w) {
                                     put(w, "slot_at", core::format_utc_micros(slot));
                                     put(w, "revision", c.revision);
                                     put(w, "report_id", report_id);
                                   }),
                                   "system:schedules");
    std::int64_t awaits = c.version;
    auto delay = std::chrono::milliseconds(0);
    if (sent.kind == Sent::kUnknown) {
      delay = std::chrono::milliseconds(options.workers.backoff_base_ms);
    } else if (sent.kind == Sent::kTaken) {
      awaits = sent.version;
      if (slot != next) {
        log().info("slots were missed; only the latest fires",
                   {{"id", c.id},
                    {"first_missed", core::format_utc_micros(next)},
                    {"slot", core::format_utc_micros(slot)}});
      }
      log().info("report schedule slot fired", {{"id", c.id},
                                                {"slot", core::format_utc_micros(slot)},
                                                {"report", report_id},
                                                {"trace_id", c.trace.trace_id()},
                                                {"span_id", c.trace.span_id()}});
      count("report_schedule", "slot", "ok");
    } else if (sent.code == "too_early") {
      delay = std::chrono::milliseconds(
          std::max<std::int64_t>(0, (slot - options.now_us()) / 1000) + 1);
    } else {
      count("report_schedule", "slot", "off");
      if (sent.version > c.version) {
        awaits = sent.version;  // the schedule moved on: the feeder will show how
      } else {
        log().error("a report schedule refused its slot; trying again later",
                    {{"id", c.id},
                     {"detail", sent.detail},
                     {"trace_id", c.trace.trace_id()},
                     {"span_id", c.trace.span_id()}});
        delay = std::chrono::milliseconds(options.workers.backoff_cap_ms);
      }
    }
    release(pg, c, awaits, delay, condition);
  }

  // A webhook's claim: its deliveries for a while (webhook_runner.cpp), then the row back, due
  // again when its next retry is or after a poll (new notifications are looked for then).
  void run_webhook(std::unique_ptr<pqxx::connection>& pg, const Claim& c,
                   core::ConditionLog& condition, std::mt19937_64& random) {
    std::int64_t awaits = c.version;
    auto delay = std::chrono::milliseconds(options.workers.poll_ms);
    try {
      std::tie(awaits, delay) = webhooks->run(*pg, c.id, c.version, random);
      condition.cleared("webhook deliveries run again");
    } catch (const pqxx::broken_connection& e) {
      pg.reset();
      condition.failing("webhook deliveries cannot reach PostgreSQL", {{"error", e.what()}});
      delay = std::chrono::milliseconds(options.workers.backoff_base_ms);
    } catch (const std::exception& e) {
      condition.failing("webhook deliveries stopped unexpectedly; they run again",
                        {{"id", c.id}, {"error", e.what()}});
      delay = std::chrono::milliseconds(options.workers.backoff_base_ms);
    }
    release(pg, c, awaits, delay, condition);
  }

  // A triggered slot's report, until it is requested: report.request_scheduled with the report's
  // id and a command id from the schedule and the slot, so it is requested once whoever sends it.
  // Taken: the row waits for report.requested, then runs as any report.
  void run_scheduled_request(std::unique_ptr<pqxx::connection>& pg, const Claim& c,
                             core::ConditionLog& condition) {
    const auto sent = send_command(c, slot_request_command_id(c.schedule_id, c.slot_at_us),
                                   "report.request_scheduled", json_object([&](JsonWriter& w) {
                                     put(w, "title", c.title);
                                     put(w, "source_url", c.source_url);
                                     if (!c.source_auth.empty())
                                       put(w, "source_auth", c.source_auth);
                                     put(w, "schedule_id", c.schedule_id);
                                     put(w, "slot_at", core::format_utc_micros(c.slot_at_us));
                                   }),
                                   "system:schedules");
    if (sent.kind == Sent::kTaken) {
      log().info("scheduled report requested", {{"id", c.id},
                                                {"schedule", c.schedule_id},
                                                {"trace_id", c.trace.trace_id()},
                                                {"span_id", c.trace.span_id()}});
      count("report", "request", "ok");
    }
    if (sent.kind == Sent::kRefused && sent.code == "already_exists") {
      release(pg, c, std::max<std::int64_t>(sent.version, 1), std::chrono::milliseconds(0),
              condition);
      return;
    }
    const auto [awaits, delay] = after(sent, c, c.version);
    release(pg, c, awaits, delay, condition);
  }

  std::filesystem::path reports_dir() const { return options.data_dir / "reports"; }

  // Runs the claimed step (and the steps after it, while they succeed). Returns the version the
  // row must reach before the job is claimed again, and a delay.
  std::pair<std::int64_t, std::chrono::milliseconds> run(Claim c, std::mt19937_64& random) {
    if (c.kind == "backup" && c.step == "copy") return run_copy(c, random);
    const bool report = c.kind == "report";
    std::int64_t version = c.version;
    if (!c.started) {
      const auto sent = command(c, report ? "report.start_download" : "backup.start",
                                json_object([&](JsonWriter& w) { put(w, "attempt", c.attempt); }));
      if (sent.kind == Sent::kInvalid) return refused(c, sent, version, random);
      if (sent.kind != Sent::kTaken) return after(sent, c, version);
      version = sent.version;
      c.step_at_us = sent.issued_at_us;  // the started event's time
      log().info("job attempt started", {{"kind", c.kind},
                                         {"id", c.id},
                                         {"attempt", c.attempt},
                                         {"trace_id", c.trace.trace_id()},
                                         {"span_id", c.trace.span_id()}});
    }
    std::optional<StepFailure> failure;
    std::optional<Sent> done;
    if (report) {
      const auto source = reports_dir() / (c.id + ".source");
      if (c.step == "download") {
        try {
          std::filesystem::create_directories(reports_dir());
          std::optional<SourceCredential> credential;
          if (!c.source_auth.empty()) {
            try {
              credential = load_source_credential(options.reports.source_auth_dir, c.source_auth);
              // The URL may have changed since the API checked it; nothing is sent elsewhere.
              check_source_origin(*credential, c.source_auth, c.source_url);
            } catch (const SourceAuthError& e) {
              throw DownloadError(e.what(), false);  // an operator configures it, then retries
            }
          }
          const auto got = download(c.source_url, source, DownloadLimits::from(options.download),
                                    credential ? &*credential : nullptr);
          count(c.kind, "download", "ok");
          const auto sent = command(c, "report.record_download", json_object([&](JsonWriter& w) {
                                      put(w, "attempt", c.attempt);
                                      put(w, "bytes", got.bytes);
                                      put(w, "sha256", got.sha256);
                                      put(w, "content_type", got.content_type);
                                    }));
          if (sent.kind == Sent::kInvalid) return refused(c, sent, version, random);
          if (sent.kind != Sent::kTaken) return after(sent, c, version);
          version = sent.version;
          c.step = "render";
          c.content_type = got.content_type;
          c.step_at_us = sent.issued_at_us;  // the downloaded event's time, as a rerun reads it
        } catch (const DownloadError& e) {
          count(c.kind, "download", e.retryable() ? "retryable" : "permanent");
          failure = StepFailure{"download", e.what(), e.retryable()};
        } catch (const std::exception& e) {  // the data dir cannot be written, say
          count(c.kind, "download", "retryable");
          failure = StepFailure{"download", e.what(), true};
        }
      }
      if (!failure && c.step == "render") {
        try {
          // The document's time is the download's, so a rerun renders the same bytes.
          const auto pdf = render_report(source, c.content_type,
                                         ReportDocument{c.title, c.source_url, c.step_at_us},
                                         reports_dir() / (c.id + ".pdf"));
          count(c.kind, "render", "ok");
          done = command(c, "report.record_render", json_object([&](JsonWriter& w) {
                           put(w, "attempt", c.attempt);
                           put(w, "pages", std::int64_t{pdf.pages});
                           put(w, "bytes", pdf.bytes);
                           put(w, "sha256", pdf.sha256);
                         }));
        } catch (const RenderError& e) {
          count(c.kind, "render", "permanent");
          failure = StepFailure{"render", e.what(), false};
        } catch (const std::exception& e) {
          // The source is gone (a data dir restored without it) or the PDF cannot be written:
          // the next attempt downloads again.
          count(c.kind, "render", "retryable");
          failure = StepFailure{"render", e.what(), true};
        }
      }
    } else {
      try {
        const auto taken = take_backup(
            BackupSources{options.kafka, options.postgres, options.projections.name,
                          std::chrono::seconds(options.backups.export_timeout_s), options.data_dir},
            options.data_dir / "backups", c.id, c.step_at_us);
        count(c.kind, "backup", "ok");
        done = command(c, "backup.record_completion", json_object([&](JsonWriter& w) {
                         put(w, "attempt", c.attempt);
                         put(w, "bytes", taken.bytes);
                         put(w, "sha256", taken.manifest_sha256);
                         w.Key("positions");
                         w.StartArray();
                         for (const auto p : taken.positions) w.Int64(p);
                         w.EndArray();
                         put(w, "events", taken.events);
                         if (copies_backups()) put(w, "copy_to", options.backups.copy_to);
                       }));
        if (done->kind == Sent::kTaken && !copies_backups()) {
          last_backup_success.succeeded(done->issued_at_us);
        }
      } catch (const std::exception& e) {
        count(c.kind, "backup", "retryable");
        failure = StepFailure{"backup", e.what(), true};
      }
    }
    if (failure) return fail(c, *failure, version, random);
    if (done->kind == Sent::kInvalid) return refused(c, *done, version, random);
    if (done->kind == Sent::kTaken) {
      log().info("job done", {{"kind", c.kind},
                              {"id", c.id},
                              {"attempt", c.attempt},
                              {"trace_id", c.trace.trace_id()},
                              {"span_id", c.trace.span_id()}});
      finished(c, "done");
    }
    return after(*done, c, version);
  }

  // ---- a completed backup's off-box copy (backups.copy_to) ----

  // The copy's attempt: copy_backup, then backup.record_copy; a failure is recorded with the next
  // attempt's time (backoff as for jobs) or, past workers.max_attempts, as the last one: the copy
  // is then given up and dead-lettered, and the backup stays completed, its local files intact.
  std::pair<std::int64_t, std::chrono::milliseconds> run_copy(const Claim& c,
                                                              std::mt19937_64& random) {
    std::optional<BackupCopy> copy;
    std::string error;
    if (!copies_backups()) {
      error =
          "backups.copy_to is not set in this process (every workers process needs the same "
          "backups settings)";
    } else {
      try {
        // On a thread of its own, up to backups.copy_timeout_s: a mount that does not answer
        // fails the attempt instead of holding this runner (and the job's lease) for ever.
        auto called = copy_to_calls.call<BackupCopy>(
            [backup = options.data_dir / "backups" / c.id,
             root = std::filesystem::path(options.backups.copy_to),
             installation = installation] { return copy_backup(backup, root, installation); },
            std::chrono::seconds(options.backups.copy_timeout_s));
        copy = std::move(called.value);
        if (called.outcome == MountCalls::Outcome::kTimedOut) {
          error = "the copy into " + options.backups.copy_to + " did not finish within " +
                  "backups.copy_timeout_s (" + std::to_string(options.backups.copy_timeout_s) +
                  " s): the mount does not answer";
        } else if (called.outcome == MountCalls::Outcome::kStillBlocked) {
          error = "an earlier call into " + options.backups.copy_to +
                  " is still blocked (it overran backups.copy_timeout_s): the mount does not "
                  "answer";
        }
      } catch (const BackupCopyConflict& e) {
        // Another backup's copy, or another installation's copy_to: running it again changes
        // nothing, and nothing there is deleted.
        count(c.kind, "copy", "permanent");
        return fail_copy(c, e.what(), false, random);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    if (!copy) {
      count(c.kind, "copy", "retryable");
      return fail_copy(c, error, true, random);
    }
    count(c.kind, "copy", "ok");
    const auto sent = command(c, "backup.record_copy", json_object([&](JsonWriter& w) {
                                put(w, "attempt", c.attempt);
                                put(w, "directory", copy->directory.string());
                                put(w, "bytes", copy->bytes);
                                put(w, "sha256", copy->manifest_sha256);
                              }));
    if (sent.kind == Sent::kInvalid) {
      return fail_copy(c, "the worker's report was refused: " + sent.detail, false, random);
    }
    if (sent.kind == Sent::kTaken) {
      log().info("backup copied off the box", {{"id", c.id},
                                               {"attempt", c.attempt},
                                               {"directory", copy->directory.string()},
                                               {"sha256", copy->manifest_sha256}});
      last_backup_success.succeeded(sent.issued_at_us);
      apply_copy_retention();
    }
    return after(sent, c, c.version);
  }

  std::pair<std::int64_t, std::chrono::milliseconds> fail_copy(const Claim& c,
                                                               const std::string& error_text,
                                                               bool retryable,
                                                               std::mt19937_64& random) {
    const auto next = next_attempt_at(c, retryable, random);
    const bool again = next.has_value();
    const auto error = printable_error(error_text);
    log().write(again ? core::LogLevel::kWarn : core::LogLevel::kError,
                again ? "backup copy attempt failed; retrying later"
                      : "backup copy given up; dead-lettered (the backup stays completed)",
                {{"id", c.id}, {"attempt", c.attempt}, {"retryable", retryable}, {"error", error}});
    const auto sent = command(c, "backup.record_copy_failure", json_object([&](JsonWriter& w) {
                                put(w, "attempt", c.attempt);
                                put(w, "error", error);
                                if (next) put(w, "next_attempt_at", core::format_utc_micros(*next));
                              }));
    return after(sent, c, c.version);
  }

  // Copies beyond backups.copy_keep (the oldest) are deleted after each copy, on the runner that
  // copied (housekeeping never touches backups.copy_to), with the crashed copies' temporary
  // directories. Deletions are logged, not recorded as events: the copy's directory is not the
  // backup's, whose own retention records backup.expired.
  void apply_copy_retention() {
    if (!copies_backups()) return;
    try {
      // Up to backups.copy_timeout_s, as the copy.
      const auto done = copy_to_calls.call<bool>(
          [root = std::filesystem::path(options.backups.copy_to),
           keep = static_cast<std::size_t>(options.backups.copy_keep),
           retention = std::chrono::hours(options.backups.retention_h)] {
            remove_crashed_runs(root, retention);
            for (const auto& b : surplus_backups(root, keep)) {
              std::filesystem::remove_all(b.directory);
              log().info("old backup copy deleted",
                         {{"id", b.id},
                          {"directory", b.directory.string()},
                          {"created_at", core::format_utc_micros(b.created_at_us)}});
            }
            return true;
          },
          std::chrono::seconds(options.backups.copy_timeout_s));
      if (done.outcome != MountCalls::Outcome::kDone) {
        log().warn("backup copy retention did not finish within backups.copy_timeout_s",
                   {{"copy_to", options.backups.copy_to}});
      }
    } catch (const std::exception& e) {
      log().warn("backup copy retention failed", {{"error", e.what()}});
    }
  }

  // The gauge from the read models, so that every process (a restarted one too) shows the newest
  // success, whoever took it.
  void refresh_last_backup_success(pqxx::connection& pg) {
    pqxx::nontransaction n(pg);
    const auto row =
        n.exec1(copies_backups()
                    ? "SELECT (extract(epoch FROM max(copied_at)) * 1e6)::bigint FROM backups"
                    : "SELECT (extract(epoch FROM max(created_at)) * 1e6)::bigint FROM backups");
    if (!row[0].is_null()) last_backup_success.succeeded(row[0].as<std::int64_t>());
  }

  // A step's command refused as invalid (a bug, or a text that cannot be stored): the same
  // command id keeps that answer, so the step fails for good instead of running again.
  std::pair<std::int64_t, std::chrono::milliseconds> refused(const Claim& c, const Sent& sent,
                                                             std::int64_t version,
                                                             std::mt19937_64& random) {
    return fail(c, StepFailure{c.step, "the worker's report was refused: " + sent.detail, false},
                version, random);
  }

  // Where the row must be before the job is claimed again, and after how long.
  std::pair<std::int64_t, std::chrono::milliseconds> after(const Sent& sent, const Claim& c,
                                                           std::int64_t version) {
    const auto soon = std::chrono::milliseconds(options.workers.backoff_base_ms);
    switch (sent.kind) {
      case Sent::kTaken:
        return {sent.version, std::chrono::milliseconds(0)};
      case Sent::kUnknown:
        return {version, soon};
      case Sent::kRefused:
        // The job moved on (the row lags): wait for the row to show the job's version.
        if (sent.version > c.version) return {sent.version, std::chrono::milliseconds(0)};
        [[fallthrough]];
      case Sent::kInvalid:
        break;
    }
    // Refused although the row is current: not something a rerun fixes soon. Logged, and tried
    // again after the longest backoff rather than never.
    log().error("a job step was refused; trying again later", {{"kind", c.kind},
                                                               {"id", c.id},
                                                               {"detail", sent.detail},
                                                               {"trace_id", c.trace.trace_id()},
                                                               {"span_id", c.trace.span_id()}});
    return {version, std::chrono::milliseconds(options.workers.backoff_cap_ms)};
  }

  // When the attempt after this failed one is due (full-jitter backoff); none when the failure is
  // permanent or the attempts are used up (workers.max_attempts).
  std::optional<std::int64_t> next_attempt_at(const Claim& c, bool retryable,
                                              std::mt19937_64& random) const {
    if (!retryable || c.attempt >= options.workers.max_attempts) return std::nullopt;
    const auto delay =
        retry_delay(c.attempt, std::chrono::milliseconds(options.workers.backoff_base_ms),
                    std::chrono::milliseconds(options.workers.backoff_cap_ms), random());
    return options.now_us() + std::chrono::duration_cast<std::chrono::microseconds>(delay).count();
  }

  std::pair<std::int64_t, std::chrono::milliseconds> fail(const Claim& c, const StepFailure& f,
                                                          std::int64_t version,
                                                          std::mt19937_64& random) {
    const auto next = next_attempt_at(c, f.retryable, random);
    const bool again = next.has_value();
    const auto error = printable_error(f.error);
    log().warn(again ? "job attempt failed; retrying later" : "job failed",
               {{"kind", c.kind},
                {"id", c.id},
                {"attempt", c.attempt},
                {"step", f.step},
                {"retryable", f.retryable},
                {"error", error},
                {"trace_id", c.trace.trace_id()},
                {"span_id", c.trace.span_id()}});
    const auto sent = command(c, c.kind + ".record_failure", json_object([&](JsonWriter& w) {
                                put(w, "attempt", c.attempt);
                                put(w, "step", f.step);
                                put(w, "error", error);
                                w.Key("retryable");
                                w.Bool(f.retryable);
                                if (next) put(w, "next_attempt_at", core::format_utc_micros(*next));
                              }));
    if (!next && sent.kind == Sent::kTaken) finished(c, "failed");
    return after(sent, c, version);
  }

  // ---- leases: renewed on a thread of their own, until the runners are joined ----

  void lease_loop() {
    core::ConditionLog condition(log());
    std::unique_ptr<pqxx::connection> pg;
    const auto tick = std::chrono::milliseconds(std::max(100, options.workers.lease_ms / 3));
    for (;;) {
      {
        std::unique_lock lock(mutex);
        wake.wait_for(lock, tick, [this] { return !leasing.load(); });
        if (!leasing) return;
      }
      std::string tokens = "{";
      {
        const std::lock_guard lock(mutex);
        for (const auto& token : held) tokens += (tokens.size() > 1 ? "," : "") + token;
      }
      tokens += "}";  // tokens are hex, '-' and '/': nothing to quote in an array literal
      if (tokens == "{}") continue;
      try {
        if (!pg) pg = connect(condition, leasing);
        if (!pg) return;
        pqxx::work txn(*pg);
        txn.exec_params(kRenewLeases, tokens, options.workers.lease_ms);
        txn.commit();
        condition.cleared("workers renew their leases again");
      } catch (const std::exception& e) {
        pg.reset();
        condition.failing("could not renew job leases", {{"error", e.what()}});
      }
    }
  }

  // ---- housekeeping: dead letters, the backup schedule, retention ----

  void housekeeping_loop() {
    core::ConditionLog condition(log());
    // Each minute's reads: a warning when they start failing (PostgreSQL away), not every minute.
    core::ConditionLog success_read(log());
    core::ConditionLog pruning(log());
    std::unique_ptr<pqxx::connection> pg;
    // The schedule's first backup is at the next slot boundary (:00 and :30 by default), not at
    // every start.
    std::int64_t requested_slot = options.backups.interval_s > 0
                                      ? options.now_us() / 1'000'000 / options.backups.interval_s
                                      : 0;
    auto next_retention = Clock::now();
    const auto tick = std::chrono::milliseconds(std::max(100, options.workers.lease_ms / 3));
    while (sleep_for(tick)) {
      try {
        if (!pg) pg = connect(condition);
        if (!pg) return;
        publish_dead_letters(*pg);
        condition.cleared("dead letters are published again");
      } catch (const std::exception& e) {
        pg.reset();
        condition.failing("dead letters wait to be published", {{"error", e.what()}});
      }
      const auto now = options.now_us();
      if (options.backups.interval_s > 0) {
        const auto slot = now / 1'000'000 / options.backups.interval_s;
        if (slot != requested_slot && request_scheduled_backup(now)) requested_slot = slot;
      }
      if (Clock::now() >= next_retention) {
        next_retention = Clock::now() + std::chrono::minutes(1);
        apply_retention(now);  // never backups.copy_to: its I/O may hang (a mount away)
        try {
          if (!pg) pg = connect(condition);
          if (!pg) return;
          refresh_last_backup_success(*pg);
          success_read.cleared("the newest backup's success is read again");
        } catch (const std::exception& e) {
          pg.reset();
          success_read.failing("the newest backup's success could not be read",
                               {{"error", e.what()}});
        }
        try {
          if (!pg) pg = connect(condition);
          if (!pg) return;
          WebhookRunner::prune(*pg, options.projections.notifications_retention_h);
          fail_abandoned_imports(*pg, now);
          pruning.cleared("old webhook deliveries are deleted again");
        } catch (const std::exception& e) {
          pg.reset();
          pruning.failing("old webhook deliveries could not be deleted", {{"error", e.what()}});
        }
      }
    }
  }

  // Imports a process left running when it died mid-upload (a clean stop records them failed
  // itself): after imports.abandoned_after_s without an event, import.fail with the counts the
  // read model has, so that GET /v1/imports/{id} stops saying "running". The command id is
  // derived from the import and its version: every process sends the same one, and a late
  // event of a live import makes it a conflict, not a wrong failure.
  void fail_abandoned_imports(pqxx::connection& pg, std::int64_t now) {
    pqxx::nontransaction n(pg);
    const auto rows = n.exec_params(
        "SELECT id::text, rows_total, accepted, rejected, duplicates, bytes, version FROM imports "
        "WHERE status = 'running' AND updated_at < now() - make_interval(secs => $1) "
        "ORDER BY updated_at LIMIT 100",
        options.imports.abandoned_after_s);
    for (const auto& row : rows) {
      const auto id = row[0].as<std::string>();
      const auto version = row[6].as<std::int64_t>();
      CommandEnvelope e;
      e.aggregate_id = id;
      e.aggregate_type = "import";
      e.type = "import.fail";
      e.command_id = commands::uuid_from_name("cauce import.fail abandoned\n" + id + "\n" +
                                              std::to_string(version));
      e.expected_version = version;
      e.issued_at_us = now;
      e.actor = "housekeeping";
      e.correlation_id = id;
      e.request_hash = core::sha256_hex(e.command_id);
      e.data = json_object([&](JsonWriter& w) {
        put(w, "rows_total", row[1].as<std::int64_t>());
        put(w, "accepted", row[2].as<std::int64_t>());
        put(w, "rejected", row[3].as<std::int64_t>());
        put(w, "duplicates", row[4].as<std::int64_t>());
        put(w, "bytes", row[5].as<std::int64_t>());
        put(w, "reason",
            "abandoned: no event for " + std::to_string(options.imports.abandoned_after_s) +
                " s (imports.abandoned_after_s): the process running it stopped before its "
                "end; the counts are the last recorded, rows read after them may have been "
                "registered too (importing the file again adds only what is missing)");
      });
      const auto result = send(e);
      const auto* reply = std::get_if<Reply>(&result);
      if (reply == nullptr) return;  // Kafka away: next time
      if (reply->outcome == commands::ReplyOutcome::kApplied) {
        log().warn("an abandoned import was recorded failed", {{"import_id", id}});
      }
    }
  }

  // The dead letters the feeder wrote, onto cauce.jobs.dlq (at least once: a consumer
  // deduplicates by event_id); marked published once the broker took them all.
  void publish_dead_letters(pqxx::connection& pg) {
    pqxx::nontransaction n(pg);
    const auto pending = n.exec(kPendingDeadLetters);
    if (pending.empty()) return;
    dlq_reports.failed = 0;
    std::string ids = "{";
    for (const auto& row : pending) {
      const auto key = row[1].as<std::string>();
      const auto value = row[2].as<std::string>();
      const auto rc = core::kafka_produce(*dlq, options.kafka.jobs_dlq_topic,
                                          RdKafka::Topic::PARTITION_UA, key, value, {});
      if (rc != RdKafka::ERR_NO_ERROR) {
        throw core::DependencyError("kafka", "DLQ produce: " + RdKafka::err2str(rc), true);
      }
      ids += (ids.size() > 1 ? "," : "") + row[0].as<std::string>();
    }
    ids += "}";
    if (dlq->flush(options.kafka.request_timeout_ms) != RdKafka::ERR_NO_ERROR ||
        dlq->outq_len() > 0 || dlq_reports.failed > 0) {
      throw core::DependencyError("kafka", "DLQ records not acknowledged", true);
    }
    n.exec_params(kPublishedDeadLetters, ids);
  }

  // A backup command of the schedule or the retention: its id derived from what it does to which
  // backup, so every process sending it sends the same command.
  static CommandEnvelope backup_command(const std::string& type, const std::string& backup_id,
                                        const std::string& actor, std::int64_t now) {
    CommandEnvelope e;
    e.aggregate_id = backup_id;
    e.command_id = commands::uuid_from_name("cauce " + type + "\n" + backup_id);
    e.type = type;
    e.aggregate_type = "backup";
    e.issued_at_us = now;
    e.actor = actor;
    e.correlation_id = backup_id;
    e.request_hash = core::sha256_hex(e.command_id);
    e.data = "{}";
    return e;
  }

  bool request_scheduled_backup(std::int64_t now) {
    const auto e = backup_command(
        "backup.request", scheduled_backup_id(now, options.backups.interval_s), "schedule", now);
    const auto result = send(e);
    if (const auto* reply = std::get_if<Reply>(&result)) {
      if (reply->outcome == ReplyOutcome::kApplied) {
        log().info("scheduled backup requested", {{"id", e.aggregate_id}});
      }
      return true;  // applied here, or by another scheduler (duplicate / already exists)
    }
    return false;
  }

  void apply_retention(std::int64_t now) {
    try {
      for (const auto& b : expired_backups(options.data_dir / "backups", now,
                                           std::chrono::hours(options.backups.retention_h))) {
        const auto e = backup_command("backup.expire", b.id, "retention", now);
        const auto result = send(e);
        const auto* reply = std::get_if<Reply>(&result);
        if (reply == nullptr) return;  // Kafka away: next time
        if (reply->rejection && reply->rejection->code == "too_early") {
          // Its copy is pending and reads these files: expired once the copy is done or given up.
          log().debug("expired backup kept until its copy is done", {{"id", b.id}});
          continue;
        }
        // Recorded (or the log does not know this backup, e.g. restored elsewhere): delete.
        std::filesystem::remove_all(b.directory);
        log().info("expired backup deleted",
                   {{"id", b.id}, {"created_at", core::format_utc_micros(b.created_at_us)}});
      }
      remove_crashed_runs(options.data_dir / "backups",
                          std::chrono::hours(options.backups.retention_h));
    } catch (const std::exception& e) {
      log().warn("backup retention failed", {{"error", e.what()}});
    }
  }
};

Workers::Workers(WorkerOptions options, SendCommand send, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(send), registry)) {}

Workers::~Workers() { stop(); }

void Workers::start() {
  auto& o = impl_->options;
  if (!o.backups.copy_to.empty()) {
    impl_->installation = installation_id(o.data_dir);
    // The mount is checked on a thread of its own for a few seconds at most: one that does not
    // answer does not hold the start (each copy claims it again, with its own deadline).
    try {
      const auto same_disk = impl_->copy_to_calls.call<bool>(
          [data_dir = o.data_dir, root = std::filesystem::path(o.backups.copy_to),
           installation = impl_->installation] {
            const auto same = same_filesystem(data_dir, root).value_or(false);
            claim_copy_root(root, installation);
            return same;
          },
          std::min(std::chrono::seconds(o.backups.copy_timeout_s), std::chrono::seconds(10)));
      if (!same_disk.value) {
        log().warn("backups.copy_to does not answer; each copy tries again",
                   {{"copy_to", o.backups.copy_to}});
      } else if (*same_disk.value) {
        log().warn(
            "backups.copy_to is on the data dir's filesystem: its copies are lost with this disk "
            "(mount another machine's storage there)",
            {{"copy_to", o.backups.copy_to}});
      }
    } catch (const BackupCopyConflict& e) {
      throw core::ConfigError("backups.copy_to", e.what());
    } catch (const std::exception& e) {
      // A mount that is away now may be back by the first copy, which claims it again.
      log().warn("backups.copy_to cannot be prepared now; each copy tries again",
                 {{"copy_to", o.backups.copy_to}, {"error", e.what()}});
    }
  }
  auto conf = core::kafka_conf(o.kafka, core::exactly_once_consumer_settings(o.workers.group));
  std::string err;
  impl_->consumer.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!impl_->consumer) throw core::DependencyError("kafka", "workers consumer: " + err, false);
  if (const auto rc = impl_->consumer->subscribe({o.kafka.events_topic});
      rc != RdKafka::ERR_NO_ERROR) {
    throw core::DependencyError("kafka", "subscribe: " + RdKafka::err2str(rc), true);
  }
  auto producer_conf = core::kafka_producer_conf(o.kafka, {{"enable.idempotence", "true"}});
  if (producer_conf->set("dr_cb", &impl_->dlq_reports, err) != RdKafka::Conf::CONF_OK) {
    throw core::ConfigError("kafka.dr_cb", err);
  }
  impl_->dlq.reset(RdKafka::Producer::create(producer_conf.get(), err));
  if (!impl_->dlq) throw core::DependencyError("kafka", "DLQ producer: " + err, false);
  impl_->running = true;
  impl_->leasing = true;
  try {
    // The lease thread first: stop() joins it last.
    impl_->threads.emplace_back([impl = impl_.get()] { impl->lease_loop(); });
    impl_->threads.emplace_back([impl = impl_.get()] { impl->feeder_loop(); });
    for (int i = 0; i < o.workers.concurrency; ++i) {
      impl_->threads.emplace_back([impl = impl_.get()] { impl->runner_loop(Runs::kJobs); });
    }
    impl_->threads.emplace_back([impl = impl_.get()] { impl->runner_loop(Runs::kDeadlines); });
    for (int i = 0; i < o.webhooks.concurrency; ++i) {
      impl_->threads.emplace_back([impl = impl_.get()] { impl->runner_loop(Runs::kWebhooks); });
    }
    impl_->threads.emplace_back([impl = impl_.get()] { impl->housekeeping_loop(); });
  } catch (...) {
    stop();
    throw;
  }
  log().info("workers started", {{"group", o.workers.group},
                                 {"runners", o.workers.concurrency},
                                 {"instance", impl_->instance}});
}

void Workers::stop() {
  auto& impl = *impl_;
  {
    const std::lock_guard lock(impl.mutex);
    if (!impl.running.exchange(false)) return;
  }
  impl.wake.notify_all();
  // The feeder, the runners (a step in progress finishes) and housekeeping first, while the
  // lease thread still renews the runners' leases; then the lease thread.
  for (std::size_t i = 1; i < impl.threads.size(); ++i) impl.threads[i].join();
  {
    const std::lock_guard lock(impl.mutex);
    impl.leasing = false;
  }
  impl.wake.notify_all();
  if (!impl.threads.empty()) impl.threads.front().join();
  impl.threads.clear();
  if (impl.consumer) impl.consumer->close();
  if (impl.dlq) impl.dlq->flush(1000);
  log().info("workers stopped");
}

}  // namespace cauce::workers
