#include "calib/activation_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace squish {

ActivationCache::ActivationCache(size_t rows, size_t width, const std::string& dir)
    : rows_(rows), width_(width) {
  if (dir.empty()) {
    memory_.assign(rows * width, 0.0f);
    data_ = memory_.data();
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string tmpl = (std::filesystem::path(dir) / "squish-activations-XXXXXX").string();
  const int fd = mkstemp(tmpl.data());
  if (fd < 0) fail("{}: cannot create an activation file: {}", dir, std::strerror(errno));
  // The file has no name once mapped: nothing is left behind, whatever ends the process.
  unlink(tmpl.c_str());
  if (ftruncate(fd, static_cast<off_t>(bytes())) != 0) {
    const int e = errno;
    close(fd);
    fail("{}: cannot size a {} byte activation file: {}", dir, bytes(), std::strerror(e));
  }
  map_ = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("{}: cannot map the activation file: {}", dir, std::strerror(e));
  }
  data_ = static_cast<float*>(map_);
}

ActivationCache::~ActivationCache() {
  if (map_ != nullptr) munmap(map_, bytes());
}

}  // namespace squish
