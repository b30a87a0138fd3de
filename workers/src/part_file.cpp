#include "part_file.hpp"

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace cauce::workers {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

PartFile::PartFile(std::filesystem::path destination)
    : destination_(std::move(destination)), part_(destination_.string() + ".part") {}

PartFile::~PartFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!published_) {
    std::error_code ignored;
    std::filesystem::remove(part_, ignored);
  }
}

void PartFile::open_for_writing() {
  fd_ = ::open(part_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create " + part_.string());
}

bool PartFile::write(const char* data, std::size_t size) {
  while (size > 0) {
    const auto n = ::write(fd_, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void PartFile::publish() {
  if (fd_ < 0) fd_ = ::open(part_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("cannot open " + part_.string());
  const bool synced = ::fsync(fd_) == 0;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!synced || !closed) fail("cannot write " + part_.string());
  std::error_code ec;
  std::filesystem::rename(part_, destination_, ec);
  if (ec) throw std::system_error(ec, "cannot rename " + part_.string());
  published_ = true;
  fsync_path(destination_.has_parent_path() ? destination_.parent_path() : ".", true);
}

void fsync_path(const std::filesystem::path& path, bool directory, bool drop_cache) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) fail("open " + path.string());
  const int error = ::fsync(fd) == 0 ? 0 : errno;
  // Advice: nothing to check.
  if (error == 0 && drop_cache) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  if (error != 0) throw std::system_error(error, std::generic_category(), "fsync " + path.string());
}

}  // namespace cauce::workers
