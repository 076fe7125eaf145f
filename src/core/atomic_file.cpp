#include "core/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace squish {

namespace {

// Fixed-size table of open temp paths that the signal handler can read without allocating.
constexpr int kMaxOpen = 16;
constexpr size_t kMaxPath = 4096;
char g_temp_paths[kMaxOpen][kMaxPath];
std::atomic<bool> g_slot_used[kMaxOpen];

int register_temp(const std::string& path) {
  if (path.size() >= kMaxPath) return -1;
  for (int i = 0; i < kMaxOpen; ++i) {
    bool expected = false;
    if (g_slot_used[i].compare_exchange_strong(expected, true)) {
      std::memcpy(g_temp_paths[i], path.c_str(), path.size() + 1);
      return i;
    }
  }
  return -1;
}

void unregister_temp(const std::string& path) {
  for (int i = 0; i < kMaxOpen; ++i) {
    if (g_slot_used[i].load() && path == g_temp_paths[i]) {
      g_slot_used[i].store(false);
      return;
    }
  }
}

// Only async-signal-safe calls from here on: unlink, write, _exit.
extern "C" void cleanup_on_signal(int sig) {
  for (int i = 0; i < kMaxOpen; ++i) {
    if (g_slot_used[i].load()) unlink(g_temp_paths[i]);
  }
  const char* msg =
      sig == SIGINT    ? "squish: error: interrupted by SIGINT; no partial output was kept\n"
      : sig == SIGTERM ? "squish: error: interrupted by SIGTERM; no partial output was kept\n"
                       : "squish: error: interrupted by SIGHUP; no partial output was kept\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, std::strlen(msg));
  (void)ignored;
  _exit(128 + sig);
}

// Removes "<name>.tmp.<pid>" files next to `path` whose process is gone (a killed run on a
// filesystem without O_TMPFILE, or killed between link and rename in commit()).
void remove_stale_temps(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(it->path(), ec);
  }
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  temp_path_ = path_ + ".tmp." + std::to_string(getpid());
  remove_stale_temps(path_);
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) {  // no O_TMPFILE here (or the folder is missing: the named open says so)
    named_ = true;
    register_temp(temp_path_);
    fd = ::open(temp_path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0666);
  }
  if (fd >= 0) file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    if (named_) {
      std::remove(temp_path_.c_str());
      unregister_temp(temp_path_);
    }
    fail("{}: cannot create output: {}", path_, std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (named_ && !committed_) std::remove(temp_path_.c_str());
  unregister_temp(temp_path_);
}

void AtomicFile::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, file_) != n)
    fail("{}: write failed: {}", path_, std::strerror(errno));
  written_ += n;
}

void AtomicFile::write_zeros(size_t n) {
  static const char zeros[4096] = {};
  while (n > 0) {
    size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    write(zeros, k);
    n -= k;
  }
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0) fail("{}: flush failed: {}", path_, std::strerror(errno));
  if (fsync(fileno(file_)) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
  if (!named_) {
    // Name the unnamed file, then rename it over the target (rename replaces atomically; link
    // cannot). The signal handler removes the name if Ctrl-C lands in between.
    named_ = true;
    register_temp(temp_path_);
    std::remove(temp_path_.c_str());
    const std::string fd_path = "/proc/self/fd/" + std::to_string(fileno(file_));
    if (::linkat(AT_FDCWD, fd_path.c_str(), AT_FDCWD, temp_path_.c_str(), AT_SYMLINK_FOLLOW) != 0)
      fail("{}: cannot link the temp file: {}", path_, std::strerror(errno));
  }
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    fail("{}: cannot rename temp file into place: {}", path_, std::strerror(errno));
  }
  committed_ = true;
  std::filesystem::path dir = std::filesystem::absolute(path_).parent_path();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents.data(), contents.size());
  f.commit();
}

void install_interrupt_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = cleanup_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

}  // namespace squish
