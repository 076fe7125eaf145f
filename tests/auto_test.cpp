// squish auto: the allocation solver against brute force, budgets, size parsing, the sensitivity
// measurement and its cache on stories260K, and the CLI's one-line errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "auto/sensitivity.h"
#include "auto/solver.h"
#include "auto/targets.h"
#include "core/error.h"
#include "model/model.h"
#include "test_util.h"

namespace squish {
namespace {

// Every combination: least cost within the budget (or, for bytes, fewest bytes within the cost).
struct Brute {
  double best_cost = INFINITY;
  uint64_t best_bytes = UINT64_MAX;
};
void brute(const std::vector<SolverItem>& items, size_t i, uint64_t bytes, double cost,
           uint64_t budget, double max_cost, Brute& b) {
  if (i == items.size()) {
    if (bytes <= budget) b.best_cost = std::min(b.best_cost, cost);
    if (cost <= max_cost) b.best_bytes = std::min(b.best_bytes, bytes);
    return;
  }
  for (const SolverOption& o : items[i].options)
    brute(items, i + 1, bytes + o.bytes, cost + o.cost, budget, max_cost, b);
}

std::vector<SolverItem> random_items(std::mt19937& rng, int n, uint64_t max_bytes) {
  std::vector<SolverItem> items(n);
  std::uniform_int_distribution<int> n_opt(1, 4);
  std::uniform_int_distribution<uint64_t> bytes(1, max_bytes);
  std::uniform_real_distribution<double> cost(0.0, 1.0);
  for (SolverItem& item : items) {
    const int k = n_opt(rng);
    for (int j = 0; j < k; ++j) item.options.push_back({bytes(rng), cost(rng)});
  }
  return items;
}

TEST(AutoSolver, HandMadeInstance) {
  // Two tensors, small / big types: with 30 bytes only one can take the big type, and the one
  // whose big type saves more cost per tensor gets it.
  std::vector<SolverItem> items = {{{{10, 1.0}, {20, 0.1}}}, {{{10, 0.5}, {20, 0.4}}}};
  SolverResult r = solve_min_cost(items, 30);
  ASSERT_TRUE(r.feasible);
  EXPECT_EQ(r.choice, (std::vector<int>{1, 0}));
  EXPECT_EQ(r.bytes, 30u);
  EXPECT_DOUBLE_EQ(r.cost, 0.6);
  EXPECT_LE(r.lower_bound, r.cost + 1e-12);
  EXPECT_FALSE(solve_min_cost(items, 19).feasible);
  r = solve_min_cost(items, 40);
  EXPECT_EQ(r.choice, (std::vector<int>{1, 1}));
  // Fewest bytes for cost <= 0.7: {big, small} (30 bytes, 0.6).
  r = solve_min_bytes(items, 0.7);
  ASSERT_TRUE(r.feasible);
  EXPECT_EQ(r.bytes, 30u);
  EXPECT_FALSE(solve_min_bytes(items, 0.4).feasible);
}

TEST(AutoSolver, MatchesBruteForceWhenExact) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const auto items = random_items(rng, 1 + trial % 6, 50);
    const uint64_t lo = min_total_bytes(items), hi = max_total_bytes(items);
    const uint64_t budget = lo + (hi - lo) * (trial % 7) / 6;
    const double max_cost = 0.3 * items.size();
    Brute b;
    brute(items, 0, 0, 0.0, budget, max_cost, b);
    const SolverResult r = solve_min_cost(items, budget);  // g = 1: exact
    ASSERT_TRUE(r.feasible);
    EXPECT_LE(r.bytes, budget);
    EXPECT_NEAR(r.cost, b.best_cost, 1e-9) << "trial " << trial;
    EXPECT_LE(r.lower_bound, r.cost + 1e-9);
    const SolverResult m = solve_min_bytes(items, max_cost);
    if (b.best_bytes == UINT64_MAX) {
      EXPECT_FALSE(m.feasible);
    } else {
      ASSERT_TRUE(m.feasible) << "trial " << trial;
      EXPECT_LE(m.cost, max_cost + 1e-12);
      EXPECT_EQ(m.bytes, b.best_bytes) << "trial " << trial;
    }
  }
}

TEST(AutoSolver, LargeSizesRespectBudgetAndStayNearOptimal) {
  // Sizes far above kSolverUnits: rounded units, so the answer must fit the exact budget and be at
  // least as good as the exact optimum for the budget minus one unit per item.
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 2 + trial % 4;
    const auto items = random_items(rng, n, 50'000'000);
    const uint64_t lo = min_total_bytes(items), hi = max_total_bytes(items);
    const uint64_t budget = lo + (hi - lo) * (1 + trial % 5) / 6;
    const uint64_t g = (budget + kSolverUnits - 1) / kSolverUnits;
    const SolverResult r = solve_min_cost(items, budget);
    ASSERT_TRUE(r.feasible);
    EXPECT_LE(r.bytes, budget);
    Brute exact, slack;
    brute(items, 0, 0, 0.0, budget, -1, exact);
    brute(items, 0, 0, 0.0, budget > n * g ? budget - n * g : 0, -1, slack);
    EXPECT_GE(r.cost, exact.best_cost - 1e-9);
    if (std::isfinite(slack.best_cost)) {
      EXPECT_LE(r.cost, slack.best_cost + 1e-9);
    }
  }
}

TEST(AutoPrediction, ProbeRatiosInterpolateInLogLog) {
  Sensitivity s;
  s.probes = {{"Q8_0", 0.01, 0.02}, {"Q4_K", 0.1, 0.1}};  // ratios 2 and 1
  EXPECT_NEAR(predict_kld(s, 0.01), 0.02, 1e-12);
  EXPECT_NEAR(predict_kld(s, 0.1), 0.1, 1e-12);
  const double mid = std::sqrt(0.01 * 0.1);  // halfway in log: ratio sqrt(2)
  EXPECT_NEAR(predict_kld(s, mid), mid * std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(predict_kld(s, 0.001), 0.002, 1e-12);  // beyond: the nearest probe's ratio
  EXPECT_NEAR(predict_kld(s, 1.0), 1.0, 1e-12);
  EXPECT_EQ(predict_kld(s, 0.0), 0.0);
  for (double k : {0.003, 0.03, 0.07, 0.5}) {
    EXPECT_NEAR(predict_kld(s, additive_for_kld(s, k)), k, 1e-9 * k + 1e-15) << k;
  }
}

TEST(AutoTargets, ParsesSizesAndDevices) {
  EXPECT_EQ(parse_byte_size("1500000", "--x"), 1500000u);
  EXPECT_EQ(parse_byte_size("3.9GB", "--x"), 3900000000u);
  EXPECT_EQ(parse_byte_size("2MiB", "--x"), 2u << 20);
  EXPECT_EQ(parse_byte_size("1.5k", "--x"), 1536u);
  for (const char* bad : {"", "GB", "1.2.3GB", "5 parsecs", "-3MB", "0"}) {
    try {
      parse_byte_size(bad, "--target-size");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--target-size"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(find_device("rtx4090-24gb").bytes, 24ull << 30);
  EXPECT_THROW(find_device("toaster"), Error);
}

TEST(AutoSensitivity, MeasuresOnceThenReadsTheCache) {
  auto model = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  std::vector<const void*> data_before;
  for (const TensorInfo& t : model->tensors()) data_before.push_back(t.data);
  CalibrationWindows windows;
  windows.n_ctx = 32;
  std::mt19937 rng(3);
  for (int i = 0; i < 2 * windows.n_ctx; ++i)
    windows.tokens.push_back(static_cast<int32_t>(rng() % model->config.n_vocab));
  test::TempDir dir;
  SensitivityOptions o;
  o.cache_dir = dir.file("cache");
  o.quiet = true;
  o.measure_all = true;
  o.n_threads = 1;  // a tiny model: threads would only wait for each other
  // Rows of 64 columns: Q4_K falls back to Q5_0 (as llama.cpp does), Q8_0 stays.
  const std::vector<DType> types = {DType::Q4_K, DType::Q8_0};
  const Sensitivity s = measure_sensitivity(*model, types, windows, windows, o);
  ASSERT_FALSE(s.tensors.empty());
  size_t n_options = 0;
  for (const AutoTensor& t : s.tensors) {
    ASSERT_EQ(t.options.size(), 2u) << t.name;
    EXPECT_EQ(t.options[0].type, DType::Q5_0) << t.name;
    EXPECT_EQ(t.options[1].type, DType::Q8_0) << t.name;
    EXPECT_LT(t.options[0].bytes, t.options[1].bytes);
    for (const AutoOption& opt : t.options) {
      EXPECT_GE(opt.delta_kld, 0.0);
      EXPECT_TRUE(opt.measured);
    }
    n_options += t.options.size();
  }
  EXPECT_EQ(s.evaluations, static_cast<int>(n_options + types.size()));  // + one probe per type
  ASSERT_EQ(s.probes.size(), 2u);
  EXPECT_GT(s.probes[0].measured, s.probes[1].measured);  // 5-bit hurts more than 8-bit
  EXPECT_GT(s.probes[0].measured, 0.0);
  // The model is restored.
  for (size_t i = 0; i < model->tensors().size(); ++i)
    EXPECT_EQ(model->tensors()[i].data, data_before[i]) << model->tensors()[i].name;

  o.measure_all = false;  // everything is measured already: the cache answers either mode
  const Sensitivity again = measure_sensitivity(*model, types, windows, windows, o);
  EXPECT_EQ(again.evaluations, 0);
  EXPECT_EQ(again.cache_path, s.cache_path);
  for (size_t k = 0; k < s.tensors.size(); ++k) {
    for (size_t j = 0; j < s.tensors[k].options.size(); ++j)
      EXPECT_DOUBLE_EQ(again.tensors[k].options[j].delta_kld, s.tensors[k].options[j].delta_kld);
  }
  // Other windows: another cache file, measured again; scaled mode measures each tensor's
  // smallest candidate only, plus the probes.
  windows.tokens[5] = (windows.tokens[5] + 1) % model->config.n_vocab;
  const Sensitivity other = measure_sensitivity(*model, types, windows, windows, o);
  EXPECT_NE(other.cache_path, s.cache_path);
  EXPECT_EQ(other.evaluations, static_cast<int>(other.tensors.size() + types.size()));
  for (const AutoTensor& t : other.tensors) {
    EXPECT_TRUE(t.options[0].measured);
    EXPECT_FALSE(t.options[1].measured);
    EXPECT_LE(t.options[1].delta_kld, t.options[0].delta_kld) << t.name;
  }
  EXPECT_EQ(measure_sensitivity(*model, types, windows, windows, o).evaluations, 0);

  // The plan: decided tensors in their chosen type, 1-D tensors F32, budget respected.
  const auto items = solver_items(s);
  const uint64_t budget = (min_total_bytes(items) + max_total_bytes(items)) / 2;
  const SolverResult r = solve_min_cost(items, budget);
  ASSERT_TRUE(r.feasible);
  EXPECT_LE(r.bytes, budget);
  const auto plan = auto_plan(*model, s, r.choice);
  ASSERT_EQ(plan.size(), model->tensors().size());
  for (size_t k = 0; k < s.tensors.size(); ++k)
    EXPECT_EQ(plan[s.tensors[k].index].type, s.tensors[k].options[r.choice[k]].type);
  for (size_t i = 0; i < plan.size(); ++i) {
    if (model->tensors()[i].shape.size() == 1) {
      EXPECT_EQ(plan[i].type, DType::F32);
    }
  }
}

TEST(AutoSensitivity, WindowsAreSpreadOverTheText) {
  CalibrationWindows all;
  all.n_ctx = 4;
  for (int w = 0; w < 10; ++w) {
    for (int i = 0; i < all.n_ctx; ++i) all.tokens.push_back(100 * w + i);
  }
  // The middle window of each of n equal stretches, never the first few in a row.
  const CalibrationWindows two = spread_windows(all, 2);
  ASSERT_EQ(two.n_windows(), 2);
  EXPECT_EQ(two.window(0)[0], 200);
  EXPECT_EQ(two.window(1)[0], 700);
  EXPECT_EQ(two.window(1)[3], 703);
  const CalibrationWindows four = spread_windows(all, 4);
  ASSERT_EQ(four.n_windows(), 4);
  EXPECT_EQ(four.window(0)[0], 100);
  EXPECT_EQ(four.window(3)[0], 800);
  EXPECT_EQ(spread_windows(all, 10).tokens, all.tokens);
  EXPECT_EQ(spread_windows(all, 50).tokens, all.tokens);  // fewer windows than asked: all
}

TEST(AutoSensitivity, ProbesOnOtherWindowsKeepTheTensorMeasurements) {
  auto model = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  CalibrationWindows windows, probe_windows;
  windows.n_ctx = probe_windows.n_ctx = 32;
  std::mt19937 rng(7);
  for (int i = 0; i < 2 * windows.n_ctx; ++i)
    windows.tokens.push_back(static_cast<int32_t>(rng() % model->config.n_vocab));
  for (int i = 0; i < 3 * windows.n_ctx; ++i)
    probe_windows.tokens.push_back(static_cast<int32_t>(rng() % model->config.n_vocab));
  test::TempDir dir;
  SensitivityOptions o;
  o.cache_dir = dir.file("cache");
  o.quiet = true;
  o.n_threads = 1;
  const std::vector<DType> types = {DType::Q4_K, DType::Q8_0};
  const Sensitivity same = measure_sensitivity(*model, types, windows, windows, o);
  EXPECT_EQ(same.n_probe_windows, 2);
  // Other probe windows: the same cache file, only the probes measured again.
  const Sensitivity other = measure_sensitivity(*model, types, windows, probe_windows, o);
  EXPECT_EQ(other.cache_path, same.cache_path);
  EXPECT_EQ(other.evaluations, static_cast<int>(types.size()));
  EXPECT_EQ(other.n_probe_windows, 3);
  ASSERT_EQ(other.probes.size(), same.probes.size());
  for (size_t k = 0; k < same.tensors.size(); ++k) {
    for (size_t j = 0; j < same.tensors[k].options.size(); ++j) {
      EXPECT_DOUBLE_EQ(other.tensors[k].options[j].delta_kld, same.tensors[k].options[j].delta_kld);
    }
  }
  for (size_t p = 0; p < same.probes.size(); ++p) {
    EXPECT_DOUBLE_EQ(other.probes[p].additive, same.probes[p].additive);
    EXPECT_NE(other.probes[p].measured, same.probes[p].measured) << same.probes[p].type;
  }
  // Both probe sets stay cached side by side.
  EXPECT_EQ(measure_sensitivity(*model, types, windows, windows, o).evaluations, 0);
  EXPECT_EQ(measure_sensitivity(*model, types, windows, probe_windows, o).evaluations, 0);
}

using test::CmdResult;
using test::run_squish;

TEST(AutoCli, ImpossibleBudgetsAreOneLineErrors) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/gcide-llama-16M");
  const std::string calib = test::shared_path("data/gcide-calib.txt");
  const std::string out = dir.file("out.gguf");
  for (const std::string& flags :
       {std::string("--target-bpw 1"), std::string("--target-size 1MB"),
        std::string("--memory-budget 2MiB --ctx 512"), std::string("--device toaster"),
        std::string("--target-size 12parsecs"), std::string("--target-bpw 4 --max-kld 0.1"),
        std::string("")}) {
    const CmdResult r =
        run_squish("auto " + model + " --calib " + calib + " -o " + out + " " + flags);
    EXPECT_NE(r.exit_code, 0) << flags;
    EXPECT_EQ(r.out, "") << flags;  // nothing but the one-line error
    ASSERT_FALSE(r.err.empty()) << flags;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << flags << ": " << r.err;
    EXPECT_EQ(r.err.rfind("squish: error: ", 0), 0u) << flags << ": " << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace squish
