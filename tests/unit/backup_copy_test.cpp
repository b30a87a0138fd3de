// copy_backup (workers/README.md "Copies off the box") on plain directories: what it does with a
// copy already at <copy_to>/<id>, and with a copy_to another installation writes into.

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/backup.hpp>

namespace cauce::workers {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

class BackupCopyFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cauce-backup-copy-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A backup as take_backup leaves it: one data file, its manifest and the manifest's checksum.
  // `content` makes two backups of one id differ.
  fs::path backup(const std::string& where, const std::string& id, const std::string& content) {
    const auto directory = dir_ / where / id;
    fs::create_directories(directory);
    write_text(directory / "events-0.ndjson.gz", content);
    const auto sha = core::sha256_file_hex((directory / "events-0.ndjson.gz").string());
    write_text(directory / "manifest.json",
               R"({"format":1,"id":")" + id + R"(","created_at":"2026-12-05T18:00:00.000000Z",)" +
                   R"("files":[{"name":"events-0.ndjson.gz","bytes":)" +
                   std::to_string(content.size()) + R"(,"sha256":")" + sha + R"("}]})" + "\n");
    write_text(directory / "manifest.sha256",
               core::sha256_file_hex((directory / "manifest.json").string()) + "  manifest.json\n");
    return directory;
  }

  fs::path copies() const { return dir_ / "copies"; }

  // The names in `directory` (files and directories, hidden ones too).
  std::set<std::string> names_in(const fs::path& directory) const {
    std::set<std::string> out;
    for (const auto& entry : fs::directory_iterator(directory)) {
      out.insert(entry.path().filename().string());
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(BackupCopyFilesTest, ACopyIsVerifiedThereAndKeptWhenCopiedAgain) {
  const auto local = backup("local", "b1", "events of b1");
  const auto first = copy_backup(local, copies(), "installation-a");
  EXPECT_EQ(first.directory, copies() / "b1");
  EXPECT_EQ(first.manifest_sha256, core::sha256_file_hex((local / "manifest.json").string()));
  EXPECT_EQ(read_text(copies() / "b1" / "events-0.ndjson.gz"), "events of b1");
  const auto again = copy_backup(local, copies(), "installation-a");
  EXPECT_EQ(again.directory, first.directory);
  EXPECT_EQ(again.manifest_sha256, first.manifest_sha256);
}

// A copy that verifies but is another backup of the same id (a restored system copying its
// in-flight backup again, a lapsed lease's other worker): never deleted, the copy fails for good
// naming both checksums.
TEST_F(BackupCopyFilesTest, AnIntactCopyOfAnotherBackupWithTheSameIdIsNeverReplaced) {
  const auto theirs = backup("theirs", "b1", "the copy a system was restored from");
  copy_backup(theirs, copies(), "installation-a");
  const auto theirs_sha = core::sha256_file_hex((theirs / "manifest.json").string());
  const auto ours = backup("ours", "b1", "the restored system's own b1");
  const auto ours_sha = core::sha256_file_hex((ours / "manifest.json").string());
  try {
    copy_backup(ours, copies(), "installation-a");
    ADD_FAILURE() << "a copy of another backup was replaced";
  } catch (const BackupCopyConflict& e) {
    EXPECT_THAT(e.what(), HasSubstr(theirs_sha));
    EXPECT_THAT(e.what(), HasSubstr(ours_sha));
  }
  EXPECT_EQ(read_text(copies() / "b1" / "events-0.ndjson.gz"),
            "the copy a system was restored from");
  EXPECT_NO_THROW(verify_backup(copies() / "b1"));
  for (const auto& name : names_in(copies())) {
    EXPECT_FALSE(name.ends_with(".tmp")) << name << ": the attempt's own files are removed";
  }
}

// A copy that does not verify (a file damaged) is set aside, not deleted, and copied again.
TEST_F(BackupCopyFilesTest, ABrokenCopyIsSetAsideAndCopiedAgain) {
  const auto local = backup("local", "b1", "events of b1");
  copy_backup(local, copies(), "installation-a");
  write_text(copies() / "b1" / "events-0.ndjson.gz", "damaged");
  const auto copied = copy_backup(local, copies(), "installation-a");
  EXPECT_NO_THROW(verify_backup(copied.directory));
  EXPECT_EQ(read_text(copies() / "b1" / "events-0.ndjson.gz"), "events of b1");
  std::vector<std::string> aside;
  for (const auto& name : names_in(copies())) {
    if (name.starts_with(".b1.broken-")) aside.push_back(name);
  }
  ASSERT_EQ(aside.size(), 1u) << "the broken copy is kept beside it, hidden from the listings";
  EXPECT_EQ(read_text(copies() / aside[0] / "events-0.ndjson.gz"), "damaged");
  EXPECT_EQ(list_backups(copies()).size(), 1u);
}

// One copy_to per installation: the first copy names this one in a marker file; another
// installation's copies are refused before anything is written.
TEST_F(BackupCopyFilesTest, ACopyToOfAnotherInstallationIsRefused) {
  copy_backup(backup("a", "b1", "a's b1"), copies(), "installation-a");
  EXPECT_THAT(read_text(copies() / "cauce-installation"), HasSubstr("installation-a"));
  try {
    copy_backup(backup("b", "b2", "b's b2"), copies(), "installation-b");
    ADD_FAILURE() << "another installation's copy_to was written";
  } catch (const BackupCopyConflict& e) {
    EXPECT_THAT(e.what(), HasSubstr("installation-a"));
    EXPECT_THAT(e.what(), HasSubstr("installation-b"));
  }
  EXPECT_FALSE(fs::exists(copies() / "b2"));
  EXPECT_NO_THROW(claim_copy_root(copies(), "installation-a"));
  EXPECT_THROW(claim_copy_root(copies(), "installation-b"), BackupCopyConflict);
}

// The installation's name lives in the data dir, written the first time it is asked for; a
// restore from a copy into a data dir without one takes the copy's installation.
TEST_F(BackupCopyFilesTest, TheInstallationIsKeptInTheDataDirAndTakenOverFromACopy) {
  const auto first = installation_id(dir_ / "data");
  EXPECT_EQ(first.size(), 32u);
  EXPECT_EQ(installation_id(dir_ / "data"), first);
  EXPECT_NE(installation_id(dir_ / "other"), first);
  copy_backup(backup("local", "b1", "events of b1"), copies(), first);
  adopt_installation(copies() / "b1", dir_ / "restored");
  EXPECT_EQ(installation_id(dir_ / "restored"), first);
  adopt_installation(copies() / "b1", dir_ / "other");
  EXPECT_NE(installation_id(dir_ / "other"), first) << "a data dir keeps its own";
}

TEST_F(BackupCopyFilesTest, ACopyToCreatedForTheCopyHoldsIt) {
  const auto root = dir_ / "mnt" / "nas" / "cauce";
  const auto copied = copy_backup(backup("local", "b1", "events of b1"), root, "installation-a");
  EXPECT_EQ(copied.directory, root / "b1");
  EXPECT_NO_THROW(verify_backup(root / "b1"));
}

}  // namespace
}  // namespace cauce::workers
