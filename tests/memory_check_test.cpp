// The memory check before a model runs (core/memory_check.h, runtime/memory_need.h): the usable
// memory and its SQUISH_MEMORY_LIMIT override, the estimate against what a Session really
// allocates, and the CLI: a faked small machine stops `run` / `perplexity` / `imatrix` with one
// line naming the file, the need and the available bytes; --no-memory-check runs anyway.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/memory_check.h"
#include "core/sysinfo.h"
#include "kernels/cpu/gemm_int8.h"
#include "model/model.h"
#include "runtime/memory_need.h"
#include "runtime/session.h"
#include "test_util.h"

namespace squish {
namespace {

namespace fs = std::filesystem;

// Sets (or, with nullptr, unsets) SQUISH_MEMORY_LIMIT for one scope.
class ScopedLimit {
 public:
  explicit ScopedLimit(const char* value) {
    if (const char* old = std::getenv("SQUISH_MEMORY_LIMIT")) old_ = old, had_ = true;
    if (value != nullptr) {
      setenv("SQUISH_MEMORY_LIMIT", value, 1);
    } else {
      unsetenv("SQUISH_MEMORY_LIMIT");
    }
  }
  ~ScopedLimit() {
    if (had_) {
      setenv("SQUISH_MEMORY_LIMIT", old_.c_str(), 1);
    } else {
      unsetenv("SQUISH_MEMORY_LIMIT");
    }
  }

 private:
  std::string old_;
  bool had_ = false;
};

TEST(MemoryCheck, UsableMemoryOverrideAndMachine) {
  {
    ScopedLimit limit("12345");
    const UsableMemory u = usable_memory();
    EXPECT_EQ(u.bytes, 12345u);
    EXPECT_EQ(u.source, "SQUISH_MEMORY_LIMIT");
  }
  for (const char* bad : {"12x", "-5", "lots", "99999999999999999999999"}) {
    ScopedLimit limit(bad);
    EXPECT_THROW(usable_memory(), Error) << bad;
  }
  ScopedLimit none(nullptr);
  const UsableMemory u = usable_memory();
  const MemoryInfo m = memory_info();
  EXPECT_GT(u.bytes, 0u);
  EXPECT_LE(u.bytes, m.total);
  EXPECT_TRUE(u.source == "MemAvailable" || u.source == "cgroup memory.max headroom") << u.source;
}

TEST(MemoryCheck, CgroupHeadroomCountsReclaimablePageCache) {
  MemoryInfo m;
  m.available = 10'000;
  EXPECT_EQ(m.usable(), 10'000u);
  m.cgroup_limit = 8'000;
  m.cgroup_current = 7'000;
  EXPECT_EQ(m.usable(), 1'000u);
  m.cgroup_reclaimable = 5'000;  // page cache the kernel drops before it kills anything
  EXPECT_EQ(m.usable(), 6'000u);
  m.cgroup_current = 9'000;
  m.cgroup_reclaimable = 0;
  EXPECT_EQ(m.usable(), 0u);
}

TEST(MemoryCheck, FormatAndCheck) {
  EXPECT_EQ(format_bytes(800), "800 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(uint64_t{3} << 30), "3.0 GiB");
  ScopedLimit limit("1000");
  EXPECT_NO_THROW(check_memory("m.gguf", 1000, ""));
  try {
    check_memory("m.gguf", 1001, "(weights 1001 B)");
    FAIL() << "a need over the limit passed";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "m.gguf: needs 1001 B of memory (weights 1001 B), but 1000 B is available "
                 "(SQUISH_MEMORY_LIMIT); --no-memory-check runs it anyway");
  }
  set_memory_check_enabled(false);
  EXPECT_NO_THROW(check_memory("m.gguf", uint64_t{1} << 60, ""));
  set_memory_check_enabled(true);
}

std::string llama16m() {
  return test::shared_path("models/gcide-llama-16M");
}

// The estimate's parts against the formulas and, for the packed copy, against what a Session
// really allocates for a quantized model (zero on a CPU without the int8 GEMM: both are).
TEST(MemoryCheck, RuntimeMemoryMatchesTheSession) {
  const std::string stories = test::shared_path("models/stories260K/stories260K.bin");
  if (!fs::exists(stories)) GTEST_SKIP() << "needs ../shared";
  test::TempDir tmp;
  const std::string q8 = tmp.file("q8.gguf");
  const std::string cmd = test::squish_binary() + " quantize " + stories + " --type Q8_0 -o " + q8 +
                          " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const std::string& path : {stories, q8}) {
    SCOPED_TRACE(path);
    auto model = load_model(path);
    const ModelConfig& c = model->config;
    SessionOptions so;
    so.n_ctx = 50;  // rounded up to 64 positions in the cache
    so.n_threads = 1;
    const RuntimeMemory m = runtime_memory(*model, so, 50);
    EXPECT_EQ(m.weights, model->weight_bytes());
    EXPECT_EQ(m.kv_cache, uint64_t{2} * c.n_layer * 64 * c.kv_dim() * sizeof(float));
    EXPECT_GT(m.scratch, 0u);
    EXPECT_EQ(m.logits, uint64_t{50} * c.n_vocab * sizeof(float));
    EXPECT_EQ(m.total(), m.weights + m.packed + m.kv_cache + m.scratch + m.logits);
    Session session(*model, so);
    EXPECT_EQ(m.packed, session.packed_weight_bytes());
    if (path == q8 && gemm_available(DType::Q8_0)) {
      EXPECT_GT(m.packed, 0u);
    }
    so.pack_weights = false;
    EXPECT_EQ(runtime_memory(*model, so).packed, 0u);
  }
}

using test::CmdResult;
using test::run_squish;

TEST(MemoryCheck, CliStopsBeforeLoadingUnlessOverridden) {
  if (!fs::exists(llama16m())) GTEST_SKIP() << "needs ../shared";
  test::TempDir tmp;
  const std::string text = tmp.file("text.txt");
  test::write_bytes(text,
                    test::read_bytes(test::shared_path("data/gcide-valid.txt")).substr(0, 4000));
  const std::string run = "run " + llama16m() + " -p Hello -n 2 --ctx 64 -t 1";
  const std::string ppl = "perplexity " + llama16m() + " -f " + text + " --ctx 64 --chunks 1 -t 1";
  const std::string imatrix = "imatrix " + llama16m() + " -f " + text +
                              " -c 64 --chunks 1 -t 1 -o " + tmp.file("imatrix.gguf");
  const std::string small = "SQUISH_MEMORY_LIMIT=1000000";  // 1 MB: less than the weights
  for (const std::string& args : {run, ppl, imatrix}) {
    SCOPED_TRACE(args);
    const CmdResult r = run_squish(args, small);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("squish: error: " + llama16m() + ": needs ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("but 976.6 KiB is available (SQUISH_MEMORY_LIMIT)"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("KV cache"), std::string::npos) << r.err;
  }
  // The flag works before the subcommand and after it; a roomy limit needs no flag.
  EXPECT_EQ(run_squish("--no-memory-check " + run, small).exit_code, 0);
  const CmdResult after = run_squish(run + " --no-memory-check", small);
  EXPECT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(run_squish(run, "SQUISH_MEMORY_LIMIT=100000000000").exit_code, 0);
  EXPECT_EQ(run_squish(run, "SQUISH_MEMORY_LIMIT=lots").exit_code, 1);
}

}  // namespace
}  // namespace squish
