#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace squish {

Progress::Progress(std::string label, size_t total, bool quiet)
    : label_(std::move(label)), total_(total), quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {
  start_ = last_ = std::chrono::steady_clock::now();
}

void Progress::update(size_t done, const std::string& detail) {
  if (quiet_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  if (!tty_ && since_last < 5.0 && done != total_) return;
  if (tty_ && since_last < 0.1 && done != total_) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = total_ ? static_cast<double>(done) / total_ : 1.0;
  const double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
  if (tty_) {
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %zu/%zu %.0fs eta %.0fs %s\033[K", label_.c_str(), bar.c_str(),
                 done, total_, elapsed, eta, detail.c_str());
  } else {
    std::fprintf(stderr, "%s: %zu/%zu (%.0f%%) %.0fs eta %.0fs %s\n", label_.c_str(), done, total_,
                 frac * 100, elapsed, eta, detail.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& detail) {
  if (quiet_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "%s%s: done in %.1fs %s\n", tty_ ? "\r\033[K" : "", label_.c_str(), elapsed,
               detail.c_str());
}

}  // namespace squish
