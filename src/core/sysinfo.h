// What this machine offers a model: CPU instruction sets (cpuid, with the OS's consent read from
// XCR0 through xgetbv: an instruction set the OS does not save on context switches is unusable),
// cores, memory (including a cgroup limit when running in a container), GPUs, and this process's
// peak resident memory. Used by `squish doctor` and `squish bench`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace squish {

struct CpuFeature {
  const char* name;          // "AVX-512 VNNI"
  const char* cpuinfo_flag;  // the Linux /proc/cpuinfo flag for the same feature: "avx512_vnni"
  bool cpu = false;          // cpuid reports it
  bool os = false;           // the OS enabled its register state (XCR0)
  bool usable() const { return cpu && os; }
};

// AVX2, FMA, F16C, AVX-512 F/BW/VL/VNNI/BF16, AVX-VNNI, AMX tile/int8/bf16, in that order.
// On a non-x86 build every feature reads as absent.
std::vector<CpuFeature> cpu_features();
std::string cpu_model_name();  // cpuid brand string, or /proc/cpuinfo "model name", or ""

struct CoreInfo {
  int logical = 0;   // online logical CPUs
  int physical = 0;  // distinct (package, core) pairs in /proc/cpuinfo; = logical when unknown
  int allowed = 0;   // CPUs this process may run on (affinity mask)
};
CoreInfo core_info();

struct MemoryInfo {
  uint64_t total = 0;           // physical memory
  uint64_t available = 0;       // MemAvailable from /proc/meminfo (free + reclaimable)
  uint64_t cgroup_limit = 0;    // memory.max of this process's cgroup (v1: limit_in_bytes; 0: none)
  uint64_t cgroup_current = 0;  // memory.current of the same cgroup (v1: usage_in_bytes)
  // inactive_file (v1: total_inactive_file) of the cgroup's memory.stat: page cache the kernel
  // reclaims before it would kill anything (memory.current counts it; a model file read earlier
  // sits there).
  uint64_t cgroup_reclaimable = 0;
  // What a new model can count on: MemAvailable, capped by the cgroup's headroom
  // (memory.max - memory.current + inactive_file).
  uint64_t usable() const;
};
MemoryInfo memory_info();

// NVIDIA GPUs: the "Model:" lines of /proc/driver/nvidia/gpus/*/information, else the lines of
// `nvidia-smi -L` when that program is on PATH; empty when neither finds one.
std::vector<std::string> gpu_names();
// The /proc part, reading from `dir` (tests point it at a fake tree).
std::vector<std::string> nvidia_gpus_from_proc(const std::string& dir);

// Peak resident set size of this process in bytes (VmHWM; getrusage's ru_maxrss as fallback).
uint64_t peak_rss_bytes();

}  // namespace squish
