// Every output squish writes goes through AtomicFile: bytes go to a temporary file in the target's
// folder, and only commit() (fsync + rename) makes them visible under the final name. A crash,
// an exception or Ctrl-C before commit() leaves the previous file (or none), never a partial one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace squish {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates "<path>.tmp.<pid>" next to path
  ~AtomicFile();                          // removes the temp file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  uint64_t tell() const { return written_; }
  void commit();  // flush, fsync, rename over the target, fsync the folder

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string temp_path_;
  FILE* file_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Writes a whole string atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

// Installs SIGINT/SIGTERM handlers that delete any AtomicFile temp files still open, then exit
// with 128+signal. Called once by the CLI.
void install_interrupt_cleanup();

}  // namespace squish
