#include "core/sysinfo.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SQUISH_X86 1
#endif

namespace squish {

namespace fs = std::filesystem;

namespace {

#ifdef SQUISH_X86
struct Regs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf) {
  Regs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return Regs{};
  return r;
}

uint64_t xgetbv0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

bool bit(unsigned reg, int n) {
  return (reg >> n) & 1u;
}

// First line of a small text file, or "".
std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

uint64_t parse_u64(const std::string& s) {
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') break;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  return v;
}

// This process's memory cgroup: the v2 folder ("0::/path" in /proc/self/cgroup) with its file
// names, or, on a v1 (or hybrid) hierarchy, the memory controller's folder ("N:memory:/path").
struct MemoryCgroup {
  std::string limit, current, stat, reclaimable_key;  // empty limit: none found
};
MemoryCgroup memory_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, v1;
  const MemoryCgroup none;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) {
      const std::string dir = "/sys/fs/cgroup" + line.substr(3);
      if (fs::exists(dir + "/memory.max")) {
        return {dir + "/memory.max", dir + "/memory.current", dir + "/memory.stat",
                "inactive_file "};
      }
    }
    const size_t colon = line.find(':');
    if (colon != std::string::npos && line.compare(colon, 8, ":memory:") == 0) {
      v1 = "/sys/fs/cgroup/memory" + line.substr(colon + 8);
    }
  }
  if (!v1.empty() && fs::exists(v1 + "/memory.limit_in_bytes")) {
    return {v1 + "/memory.limit_in_bytes", v1 + "/memory.usage_in_bytes", v1 + "/memory.stat",
            "total_inactive_file "};
  }
  return none;
}

}  // namespace

std::vector<CpuFeature> cpu_features() {
  std::vector<CpuFeature> f = {
      {"AVX2", "avx2"},
      {"FMA", "fma"},
      {"F16C", "f16c"},
      {"AVX-512 F", "avx512f"},
      {"AVX-512 BW", "avx512bw"},
      {"AVX-512 VL", "avx512vl"},
      {"AVX-512 VNNI", "avx512_vnni"},
      {"AVX-512 BF16", "avx512_bf16"},
      {"AVX-VNNI", "avx_vnni"},
      {"AMX tile", "amx_tile"},
      {"AMX int8", "amx_int8"},
      {"AMX bf16", "amx_bf16"},
  };
#ifdef SQUISH_X86
  const Regs l1 = cpuid(1, 0);
  const unsigned max_leaf = cpuid(0, 0).eax;
  const Regs l7 = max_leaf >= 7 ? cpuid(7, 0) : Regs{};
  const Regs l7s1 = max_leaf >= 7 && l7.eax >= 1 ? cpuid(7, 1) : Regs{};
  // XCR0 may only be read when the OS set CR4.OSXSAVE (cpuid.1:ecx bit 27).
  const uint64_t xcr0 = bit(l1.ecx, 27) ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;                    // XMM + YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;     // opmask + ZMM state
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG + XTILEDATA
  const bool cpu_avx = bit(l1.ecx, 28);
  const bool cpu[] = {
      bit(l7.ebx, 5) && cpu_avx,  // AVX2
      bit(l1.ecx, 12),            // FMA
      bit(l1.ecx, 29),            // F16C
      bit(l7.ebx, 16),            // AVX-512 F
      bit(l7.ebx, 30),            // AVX-512 BW
      bit(l7.ebx, 31),            // AVX-512 VL
      bit(l7.ecx, 11),            // AVX-512 VNNI
      bit(l7s1.eax, 5),           // AVX-512 BF16
      bit(l7s1.eax, 4),           // AVX-VNNI
      bit(l7.edx, 24),            // AMX tile
      bit(l7.edx, 25),            // AMX int8
      bit(l7.edx, 22),            // AMX bf16
  };
  const bool os[] = {os_avx,    os_avx,    os_avx, os_avx512, os_avx512, os_avx512,
                     os_avx512, os_avx512, os_avx, os_amx,    os_amx,    os_amx};
  for (size_t i = 0; i < f.size(); ++i) {
    f[i].cpu = cpu[i];
    f[i].os = os[i];
  }
#endif
  return f;
}

std::string cpu_model_name() {
#ifdef SQUISH_X86
  if (cpuid(0x80000000u, 0).eax >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002u + i, 0);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    std::string s(brand);
    const size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
    if (b != std::string::npos) return s.substr(b, e - b + 1);
  }
#endif
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      if (auto colon = line.find(':'); colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "";
}

CoreInfo core_info() {
  CoreInfo c;
  c.logical = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  CPU_ZERO(&set);
  c.allowed = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : c.logical;
  std::set<std::pair<std::string, std::string>> cores;
  std::ifstream in("/proc/cpuinfo");
  std::string line, package;
  auto value = [](const std::string& l) {
    auto colon = l.find(':');
    return colon == std::string::npos ? std::string() : l.substr(colon + 1);
  };
  while (std::getline(in, line)) {
    if (line.rfind("physical id", 0) == 0) package = value(line);
    if (line.rfind("core id", 0) == 0) cores.insert({package, value(line)});
  }
  c.physical = cores.empty() ? c.logical : static_cast<int>(cores.size());
  return c;
}

uint64_t MemoryInfo::usable() const {
  uint64_t u = available;
  if (cgroup_limit > 0) {
    const uint64_t used = cgroup_current - std::min(cgroup_reclaimable, cgroup_current);
    const uint64_t headroom = cgroup_limit > used ? cgroup_limit - used : 0;
    u = std::min(u, headroom);
  }
  return u;
}

MemoryInfo memory_info() {
  MemoryInfo m;
  m.total = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      m.available = parse_u64(line.substr(line.find_first_of("0123456789"))) * 1024;
    }
  }
  if (m.available == 0) m.available = m.total;
  const MemoryCgroup g = memory_cgroup();
  if (!g.limit.empty()) {
    const std::string max = read_first_line(g.limit);
    // v2 writes "max" for no limit; v1 a page-rounded 2^63 - 1.
    if (!max.empty() && max != "max") m.cgroup_limit = parse_u64(max);
    if (m.cgroup_limit >= (uint64_t{1} << 62)) m.cgroup_limit = 0;
    if (m.cgroup_limit > 0) {
      m.cgroup_current = parse_u64(read_first_line(g.current));
      std::ifstream stat(g.stat);
      std::string stat_line;
      while (std::getline(stat, stat_line)) {
        if (stat_line.rfind(g.reclaimable_key, 0) == 0) {
          m.cgroup_reclaimable = parse_u64(stat_line.substr(g.reclaimable_key.size()));
        }
      }
    }
  }
  return m;
}

std::vector<std::string> nvidia_gpus_from_proc(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  std::vector<fs::path> gpus;
  for (const auto& e : fs::directory_iterator(dir, ec)) gpus.push_back(e.path());
  std::sort(gpus.begin(), gpus.end());
  for (const fs::path& g : gpus) {
    std::ifstream in(g / "information");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("Model:", 0) == 0) {
        std::string name = line.substr(6);
        name.erase(0, name.find_first_not_of(" \t"));
        if (!name.empty()) names.push_back(name);
      }
    }
  }
  return names;
}

std::vector<std::string> gpu_names() {
  std::vector<std::string> names = nvidia_gpus_from_proc("/proc/driver/nvidia/gpus");
  if (!names.empty()) return names;
  // nvidia-smi only when it is installed: a shell's "not found" must not reach the user.
  bool on_path = false;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string d;
    while (std::getline(ss, d, ':'))
      on_path |= !d.empty() && access((d + "/nvidia-smi").c_str(), X_OK) == 0;
  }
  if (!on_path) return names;
  if (FILE* p = popen("nvidia-smi -L 2>/dev/null", "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr && names.size() < 64) {
      std::string line(buf);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      if (line.rfind("GPU ", 0) == 0) names.push_back(line);  // "GPU 0: NVIDIA H100 (UUID: ...)"
    }
    pclose(p);
  }
  return names;
}

uint64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      const size_t digits = line.find_first_of("0123456789");
      if (digits != std::string::npos) return parse_u64(line.substr(digits)) * 1024;
    }
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace squish
