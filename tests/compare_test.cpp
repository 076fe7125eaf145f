// squish compare: prompts files, chat formats, and side-by-side generation. A model against itself
// must give identical answers and a KLD of exactly 0; against a Q2_K quantization the numbers must
// be consistent (match length within both answers, the tokens agreeing exactly up to it, KLD >= 0
// per position, the summary equal to the per-prompt values).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "eval/compare.h"
#include "export/gguf_export.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "quant/mix.h"
#include "test_util.h"

namespace squish {
namespace {

const std::vector<std::string> kPrompts = {"Dictionary, n.", "Apple, n. The fleshy fruit"};

std::string llama16m() {
  return test::shared_path("models/gcide-llama-16M");
}

// Runs the CLI; returns the exit code, with stdout and stderr in the given strings.
int run_squish(const std::string& args, std::string& out, std::string& err) {
  test::CmdResult r = test::run_squish(args);
  out = std::move(r.out);
  err = std::move(r.err);
  return r.exit_code;
}

TEST(ComparePrompts, PlainLinesSkipBlanks) {
  test::TempDir tmp;
  test::write_bytes(tmp.file("p.txt"), "first prompt\r\n\n  \nsecond {not json}\n");
  EXPECT_EQ(read_prompts_file(tmp.file("p.txt")),
            (std::vector<std::string>{"first prompt", "second {not json}"}));
}

TEST(ComparePrompts, JsonlWithNewlinesInPrompts) {
  test::TempDir tmp;
  test::write_bytes(tmp.file("p.jsonl"),
                    "{\"prompt\": \"a\\nb\", \"id\": 1}\n\n{\"prompt\": \"c\"}\n");
  EXPECT_EQ(read_prompts_file(tmp.file("p.jsonl")), (std::vector<std::string>{"a\nb", "c"}));
}

TEST(ComparePrompts, BadFilesAreOneLineErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "no prompts"},
      {"\n \n", "no prompts"},
      {"{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n", "line 2:"},
      {"{\"prompt\": \"ok\"}\n{broken\n", "not valid JSON"},
      {"{\"text\": \"no prompt key\"}\n", "\"prompt\""},
      {"bad \xff utf-8\n", "UTF-8"},
  };
  for (const auto& [bytes, needle] : cases) {
    test::expect_open_error(bytes, "prompts.txt", needle,
                            [](const std::string& p) { read_prompts_file(p); });
  }
}

TEST(CompareChat, FormatsAreRecognisedFromTemplates) {
  EXPECT_EQ(detect_chat_format(""), ChatFormat::None);
  EXPECT_EQ(detect_chat_format("{% for m in messages %}<|im_start|>{{ m.role }}"),
            ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_format("<|start_header_id|>' + message['role'] + '<|end_header_id|>"),
            ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_format("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
            ChatFormat::Llama2);
  EXPECT_EQ(detect_chat_format("<start_of_turn>user"), ChatFormat::Gemma);
  EXPECT_EQ(detect_chat_format("<|user|>\n{{ m }}<|end|>\n<|assistant|>"), ChatFormat::Phi3);
  EXPECT_EQ(detect_chat_format("{{ messages }}"), ChatFormat::None);
  EXPECT_EQ(apply_chat_format(ChatFormat::ChatML, "hi"),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_format(ChatFormat::Llama3, "hi"),
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant"
            "<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_format(ChatFormat::None, "hi"), "hi");
  EXPECT_STREQ(chat_end_of_turn(ChatFormat::ChatML), "<|im_end|>");
}

TEST(CompareChat, TemplateFromTokenizerConfig) {
  test::TempDir tmp;
  const std::string dir = tmp.file("m");
  std::filesystem::create_directory(dir);
  test::write_bytes(dir + "/tokenizer_config.json",
                    R"({"chat_template": [{"name": "tool_use", "template": "x"},
                        {"name": "default", "template": "<|im_start|>"}]})");
  EXPECT_EQ(find_chat_template(dir), "<|im_start|>");
  EXPECT_EQ(find_chat_template(llama16m()), "");  // the shared model has none

  const std::string gguf = tmp.file("t.gguf");
  GGUFWriter w(gguf);
  w.set("tokenizer.chat_template", GGUFValue::str("{{ '<|start_header_id|>' }}"));
  w.write_header();
  w.finish();
  EXPECT_EQ(detect_chat_format(find_chat_template(gguf)), ChatFormat::Llama3);
}

TEST(Compare, ModelAgainstItselfIsIdenticalWithZeroKld) {
  auto base = load_model(llama16m());
  auto same = load_model(llama16m());
  CompareOptions o;
  o.n_predict = 12;
  o.n_ctx = 64;
  CompareResult r = compare_models(*base, *same, *base->tokenizer, kPrompts, o);
  ASSERT_EQ(r.prompts.size(), 2u);
  for (const PromptComparison& c : r.prompts) {
    EXPECT_TRUE(c.identical);
    EXPECT_EQ(c.match_length, static_cast<int>(c.base_tokens.size()));
    EXPECT_EQ(c.base_answer, c.model_answer);
    EXPECT_FALSE(c.base_answer.empty());
    ASSERT_EQ(c.kld.size(), c.base_tokens.size());
    for (double k : c.kld) EXPECT_EQ(k, 0.0);
    EXPECT_FALSE(c.diverges_early);
  }
  EXPECT_EQ(r.summary.identical_fraction, 1.0);
  EXPECT_EQ(r.summary.mean_kld, 0.0);
  EXPECT_EQ(r.summary.max_kld, 0.0);
  EXPECT_EQ(r.summary.n_diverges_early, 0);

  // Sampling with the same seed is the same for both models too.
  o.sampling = {0.8f, 40, 0.95f, 1234};
  r = compare_models(*base, *same, *base->tokenizer, kPrompts, o);
  EXPECT_EQ(r.summary.n_identical, 2);
  EXPECT_EQ(r.summary.max_kld, 0.0);
}

TEST(Compare, Q2KDivergesConsistently) {
  auto base = load_model(llama16m());
  test::TempDir tmp;
  const std::string q2k = tmp.file("q2k.gguf");
  QuantPlanOptions po;
  po.mix = *find_quant_mix("Q2_K");
  po.pure = true;
  GGUFExportOptions eo;
  eo.plan = plan_quantization(*base, po);
  // The two 8192 x 384 embedding matrices stay F16: 40 % of the weights, and of the time the
  // quantizer's search would take; the blocks alone make the answers diverge.
  for (TensorPlan& t : eo.plan) {
    if (t.name == "token_embd.weight" || t.name == "output.weight") t.type = DType::F16;
  }
  export_gguf(*base, q2k, eo);
  auto model = load_model(q2k);

  CompareOptions o;
  o.n_predict = 24;
  o.n_ctx = 64;
  CompareResult r = compare_models(*base, *model, *base->tokenizer, kPrompts, o);
  ASSERT_EQ(r.prompts.size(), 2u);
  double kld_sum = 0, match_sum = 0;
  size_t kld_n = 0;
  int identical = 0, early = 0;
  for (const PromptComparison& c : r.prompts) {
    const int lb = static_cast<int>(c.base_tokens.size());
    const int lm = static_cast<int>(c.model_tokens.size());
    EXPECT_GE(lb, 1);
    EXPECT_LE(lb, o.n_predict);
    EXPECT_LE(c.match_length, std::min(lb, lm));
    EXPECT_TRUE(std::equal(c.base_tokens.begin(), c.base_tokens.begin() + c.match_length,
                           c.model_tokens.begin()));
    if (c.match_length < std::min(lb, lm)) {
      EXPECT_NE(c.base_tokens[c.match_length], c.model_tokens[c.match_length]);
    }
    EXPECT_EQ(c.identical, c.base_tokens == c.model_tokens);
    ASSERT_EQ(c.kld.size(), static_cast<size_t>(lb));
    double mx = 0, sum = 0;
    for (double k : c.kld) {
      EXPECT_GE(k, 0.0);
      EXPECT_TRUE(std::isfinite(k));
      mx = std::max(mx, k);
      sum += k;
    }
    EXPECT_DOUBLE_EQ(c.kld_max, mx);
    EXPECT_NEAR(c.kld_mean, sum / lb, 1e-12);
    EXPECT_EQ(c.diverges_early, !c.identical && 2 * c.match_length < lb);
    kld_sum += sum;
    kld_n += c.kld.size();
    match_sum += c.match_length;
    identical += c.identical;
    early += c.diverges_early;
  }
  // A 2-bit model of a 16M-parameter model does not reproduce it token for token.
  EXPECT_GT(r.summary.mean_kld, 1e-3);
  EXPECT_LT(identical, 2);
  EXPECT_NEAR(r.summary.mean_kld, kld_sum / kld_n, 1e-12);
  EXPECT_DOUBLE_EQ(r.summary.mean_match_length, match_sum / 2);
  EXPECT_EQ(r.summary.n_identical, identical);
  EXPECT_EQ(r.summary.n_diverges_early, early);

  const nlohmann::json j = compare_result_json(r, o, {llama16m(), q2k, "p.txt", false, ""});
  EXPECT_EQ(j["schema"], "squish-compare/1");
  EXPECT_EQ(j["prompts"].size(), 2u);
  EXPECT_EQ(j["prompts"][0]["answer_length"], r.prompts[0].base_tokens.size());
  EXPECT_EQ(j["summary"]["n_prompts"], 2);
}

TEST(CompareCli, JsonOutputOfSelfComparison) {
  test::TempDir tmp;
  test::write_bytes(tmp.file("p.jsonl"), "{\"prompt\": \"Dictionary, n.\"}\n");
  std::string out, err;
  ASSERT_EQ(run_squish("compare " + llama16m() + " " + llama16m() + " --prompts " +
                           tmp.file("p.jsonl") + " -n 6 --ctx 64 --chat --json",
                       out, err),
            0)
      << err;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["schema"], "squish-compare/1");
  EXPECT_EQ(j["chat"]["requested"], true);
  EXPECT_EQ(j["chat"]["format"], "none");  // no template in the shared model: raw prompts, said
  EXPECT_NE(j["chat"]["note"].get<std::string>().find("raw prompts"), std::string::npos);
  EXPECT_NE(err.find("raw prompts"), std::string::npos) << err;
  EXPECT_EQ(j["summary"]["identical_fraction"], 1.0);
  EXPECT_EQ(j["summary"]["max_kld"], 0.0);
  EXPECT_EQ(j["prompts"][0]["match_length"], j["prompts"][0]["answer_length"]);
}

TEST(CompareCli, ChatFormatFromTheModelsTemplate) {
  // The shared model with a ChatML template added to its tokenizer_config.json.
  test::TempDir tmp;
  const std::string dir = tmp.file("chatml-model");
  std::filesystem::create_directory(dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    std::filesystem::create_symlink(llama16m() + "/" + f, dir + "/" + f);
  }
  test::write_bytes(dir + "/tokenizer_config.json",
                    R"({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
                        "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"})");
  test::write_bytes(tmp.file("p.txt"), "Dictionary\n");
  std::string out, err;
  ASSERT_EQ(run_squish("compare " + dir + " " + llama16m() + " --prompts " + tmp.file("p.txt") +
                           " -n 4 --ctx 64 --chat --json",
                       out, err),
            0)
      << err;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["chat"]["format"], "chatml");
  EXPECT_EQ(j["prompts"][0]["formatted_prompt"],
            "<|im_start|>user\nDictionary<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_GT(j["prompts"][0]["n_prompt_tokens"].get<int>(), 8);
  EXPECT_NE(err.find("chatml template from " + dir), std::string::npos) << err;
}

TEST(CompareCli, BadPromptsFileIsOneLineError) {
  test::TempDir tmp;
  test::write_bytes(tmp.file("bad.jsonl"), "{\"prompt\": \"fine\"}\nnot json at all\n");
  for (const std::string& file : {tmp.file("bad.jsonl"), tmp.file("missing.txt")}) {
    std::string out, err;
    EXPECT_EQ(
        run_squish("compare " + llama16m() + " " + llama16m() + " --prompts " + file, out, err), 1);
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.rfind("squish: error: " + file, 0), 0u) << err;
  }
}

}  // namespace
}  // namespace squish
