// Every output squish writes goes through AtomicFile: bytes go to a temporary file in the target's
// folder, and only commit() (fsync + rename) makes them visible under the final name. A crash,
// an exception or Ctrl-C before commit() leaves the previous file (or none), never a partial one.
//
// The temporary file is unnamed (Linux O_TMPFILE) until commit() links it under
// "<path>.tmp.<pid>" and renames that over the target, so even kill -9 leaves no stray file in
// the folder: the kernel frees an unnamed file with its last descriptor. Where the filesystem
// has no O_TMPFILE the temporary file is named from the start; a later AtomicFile for the same
// path removes such leftovers of processes that no longer exist.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace squish {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates the temporary file next to path
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
  bool named_ = false;  // the temp file has a name (no O_TMPFILE): remove it unless committed
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Writes a whole string atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

// Installs SIGINT/SIGTERM/SIGHUP handlers that delete any AtomicFile temp files still named,
// print one line ("squish: error: interrupted by SIGINT; no partial output was kept") and exit
// with 128+signal. Called once by the CLI.
void install_interrupt_cleanup();

}  // namespace squish
