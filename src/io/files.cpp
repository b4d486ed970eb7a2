// Whole-file reads and atomic writes (temporary file beside the target, fsync, rename).
#include "kat/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kat/error.h"

namespace kat {
namespace {

std::string os_reason() { return std::strerror(errno); }

}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  check(!std::filesystem::is_directory(path, ec), path, ": is a directory, not a file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  check(fd >= 0, "cannot open ", path, ": ", os_reason());
  std::vector<uint8_t> data;
  uint8_t chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string reason = os_reason();
      ::close(fd);
      fail("cannot read ", path, ": ", reason);
    }
    if (n == 0) break;
    data.insert(data.end(), chunk, chunk + n);
  }
  ::close(fd);
  return data;
}

std::string read_text_file(const std::string& path) {
  const std::vector<uint8_t> data = read_file(path);
  return std::string(data.begin(), data.end());
}

void write_file_atomic(const std::string& path, std::string_view data) {
  namespace fs = std::filesystem;
  static std::atomic<int> counter{0};
  const fs::path target(path);
  std::error_code ec;
  check(!fs::is_directory(target, ec), path, ": is a directory, cannot write a file there");
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(fd >= 0, "cannot write ", path, ": ", os_reason());
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = os_reason();
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("cannot write ", path, ": ", reason);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int sync_errno = errno;
  const bool closed = ::close(fd) == 0;
  if (!synced) errno = sync_errno;
  if (!synced || !closed) {
    const std::string reason = os_reason();
    ::unlink(tmp.c_str());
    fail("cannot write ", path, ": ", reason);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = os_reason();
    ::unlink(tmp.c_str());
    fail("cannot write ", path, ": ", reason);
  }
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

}  // namespace kat
