#include <algorithm>
#include <charconv>
#include <ctime>
#include <thread>

#include <pqxx/pqxx>
#include <prometheus/registry.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/projections/replay.hpp>

#include "pg_projection.hpp"

namespace cauce::projections {
namespace {

using Clock = std::chrono::steady_clock;
using Offsets = std::map<std::int32_t, std::int64_t>;

// The session advisory lock held by the process running a replay ("cauce" 0002).
constexpr long long kReplayLock = 0x63617563650002;
// Before the switch, the new generation gets this long to reach the log's ends and the live
// generation's checkpoints (no lock held); then, holding the live generation's checkpoints,
// this long to pass them. Either way past it, the switch is tried again later.
constexpr auto kCatchUpWait = std::chrono::seconds(10);
constexpr auto kSwitchWait = std::chrono::seconds(5);

const core::Logger& log() {
  static const core::Logger logger("replay");
  return logger;
}

std::int64_t to_int(std::string_view text, const char* what) {
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value < 0) {
    throw std::invalid_argument(std::string(what) + " must be a whole number >= 0, not \"" +
                                std::string(text) + "\"");
  }
  return value;
}

std::string offsets_json(const Offsets& offsets) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  for (const auto& [partition, offset] : offsets) {
    const auto key = std::to_string(partition);
    w.Key(key.c_str());
    w.Int64(offset);
  }
  w.EndObject();
  return buffer.GetString();
}

Offsets offsets_from_json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  Offsets out;
  if (d.HasParseError() || !d.IsObject()) return out;
  for (const auto& m : d.GetObject()) {
    if (m.value.IsInt64()) out[std::atoi(m.name.GetString())] = m.value.GetInt64();
  }
  return out;
}

Offsets read_checkpoints(pqxx::dbtransaction& txn, const std::string& schema,
                         const std::string& projection, const std::string& topic, bool for_update) {
  Offsets out;
  for (const auto& row : txn.exec_params(
           "SELECT partition, next_offset FROM " + txn.quote_name(schema) +
               ".projection_checkpoints WHERE projection = $1 AND topic = $2 ORDER BY partition" +
               (for_update ? " FOR UPDATE" : ""),
           projection, topic)) {
    out[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
  }
  return out;
}

ReplayProgress progress_from_row(const pqxx::row& row) {
  auto text = [&row](const char* column) {
    return row[column].is_null() ? std::string() : row[column].as<std::string>();
  };
  ReplayProgress p;
  p.id = text("id");
  p.projection = text("projection");
  p.schema = text("schema");
  p.status = text("status");
  p.applied = row["applied"].as<std::int64_t>();
  p.remaining = row["remaining"].is_null() ? -1 : row["remaining"].as<std::int64_t>();
  p.ratio = row["progress"].as<double>();
  p.events_per_s = row["events_per_s"].is_null() ? 0 : row["events_per_s"].as<double>();
  p.eta_s = row["eta_s"].is_null() ? -1 : row["eta_s"].as<double>();
  p.old_schema = text("old_schema");
  p.error = text("error");
  p.start_offsets = offsets_from_json(text("start_offsets"));
  return p;
}

constexpr const char* kReplayColumns =
    "id, projection, schema, status, applied, remaining, progress, events_per_s, eta_s, "
    "old_schema, error, start_offsets::text AS start_offsets";

bool is_index_file(const core::MigrationFile& file) {
  return file.file_name.ends_with("_indexes.sql");
}

// Takes the replay lock on `connection` or throws ReplayConflict.
void lock_replays(pqxx::connection& connection) {
  pqxx::nontransaction n(connection);
  if (!n.exec1("SELECT pg_try_advisory_lock(" + std::to_string(kReplayLock) + ")")[0].as<bool>()) {
    throw ReplayConflict("another replay is running (one at a time)");
  }
}

}  // namespace

std::map<std::int32_t, std::int64_t> parse_partition_offsets(std::string_view text) {
  Offsets out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    const auto colon = item.find(':');
    if (colon == std::string_view::npos) {
      throw std::invalid_argument("from-offset: expected PARTITION:OFFSET, not \"" +
                                  std::string(item) + "\"");
    }
    const auto partition = to_int(item.substr(0, colon), "from-offset partition");
    if (partition > std::numeric_limits<std::int32_t>::max()) {
      throw std::invalid_argument("from-offset: partition out of range");
    }
    if (!out.emplace(static_cast<std::int32_t>(partition),
                     to_int(item.substr(colon + 1), "from-offset offset"))
             .second) {
      throw std::invalid_argument("from-offset: partition " + std::to_string(partition) +
                                  " named twice");
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) throw std::invalid_argument("from-offset: ends with a comma");
  }
  if (out.empty()) throw std::invalid_argument("from-offset: empty");
  return out;
}

std::chrono::system_clock::time_point parse_rfc3339(std::string_view text, std::string_view what) {
  const auto bad = [&] {
    return std::invalid_argument(std::string(what) +
                                 ": expected RFC 3339 (2026-12-05T06:00:00Z), not \"" +
                                 std::string(text) + "\"");
  };
  // YYYY-MM-DDTHH:MM:SS
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || text[13] != ':' ||
      text[16] != ':') {
    throw bad();
  }
  auto number = [&](std::size_t at, std::size_t digits) {
    if (at + digits > text.size()) throw bad();
    int value = 0;
    for (std::size_t i = at; i < at + digits; ++i) {
      if (text[i] < '0' || text[i] > '9') throw bad();  // no sign, no space
      value = value * 10 + (text[i] - '0');
    }
    return value;
  };
  std::tm tm{};
  tm.tm_year = number(0, 4) - 1900;
  tm.tm_mon = number(5, 2) - 1;
  tm.tm_mday = number(8, 2);
  tm.tm_hour = number(11, 2);
  tm.tm_min = number(14, 2);
  tm.tm_sec = number(17, 2);
  if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    throw bad();  // Kafka's timestamps start in 1970
  }
  const int mday = tm.tm_mday;
  std::size_t at = 19;
  std::int64_t micros = 0;
  if (text[at] == '.') {
    std::size_t digits = 0;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++digits) {
      if (digits < 6) micros = micros * 10 + (text[at] - '0');
    }
    if (digits == 0) throw bad();
    for (; digits < 6; ++digits) micros *= 10;
  }
  std::int64_t offset_s = 0;
  const auto zone = text.substr(at);
  if (zone == "Z" || zone == "z") {
    offset_s = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    offset_s = (number(at + 1, 2) * 3600 + number(at + 4, 2) * 60) * (zone[0] == '-' ? -1 : 1);
  } else {
    throw bad();
  }
  const auto local = static_cast<std::int64_t>(::timegm(&tm));
  if (tm.tm_mday != mday) throw bad();  // 02-31: timegm rolled it into March
  const auto seconds = local - offset_s;
  if (seconds >= std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::time_point::max().time_since_epoch())
                         .count() -
                     1) {
    return std::chrono::system_clock::time_point::max();  // past what the clock holds (2262)
  }
  return std::chrono::system_clock::time_point(std::chrono::seconds(seconds) +
                                               std::chrono::microseconds(micros));
}

std::string to_json(const ReplayProgress& p) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("id");
  w.String(p.id.c_str());
  w.Key("projection");
  w.String(p.projection.c_str());
  w.Key("schema");
  w.String(p.schema.c_str());
  w.Key("status");
  w.String(p.status.c_str());
  w.Key("resumed");
  w.Bool(p.resumed);
  w.Key("applied");
  w.Int64(p.applied);
  w.Key("remaining");
  if (p.remaining < 0) {
    w.Null();
  } else {
    w.Int64(p.remaining);
  }
  w.Key("progress");
  w.Double(p.ratio);
  w.Key("events_per_s");
  w.Double(p.events_per_s);
  w.Key("eta_s");
  if (p.eta_s < 0) {
    w.Null();
  } else {
    w.Double(p.eta_s);
  }
  w.Key("start_offsets");
  const auto offsets = offsets_json(p.start_offsets);
  w.RawValue(offsets.c_str(), offsets.size(), rapidjson::kObjectType);
  if (!p.old_schema.empty()) {
    w.Key("old_schema");
    w.String(p.old_schema.c_str());
  }
  if (!p.error.empty()) {
    w.Key("error");
    w.String(p.error.c_str());
  }
  w.EndObject();
  return buffer.GetString();
}

struct Replay::Impl {
  ReplayOptions options;
  ReplayRequest request;
  std::unique_ptr<pqxx::connection> control;  // holds the replay lock for the object's life
  ReplayProgress progress;
  int partitions = 0;
  core::ConditionLog switch_postponed{log()};

  const std::string& projection() const { return options.projections.name; }
  const std::string& topic() const { return options.kafka.events_topic; }

  Offsets start_offsets(core::KafkaAdmin& admin) const {
    Offsets start;
    for (int p = 0; p < partitions; ++p) start[p] = 0;
    switch (request.from.kind) {
      case ReplayFrom::Kind::kStart:
        break;
      case ReplayFrom::Kind::kOffsets: {
        // Past a partition's end, the generation's checkpoint would skip what is written there
        // until the log reaches it: refused.
        const auto ends = admin.end_offsets(topic(), partitions);
        for (const auto& [p, offset] : request.from.offsets) {
          if (p >= partitions) {
            throw std::invalid_argument("from-offset: " + topic() + " has no partition " +
                                        std::to_string(p) + " (it has " +
                                        std::to_string(partitions) + ")");
          }
          if (offset > ends.at(p)) {
            throw std::invalid_argument("from-offset: partition " + std::to_string(p) +
                                        " ends at offset " + std::to_string(ends.at(p)) +
                                        "; cannot start at " + std::to_string(offset));
          }
          start[p] = offset;
        }
        break;
      }
      case ReplayFrom::Kind::kTime:
        // A time still to come has no records after it: the replay would switch the live read
        // models to empty ones (a typo in a year is enough). Refused, like an offset past a
        // partition's end.
        if (request.from.time > std::chrono::system_clock::now()) {
          throw std::invalid_argument(
              "from-time: is in the future; a replay from it would switch to empty read models");
        }
        start = admin.offsets_for_time(topic(), partitions, request.from.time);
        break;
    }
    return start;
  }

  // A new generation: schema, tables, start checkpoints and its replays row, in one transaction.
  void prepare(const Offsets& start) {
    pqxx::work txn(*control);
    const auto n = txn.exec1("SELECT nextval('read_model_generations')")[0].as<std::int64_t>();
    progress.schema = "read_model_" + std::to_string(n);
    progress.id = commands::uuid_v7(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
    txn.exec("CREATE SCHEMA " + txn.quote_name(progress.schema));
    txn.exec("SET LOCAL search_path TO " + txn.quote_name(progress.schema) + ", public");
    for (const auto& file : embedded_read_model_files()) {
      if (!is_index_file(file)) txn.exec(file.sql);
    }
    for (const auto& [partition, offset] : start) {
      txn.exec_params(
          "INSERT INTO projection_checkpoints (projection, topic, partition, next_offset) "
          "VALUES ($1, $2, $3, $4)",
          projection(), topic(), partition, offset);
    }
    txn.exec_params(
        "INSERT INTO public.replays (id, projection, schema, status, requested_by, start_offsets) "
        "VALUES ($1, $2, $3, 'building', $4, $5::jsonb)",
        progress.id, projection(), progress.schema, request.requested_by, offsets_json(start));
    txn.commit();
  }

  // The secondary indexes (read_model_indexes.sql), once the bulk of the log is in. One
  // transaction per index: the projector writes these tables meanwhile, and a transaction that
  // held one table's lock while waiting for the next could deadlock with its batch.
  void build_indexes() {
    const auto started = Clock::now();
    for (const auto& file : embedded_read_model_files()) {
      if (!is_index_file(file)) continue;
      std::size_t from = 0;
      while (from < file.sql.size()) {
        auto end = file.sql.find(';', from);
        if (end == std::string::npos) end = file.sql.size();
        const auto statement = file.sql.substr(from, end - from);
        from = end + 1;
        if (statement.find("CREATE") == std::string::npos) continue;  // comments, blank lines
        pqxx::work txn(*control);
        txn.exec("SET LOCAL search_path TO " + txn.quote_name(progress.schema) + ", public");
        txn.exec(statement);
        txn.commit();
      }
    }
    log().info(
        "replay built its generation's indexes",
        {{"schema", progress.schema},
         {"ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
  }

  void save(const ReplayProgress& p) {
    pqxx::work txn(*control);
    txn.exec_params(
        "UPDATE replays SET applied = $2, remaining = $3, progress = $4, events_per_s = $5, "
        "eta_s = $6, updated_at = now() WHERE id = $1 AND status = 'building'",
        p.id, p.applied, p.remaining < 0 ? std::optional<std::int64_t>() : p.remaining, p.ratio,
        p.events_per_s, p.eta_s < 0 ? std::optional<double>() : p.eta_s);
    txn.commit();
  }

  // The new generation has passed `targets` (partition -> offset; a partition it has no row
  // for counts as 0).
  static bool passed(const Offsets& mine, const Offsets& targets) {
    return std::all_of(targets.begin(), targets.end(), [&](const auto& target) {
      const auto it = mine.find(target.first);
      return target.second <= (it == mine.end() ? 0 : it->second);
    });
  }

  // The switch (see replay.hpp). false when it is not the moment (the new generation did not
  // catch up in time, a lock was not granted, a query or a backup was in the way): nothing
  // changed, the replay goes on and tries again.
  bool try_switch(core::KafkaAdmin& admin) {
    // Without any lock: the new generation reaches the log's ends as they are now and the live
    // generation's checkpoints, so that under the locks below the wait is short.
    Offsets targets;
    try {
      targets = admin.end_offsets(topic(), partitions);
    } catch (const core::DependencyError& e) {
      switch_postponed.failing("switch postponed: the log's ends are unknown",
                               {{"error", e.what()}});
      return false;
    }
    const auto deadline = Clock::now() + kCatchUpWait;
    for (;;) {
      pqxx::read_transaction look(*control);
      const auto live = look.exec1("SELECT schema FROM read_model_live")[0].as<std::string>();
      auto wanted = targets;
      if (live != progress.schema) {
        for (const auto& [p, next] : read_checkpoints(look, live, projection(), topic(), false)) {
          wanted[p] = std::max(wanted[p], next);
        }
      }
      if (passed(read_checkpoints(look, progress.schema, projection(), topic(), false), wanted)) {
        break;
      }
      if (Clock::now() > deadline) return false;
      look.commit();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    try {
      pqxx::work txn(*control);
      txn.exec("SET LOCAL lock_timeout = '2s'");
      const auto live =
          txn.exec1("SELECT schema FROM read_model_live FOR UPDATE")[0].as<std::string>();
      if (live == progress.schema) return true;  // switched by an earlier run of this replay
      // The live generation's projectors wait at their next batch from here on.
      const auto frozen = read_checkpoints(txn, live, projection(), topic(), true);
      const auto frozen_by = Clock::now() + kSwitchWait;
      Offsets mine;
      for (;;) {
        mine = read_checkpoints(txn, progress.schema, projection(), topic(), false);
        if (passed(mine, frozen)) break;
        if (Clock::now() > frozen_by) return false;  // the transaction rolls back
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      // Every view at once and briefly: a query holding one of them (a history read spans two)
      // makes this time out rather than deadlock, and the switch is tried again.
      txn.exec("SET LOCAL lock_timeout = '500ms'");
      std::string views;
      for (const auto& row : txn.exec("SELECT unnest(read_model_tables())")) {
        views += (views.empty() ? "" : ", ") + std::string("public.") +
                 txn.quote_name(row[0].as<std::string>());
      }
      txn.exec("LOCK TABLE " + views + " IN ACCESS EXCLUSIVE MODE");
      txn.exec_params("UPDATE " + txn.quote_name(live) +
                          ".projection_checkpoints SET retired = true "
                          "WHERE projection = $1 AND topic = $2",
                      projection(), topic());
      // The new generation's own projector waits from here on: what it committed so far gets its
      // notifications below, what it applies after the commit gets them from its batches (its
      // generation is live then).
      mine = read_checkpoints(txn, progress.schema, projection(), topic(), true);
      const auto last_notification = notify_from_generation(txn, progress.schema, topic(), mine);
      txn.exec_params("UPDATE read_model_live SET schema = $1, switched_at = now()",
                      progress.schema);
      txn.exec_params("SELECT read_model_point_views($1)", progress.schema);
      txn.exec_params(
          "UPDATE replays SET status = 'switched', old_schema = $2, switched_at = now(), "
          "drop_after = now() + make_interval(secs => $3), progress = 1, remaining = 0, "
          "eta_s = 0, updated_at = now() WHERE id = $1",
          progress.id, live, options.projections.replay_grace_s);
      txn.exec_params(
          "SELECT pg_notify($1, $2)", kProgressChannel,
          progress_payload(projection(), topic(), progress.schema, mine, last_notification, true));
      txn.commit();
      progress.old_schema = live;
      return true;
    } catch (const pqxx::sql_error& e) {
      // lock_not_available, deadlock_detected, serialization_failure: not now.
      if (e.sqlstate() != "55P03" && e.sqlstate() != "40P01" && e.sqlstate() != "40001") throw;
      switch_postponed.failing("switch postponed: something held the read models",
                               {{"error", e.what()}});
      return false;
    }
  }
};

Replay::Replay(ReplayOptions options, ReplayRequest request) : impl_(std::make_unique<Impl>()) {
  auto& i = *impl_;
  i.options = std::move(options);
  i.request = std::move(request);
  if (i.request.projection != "all" && i.request.projection != i.projection()) {
    throw std::invalid_argument("projection: no projection \"" + i.request.projection +
                                "\"; this deployment has one, \"" + i.projection() +
                                "\", holding every read model (or say all)");
  }
  i.control = core::connect_postgres(core::postgres_conninfo(i.options.postgres));
  lock_replays(*i.control);
  for (const auto& schema : drop_replaced_generations(*i.control)) {
    log().info("replaced read-model generation dropped", {{"schema", schema}});
  }
  core::KafkaAdmin admin(i.options.kafka);
  const auto cluster =
      admin.describe(std::chrono::milliseconds(i.options.kafka.request_timeout_ms));
  const auto found = cluster.partitions_by_topic.find(i.topic());
  if (found == cluster.partitions_by_topic.end()) {
    throw core::DependencyError("kafka", "the event topic " + i.topic() + " does not exist", false);
  }
  i.partitions = found->second;

  i.progress.projection = i.projection();
  i.progress.status = "building";
  {
    pqxx::read_transaction txn(*i.control);
    const auto open = txn.exec_params(std::string("SELECT ") + kReplayColumns +
                                          " FROM replays WHERE projection = $1 AND "
                                          "status = 'building'",
                                      i.projection());
    if (!open.empty()) {
      // Its start was chosen when it was prepared: a new one would be silently ignored.
      if (i.request.from.kind != ReplayFrom::Kind::kStart) {
        throw ReplayConflict("an unfinished replay (" + open[0][0].as<std::string>() +
                             ") resumes from where it started; finish or abandon it before "
                             "asking for another start");
      }
      i.progress = progress_from_row(open[0]);
      i.progress.resumed = true;
    }
  }
  if (i.progress.resumed) {
    log().info("resuming an unfinished replay",
               {{"replay", i.progress.id}, {"schema", i.progress.schema}});
    pqxx::work txn(*i.control);
    txn.exec_params("UPDATE replays SET error = NULL, updated_at = now() WHERE id = $1",
                    i.progress.id);
    txn.commit();
    i.progress.error.clear();
    return;
  }
  i.progress.start_offsets = i.start_offsets(admin);
  i.prepare(i.progress.start_offsets);
  log().info("replay prepared a new read-model generation",
             {{"replay", i.progress.id}, {"schema", i.progress.schema}});
}

Replay::~Replay() = default;

const ReplayProgress& Replay::prepared() const { return impl_->progress; }

ReplayProgress Replay::run(const std::function<void(const ReplayProgress&)>& on_progress,
                           const std::atomic<bool>& stop) {
  auto& i = *impl_;
  auto& p = i.progress;
  ProjectorOptions po{i.options.kafka, i.options.postgres, i.options.projections, p.schema};
  po.projections.group = i.options.projections.group + ".replay";
  po.projections.batch_max = i.options.projections.replay_batch_max;
  prometheus::Registry registry;  // the replay's projector reports through the replay's row
  Projector projector(po, registry);
  projector.start();

  core::KafkaAdmin admin(i.options.kafka);
  const auto applied_before = p.applied;
  const auto started = Clock::now();
  auto last_report = Clock::now() - std::chrono::hours(1);
  auto last_switch_try = Clock::now() - std::chrono::hours(1);
  double rate = 0;       // events/s, smoothed
  bool indexed = false;  // this run built the secondary indexes (idempotent: a resume does again)
  std::int64_t last_applied = p.applied;
  auto last_sample = Clock::now();
  try {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto status = projector.status();
      const auto now = Clock::now();
      p.applied = applied_before + static_cast<std::int64_t>(status.applied);
      const bool all_assigned = static_cast<int>(status.partitions.size()) == i.partitions &&
                                std::all_of(status.partitions.begin(), status.partitions.end(),
                                            [](const auto& part) { return part.end_offset >= 0; });
      if (all_assigned) {
        std::int64_t total = 0;
        std::int64_t done = 0;
        for (const auto& part : status.partitions) {
          const auto start =
              p.start_offsets.contains(part.partition) ? p.start_offsets.at(part.partition) : 0;
          total += std::max<std::int64_t>(0, part.end_offset - start);
          done += std::max<std::int64_t>(0, part.end_offset - start - part.lag);
        }
        p.remaining = status.lag;
        p.ratio = total > 0 ? std::min(1.0, static_cast<double>(done) / total) : 1.0;
      }
      const auto dt = std::chrono::duration<double>(now - last_sample).count();
      if (dt >= 1.0) {
        const auto sample = static_cast<double>(p.applied - last_applied) / dt;
        rate = rate == 0 ? sample : 0.7 * rate + 0.3 * sample;
        last_applied = p.applied;
        last_sample = now;
        p.events_per_s = rate;
        p.eta_s = rate > 0 && p.remaining >= 0 ? static_cast<double>(p.remaining) / rate : -1;
      }
      if (stop) {
        projector.stop();
        i.save(p);
        p.status = "interrupted";
        on_progress(p);
        log().info("replay interrupted; run it again to resume", {{"replay", p.id}});
        return p;
      }
      if (now - last_report >= std::chrono::seconds(1)) {
        last_report = now;
        i.save(p);
        on_progress(p);
      }
      // Nearly caught up: the switch waits for the last batches with the live projector held.
      const auto near = std::max<std::int64_t>(i.options.projections.replay_batch_max, 1000);
      if (all_assigned && p.remaining <= near && now - last_switch_try >= std::chrono::seconds(1)) {
        last_switch_try = now;
        if (!indexed) {
          i.build_indexes();
          indexed = true;
          continue;  // the log moved on meanwhile
        }
        if (i.try_switch(admin)) break;
      }
    }
  } catch (const std::exception& e) {
    // Whatever stopped it (PostgreSQL or Kafka away, most likely), the replay stays `building`:
    // its generation keeps what it applied, and the next run resumes it. The error is kept on
    // its row for GET /v1/admin/replays/{id} (when PostgreSQL takes it).
    projector.stop();
    p.error = e.what();
    log().warn("replay stopped; run it again to resume", {{"replay", p.id}, {"error", p.error}});
    try {
      pqxx::work txn(*i.control);
      txn.exec_params("UPDATE replays SET error = $2, updated_at = now() WHERE id = $1", p.id,
                      p.error);
      txn.commit();
    } catch (const std::exception&) {
      // PostgreSQL is what failed: the log has it.
    }
    throw;
  }
  projector.stop();
  p.status = "switched";
  p.ratio = 1;
  p.remaining = 0;
  p.eta_s = 0;
  const auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (seconds > 0) p.events_per_s = static_cast<double>(p.applied - applied_before) / seconds;
  log().info("read models switched to the replayed generation",
             {{"replay", p.id}, {"schema", p.schema}, {"replaced", p.old_schema}});
  if (i.options.projections.replay_grace_s == 0) {
    for (const auto& schema : drop_replaced_generations(*i.control)) {
      log().info("replaced read-model generation dropped", {{"schema", schema}});
    }
  }
  on_progress(p);
  return p;
}

bool Replay::abandon(const ReplayOptions& options) {
  auto control = core::connect_postgres(core::postgres_conninfo(options.postgres));
  lock_replays(*control);
  {
    pqxx::work txn(*control);
    const auto r = txn.exec_params(
        "UPDATE replays SET status = 'abandoned', updated_at = now() "
        "WHERE projection = $1 AND status = 'building'",
        options.projections.name);
    txn.commit();
    if (r.affected_rows() == 0) return false;
  }
  drop_replaced_generations(*control);
  return true;
}

std::optional<ReplayProgress> load_replay(const core::PostgresConfig& postgres,
                                          const std::string& id) {
  if (!commands::is_uuid(id)) return std::nullopt;  // no replay has it (ids are lower case)
  auto connection = core::connect_postgres(core::postgres_conninfo(postgres));
  pqxx::read_transaction txn(*connection);
  const auto rows = txn.exec_params(
      std::string("SELECT ") + kReplayColumns + " FROM replays WHERE id = $1::uuid", id);
  if (rows.empty()) return std::nullopt;
  return progress_from_row(rows[0]);
}

}  // namespace cauce::projections
