#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include <pqxx/pqxx>

#include <cauce/core/crypto.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>

namespace cauce::core {
namespace {

// Any fixed number: the key of the session advisory lock serialising migrations.
constexpr long long kMigrationLockKey = 0x63617563650001;  // "cauce" 0001

}  // namespace

std::vector<MigrationFile> read_migration_files(const std::filesystem::path& dir) {
  std::vector<MigrationFile> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".sql") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    out.push_back({entry.path().filename().string(), text.str()});
  }
  if (ec) throw std::invalid_argument("cannot read migrations from " + dir.string());
  return out;
}

std::vector<Migration> parse_migrations(const std::vector<MigrationFile>& files) {
  std::vector<Migration> out;
  std::set<int> versions;
  for (const auto& file : files) {
    const auto& name = file.file_name;
    const auto underscore = name.find('_');
    int version = 0;
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + underscore, version);
    if (underscore == std::string::npos || underscore == 0 || ec != std::errc{} ||
        ptr != name.data() + underscore || version <= 0 || !name.ends_with(".sql")) {
      throw std::invalid_argument("migration file name must look like 0001_name.sql: " + name);
    }
    if (!versions.insert(version).second) {
      throw std::invalid_argument("two migration files have version " + std::to_string(version));
    }
    out.push_back({version, name.substr(underscore + 1, name.size() - underscore - 5), name,
                   file.sql, sha256_hex(file.sql)});
  }
  std::sort(out.begin(), out.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  return out;
}

MigrationReport migrate(pqxx::connection& connection, const std::vector<Migration>& migrations) {
  const Logger log("migrations");
  MigrationReport report;
  {
    pqxx::nontransaction n(connection);
    n.exec("SET client_min_messages = warning");
    n.exec1("SELECT pg_advisory_lock(" + std::to_string(kMigrationLockKey) + ")");
  }
  struct Unlock {
    pqxx::connection& c;
    ~Unlock() {
      try {
        pqxx::nontransaction n(c);
        n.exec1("SELECT pg_advisory_unlock(" + std::to_string(kMigrationLockKey) + ")");
      } catch (const std::exception&) {
        // The lock is session-scoped: a broken connection released it already.
      }
    }
  } unlock{connection};

  {
    pqxx::work w(connection);
    w.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
    w.exec(
        "COMMENT ON TABLE schema_migrations IS "
        "'Migrations from infra/sql/ applied by cauce; checksum = sha256 of the file'");
    w.commit();
  }

  std::map<int, std::pair<std::string, std::string>> applied;  // version -> (name, checksum)
  {
    pqxx::read_transaction r(connection);
    for (const auto& row : r.exec("SELECT version, name, checksum FROM schema_migrations")) {
      applied[row[0].as<int>()] = {row[1].as<std::string>(), row[2].as<std::string>()};
    }
  }
  for (const auto& [version, entry] : applied) {
    const auto it = std::find_if(migrations.begin(), migrations.end(),
                                 [v = version](const Migration& m) { return m.version == v; });
    if (it == migrations.end()) {
      throw MigrationError("the database has migration " + std::to_string(version) + " (" +
                           entry.first + ") which this build does not know; refusing to start");
    }
    if (it->checksum != entry.second) {
      throw MigrationError(
          "migration " + it->file_name + " was changed after it was applied (checksum " +
          entry.second.substr(0, 12) + "… in the database, " + it->checksum.substr(0, 12) +
          "… on disk); add a new migration instead of editing an applied one");
    }
  }

  for (const auto& m : migrations) {
    if (applied.contains(m.version)) {
      ++report.already_applied;
      continue;
    }
    pqxx::work w(connection);
    w.exec(m.sql);
    w.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                  m.version, m.name, m.checksum);
    w.commit();
    log.info("migration applied", {{"version", m.version}, {"name", m.name}});
    report.applied.push_back(m.file_name);
  }
  return report;
}

}  // namespace cauce::core
