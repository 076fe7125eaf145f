// The memory check before a model runs (issue #9): a command that would need more memory than
// the machine can give stops with one line naming the file, the need and what is available,
// instead of being killed by the kernel (or thrashing) halfway through.
//
// What counts as available: MemAvailable, capped by the cgroup's headroom (sysinfo.h), or the
// environment variable SQUISH_MEMORY_LIMIT (bytes; tests fake small machines with it). The global
// flag --no-memory-check (set_memory_check_enabled(false)) turns the check off.
// What a model needs is worked out by the caller (runtime/memory_need.h for the commands that
// evaluate a model); see docs/fuzzing.md, "Memory check", for what is counted and why.
#pragma once

#include <cstdint>
#include <string>

namespace squish {

struct UsableMemory {
  uint64_t bytes = 0;
  std::string source;  // "SQUISH_MEMORY_LIMIT", "MemAvailable" or "cgroup memory.max headroom"
};

// SQUISH_MEMORY_LIMIT when set (a malformed value is an error), else sysinfo's memory_info().
UsableMemory usable_memory();

void set_memory_check_enabled(bool enabled);
bool memory_check_enabled();

// "1.5 GiB", "12.0 MiB", "800 B": binary units, one decimal.
std::string format_bytes(uint64_t bytes);

// Throws squish::Error "<path>: needs <need> of memory <detail>, but <available> is available
// (<source>); --no-memory-check runs it anyway" when `need` exceeds the usable memory and the
// check is on. `detail` says what the need is made of, e.g. "(weights 1.0 GiB, KV cache ...)".
void check_memory(const std::string& path, uint64_t need, const std::string& detail);

}  // namespace squish
