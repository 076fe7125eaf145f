// Progress for long jobs on stderr: a redrawn bar on a terminal, a line every few seconds
// otherwise (logs, CI), nothing when quiet.
#pragma once

#include <chrono>
#include <string>

namespace squish {

class Progress {
 public:
  Progress(std::string label, size_t total, bool quiet = false);
  void update(size_t done, const std::string& detail = "");
  void finish(const std::string& detail = "");

 private:
  std::string label_;
  size_t total_;
  bool quiet_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace squish
