// End-to-end tests of the `squish` binary: good paths produce the documented output, and every
// kind of bad input gives a one-line error naming the file, a non-zero exit, and no crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace squish {
namespace {

namespace fs = std::filesystem;

using test::CmdResult;
using test::run_squish;

using test::read_bytes;
using test::write_bytes;

// A failing command must exit 1 with exactly one line on stderr that mentions `needle`.
void expect_clean_failure(const CmdResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("squish: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

std::string fixture(const std::string& name) {
  return test::data_path("fixtures/" + name);
}

// A copy of a tiny HF fixture that a test may break.
std::string copy_fixture(const test::TempDir& tmp, const std::string& name) {
  const std::string dst = tmp.file(name);
  fs::copy(fixture(name), dst, fs::copy_options::recursive);
  return dst;
}

TEST(Cli, InfoJsonDescribesModel) {
  CmdResult r = run_squish("info --json " + fixture("qwen2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "qwen2");
  EXPECT_EQ(j["config"]["n_layer"], 2);
  EXPECT_EQ(j["config"]["tied_embeddings"], true);
  EXPECT_GT(j["parameters"].get<int64_t>(), 0);
  EXPECT_FALSE(j["tensors"].empty());
}

TEST(Cli, InfoOnSharedModels) {
  for (const char* m : {"gcide-llama-16M", "gcide-qwen2-28M", "stories260K/stories260K.bin"}) {
    CmdResult r = run_squish("info --json " + test::shared_path(std::string("models/") + m));
    ASSERT_EQ(r.exit_code, 0) << m << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_GT(j["parameters"].get<int64_t>(), 200000) << m;
  }
}

TEST(Cli, ConvertWritesLoadableGGUFAtomically) {
  test::TempDir tmp;
  const std::string out = tmp.file("m.gguf");
  CmdResult r = run_squish("convert " + fixture("phi3") + " -o " + out + " --type bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(tmp.path)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "temp file left: " << e.path();
  }
  CmdResult info = run_squish("info --json " + out);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["architecture"], "phi3");
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_GT(j["params_by_type"]["BF16"].get<int64_t>(), 0);
}

TEST(Cli, ConvertFailureLeavesNoOutput) {
  test::TempDir tmp;
  const std::string out = tmp.file("m.gguf");
  CmdResult r = run_squish("convert " + tmp.file("missing") + " -o " + out);
  expect_clean_failure(r, "missing");
  EXPECT_FALSE(fs::exists(out));
}

TEST(Cli, UsageErrorsExitNonZero) {
  EXPECT_NE(run_squish("").exit_code, 0);
  EXPECT_NE(run_squish("frobnicate").exit_code, 0);
  EXPECT_NE(run_squish("convert " + fixture("llama") + " -o /tmp/x.gguf --type q9").exit_code, 0);
}

TEST(Cli, MissingPath) {
  expect_clean_failure(run_squish("info /nonexistent/model"), "/nonexistent/model");
}

TEST(Cli, FolderWithoutConfig) {
  test::TempDir tmp;
  expect_clean_failure(run_squish("info " + tmp.path.string()), "config.json");
}

TEST(Cli, ConfigNotJson) {
  test::TempDir tmp;
  const std::string m = copy_fixture(tmp, "llama");
  write_bytes(m + "/config.json", "{ not json");
  expect_clean_failure(run_squish("info " + m), "config.json");
}

TEST(Cli, ConfigMissingKey) {
  test::TempDir tmp;
  const std::string m = copy_fixture(tmp, "llama");
  auto j = nlohmann::json::parse(read_bytes(m + "/config.json"));
  j.erase("hidden_size");
  write_bytes(m + "/config.json", j.dump());
  expect_clean_failure(run_squish("info " + m), "hidden_size");
}

TEST(Cli, UnknownArchitecture) {
  test::TempDir tmp;
  const std::string m = copy_fixture(tmp, "llama");
  auto j = nlohmann::json::parse(read_bytes(m + "/config.json"));
  j["model_type"] = "mamba";
  j["architectures"] = {"MambaForCausalLM"};
  write_bytes(m + "/config.json", j.dump());
  expect_clean_failure(run_squish("info " + m), "unsupported architecture 'mamba'");
}

TEST(Cli, ConfigShapeMismatch) {
  test::TempDir tmp;
  const std::string m = copy_fixture(tmp, "llama");
  auto j = nlohmann::json::parse(read_bytes(m + "/config.json"));
  j["intermediate_size"] = 96;
  write_bytes(m + "/config.json", j.dump());
  expect_clean_failure(run_squish("info " + m), "shape");
}

TEST(Cli, TruncatedSafetensors) {
  test::TempDir tmp;
  const std::string m = copy_fixture(tmp, "llama");
  const std::string st = read_bytes(m + "/model.safetensors");
  for (size_t cut : {size_t{0}, size_t{5}, size_t{8}, size_t{100}, st.size() / 2, st.size() - 1}) {
    write_bytes(m + "/model.safetensors", st.substr(0, cut));
    CmdResult r = run_squish("info " + m);
    expect_clean_failure(r, "model.safetensors");
  }
}

TEST(Cli, HugeSafetensorsHeader) {
  test::TempDir tmp;
  const std::string m = copy_fixture(tmp, "llama");
  std::string bytes(8, '\0');
  const uint64_t len = uint64_t{2} << 30;  // claims a 2 GiB JSON header
  std::memcpy(bytes.data(), &len, 8);
  write_bytes(m + "/model.safetensors", bytes + "{}");
  expect_clean_failure(run_squish("info " + m), "model.safetensors");
}

TEST(Cli, TruncatedGGUF) {
  test::TempDir tmp;
  const std::string out = tmp.file("m.gguf");
  ASSERT_EQ(run_squish("convert " + fixture("qwen2") + " -o " + out + " --type f32").exit_code, 0);
  const std::string g = read_bytes(out);
  for (size_t cut : {size_t{3}, size_t{4}, size_t{24}, size_t{200}, g.size() / 3, g.size() - 1}) {
    write_bytes(out, g.substr(0, cut));
    expect_clean_failure(run_squish("info " + out), out);
  }
}

TEST(Cli, GarbageFile) {
  test::TempDir tmp;
  const std::string f = tmp.file("garbage.bin");
  write_bytes(f, std::string(1000, '\x7f'));
  expect_clean_failure(run_squish("info " + f), "garbage.bin");
}

TEST(Cli, TruncatedLlama2c) {
  test::TempDir tmp;
  const std::string f = tmp.file("stories.bin");
  const std::string bytes = read_bytes(test::shared_path("models/stories260K/stories260K.bin"));
  write_bytes(f, bytes.substr(0, bytes.size() - 100));
  expect_clean_failure(run_squish("info " + f), "stories.bin");
}

TEST(Cli, NonUtf8Text) {
  test::TempDir tmp;
  const std::string t = tmp.file("latin1.txt");
  write_bytes(t, "caf\xe9 au lait\n");
  expect_clean_failure(
      run_squish("perplexity " + test::shared_path("models/gcide-llama-16M") + " -f " + t),
      "UTF-8");
}

TEST(Cli, TextTooShortForOneWindow) {
  test::TempDir tmp;
  const std::string t = tmp.file("short.txt");
  write_bytes(t, "A few words only.");
  expect_clean_failure(
      run_squish("perplexity " + test::shared_path("models/gcide-llama-16M") + " -f " + t),
      "tokens");
}

TEST(Cli, RunGeneratesText) {
  CmdResult r = run_squish("run " + test::shared_path("models/gcide-llama-16M") +
                           " -p \"Dictionary, n.\" -n 12 -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Dictionary, n.", 0), 0u);
  EXPECT_GT(r.out.size(), std::string("Dictionary, n.").size() + 5);
  // Greedy decoding is deterministic.
  CmdResult again = run_squish("run " + test::shared_path("models/gcide-llama-16M") +
                               " -p \"Dictionary, n.\" -n 12 -t 1");
  EXPECT_EQ(r.out, again.out);
}

TEST(Cli, PerplexityMatchesTransformersPerWindow) {
  // First 4 windows of 512 tokens of gcide-valid.txt, scored like llama-perplexity; goldens
  // computed by transformers in float32 (tests/data/fixtures/gcide-ppl.json).
  std::ifstream gf(test::data_path("fixtures/gcide-ppl.json"));
  auto golden = nlohmann::json::parse(gf);
  test::TempDir tmp;
  const std::string text = read_bytes(test::shared_path("data/gcide-valid.txt")).substr(0, 20000);
  const std::string t = tmp.file("head.txt");
  write_bytes(t, text);
  for (const char* name : {"gcide-llama-16M", "gcide-qwen2-28M"}) {
    CmdResult r = run_squish("perplexity " + test::shared_path(std::string("models/") + name) +
                             " -f " + t + " --chunks 4 --json --window-ppl");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    const auto& want = golden[name]["ppl_first_windows"];
    ASSERT_EQ(j["window_ppl"].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const double got = j["window_ppl"][i], ref = want[i];
      std::printf("%s window %zu: squish %.6f transformers %.6f\n", name, i, got, ref);
      EXPECT_NEAR(got / ref, 1.0, 1e-4) << name << " window " << i;
    }
  }
}

}  // namespace
}  // namespace squish

namespace squish {
namespace {

// `squish quantize --dry-run --json` picks, for every standard mix, exactly the tensor types
// llama-quantize picks (goldens recorded by tools/llama_cpp/make_plans.sh).
TEST(CliQuantize, MixesMatchLlamaQuantize) {
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(test::data_path("llamacpp/plans"))) {
    const std::string file = entry.path().filename().string();  // <model>.<MIX>.json
    const size_t dot = file.find('.');
    const std::string model = file.substr(0, dot);
    const std::string mix = file.substr(dot + 1, file.size() - dot - 1 - 5);
    auto want = nlohmann::json::parse(read_bytes(entry.path().string()));
    CmdResult r = run_squish("quantize " + test::shared_path("models/" + model) + " --type " + mix +
                             " --dry-run --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto plan = nlohmann::json::parse(r.out);
    std::map<std::string, std::string> got;
    for (const auto& t : plan["tensors"]) got[t["name"]] = t["type"];
    for (const auto& [name, type] : want.items()) {
      EXPECT_EQ(got[name], type.get<std::string>()) << model << " " << mix << " " << name;
    }
    EXPECT_EQ(got.size(), want.size()) << model << " " << mix;
    checked++;
  }
  EXPECT_GE(checked, 30);
}

TEST(CliQuantize, WritesLoadableFileAndRejectsBadArguments) {
  test::TempDir tmp;
  const std::string out = tmp.file("q.gguf");
  CmdResult r = run_squish("quantize " + fixture("llama") + " -o " + out + " --type Q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CmdResult info = run_squish("info --json " + out);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_GT(nlohmann::json::parse(info.out)["params_by_type"]["Q8_0"].get<int64_t>(), 0);
  CmdResult gen = run_squish("run " + out + " -p x -n 2");  // no tokenizer in fixtures
  EXPECT_EQ(gen.exit_code, 1);
  expect_clean_failure(run_squish("quantize " + fixture("llama") + " -o " + out + " --type Q9_K"),
                       "Q9_K");
  expect_clean_failure(run_squish("quantize " + fixture("llama") + " -o " + out +
                                  " --type Q4_0 --tensor-type 'attn(=q8_0'"),
                       "regular expression");
  expect_clean_failure(run_squish("quantize " + fixture("llama") + " -o " + out +
                                  " --type Q4_0 --imatrix /nonexistent.gguf"),
                       "/nonexistent.gguf");
}

}  // namespace
}  // namespace squish

namespace squish {
namespace {

TEST(CliEval, SelfComparisonIsExactAndQuantizationCostsSomething) {
  test::TempDir tmp;
  const std::string text = tmp.file("t.txt");
  write_bytes(text, read_bytes(test::shared_path("data/gcide-valid.txt")).substr(0, 8000));
  const std::string base = test::shared_path("models/gcide-llama-16M");
  CmdResult self =
      run_squish("eval " + base + " --base " + base + " -f " + text + " --chunks 2 --json");
  ASSERT_EQ(self.exit_code, 0) << self.err;
  auto j = nlohmann::json::parse(self.out);
  EXPECT_NEAR(j["mean_kld"].get<double>(), 0.0, 1e-9);
  EXPECT_EQ(j["top1_agreement"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["base_ppl"].get<double>(), j["model_ppl"].get<double>());

  const std::string q = tmp.file("q.gguf");
  ASSERT_EQ(run_squish("quantize " + base + " -o " + q + " --type Q4_0").exit_code, 0);
  CmdResult r = run_squish("eval " + q + " --base " + base + " -f " + text + " --chunks 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto k = nlohmann::json::parse(r.out);
  EXPECT_GT(k["mean_kld"].get<double>(), 1e-4);
  EXPECT_LT(k["mean_kld"].get<double>(), 0.5);
  EXPECT_GT(k["top1_agreement"].get<double>(), 0.7);
  EXPECT_GT(k["model_ppl"].get<double>(), k["base_ppl"].get<double>() * 0.98);
}

}  // namespace
}  // namespace squish
