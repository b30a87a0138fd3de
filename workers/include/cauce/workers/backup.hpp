#pragma once

// Backups (DESIGN §5, workers/README.md): the event log exported per partition as gzipped NDJSON
// up to the offsets the read models had reached, a pg_dump of the read models taken in the same
// PostgreSQL snapshot, and a manifest with every file's size and sha256. `cauce restore`
// re-produces the log into an empty Kafka and rebuilds the read models from it.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::workers {

// A backup that is not what its manifest says (a file missing, of another size or checksum), or
// a directory that is not a backup. The message names the file.
class BackupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A copy that would take the place of another installation's, or of an intact copy of another
// backup with the same id: nothing is deleted, and running the copy again does not help.
class BackupCopyConflict : public BackupError {
 public:
  using BackupError::BackupError;
};

struct BackupSources {
  core::KafkaConfig kafka;
  core::PostgresConfig postgres;
  std::string projection = "main";  // projections.name: whose checkpoints bound the export
  std::chrono::seconds export_timeout{600};
  std::optional<std::filesystem::path> data_dir;  // its reports/*.pdf and *.source are copied in
};

struct BackupTaken {
  std::filesystem::path directory;
  std::int64_t bytes = 0;               // all files
  std::string manifest_sha256;          // of manifest.json
  std::vector<std::int64_t> positions;  // per partition: the export stops before this offset
  std::int64_t events = 0;
};

// Writes `<backups_dir>/<id>/` (under a temporary name until complete, then renamed; an older
// attempt's leftovers are replaced). Throws core::DependencyError when Kafka or PostgreSQL fail
// and std::runtime_error for anything else.
BackupTaken take_backup(const BackupSources& sources, const std::filesystem::path& backups_dir,
                        const std::string& id, std::int64_t now_us);

struct BackupSummary {
  std::string id;
  std::filesystem::path directory;
  std::int64_t created_at_us = 0;
  std::int64_t bytes = 0;
  std::int64_t events = 0;
};

// The complete backups under `backups_dir` (a directory with a manifest), oldest first.
// Temporary directories of backups being written are not listed.
std::vector<BackupSummary> list_backups(const std::filesystem::path& backups_dir);

// Checks every file against the manifest; throws BackupError naming the first that differs.
BackupSummary verify_backup(const std::filesystem::path& directory);

// The complete backups created before `now_us - retention`: what retention deletes.
std::vector<BackupSummary> expired_backups(const std::filesystem::path& backups_dir,
                                           std::int64_t now_us, std::chrono::hours retention);

struct BackupCopy {
  std::filesystem::path directory;  // <copy_root>/<id>
  std::int64_t bytes = 0;           // all files, as read back
  std::string manifest_sha256;      // of the copy's manifest.json, read back
};

// This installation's name (workers/README.md "Copies off the box"): 32 hex digits kept in
// `<data_dir>/installation`, written (with the data dir) the first time it is asked for.
std::string installation_id(const std::filesystem::path& data_dir);

// Makes `copy_root` this installation's: creates it (durably) and writes its marker file
// `cauce-installation` naming `installation` when it has none. Throws BackupCopyConflict when the
// marker names another installation, std::system_error / filesystem_error on I/O errors.
void claim_copy_root(const std::filesystem::path& copy_root, const std::string& installation);

// A restore from a copy into a data dir that has no installation yet: the data dir becomes the
// installation the copy's directory (the backup's parent) is marked with, so that the restored
// system goes on copying there. Nothing happens otherwise.
void adopt_installation(const std::filesystem::path& backup, const std::filesystem::path& data_dir);

// The off-box copy (backups.copy_to, workers/README.md "Copies off the box"): verifies the
// backup, claims `copy_root` for `installation`, writes every file under a temporary name in it,
// fsyncs each (and drops it from the page cache), reads the copy back against the manifest, then
// renames it to `<copy_root>/<id>` without replacing anything there and fsyncs `copy_root`. What
// is already at `<copy_root>/<id>`: this backup's intact copy is kept and returned; an intact copy
// of another backup is never touched (BackupCopyConflict naming both manifests' sha256); a broken
// one is renamed aside to `.<id>.broken-<unix seconds>-<random>` and copied again. Throws
// BackupError (naming the file) when the backup or the read-back differ, and
// std::filesystem::filesystem_error / std::system_error when the destination cannot be written.
BackupCopy copy_backup(const std::filesystem::path& backup, const std::filesystem::path& copy_root,
                       const std::string& installation);

// The complete backups under `directory` beyond the newest `keep`: what a copy's retention
// (backups.copy_keep) deletes, oldest first.
std::vector<BackupSummary> surplus_backups(const std::filesystem::path& directory,
                                           std::size_t keep);

// Progress of a long operation: what, done, total (0 when unknown).
using Progress = std::function<void(const std::string&, std::int64_t, std::int64_t)>;

struct RestoreTarget {
  core::KafkaConfig kafka;
  core::PostgresConfig postgres;
  core::ProjectionsConfig projections;
  std::optional<std::filesystem::path> data_dir;  // where the backup's reports/ files go
  std::chrono::seconds timeout{3600};
};

struct RestoreReport {
  std::int64_t events = 0;
  std::vector<std::string> tables_checked;
};

// Verifies the backup, refuses a target whose event topic is not empty, creates the topics,
// re-produces every partition's events (same keys, headers, values and per-partition order)
// and projects them into the (migrated) database, then compares the read models with the
// manifest's digests. Throws BackupError for a backup or a target that does not fit.
RestoreReport restore_backup(const std::filesystem::path& directory, const RestoreTarget& target,
                             const Progress& progress);

}  // namespace cauce::workers
