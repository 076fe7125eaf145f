// `squish doctor` and core/sysinfo: the CPU features reported are the ones Linux reports in
// /proc/cpuinfo, machine facts are sane, GPU discovery parses the NVIDIA driver's /proc tree, and
// with a model the table lists every quantization type with a measured kernel rate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/sysinfo.h"
#include "quant/mix.h"
#include "test_util.h"

namespace squish {
namespace {

using nlohmann::json;

using test::CmdResult;
using test::run_squish;

// The flags of the first processor in /proc/cpuinfo.
std::set<std::string> cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::stringstream ss(line.substr(line.find(':') + 1));
      std::string f;
      while (ss >> f) flags.insert(f);
      break;
    }
  }
  return flags;
}

TEST(Sysinfo, CpuFeaturesAgreeWithProcCpuinfo) {
  const std::set<std::string> flags = cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags (not x86 Linux)";
  const std::vector<CpuFeature> features = cpu_features();
  ASSERT_EQ(features.size(), 12u);
  for (const CpuFeature& f : features) {
    // Linux lists a feature only when the CPU has it and the kernel enabled its state.
    EXPECT_EQ(f.usable(), flags.count(f.cpuinfo_flag) == 1) << f.name;
  }
}

TEST(Sysinfo, MachineFactsAreSane) {
  const CoreInfo c = core_info();
  EXPECT_GE(c.logical, 1);
  EXPECT_GE(c.physical, 1);
  EXPECT_LE(c.physical, c.logical);
  EXPECT_GE(c.allowed, 1);
  EXPECT_LE(c.allowed, c.logical);
  const MemoryInfo m = memory_info();
  EXPECT_GT(m.total, 64ull << 20);
  EXPECT_GT(m.available, 0u);
  EXPECT_LE(m.available, m.total);
  EXPECT_LE(m.usable(), m.available);
  MemoryInfo capped = m;
  capped.cgroup_limit = 1000;
  capped.cgroup_current = 400;
  EXPECT_EQ(capped.usable(), 600u);
  capped.cgroup_current = 2000;  // over the limit: nothing left
  EXPECT_EQ(capped.usable(), 0u);
  // This test process has touched memory: its peak is at least a few pages.
  std::vector<char> touch(8 << 20, 1);
  EXPECT_GE(peak_rss_bytes(), touch.size());
}

TEST(Sysinfo, NvidiaProcTree) {
  test::TempDir tmp;
  namespace fs = std::filesystem;
  fs::create_directories(tmp.path / "0000:01:00.0");
  fs::create_directories(tmp.path / "0000:02:00.0");
  test::write_bytes(tmp.file("0000:01:00.0/information"),
                    "Model: \t NVIDIA H100 80GB HBM3\nIRQ:   42\nGPU UUID: GPU-1\n");
  test::write_bytes(tmp.file("0000:02:00.0/information"), "IRQ: 7\nModel: NVIDIA L4\n");
  EXPECT_EQ(nvidia_gpus_from_proc(tmp.path.string()),
            (std::vector<std::string>{"NVIDIA H100 80GB HBM3", "NVIDIA L4"}));
  EXPECT_TRUE(nvidia_gpus_from_proc(tmp.file("missing")).empty());
}

TEST(Doctor, ReportsThisMachine) {
  CmdResult r = run_squish("doctor --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  const std::set<std::string> flags = cpuinfo_flags();
  ASSERT_EQ(j["cpu"]["features"].size(), 12u);
  for (const json& f : j["cpu"]["features"]) {
    if (flags.empty()) break;
    EXPECT_EQ(f["usable"].get<bool>(), flags.count(f["cpuinfo_flag"].get<std::string>()) == 1)
        << f["name"];
  }
  EXPECT_GE(j["cpu"]["logical_cores"].get<int>(), 1);
  EXPECT_GT(j["memory"]["total_bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(j["gpus"].is_array());

  CmdResult text = run_squish("doctor");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (const char* needle : {"cpu:", "cores:", "features:", "kernels:", "memory:", "gpus:"})
    EXPECT_NE(text.out.find(needle), std::string::npos) << needle << " in\n" << text.out;
  if (flags.count("avx2")) {
    EXPECT_NE(text.out.find("AVX2"), std::string::npos);
  }
}

TEST(Doctor, ModelTableListsEveryType) {
  const std::string model = test::shared_path("models/gcide-llama-16M");
  CmdResult r = run_squish("doctor " + model + " --json --ctx 512 --bench-ms 300");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  std::set<std::string> listed;
  for (const json& t : j["types"]) {
    listed.insert(t["type"].get<std::string>());
    EXPECT_GT(t["kernel_gb_per_s"].get<double>(), 0) << t["type"];
    EXPECT_GT(t["decode_tokens_per_second_estimate"].get<double>(), 0) << t["type"];
    EXPECT_GT(t["weight_bytes"].get<uint64_t>(), 0u);
    // A 16M-parameter model fits in any test machine's memory.
    EXPECT_TRUE(t["fits"].get<bool>()) << t["type"];
    EXPECT_EQ(t["memory_needed_bytes"].get<uint64_t>(),
              t["weight_bytes"].get<uint64_t>() + j["model"]["kv_cache_bytes"].get<uint64_t>() +
                  j["model"]["scratch_bytes_estimate"].get<uint64_t>());
  }
  std::set<std::string> mixes;
  for (const QuantMix& m : quant_mixes()) mixes.insert(m.name);
  EXPECT_EQ(listed, mixes);
  // gcide-llama-16M: 6 layers, 2 KV heads of 64 → 6 * 512 * 128 * 2 * 4 bytes.
  EXPECT_EQ(j["model"]["kv_cache_bytes"].get<uint64_t>(), 6ull * 512 * 128 * 2 * 4);
  // Sizes follow the mixes: Q8_0 is larger than Q4_K_M, which is larger than Q2_K.
  auto bytes = [&](const std::string& type) {
    for (const json& t : j["types"])
      if (t["type"] == type) return t["weight_bytes"].get<uint64_t>();
    return uint64_t{0};
  };
  EXPECT_GT(bytes("Q8_0"), bytes("Q4_K_M"));
  EXPECT_GT(bytes("Q4_K_M"), bytes("Q2_K"));
  EXPECT_EQ(j["recommendation"]["balanced"], "Q4_K_M");

  CmdResult text = run_squish("doctor " + model + " --bench-ms 100");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (const std::string& m : mixes)
    EXPECT_NE(text.out.find("| " + m + " |"), std::string::npos) << m << " in\n" << text.out;
  EXPECT_NE(text.out.find("recommendation: Q4_K_M"), std::string::npos) << text.out;
}

TEST(Doctor, BadModelIsAOneLineError) {
  CmdResult r = run_squish("doctor /nonexistent/model.gguf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace squish
