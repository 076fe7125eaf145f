#include "core/memory_check.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>

#include "core/error.h"
#include "core/sysinfo.h"

namespace squish {

namespace {
std::atomic<bool> g_memory_check{true};
}  // namespace

UsableMemory usable_memory() {
  if (const char* env = std::getenv("SQUISH_MEMORY_LIMIT"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (errno != 0 || end == env || *end != '\0' || env[0] == '-') {
      fail("SQUISH_MEMORY_LIMIT='{}' is not a number of bytes", env);
    }
    return {static_cast<uint64_t>(v), "SQUISH_MEMORY_LIMIT"};
  }
  const MemoryInfo m = memory_info();
  const uint64_t usable = m.usable();
  const bool cgroup_bound = m.cgroup_limit > 0 && usable < m.available;
  return {usable, cgroup_bound ? "cgroup memory.max headroom" : "MemAvailable"};
}

void set_memory_check_enabled(bool enabled) {
  g_memory_check = enabled;
}

bool memory_check_enabled() {
  return g_memory_check;
}

std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", v, kUnits[unit]);
}

void check_memory(const std::string& path, uint64_t need, const std::string& detail) {
  if (!memory_check_enabled()) return;
  const UsableMemory usable = usable_memory();
  if (need <= usable.bytes) return;
  fail("{}: needs {} of memory{}{}, but {} is available ({}); --no-memory-check runs it anyway",
       path, format_bytes(need), detail.empty() ? "" : " ", detail, format_bytes(usable.bytes),
       usable.source);
}

}  // namespace squish
