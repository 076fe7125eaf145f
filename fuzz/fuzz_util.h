// Shared by the libFuzzer targets: most squish parsers take a path (they memory-map or read the
// file), so each input is written to one anonymous in-memory file (memfd) and handed over as
// /proc/self/fd/N. No disk I/O, and the parsers run exactly as they do on real files.
//
// A target returns normally for accepted input and for squish::Error (a clean rejection). Any
// other exception escapes and libFuzzer reports it as a crash (deliberately: a parser must not
// leak std::out_of_range, nlohmann::json errors, std::bad_alloc, ...).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace squish_fuzz {

class MemFile {
 public:
  MemFile() {
    fd_ = memfd_create("squish_fuzz_input", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  // Replaces the file's contents with `data` and returns its path.
  const std::string& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 || (size > 0 && pwrite(fd_, data, size, 0) != ssize_t(size))) {
      std::perror("memfd write");
      std::abort();
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

// One per process: libFuzzer runs inputs one at a time in a process (-jobs forks processes).
inline MemFile& input_file() {
  static MemFile file;
  return file;
}

}  // namespace squish_fuzz
