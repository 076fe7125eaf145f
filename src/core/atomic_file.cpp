#include "core/atomic_file.h"

#include <fcntl.h>
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

extern "C" void cleanup_on_signal(int sig) {
  for (int i = 0; i < kMaxOpen; ++i) {
    if (g_slot_used[i].load()) unlink(g_temp_paths[i]);
  }
  _exit(128 + sig);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  temp_path_ = path_ + ".tmp." + std::to_string(getpid());
  register_temp(temp_path_);
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (file_ == nullptr) {
    unregister_temp(temp_path_);
    fail("{}: cannot create output: {}", path_, std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) std::remove(temp_path_.c_str());
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
}

}  // namespace squish
