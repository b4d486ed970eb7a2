// SVG to PNG through rsvg-convert (librsvg2-bin): kat draws SVG only and leaves rasterising to
// the library every Linux desktop already has.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/plot.h"

extern char** environ;

namespace kat {
namespace {

// The program's path on PATH, or "" when it is not there.
std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate))
      return candidate;
    start = end + 1;
  }
  return "";
}

// Runs argv[0] with argv; returns its exit status (-1: did not exit) and what it wrote to stderr.
int run_program(const std::vector<std::string>& args, std::string& errors) {
  int pipe_fd[2];
  check(::pipe(pipe_fd) == 0, "cannot run ", args[0], ": ", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclose(&actions, pipe_fd[0]);
  posix_spawn_file_actions_adddup2(&actions, pipe_fd[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fd[1]);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fd[1]);
  if (spawned != 0) {
    ::close(pipe_fd[0]);
    fail("cannot run ", args[0], ": ", std::strerror(spawned));
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipe_fd[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) errors.append(buf, static_cast<size_t>(n));
  ::close(pipe_fd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

void write_svg_as_png(const std::string& svg, const std::string& png_path) {
  const std::string tool = find_on_path("rsvg-convert");
  check(!tool.empty(),
        "writing PNG needs rsvg-convert, which is not installed: apt-get install librsvg2-bin "
        "(or write .svg)");
  const std::string stem = png_path + ".tmp." + std::to_string(::getpid());
  write_file_atomic(stem + ".svg", svg);
  std::string errors;
  const int status =
      run_program({tool, "--format", "png", "--output", stem + ".png", stem + ".svg"}, errors);
  std::error_code ec;
  std::filesystem::remove(stem + ".svg", ec);
  if (status != 0) {
    std::filesystem::remove(stem + ".png", ec);
    const std::string first = errors.substr(0, errors.find('\n'));
    fail("rsvg-convert could not write ", png_path, ": ",
         first.empty() ? "exit status " + std::to_string(status) : first);
  }
  std::filesystem::rename(stem + ".png", png_path, ec);
  if (ec) {
    const std::string reason = ec.message();
    std::filesystem::remove(stem + ".png", ec);
    fail("cannot write ", png_path, ": ", reason);
  }
}

}  // namespace kat
