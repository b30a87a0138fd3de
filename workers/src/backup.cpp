#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <pqxx/pqxx>
#include <prometheus/registry.h>
#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cauce/commands/schemas.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/workers/backup.hpp>

#include "json_writer.hpp"
#include "part_file.hpp"
#include "read_model_digests.hpp"

extern char** environ;

namespace cauce::workers {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kManifestFormat = 1;
const char* const kManifest = "manifest.json";
// The manifest's own checksum, as `sha256sum -c` reads it: a manifest changed after it was written
// (a flipped digit of a count still parses) is refused before anything is restored.
const char* const kManifestSum = "manifest.sha256";
const char* const kDump = "readmodels.dump";

const core::Logger& log() {
  static const core::Logger logger("backup");
  return logger;
}

struct GzClose {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzClose>;

GzFile gz_open(const fs::path& path, const char* mode) {
  GzFile f(gzopen(path.c_str(), mode));
  if (!f) throw std::system_error(errno, std::generic_category(), "cannot open " + path.string());
  return f;
}

// The partition's high watermark, asked again for a while when the broker does not know yet
// (topics created a moment ago have no leader for a second or two).
std::int64_t high_watermark(RdKafka::Handle& handle, const std::string& topic, std::int32_t p,
                            int request_timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    std::int64_t low = 0, high = 0;
    const auto rc = handle.query_watermark_offsets(topic, p, &low, &high, request_timeout_ms);
    if (rc == RdKafka::ERR_NO_ERROR) return high;
    const bool transient =
        rc == RdKafka::ERR_NOT_LEADER_FOR_PARTITION || rc == RdKafka::ERR_LEADER_NOT_AVAILABLE ||
        rc == RdKafka::ERR_UNKNOWN_TOPIC_OR_PART || rc == RdKafka::ERR__TIMED_OUT;
    if (!transient || Clock::now() > deadline) {
      throw core::DependencyError("kafka", topic + " watermarks: " + RdKafka::err2str(rc), true);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// ---- the event-log export ----

struct PartitionExport {
  std::int32_t partition = 0;
  std::int64_t to = 0;  // exclusive
  std::int64_t events = 0;
  std::string file;
};

std::unique_ptr<RdKafka::KafkaConsumer> export_consumer(const core::KafkaConfig& kafka,
                                                        const std::string& id) {
  auto conf = core::kafka_conf(kafka, {{"group.id", "cauce-backup-" + id},
                                       {"enable.auto.commit", "false"},
                                       {"enable.auto.offset.store", "false"},
                                       {"isolation.level", "read_committed"},
                                       {"enable.partition.eof", "true"},
                                       {"auto.offset.reset", "earliest"}});
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) throw core::DependencyError("kafka", "backup consumer: " + err, false);
  return consumer;
}

// One line per record: {"offset","key","headers":{...},"value"} (the value as a JSON string,
// byte for byte what the log holds).
std::string export_line(RdKafka::Message& m) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "offset", m.offset());
  put(w, "key", core::kafka_key(m));
  w.Key("headers");
  w.StartArray();
  if (const auto* headers = m.headers()) {
    for (const auto& h : headers->get_all()) {
      w.StartArray();
      w.String(h.key().c_str(), static_cast<rapidjson::SizeType>(h.key().size()));
      w.String(static_cast<const char*>(h.value()),
               static_cast<rapidjson::SizeType>(h.value_size()));
      w.EndArray();
    }
  }
  w.EndArray();
  put(w, "value", core::kafka_payload(m));
  w.EndObject();
  std::string line(buffer.GetString(), buffer.GetSize());
  line += '\n';
  return line;
}

void export_partitions(const BackupSources& sources, const std::string& id, const fs::path& dir,
                       std::vector<PartitionExport>& parts) {
  auto consumer = export_consumer(sources.kafka, id);
  std::vector<RdKafka::TopicPartition*> assignment;
  std::map<std::int32_t, std::size_t> index;
  std::vector<GzFile> files(parts.size());
  std::size_t open = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    files[i] = gz_open(dir / parts[i].file, "wb1");  // fast: the export races pg_dump
    if (parts[i].to == 0) continue;
    index[parts[i].partition] = i;
    assignment.push_back(RdKafka::TopicPartition::create(
        sources.kafka.events_topic, parts[i].partition, RdKafka::Topic::OFFSET_BEGINNING));
    ++open;
  }
  if (!assignment.empty()) {
    const auto rc = consumer->assign(assignment);
    RdKafka::TopicPartition::destroy(assignment);
    if (rc != RdKafka::ERR_NO_ERROR) {
      throw core::DependencyError("kafka", "backup assign: " + RdKafka::err2str(rc), true);
    }
  }
  const auto deadline = Clock::now() + sources.export_timeout;
  // A partition is done once its position has reached the bound (transaction markers take
  // offsets too, so the last record may sit below it: the end of the partition tells).
  const auto position_reached = [&](std::int32_t partition, std::int64_t to) {
    std::vector<RdKafka::TopicPartition*> tp{
        RdKafka::TopicPartition::create(sources.kafka.events_topic, partition)};
    consumer->position(tp);
    const auto at = tp[0]->offset();
    RdKafka::TopicPartition::destroy(tp);
    return at >= to;
  };
  std::map<std::int32_t, bool> finished;
  while (open > 0) {
    if (Clock::now() > deadline) {
      throw std::runtime_error(
          "the event-log export did not finish within backups.export_timeout_s");
    }
    std::unique_ptr<RdKafka::Message> m(consumer->consume(200));
    if (m->err() == RdKafka::ERR__TIMED_OUT) continue;
    const auto it = index.find(m->partition());
    if (it == index.end() || finished[m->partition()]) continue;
    auto& part = parts[it->second];
    if (m->err() == RdKafka::ERR__PARTITION_EOF) {
      if (position_reached(part.partition, part.to)) {
        finished[part.partition] = true;
        --open;
      }
      continue;
    }
    if (m->err() != RdKafka::ERR_NO_ERROR) {
      throw core::DependencyError("kafka", "backup export: " + m->errstr(), true);
    }
    if (m->offset() >= part.to) {
      finished[part.partition] = true;
      --open;
      continue;
    }
    const auto line = export_line(*m);
    if (gzwrite(files[it->second].get(), line.data(), static_cast<unsigned>(line.size())) !=
        static_cast<int>(line.size())) {
      throw std::runtime_error("cannot write " + part.file);
    }
    ++part.events;
    if (m->offset() + 1 >= part.to) {
      finished[part.partition] = true;
      --open;
    }
  }
  consumer->close();
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (gzclose(files[i].release()) != Z_OK)
      throw std::runtime_error("cannot write " + parts[i].file);
    fsync_path(dir / parts[i].file, false);
  }
}

// ---- pg_dump ----

std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    if (::access((std::string(dir) + "/" + name).c_str(), X_OK) == 0)
      return std::string(dir) + "/" + name;
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const auto candidate = entry.path() / "bin" / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  throw std::runtime_error(name + " not found (Debian package postgresql-client)");
}

// pg_dump in the exported snapshot, running beside the log export; the password reaches it
// through its environment only. Killed if still running when this is destroyed.
class PgDump {
 public:
  PgDump(const core::PostgresConfig& pg, const std::string& snapshot, fs::path out)
      : out_(std::move(out)) {
    const auto program = find_program("pg_dump");
    std::vector<std::string> args = {program,
                                     "--format=custom",
                                     "--no-owner",
                                     "--lock-wait-timeout=60000",
                                     "--snapshot=" + snapshot,
                                     "--file=" + out_.string(),
                                     "--host=" + pg.host,
                                     "--port=" + std::to_string(pg.port),
                                     "--username=" + pg.user,
                                     "--dbname=" + pg.database};
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).starts_with("PGPASSWORD=")) continue;
      env_strings.emplace_back(*e);
    }
    auto password = pg.password.reveal();
    if (password.empty() && !pg.password_file.empty()) {
      std::ifstream in(pg.password_file);
      std::getline(in, password);
    }
    if (!password.empty()) env_strings.push_back("PGPASSWORD=" + password);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (const int rc =
            posix_spawn(&pid_, program.c_str(), nullptr, nullptr, argv.data(), envp.data());
        rc != 0) {
      throw std::system_error(rc, std::generic_category(), "cannot start pg_dump");
    }
  }
  PgDump(const PgDump&) = delete;
  PgDump& operator=(const PgDump&) = delete;
  ~PgDump() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }

  // Waits for it (killing it at `deadline`); throws unless it wrote the dump.
  void finish(Clock::time_point deadline) {
    int status = 0;
    for (;;) {
      const auto r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) {
        const auto error = errno;
        pid_ = -1;  // not ours to wait for or kill any more
        throw std::system_error(error, std::generic_category(), "waiting for pg_dump");
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error("pg_dump did not finish within backups.export_timeout_s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw core::DependencyError("postgres",
                                  "pg_dump failed (exit " +
                                      std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                                      ")",
                                  true);
    }
    fsync_path(out_, false);
  }

 private:
  fs::path out_;
  pid_t pid_ = -1;
};

// ---- manifest ----

struct FileEntry {
  std::string name;
  std::int64_t bytes = 0;
  std::string sha256;
};

FileEntry describe_file(const fs::path& dir, const std::string& name) {
  return FileEntry{name, static_cast<std::int64_t>(fs::file_size(dir / name)),
                   core::sha256_file_hex((dir / name).string())};
}

// A file of the backup: "name" or "reports/name", never a path out of the directory.
bool safe_file_name(std::string_view name) {
  if (name.starts_with("reports/")) name.remove_prefix(8);
  return !name.empty() && name.find('/') == std::string_view::npos && !name.starts_with(".");
}

rapidjson::Document read_manifest(const fs::path& directory) {
  std::ifstream in(directory / kManifest, std::ios::binary);
  if (!in) throw BackupError(kManifest + std::string(": missing in ") + directory.string());
  std::stringstream text;
  text << in.rdbuf();
  rapidjson::Document d;
  d.Parse(text.str().c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("format") || !d["format"].IsInt() ||
      !d.HasMember("files") || !d["files"].IsArray() || !d.HasMember("created_at") ||
      !d["created_at"].IsString() || !d.HasMember("id") || !d["id"].IsString()) {
    throw BackupError(kManifest + std::string(": not a cauce backup manifest"));
  }
  if (d["format"].GetInt() != kManifestFormat) {
    throw BackupError(kManifest + std::string(": format ") + std::to_string(d["format"].GetInt()) +
                      " is not one this cauce reads");
  }
  for (const auto& f : d["files"].GetArray()) {
    const bool entry = f.IsObject() && f.HasMember("name") && f["name"].IsString() &&
                       f.HasMember("bytes") && f["bytes"].IsInt64() && f.HasMember("sha256") &&
                       f["sha256"].IsString();
    if (!entry || !safe_file_name(f["name"].GetString())) {
      throw BackupError(kManifest + std::string(": a files entry is not {name, bytes, sha256}"));
    }
  }
  try {
    core::parse_utc_micros(d["created_at"].GetString());
  } catch (const std::invalid_argument&) {
    throw BackupError(kManifest + std::string(": created_at is not an RFC 3339 UTC time"));
  }
  return d;
}

// A backup being written: `.<id>.<random>.tmp` beside the complete ones, a name of this run's own
// (a second run of the same backup, a lease that lapsed, never writes into this one's files),
// removed unless the run completes it. list_backups never lists it.
fs::path temporary_name(const fs::path& parent, const std::string& id) {
  return parent / ("." + id + "." + core::random_hex(4) + ".tmp");
}

struct RemoveUnlessDone {
  explicit RemoveUnlessDone(fs::path p) : path(std::move(p)) {}
  RemoveUnlessDone(const RemoveUnlessDone&) = delete;
  RemoveUnlessDone& operator=(const RemoveUnlessDone&) = delete;
  ~RemoveUnlessDone() {
    std::error_code ignored;
    if (!done) fs::remove_all(path, ignored);
  }
  fs::path path;
  bool done = false;
};

// The files the workers write under the data dir that a backup keeps: rendered reports and the
// downloaded sources they were rendered from.
bool kept_data_file(const fs::directory_entry& entry) {
  const auto extension = entry.path().extension();
  return entry.is_regular_file() && (extension == ".pdf" || extension == ".source");
}

BackupSummary summary_of(const fs::path& directory, const rapidjson::Document& d) {
  BackupSummary s;
  s.id = d["id"].GetString();
  s.directory = directory;
  s.created_at_us = core::parse_utc_micros(d["created_at"].GetString());
  for (const auto& f : d["files"].GetArray()) s.bytes += f["bytes"].GetInt64();
  std::error_code ec;
  s.bytes += static_cast<std::int64_t>(fs::file_size(directory / kManifest, ec));
  if (d.HasMember("events") && d["events"].IsInt64()) s.events = d["events"].GetInt64();
  return s;
}

}  // namespace

BackupTaken take_backup(const BackupSources& sources, const fs::path& backups_dir,
                        const std::string& id, std::int64_t now_us) {
  const auto started = Clock::now();
  fs::create_directories(backups_dir);
  const auto final_dir = backups_dir / id;
  // Taken already (a run whose completion was not recorded: a lost reply, a crash just after):
  // the same backup again, so what the log records is what the directory holds.
  if (fs::exists(final_dir / kManifest)) {
    try {
      verify_backup(final_dir);
      const auto manifest = read_manifest(final_dir);
      BackupTaken again;
      again.directory = final_dir;
      again.bytes = summary_of(final_dir, manifest).bytes;
      again.events = manifest["events"].GetInt64();
      for (const auto& p : manifest["partitions"].GetArray()) {
        again.positions.push_back(p["to"].GetInt64());
      }
      again.manifest_sha256 = core::sha256_file_hex((final_dir / kManifest).string());
      log().info("backup already complete on disk; recording it", {{"id", id}});
      return again;
    } catch (const std::exception& e) {
      log().warn("an earlier copy of this backup is not intact; taking it again",
                 {{"id", id}, {"error", e.what()}});
    }
  }
  // Leftovers of crashed runs are removed by retention.
  const auto tmp = temporary_name(backups_dir, id);
  fs::create_directories(tmp);
  RemoveUnlessDone cleanup{tmp};

  // The read models' snapshot first: its checkpoints bound the export, so the log and the dump
  // describe the same history.
  std::unique_ptr<pqxx::connection> pg;
  try {
    pg = core::connect_postgres(core::postgres_conninfo(sources.postgres));
  } catch (const std::exception& e) {
    throw core::DependencyError("postgres", e.what(), true);
  }
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> snapshot_txn(*pg);
  const auto snapshot = snapshot_txn.exec1("SELECT pg_export_snapshot()")[0].as<std::string>();
  std::map<std::int32_t, std::int64_t> checkpoints;
  for (const auto& row :
       snapshot_txn.exec_params("SELECT partition, next_offset FROM projection_checkpoints "
                                "WHERE projection = $1 AND topic = $2",
                                sources.projection, sources.kafka.events_topic)) {
    checkpoints[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
  }
  const auto schema_version =
      snapshot_txn.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0]
          .as<std::int64_t>();

  std::vector<PartitionExport> parts;
  {
    auto probe = export_consumer(sources.kafka, id);
    const auto count =
        core::kafka_partition_count(*probe, sources.kafka.events_topic,
                                    std::chrono::milliseconds(sources.kafka.request_timeout_ms));
    for (std::int32_t p = 0; p < count; ++p) {
      const auto high =
          high_watermark(*probe, sources.kafka.events_topic, p, sources.kafka.request_timeout_ms);
      const auto checkpoint = checkpoints.find(p);
      if (checkpoint == checkpoints.end() && high > 0) {
        throw std::runtime_error("the read models have not projected partition " +
                                 std::to_string(p) + " yet; the backup waits for them");
      }
      parts.push_back(PartitionExport{p, checkpoint == checkpoints.end() ? 0 : checkpoint->second,
                                      0, "events-" + std::to_string(p) + ".ndjson.gz"});
    }
    probe->close();
  }
  // pg_dump reads the snapshot while the log is exported and the read models are digested (in
  // the same snapshot); its transaction stays open until all three are done.
  const auto deadline = Clock::now() + sources.export_timeout;
  PgDump dump(sources.postgres, snapshot, tmp / kDump);
  export_partitions(sources, id, tmp, parts);
  const auto digests = table_digests(snapshot_txn, schema_version);
  dump.finish(deadline);
  snapshot_txn.commit();
  pg.reset();

  std::vector<FileEntry> files;
  BackupTaken taken;
  for (const auto& p : parts) {
    files.push_back(describe_file(tmp, p.file));
    taken.positions.push_back(p.to);
    taken.events += p.events;
  }
  files.push_back(describe_file(tmp, kDump));
  // The rendered reports and their downloaded sources (the read models say they are ready; the
  // PDFs and sources are files): restored as they are, nothing to render again.
  if (sources.data_dir) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(*sources.data_dir / "reports", ec)) {
      if (!kept_data_file(entry)) continue;
      fs::create_directories(tmp / "reports");
      const auto name = "reports/" + entry.path().filename().string();
      fs::copy_file(entry.path(), tmp / name, fs::copy_options::overwrite_existing);
      fsync_path(tmp / name, false);
      files.push_back(describe_file(tmp, name));
    }
    if (fs::exists(tmp / "reports")) fsync_path(tmp / "reports", true);
  }
  rapidjson::StringBuffer buffer;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("format");
  w.Int(kManifestFormat);
  w.Key("id");
  w.String(id.c_str());
  w.Key("created_at");
  w.String(core::format_utc_micros(now_us).c_str());
  w.Key("cauce_version");
  w.String(CAUCE_VERSION);
  w.Key("events_topic");
  w.String(sources.kafka.events_topic.c_str());
  w.Key("projection");
  w.String(sources.projection.c_str());
  w.Key("database_schema_version");
  w.Int64(schema_version);
  w.Key("events");
  w.Int64(taken.events);
  w.Key("partitions");
  w.StartArray();
  for (const auto& p : parts) {
    w.StartObject();
    w.Key("partition");
    w.Int(p.partition);
    w.Key("from");
    w.Int64(0);
    w.Key("to");
    w.Int64(p.to);
    w.Key("events");
    w.Int64(p.events);
    w.Key("file");
    w.String(p.file.c_str());
    w.EndObject();
  }
  w.EndArray();
  w.Key("read_models");
  w.StartObject();
  w.Key("dump");
  w.String(kDump);
  w.Key("tables");
  w.StartObject();
  for (const auto& [table, digest] : digests) {
    w.Key(table.c_str());
    w.StartObject();
    w.Key("rows");
    w.Int64(digest.rows);
    w.Key("md5");
    w.String(digest.md5.c_str());
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  w.Key("data_files");  // what of the data dir is in here, and what a restore does with it
  w.String(
      "reports/<id>.pdf (rendered reports) and reports/<id>.source (their downloaded sources), "
      "as they were when the backup was taken; cauce restore puts them back under the target's "
      "data dir, so nothing is downloaded or rendered again");
  w.Key("schemas");  // the event and command schemas this cauce writes and reads
  w.StartArray();
  for (const auto& name : commands::SchemaRegistry::instance().names()) w.String(name.c_str());
  w.EndArray();
  w.Key("files");
  w.StartArray();
  for (const auto& f : files) {
    w.StartObject();
    w.Key("name");
    w.String(f.name.c_str());
    w.Key("bytes");
    w.Int64(f.bytes);
    w.Key("sha256");
    w.String(f.sha256.c_str());
    w.EndObject();
    taken.bytes += f.bytes;
  }
  w.EndArray();
  w.EndObject();
  {
    std::ofstream out(tmp / kManifest, std::ios::binary);
    out.write(buffer.GetString(), static_cast<std::streamsize>(buffer.GetSize()));
    out.put('\n');
    if (!out.flush()) throw std::runtime_error("cannot write manifest.json");
  }
  fsync_path(tmp / kManifest, false);
  taken.manifest_sha256 = core::sha256_file_hex((tmp / kManifest).string());
  taken.bytes += static_cast<std::int64_t>(fs::file_size(tmp / kManifest));
  {
    std::ofstream out(tmp / kManifestSum, std::ios::binary);
    out << taken.manifest_sha256 << "  " << kManifest << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write manifest.sha256");
  }
  fsync_path(tmp / kManifestSum, false);
  fsync_path(tmp, true);
  fs::remove_all(final_dir);  // an earlier attempt's copy, complete or not
  fs::rename(tmp, final_dir);
  cleanup.done = true;
  fsync_path(backups_dir, true);
  taken.directory = final_dir;
  log().info(
      "backup written",
      {{"id", id},
       {"events", taken.events},
       {"bytes", taken.bytes},
       {"ms",
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
  return taken;
}

BackupSummary verify_backup(const fs::path& directory) {
  // Backups taken before manifest.sha256 existed have none: their manifest is checked by parsing
  // and by the files it describes.
  if (std::ifstream sum(directory / kManifestSum); sum) {
    std::string expected;
    sum >> expected;
    if (expected != core::sha256_file_hex((directory / kManifest).string())) {
      throw BackupError(std::string(kManifest) +
                        ": sha256 differs from manifest.sha256's (the manifest is corrupted)");
    }
  }
  const auto d = read_manifest(directory);
  for (const auto& f : d["files"].GetArray()) {
    const std::string name = f["name"].GetString();
    const auto path = directory / name;
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) throw BackupError(name + ": missing");
    if (static_cast<std::int64_t>(size) != f["bytes"].GetInt64()) {
      throw BackupError(name + ": " + std::to_string(size) + " bytes, the manifest says " +
                        std::to_string(f["bytes"].GetInt64()));
    }
    if (core::sha256_file_hex(path.string()) != f["sha256"].GetString()) {
      throw BackupError(name + ": sha256 differs from the manifest's (the file is corrupted)");
    }
  }
  return summary_of(directory, d);
}

std::vector<BackupSummary> list_backups(const fs::path& backups_dir) {
  std::vector<BackupSummary> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(backups_dir, ec)) {
    if (!entry.is_directory() || entry.path().filename().string().starts_with(".")) continue;
    try {
      out.push_back(summary_of(entry.path(), read_manifest(entry.path())));
    } catch (const std::exception& e) {
      log().debug("not a complete backup", {{"dir", entry.path().string()}, {"error", e.what()}});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_at_us < b.created_at_us; });
  return out;
}

std::vector<BackupSummary> expired_backups(const fs::path& backups_dir, std::int64_t now_us,
                                           std::chrono::hours retention) {
  const auto cutoff =
      now_us - std::chrono::duration_cast<std::chrono::microseconds>(retention).count();
  auto all = list_backups(backups_dir);
  std::erase_if(all, [cutoff](const auto& b) { return b.created_at_us >= cutoff; });
  return all;
}

namespace {

const char* const kInstallationFile = "installation";          // in the data dir
const char* const kInstallationMarker = "cauce-installation";  // in backups.copy_to

// create_directories, each directory it creates fsynced into its parent, so that a copy_to made on
// a fresh mount keeps its entry through a crash.
void create_directories_durably(const fs::path& directory) {
  std::vector<fs::path> missing;
  for (auto p = directory; !p.empty() && !fs::exists(p); p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    fs::create_directory(*it);  // false: another process made it meanwhile
    fsync_path(it->has_parent_path() ? it->parent_path() : fs::path("."), true);
  }
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Creates `path` holding `text`, fsynced with its directory entry; false when it existed already
// (O_EXCL: two processes creating it at once, one wins). Throws std::system_error.
bool create_new_file(const fs::path& path, const std::string& text) {
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    if (errno == EEXIST) return false;
    throw std::system_error(errno, std::generic_category(), "create " + path.string());
  }
  RemoveUnlessDone cleanup{path};  // a file left empty would look like one being written
  for (std::size_t written = 0; written < text.size();) {
    const auto n = ::write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(errno, std::generic_category(), "write " + path.string());
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) {
    throw std::system_error(errno, std::generic_category(), "fsync " + path.string());
  }
  cleanup.done = true;
  fsync_path(path.has_parent_path() ? path.parent_path() : fs::path("."), true);
  return true;
}

// The first word of a small file ("" when it is empty or being written); nullopt when there is
// no such file.
std::optional<std::string> first_word(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    if (!fs::exists(path)) return std::nullopt;
    throw std::system_error(errno, std::generic_category(), "read " + path.string());
  }
  std::string word;
  in >> word;
  return word;
}

// An installation's name as this cauce writes it (32 hex digits); what a marker holds otherwise
// is not taken over into a data dir.
bool installation_name(std::string_view name) {
  return name.size() == 32 &&
         std::all_of(name.begin(), name.end(), [](char c) { return std::isxdigit(c) != 0; });
}

// Renames `from` to `to` unless `to` exists (false then): renameat2(RENAME_NOREPLACE) where the
// filesystem has it. Where it has not (EINVAL: NFS and SMB mounts), a plain rename, which does not
// replace a non-empty directory either (ENOTEMPTY, EEXIST): a copy always has files.
bool rename_unless_exists(const fs::path& from, const fs::path& to) {
  int error = 0;
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    error = errno;
    if (error == EINVAL) error = ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
  }
  if (error == 0) return true;
  if (error == EEXIST || error == ENOTEMPTY) return false;
  throw std::system_error(error, std::generic_category(),
                          "rename " + from.string() + " to " + to.string());
}

// What is at `<copy_root>/<id>` before a copy is published there.
struct ExistingCopy {
  enum class Kind { kNone, kThisBackup, kAnotherBackup, kBroken } kind = Kind::kNone;
  std::int64_t bytes = 0;       // kThisBackup
  std::string manifest_sha256;  // kThisBackup, kAnotherBackup
  std::string problem;          // kBroken: the first thing verify found
};

ExistingCopy existing_copy(const fs::path& directory, const std::string& manifest_sha256) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(directory, ec))) {
    if (ec && ec != std::errc::no_such_file_or_directory) {
      throw fs::filesystem_error("stat", directory, ec);
    }
    return {};
  }
  ExistingCopy there;
  try {
    there.bytes = verify_backup(directory).bytes;
  } catch (const BackupError& e) {
    there.kind = ExistingCopy::Kind::kBroken;
    there.problem = e.what();
    return there;
  }
  there.manifest_sha256 = core::sha256_file_hex((directory / kManifest).string());
  there.kind = there.manifest_sha256 == manifest_sha256 ? ExistingCopy::Kind::kThisBackup
                                                        : ExistingCopy::Kind::kAnotherBackup;
  return there;
}

BackupCopyConflict another_backups_copy(const fs::path& directory, const std::string& id,
                                        const std::string& theirs, const std::string& ours) {
  return BackupCopyConflict(
      directory.string() + " is an intact copy of another backup with the id " + id +
      " (its manifest's sha256 " + theirs + ", this backup's " + ours +
      "); it is kept and this backup is not copied (was this system restored from that copy, or "
      "does another installation copy into the same directory?)");
}

}  // namespace

std::string installation_id(const fs::path& data_dir) {
  const auto file = data_dir / kInstallationFile;
  if (auto name = first_word(file); !name) {
    create_directories_durably(data_dir);
    create_new_file(file, core::random_hex(16) + "\n");  // false: another process was first
  }
  const auto name = first_word(file);
  if (!name || name->empty()) throw std::runtime_error(file.string() + " is empty");
  return *name;
}

void claim_copy_root(const fs::path& copy_root, const std::string& installation) {
  create_directories_durably(copy_root);
  const auto marker = copy_root / kInstallationMarker;
  if (create_new_file(marker,
                      installation +
                          "\ncauce: the backups.copy_to of the installation above (its "
                          "data dir's `installation` file); one installation per copy_to\n")) {
    return;
  }
  const auto owner = first_word(marker).value_or("");
  if (owner.empty()) throw std::runtime_error(marker.string() + " is empty (being written?)");
  if (owner != installation) {
    throw BackupCopyConflict(
        copy_root.string() + " holds another cauce installation's copies (" + marker.string() +
        " names " + owner.substr(0, 64) + "; this one is " + installation +
        "): give each installation a backups.copy_to of its own, or, if this system is that "
        "installation restored or moved, write its name into the data dir's `installation` file");
  }
}

void adopt_installation(const fs::path& backup, const fs::path& data_dir) {
  auto directory = backup.lexically_normal();
  if (directory.filename().empty()) directory = directory.parent_path();
  const auto owner = first_word(directory.parent_path() / kInstallationMarker);
  if (!owner || !installation_name(*owner) || first_word(data_dir / kInstallationFile)) return;
  create_directories_durably(data_dir);
  if (create_new_file(data_dir / kInstallationFile, *owner + "\n")) {
    log().info("the restored data dir takes over the installation of the copy it came from",
               {{"installation", *owner}, {"copy_to", directory.parent_path().string()}});
  }
}

BackupCopy copy_backup(const fs::path& backup, const fs::path& copy_root,
                       const std::string& installation) {
  const auto summary = verify_backup(backup);  // a copy of a damaged backup helps nobody
  if (!safe_file_name(summary.id) || summary.id.starts_with("reports/")) {
    throw BackupError(std::string(kManifest) + ": the id is not a directory name");
  }
  const auto manifest_sha256 = core::sha256_file_hex((backup / kManifest).string());
  claim_copy_root(copy_root, installation);
  const auto final_dir = copy_root / summary.id;
  // What is there already is never deleted: this backup's copy (a run whose outcome was not
  // recorded) is taken as it is, another backup's is a conflict, a broken one is set aside.
  switch (const auto there = existing_copy(final_dir, manifest_sha256); there.kind) {
    case ExistingCopy::Kind::kNone:
      break;
    case ExistingCopy::Kind::kThisBackup:
      fsync_path(copy_root, true);  // the rename that made it may not have reached the storage
      return BackupCopy{final_dir, there.bytes, manifest_sha256};
    case ExistingCopy::Kind::kAnotherBackup:
      throw another_backups_copy(final_dir, summary.id, there.manifest_sha256, manifest_sha256);
    case ExistingCopy::Kind::kBroken: {
      const auto aside =
          copy_root / ("." + summary.id + ".broken-" +
                       std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count()) +
                       "-" + core::random_hex(2));
      fs::rename(final_dir, aside);
      fsync_path(copy_root, true);
      log().warn("an earlier copy of this backup is not intact; set aside and copied again",
                 {{"id", summary.id}, {"error", there.problem}, {"set_aside", aside.string()}});
      break;
    }
  }
  const auto tmp = temporary_name(copy_root, summary.id);
  fs::create_directory(tmp);
  RemoveUnlessDone cleanup{tmp};
  const auto manifest = read_manifest(backup);
  std::vector<std::string> names;
  for (const auto& f : manifest["files"].GetArray()) names.emplace_back(f["name"].GetString());
  names.emplace_back(kManifest);  // last: a copy with a manifest has every file before it
  if (fs::exists(backup / kManifestSum)) names.emplace_back(kManifestSum);
  for (const auto& name : names) {
    const auto to = tmp / name;
    if (to.parent_path() != tmp && fs::create_directory(to.parent_path())) {
      fsync_path(tmp, true);
    }
    fs::copy_file(backup / name, to);
    fsync_path(to, false, true);  // read back below from the storage, not the page cache
  }
  if (fs::exists(tmp / "reports")) fsync_path(tmp / "reports", true);
  fsync_path(tmp, true);
  // Read back from the destination: every file against the manifest, and the manifest against
  // the backup's.
  BackupSummary copied;
  try {
    copied = verify_backup(tmp);
    if (core::sha256_file_hex((tmp / kManifest).string()) != manifest_sha256) {
      throw BackupError(std::string(kManifest) + ": sha256 differs from the backup's");
    }
  } catch (const BackupError& e) {
    throw BackupError("the copy read back from " + copy_root.string() + " differs: " + e.what());
  }
  if (!rename_unless_exists(tmp, final_dir)) {
    // Published meanwhile by another run of this copy (a lease that lapsed): taken if it is this
    // backup whole; this run's files go.
    const auto there = existing_copy(final_dir, manifest_sha256);
    if (there.kind == ExistingCopy::Kind::kAnotherBackup) {
      throw another_backups_copy(final_dir, summary.id, there.manifest_sha256, manifest_sha256);
    }
    if (there.kind != ExistingCopy::Kind::kThisBackup) {
      throw BackupError(final_dir.string() + " appeared during the copy and is not intact (" +
                        there.problem + "); the next attempt sets it aside");
    }
    copied.bytes = there.bytes;
  } else {
    cleanup.done = true;
  }
  fsync_path(copy_root, true);
  return BackupCopy{final_dir, copied.bytes, manifest_sha256};
}

std::vector<BackupSummary> surplus_backups(const fs::path& directory, std::size_t keep) {
  auto all = list_backups(directory);
  if (all.size() <= keep) return {};
  all.resize(all.size() - keep);
  return all;
}

RestoreReport restore_backup(const fs::path& directory, const RestoreTarget& target,
                             const Progress& progress) {
  progress("verify", 0, 1);
  verify_backup(directory);
  progress("verify", 1, 1);
  const auto manifest = read_manifest(directory);
  const auto restorable = [&] {
    if (!manifest.HasMember("partitions") || !manifest["partitions"].IsArray() ||
        manifest["partitions"].Empty() || !manifest.HasMember("events") ||
        !manifest["events"].IsInt64() || !manifest.HasMember("read_models") ||
        !manifest["read_models"].IsObject() || !manifest["read_models"].HasMember("tables") ||
        !manifest["read_models"]["tables"].IsObject()) {
      return false;
    }
    int expected_partition = 0;
    std::set<std::string> checksummed;
    for (const auto& f : manifest["files"].GetArray()) checksummed.insert(f["name"].GetString());
    for (const auto& p : manifest["partitions"].GetArray()) {
      // Every partition's file is one the manifest checksums (verify has read it).
      if (!p.IsObject() || !p.HasMember("partition") || !p["partition"].IsInt() ||
          p["partition"].GetInt() != expected_partition++ || !p.HasMember("file") ||
          !p["file"].IsString() || !checksummed.contains(p["file"].GetString()) ||
          !p.HasMember("to") || !p["to"].IsInt64()) {
        return false;
      }
    }
    for (const auto& t : manifest["read_models"]["tables"].GetObject()) {
      if (!t.value.IsObject() || !t.value.HasMember("rows") || !t.value["rows"].IsInt64() ||
          !t.value.HasMember("md5") || !t.value["md5"].IsString()) {
        return false;
      }
    }
    return true;
  };
  if (!restorable()) throw BackupError("manifest.json: partitions or read models malformed");
  const auto& parts = manifest["partitions"].GetArray();
  const int partitions = static_cast<int>(parts.Size());

  // The target: topics with the backup's partition count, and an empty event log.
  core::KafkaAdmin admin(target.kafka);
  admin.ensure_topics(core::cauce_topics(target.kafka), partitions,
                      target.kafka.replication_factor);
  auto conf = core::kafka_producer_conf(
      target.kafka, {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "20"}});
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  if (!producer) throw core::DependencyError("kafka", "restore producer: " + err, false);
  for (int p = 0; p < partitions; ++p) {
    const auto high =
        high_watermark(*producer, target.kafka.events_topic, p, target.kafka.request_timeout_ms);
    if (high > 0) {
      throw BackupError("the event topic " + target.kafka.events_topic +
                        " is not empty; a restore needs an empty Kafka");
    }
  }
  auto pg = core::connect_postgres(core::postgres_conninfo(target.postgres));
  core::migrate(*pg, core::parse_migrations(core::embedded_migration_files()));
  {
    pqxx::work txn(*pg);
    if (txn.exec1("SELECT count(*) FROM projection_checkpoints")[0].as<std::int64_t>() > 0 ||
        txn.exec1("SELECT count(*) FROM events")[0].as<std::int64_t>() > 0) {
      throw BackupError("the database " + target.postgres.database +
                        " already holds read models; a restore needs an empty database");
    }
  }

  // Re-produce every partition in order (an idempotent producer keeps the order per partition).
  RestoreReport report;
  const auto total = manifest["events"].GetInt64();
  std::int64_t produced = 0;
  for (const auto& part : parts) {
    const auto partition = part["partition"].GetInt();
    const std::string file = part["file"].GetString();
    auto in = gz_open(directory / file, "rb");
    std::string pending;
    std::vector<char> chunk(1 << 16);
    for (;;) {
      const int n = gzread(in.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
      if (n < 0) throw BackupError(file + ": cannot be decompressed");
      pending.append(chunk.data(), static_cast<std::size_t>(n));
      std::size_t start = 0;
      for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
        rapidjson::Document line;
        line.Parse(pending.data() + start, nl - start);
        start = nl + 1;
        if (line.HasParseError() || !line.IsObject() || !line.HasMember("value") ||
            !line["value"].IsString() || !line.HasMember("key") || !line["key"].IsString()) {
          throw BackupError(file + ": a line is not an exported record");
        }
        std::vector<std::pair<std::string, std::string>> headers;
        if (line.HasMember("headers") && line["headers"].IsArray()) {
          for (const auto& h : line["headers"].GetArray()) {
            if (!h.IsArray() || h.Size() != 2 || !h[0].IsString() || !h[1].IsString()) {
              throw BackupError(file + ": a record's headers are not [name, value] pairs");
            }
            headers.emplace_back(h[0].GetString(),
                                 std::string(h[1].GetString(), h[1].GetStringLength()));
          }
        }
        const std::string_view key(line["key"].GetString(), line["key"].GetStringLength());
        const std::string_view value(line["value"].GetString(), line["value"].GetStringLength());
        for (;;) {
          const auto rc = core::kafka_produce(*producer, target.kafka.events_topic, partition, key,
                                              value, headers);
          if (rc == RdKafka::ERR_NO_ERROR) break;
          if (rc != RdKafka::ERR__QUEUE_FULL)
            throw core::DependencyError("kafka", RdKafka::err2str(rc), true);
          producer->poll(50);
        }
        producer->poll(0);
        if (++produced % 10000 == 0) progress("events", produced, total);
      }
      pending.erase(0, start);
      if (n == 0) break;
    }
    if (!pending.empty()) throw BackupError(file + ": ends in the middle of a record");
  }
  if (producer->flush(static_cast<int>(target.timeout.count() * 1000)) != RdKafka::ERR_NO_ERROR ||
      producer->outq_len() > 0) {
    throw core::DependencyError("kafka", "the restored events were not all acknowledged", true);
  }
  progress("events", produced, total);
  report.events = produced;

  // The read models: projected again from the restored log.
  std::map<std::int32_t, std::int64_t> ends;
  for (int p = 0; p < partitions; ++p) {
    const auto high =
        high_watermark(*producer, target.kafka.events_topic, p, target.kafka.request_timeout_ms);
    ends[p] = high;
  }
  prometheus::Registry registry;
  projections::Projector projector(projections::ProjectorOptions{.kafka = target.kafka,
                                                                 .postgres = target.postgres,
                                                                 .projections = target.projections,
                                                                 .schema = {}},
                                   registry);
  projector.start();
  const auto deadline = Clock::now() + target.timeout;
  std::int64_t last_reported = -1;
  for (;;) {
    std::int64_t done = 0;
    bool caught_up = true;
    pqxx::work txn(*pg);
    std::map<std::int32_t, std::int64_t> at;
    for (const auto& row :
         txn.exec_params("SELECT partition, next_offset FROM projection_checkpoints "
                         "WHERE projection = $1 AND topic = $2",
                         target.projections.name, target.kafka.events_topic)) {
      at[row[0].as<std::int32_t>()] = row[1].as<std::int64_t>();
    }
    txn.commit();
    for (const auto& [p, end] : ends) {
      const auto reached = at.count(p) ? at[p] : 0;
      done += std::min(reached, end);
      if (reached < end) caught_up = false;
    }
    std::int64_t all = 0;
    for (const auto& [p, end] : ends) all += end;
    if (done != last_reported) progress("read models", done, all);
    last_reported = done;
    if (caught_up) break;
    if (Clock::now() > deadline)
      throw std::runtime_error("the read models did not catch up in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  projector.stop();

  // The read models against the manifest's digests.
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> txn(*pg);
  // Over the columns the backup's database had: a backup taken before a migration that added
  // some (0013: reports.schedule_id, slot_at, source_auth) matches its restore.
  const auto& expected = manifest["read_models"]["tables"];
  const auto version = manifest.FindMember("database_schema_version");
  const auto digests =
      table_digests(txn, version != manifest.MemberEnd() && version->value.IsInt64()
                             ? version->value.GetInt64()
                             : std::numeric_limits<std::int64_t>::max());
  for (const auto& [table, digest] : digests) {
    if (!expected.HasMember(table.c_str())) continue;
    const auto& e = expected[table.c_str()];
    if (e["rows"].GetInt64() != digest.rows || digest.md5 != e["md5"].GetString()) {
      throw BackupError("read model " + table +
                        " differs after the restore: " + std::to_string(digest.rows) +
                        " rows, the backup had " + std::to_string(e["rows"].GetInt64()));
    }
    report.tables_checked.push_back(table);
  }
  {
    // The rendered reports go back under the target's data dir.
    for (const auto& f : manifest["files"].GetArray()) {
      const std::string name = f["name"].GetString();
      if (!name.starts_with("reports/") || !target.data_dir) continue;
      fs::create_directories(*target.data_dir / "reports");
      fs::copy_file(directory / name, *target.data_dir / name,
                    fs::copy_options::overwrite_existing);
    }
  }
  // Restored from a copy: the restored system goes on copying into that copy_to as its own.
  if (target.data_dir) adopt_installation(directory, *target.data_dir);
  return report;
}

}  // namespace cauce::workers
