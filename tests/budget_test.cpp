// What running a model costs (runtime/budget) and how `squish bench` reports it: KV cache bytes
// follow the formula, the reported memory matches the model, and cost per 1,000 queries follows
// from speeds and price.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "runtime/budget.h"
#include "test_util.h"

namespace squish {
namespace {

using nlohmann::json;

using test::CmdResult;
using test::run_squish;

TEST(Budget, KvCacheFormula) {
  ModelConfig c;
  c.n_layer = 32;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.head_dim = 128;
  // Llama-3-8B at 8192 tokens: 32 * 8192 * 1024 * 2 * 4 bytes = 2 GiB in F32.
  EXPECT_EQ(kv_cache_bytes(c, 8192), 2ull << 30);
  EXPECT_EQ(kv_cache_bytes(c, 0), 0u);
  const MemoryFootprint m = estimate_memory(c, 1000, 8192, 512, 4, false);
  EXPECT_EQ(m.weights_bytes, 1000u);
  EXPECT_EQ(m.kv_cache_bytes, 2ull << 30);
  EXPECT_GT(m.scratch_bytes, 0u);
  EXPECT_EQ(m.total(), m.weights_bytes + m.kv_cache_bytes + m.scratch_bytes);
  // Scratch grows with the micro-batch and the thread count.
  EXPECT_GT(scratch_bytes_estimate(c, 8192, 512, 4, false),
            scratch_bytes_estimate(c, 8192, 64, 4, false));
  EXPECT_GT(scratch_bytes_estimate(c, 8192, 512, 8, false),
            scratch_bytes_estimate(c, 8192, 512, 4, false));
}

TEST(Budget, CostPerThousandQueries) {
  // 1000 prompt tokens at 1000 t/s (1 s) + 100 generated at 10 t/s (10 s) = 11 s per query;
  // at $3.60/hour that is $0.011 per query, $11 per 1,000.
  const QueryCost q = query_cost(3.6, 1000, 100, 1000.0, 10.0);
  EXPECT_DOUBLE_EQ(q.seconds_per_query, 11.0);
  EXPECT_DOUBLE_EQ(q.queries_per_hour, 3600.0 / 11.0);
  EXPECT_NEAR(q.usd_per_1000_queries, 11.0, 1e-12);
  // Generation only; free machine.
  EXPECT_DOUBLE_EQ(query_cost(2.0, 0, 50, 0.0, 25.0).seconds_per_query, 2.0);
  EXPECT_DOUBLE_EQ(query_cost(0.0, 10, 10, 10.0, 10.0).usd_per_1000_queries, 0.0);
  // A term that needs a speed it does not have is an error, not an infinite cost.
  EXPECT_THROW(query_cost(1.0, 10, 10, 0.0, 10.0), Error);
  EXPECT_THROW(query_cost(1.0, 10, 10, 10.0, 0.0), Error);
  EXPECT_THROW(query_cost(1.0, 0, 0, 10.0, 10.0), Error);
  EXPECT_THROW(query_cost(-1.0, 10, 10, 10.0, 10.0), Error);
}

TEST(BenchCli, MemoryMatchesTheModelAndCostIsReported) {
  const std::string path = test::shared_path("models/stories260K/stories260K.bin");
  CmdResult r = run_squish("bench " + path +
                           " --json -p 8 -n 4 -r 1 --ctx 100 --price-per-hour 2 --prompt-tokens "
                           "300 --gen-tokens 30");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  auto model = load_model(path);
  const ModelConfig& c = model->config;
  const json& mem = j["memory"];
  EXPECT_EQ(mem["n_ctx"], 100);
  EXPECT_EQ(mem["weights_bytes"].get<uint64_t>(), model->weight_bytes());
  EXPECT_EQ(mem["kv_cache_bytes"].get<uint64_t>(),
            static_cast<uint64_t>(c.n_layer) * 100 * c.n_head_kv * c.head_dim * 2 * 4);
  EXPECT_EQ(mem["kv_cache_bytes"].get<uint64_t>(), 5u * 100 * 4 * 8 * 2 * 4);  // stories260K
  EXPECT_EQ(mem["total_bytes_estimate"].get<uint64_t>(),
            mem["weights_bytes"].get<uint64_t>() + mem["kv_cache_bytes"].get<uint64_t>() +
                mem["scratch_bytes_estimate"].get<uint64_t>());
  // The process allocated the KV cache and scratch and ran the model.
  EXPECT_GE(mem["peak_rss_bytes"].get<uint64_t>(), mem["kv_cache_bytes"].get<uint64_t>());
  // The cost is the unit function applied to the measured speeds.
  const json& cost = j["cost"];
  const QueryCost expect = query_cost(2.0, 300, 30, j["pp"]["tokens_per_second"].get<double>(),
                                      j["tg"]["tokens_per_second"].get<double>());
  EXPECT_DOUBLE_EQ(cost["usd_per_1000_queries"].get<double>(), expect.usd_per_1000_queries);
  EXPECT_EQ(cost["prompt_tokens"], 300);
  EXPECT_EQ(cost["gen_tokens"], 30);

  CmdResult text = run_squish("bench " + path + " -p 8 -n 4 -r 1 --price-per-hour 2");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("KV cache"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("peak RSS measured"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("per 1,000 queries"), std::string::npos) << text.out;
}

// -d: the tests run after depth tokens of context: the context holds them, the labels say so.
TEST(BenchCli, DepthRunsTheTestsAfterThatManyTokens) {
  const std::string path = test::shared_path("models/stories260K/stories260K.bin");
  CmdResult r = run_squish("bench " + path + " --json -p 8 -n 4 -r 1 -d 20");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["depth"], 20);
  EXPECT_EQ(j["memory"]["n_ctx"], 20 + 8 + 1);
  EXPECT_GT(j["pp"]["tokens_per_second"].get<double>(), 0.0);
  EXPECT_GT(j["tg"]["tokens_per_second"].get<double>(), 0.0);
  CmdResult text = run_squish("bench " + path + " -p 8 -n 4 -r 1 -d 20");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("| pp8 @ d20 |"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("| tg4 @ d20 |"), std::string::npos) << text.out;
}

TEST(BenchCli, BadArgumentsAreOneLineErrors) {
  const std::string path = test::shared_path("models/stories260K/stories260K.bin");
  for (const char* args : {" -p 64 -n 4 -r 1 --ctx 10", " -p 8 -n 0 -r 1 --price-per-hour 1",
                           " -p 8 -n 4 -r 1 -d 20 --ctx 28"}) {
    CmdResult r = run_squish("bench " + path + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("squish: error: "), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace squish
