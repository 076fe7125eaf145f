// End-to-end tests of `squish eval`'s options: --save-base and evaluating from the saved file,
// --slices, --freq-file, the JSON schema of docs/eval-json.md, and one-line errors for saved
// bases that do not match and for malformed slices files. gcide-llama-16M, windows of 64 tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace squish {
namespace {

using test::CmdResult;
using test::run_squish;

void expect_clean_failure(const CmdResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("squish: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

std::string model_path() {
  return test::shared_path("models/gcide-llama-16M");
}
std::string valid_text(size_t offset, size_t bytes) {
  return test::read_bytes(test::shared_path("data/gcide-valid.txt")).substr(offset, bytes);
}

nlohmann::json eval_json(const std::string& args) {
  const CmdResult r = run_squish("eval " + args + " --json -t 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

int64_t sum_scored(const nlohmann::json& groups) {
  int64_t n = 0;
  for (const auto& g : groups) n += g["n_scored"].get<int64_t>();
  return n;
}

TEST(EvalCli, SavedBaseReproducesTheLiveBase) {
  test::TempDir tmp;
  const std::string text = tmp.file("t.txt"), kl = tmp.file("base.squishkl");
  test::write_bytes(text, valid_text(0, 3000));
  const std::string m = model_path();
  const auto live =
      eval_json(m + " --base " + m + " -f " + text + " --ctx 64 --chunks 3 --save-base " + kl);
  ASSERT_FALSE(live.empty());
  // The schema's top-level keys (docs/eval-json.md), old flat keys included.
  for (const char* key :
       {"schema",         "model",      "base",       "base_kind", "file",      "ctx",
        "n_vocab",        "n_chunks",   "n_scored",   "base_ppl",  "model_ppl", "ppl_ratio",
        "mean_kld",       "kld_stderr", "median_kld", "p90_kld",   "p99_kld",   "max_kld",
        "top1_agreement", "seconds",    "ppl",        "kld",       "same_top",  "delta_p",
        "saved_base",     "breakdowns", "slices"}) {
    EXPECT_TRUE(live.contains(key)) << key;
  }
  EXPECT_EQ(live["schema"], "squish-eval/1");
  EXPECT_EQ(live["n_chunks"], 3);
  EXPECT_EQ(live["n_scored"], 3 * 31);
  EXPECT_EQ(live["saved_base"]["mode"], "written");
  EXPECT_EQ(live["saved_base"]["bytes"], 88 + 3 * 31 * (8 + 64 * 6));
  EXPECT_EQ(live["top1_agreement"], 1.0);
  const auto& ci = live["ppl"]["base"]["ci95"];
  EXPECT_LT(ci[0].get<double>(), live["base_ppl"].get<double>());
  EXPECT_GT(ci[1].get<double>(), live["base_ppl"].get<double>());
  EXPECT_EQ(sum_scored(live["breakdowns"]["frequency"]["buckets"]), 93);
  EXPECT_EQ(sum_scored(live["breakdowns"]["position"]["bins"]), 93);
  EXPECT_EQ(live["slices"], nullptr);

  // --ctx comes from the file.
  const auto saved = eval_json(m + " --base " + kl + " -f " + text + " --chunks 3");
  ASSERT_FALSE(saved.empty());
  EXPECT_EQ(saved["base_kind"], "saved");
  EXPECT_EQ(saved["ctx"], 64);
  EXPECT_EQ(saved["saved_base"]["mode"], "read");
  EXPECT_NEAR(saved["base_ppl"].get<double>(), live["base_ppl"].get<double>(),
              1e-5 * live["base_ppl"].get<double>());
  EXPECT_EQ(saved["model_ppl"], live["model_ppl"]);
  EXPECT_EQ(saved["top1_agreement"], 1.0);
  EXPECT_LT(saved["mean_kld"].get<double>(), 1e-5);

  // Base only: MODEL left out, the base is still measured and saved.
  const std::string kl2 = tmp.file("only.squishkl");
  const auto only =
      eval_json("--base " + m + " -f " + text + " --ctx 64 --chunks 2 --save-base " + kl2);
  ASSERT_FALSE(only.empty());
  EXPECT_EQ(only["model"], nullptr);
  EXPECT_EQ(only["mean_kld"], nullptr);
  EXPECT_GT(only["base_ppl"].get<double>(), 1.0);
  EXPECT_TRUE(std::ifstream(kl2).good());

  // Text output (the default).
  const CmdResult human =
      run_squish("eval " + m + " --base " + kl + " -f " + text + " --chunks 3 -t 1");
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("KL divergence"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("By target-token frequency"), std::string::npos) << human.out;
}

TEST(EvalCli, MismatchedOrDamagedSavedBaseIsAOneLineError) {
  test::TempDir tmp;
  const std::string text = tmp.file("t.txt"), other = tmp.file("o.txt");
  const std::string kl = tmp.file("base.squishkl");
  test::write_bytes(text, valid_text(0, 2000));
  test::write_bytes(other, valid_text(5000, 2000));
  const std::string m = model_path();
  ASSERT_EQ(
      run_squish("eval --base " + m + " -f " + text + " --ctx 64 --chunks 2 --save-base " + kl)
          .exit_code,
      0);
  expect_clean_failure(run_squish("eval " + m + " --base " + kl + " -f " + other),
                       "saved for a different text");
  expect_clean_failure(run_squish("eval " + m + " --base " + kl + " -f " + text + " --chunks 1"),
                       "saved with 2 windows, this run has 1");
  expect_clean_failure(run_squish("eval " + m + " --base " + kl + " -f " + text + " --ctx 32"),
                       "saved with --ctx 64");
  const std::string bytes = test::read_bytes(kl);
  const std::string cut = tmp.file("cut.squishkl"), junk = tmp.file("junk.squishkl");
  test::write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  test::write_bytes(junk, "not a saved base at all");
  expect_clean_failure(run_squish("eval " + m + " --base " + cut + " -f " + text), "truncated");
  expect_clean_failure(run_squish("eval " + m + " --base " + junk + " -f " + text), "bad magic");
  expect_clean_failure(run_squish("eval " + m + " --base " + kl + " -f " + text + " --save-base " +
                                  tmp.file("again.squishkl")),
                       "--save-base needs a base model");
  expect_clean_failure(run_squish("eval " + m + " --base " + m), "exactly one of -f");
}

TEST(EvalCli, SlicesAreEvaluatedAndReportedPerLabel) {
  test::TempDir tmp;
  const std::string slices = tmp.file("slices.txt"), freq = tmp.file("freq.txt");
  test::write_bytes(slices, "### slice: first\n" + valid_text(0, 1500) + "\n### slice: second\n" +
                                valid_text(9000, 300) + "\n");
  test::write_bytes(freq, valid_text(20000, 4000));
  const std::string m = model_path();
  const auto j = eval_json(m + " --base " + m + " --slices " + slices + " --ctx 64 --chunks 2" +
                           " --freq-file " + freq + " --position-bins 3");
  ASSERT_FALSE(j.empty());
  ASSERT_TRUE(j["slices"].is_array());
  ASSERT_EQ(j["slices"].size(), 2u);
  EXPECT_EQ(j["slices"][0]["label"], "first");
  EXPECT_EQ(j["slices"][0]["n_chunks"], 2);
  EXPECT_EQ(j["slices"][1]["label"], "second");
  const int64_t total = j["n_scored"].get<int64_t>();
  EXPECT_EQ(sum_scored(j["slices"]), total);
  EXPECT_EQ(sum_scored(j["breakdowns"]["frequency"]["buckets"]), total);
  EXPECT_EQ(sum_scored(j["breakdowns"]["position"]["bins"]), total);
  EXPECT_EQ(j["breakdowns"]["position"]["bins"].size(), 3u);
  EXPECT_EQ(j["breakdowns"]["frequency"]["source"], freq);

  const std::string bad = tmp.file("bad.txt");
  test::write_bytes(bad, "### slice: a\nsome text here\n### slice b\nmore text\n");
  expect_clean_failure(run_squish("eval " + m + " --base " + m + " --slices " + bad),
                       "line 3: malformed slice header");
  test::write_bytes(bad, "preamble\n### slice: a\nsome text\n");
  expect_clean_failure(run_squish("eval " + m + " --base " + m + " --slices " + bad),
                       "text before the first");
}

TEST(EvalCli, RecordWritesTheResultsIntoTheManifest) {
  test::TempDir tmp;
  const std::string text = tmp.file("t.txt"), q = tmp.file("q8.gguf");
  test::write_bytes(text, valid_text(0, 3000));
  const std::string m = model_path();
  const CmdResult qr = run_squish("quantize " + m + " -o " + q + " --type Q8_0 --pure -t 1");
  ASSERT_EQ(qr.exit_code, 0) << qr.err;
  const auto j = eval_json(q + " --base " + m + " -f " + text + " --ctx 64 --chunks 2 --record");
  ASSERT_FALSE(j.empty());
  const auto sidecar = nlohmann::json::parse(test::read_bytes(q + ".manifest.json"));
  const auto& rec = sidecar["quality"]["eval"];
  EXPECT_EQ(rec["mean_kld"], j["mean_kld"]);
  EXPECT_EQ(rec["model_ppl"], j["model_ppl"]);
  EXPECT_EQ(rec["n_scored"], j["n_scored"]);
  EXPECT_TRUE(rec.contains("measured"));
  const CmdResult info = run_squish("info " + q);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("quality:      eval:"), std::string::npos) << info.out;
  // A model squish did not write has no manifest to record into.
  expect_clean_failure(
      run_squish("eval " + m + " --base " + m + " -f " + text + " --ctx 64 --chunks 1 --record"),
      "manifest");
}

}  // namespace
}  // namespace squish
