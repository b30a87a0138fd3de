#pragma once

// Where a worker's output is written until it is complete: "<destination>.part". publish()
// makes it durable (fsync), renames it over the destination and fsyncs the directory, so the
// destination exists whole or not at all; a part that is not published is removed.

#include <cstddef>
#include <filesystem>
#include <string>

namespace cauce::workers {

// fsync of a file or a directory (the entry a rename made); throws std::system_error. With
// `drop_cache`, the file's pages are then dropped from the page cache, so that reading it back
// (a backup copy's check) reads what the storage holds rather than what this process wrote (on
// NFS: what the server has).
void fsync_path(const std::filesystem::path& path, bool directory, bool drop_cache = false);

class PartFile {
 public:
  explicit PartFile(std::filesystem::path destination);
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;
  ~PartFile();

  // The part's path, for writers that open it themselves (cairo).
  const std::filesystem::path& path() const { return part_; }
  // For writers that stream into it (a download). Throws std::system_error.
  void open_for_writing();
  bool write(const char* data, std::size_t size);  // false on a write error (errno set)
  // Throws std::system_error; the part is gone either way once this returns or throws.
  void publish();

 private:
  std::filesystem::path destination_;
  std::filesystem::path part_;
  int fd_ = -1;
  bool published_ = false;
};

}  // namespace cauce::workers
