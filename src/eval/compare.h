// Side-by-side generation: what a compressed model says compared with its base on the same
// prompts. Both models answer every prompt with the same sampler settings and seed (greedy by
// default); the report per prompt is the two answers, how many generated tokens agree before the
// first difference (match length), and KL(base || model) at each position of the base's answer,
// with the model teacher-forced along that answer (so the KLD measures how far the model's
// next-token distribution is from the base's on the base's own text, even after the two answers
// part ways).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace squish {

// Prompts file: either plain text, one prompt per line (blank lines skipped, no escapes), or
// JSONL, one object per line with a string "prompt" (other keys ignored). The file is JSONL when
// its first non-blank line starts with '{'. Throws a one-line squish::Error naming the file (and
// the line) when it is unreadable, not UTF-8, has no prompts, a malformed JSON line, or more than
// kMaxPrompts prompts.
constexpr size_t kMaxPrompts = 10000;
std::vector<std::string> read_prompts_file(const std::string& path);

// The chat formats squish can apply, recognised from the template's marker tokens. Templates are
// Jinja programs; squish does not run Jinja, it recognises the family and writes the single-turn
// layout that the family's template produces for one user message plus the assistant header.
enum class ChatFormat { None, ChatML, Llama3, Llama2, Gemma, Phi3 };
const char* chat_format_name(ChatFormat f);

// The model's chat template text: GGUF key tokenizer.chat_template; for a Hugging Face folder
// chat_template.jinja or tokenizer_config.json's "chat_template" (a string, or a list of
// {name, template} where "default" wins). Empty when the model carries none.
std::string find_chat_template(const std::string& model_path);
// None when the template is empty or of an unknown family.
ChatFormat detect_chat_format(std::string_view chat_template);
// The prompt wrapped for one user turn, ending where the assistant's answer starts. BOS is not
// included (the tokenizer adds it when the model expects one).
std::string apply_chat_format(ChatFormat f, std::string_view prompt);
// The end-of-turn token text that also stops generation ("" for None).
const char* chat_end_of_turn(ChatFormat f);

struct CompareOptions {
  int n_predict = 128;
  SamplerOptions sampling;  // temperature 0 = greedy
  int n_threads = 0;
  int n_ctx = 0;  // 0: the smaller of the two models' default session contexts
  ChatFormat chat = ChatFormat::None;
  bool ignore_eos = false;
};

struct PromptComparison {
  std::string prompt;     // as given
  std::string formatted;  // after the chat format (== prompt without --chat)
  int n_prompt_tokens = 0;
  // Generated tokens; the end-of-generation token is included when generation stopped on it.
  std::vector<int32_t> base_tokens, model_tokens;
  bool base_stopped = false, model_stopped = false;  // stopped on end-of-generation
  std::string base_answer, model_answer;             // decoded, end token excluded, valid UTF-8
  int match_length = 0;                              // common prefix of the token lists
  bool identical = false;
  std::vector<double> kld;  // KL(base || model) at each position of the base's answer
  double kld_mean = 0, kld_max = 0;
  bool diverges_early = false;  // not identical and match_length < half the base answer
};

struct CompareSummary {
  int n_prompts = 0;
  double mean_match_length = 0;
  double mean_match_fraction = 0;  // match_length / base answer length, averaged over prompts
  double identical_fraction = 0;
  int n_identical = 0;
  int n_diverges_early = 0;
  double mean_kld = 0;  // over all positions of all prompts
  double max_kld = 0;
};

struct CompareResult {
  std::vector<PromptComparison> prompts;
  CompareSummary summary;
  int n_ctx = 0;
};

// Called after each prompt with (prompts done, total).
using CompareProgress = std::function<void(int, int)>;

// Both models must share the tokenizer's vocabulary (same n_vocab); `tok` encodes the prompts and
// decodes the answers of both.
CompareResult compare_models(const Model& base, const Model& model, const Tokenizer& tok,
                             const std::vector<std::string>& prompts, const CompareOptions& options,
                             const CompareProgress& progress = {});

// Replaces every invalid UTF-8 sequence with U+FFFD (answers cut mid-character stay printable).
std::string to_valid_utf8(std::string_view s);

// The `squish compare --json` document (schema squish-compare/1, docs/report-json.md).
struct CompareRunInfo {
  std::string base, model, prompts_file;
  bool chat_requested = false;
  std::string chat_note;  // why no format was applied, or where the template came from
};
nlohmann::json compare_result_json(const CompareResult& result, const CompareOptions& options,
                                   const CompareRunInfo& info);

}  // namespace squish
