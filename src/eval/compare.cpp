#include "eval/compare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/json_file.h"
#include "core/text.h"
#include "formats/gguf.h"
#include "runtime/session.h"

namespace squish {

namespace {

constexpr size_t kMaxPromptsFileBytes = size_t{64} << 20;
constexpr size_t kMaxTokenizerConfigBytes = size_t{64} << 20;
// Teacher-forced positions evaluated per call (bounds the logits buffer to this many rows).
constexpr int kTeacherChunk = 64;

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// log-softmax of one row, in double precision.
void log_softmax(const float* logits, int n, std::vector<double>& out) {
  const float mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = std::log(sum) + mx;
  out.resize(n);
  for (int i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

// KL(p || q) for two rows of logits, clamped at 0 (rounding can make it a hair negative).
double kl_divergence(const float* base_logits, const float* model_logits, int n,
                     std::vector<double>& lp, std::vector<double>& lq) {
  log_softmax(base_logits, n, lp);
  log_softmax(model_logits, n, lq);
  double kl = 0;
  for (int i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return std::max(kl, 0.0);
}

struct Generation {
  std::vector<int32_t> tokens;
  bool stopped = false;
  std::vector<float> first_logits;  // the prompt's last row: the distribution of token 0
};

Generation generate(Session& session, const std::vector<int32_t>& prompt, int n_vocab,
                    const CompareOptions& options, const std::vector<int32_t>& stop_ids) {
  Generation g;
  Sampler sampler(options.sampling);
  session.reset();
  std::span<const float> row = session.eval_last(prompt.data(), static_cast<int>(prompt.size()));
  g.first_logits.assign(row.begin(), row.end());
  for (int i = 0; i < options.n_predict; ++i) {
    int32_t next = sampler.sample(row.data(), n_vocab);
    g.tokens.push_back(next);
    if (!options.ignore_eos &&
        std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      g.stopped = true;
      break;
    }
    if (i + 1 < options.n_predict) row = session.eval_last(&next, 1);
  }
  return g;
}

std::string answer_text(const Tokenizer& tok, const std::vector<int32_t>& tokens, bool stopped) {
  std::string text;
  const size_t n = stopped ? tokens.size() - 1 : tokens.size();
  for (size_t i = 0; i < n; ++i) text += tok.token_to_piece(tokens[i]);
  return to_valid_utf8(text);
}

}  // namespace

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    const size_t bad = find_invalid_utf8(s);
    if (bad == std::string_view::npos) {
      out.append(s);
      break;
    }
    out.append(s.substr(0, bad));
    out.append("\xEF\xBF\xBD");  // U+FFFD
    s.remove_prefix(bad + 1);
  }
  return out;
}

std::vector<std::string> read_prompts_file(const std::string& path) {
  const std::string text = read_text_file(path, kMaxPromptsFileBytes);
  std::vector<std::string_view> lines;
  for (size_t start = 0; start <= text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  bool jsonl = false;
  for (std::string_view line : lines) {
    if (is_blank(line)) continue;
    jsonl = line[line.find_first_not_of(" \t")] == '{';
    break;
  }
  std::vector<std::string> prompts;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (is_blank(line)) continue;
    if (prompts.size() == kMaxPrompts) fail("{}: more than {} prompts", path, kMaxPrompts);
    if (!jsonl) {
      prompts.emplace_back(line);
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      std::string msg = e.what();
      if (auto pos = msg.find("] "); pos != std::string::npos) msg = msg.substr(pos + 2);
      fail("{}: line {}: not valid JSON: {}", path, i + 1, msg);
    }
    if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string()) {
      fail(
          "{}: line {}: a JSONL prompts file needs an object with a string \"prompt\" on every "
          "line",
          path, i + 1);
    }
    std::string p = j["prompt"].get<std::string>();
    if (p.empty()) fail("{}: line {}: empty prompt", path, i + 1);
    prompts.push_back(std::move(p));
  }
  if (prompts.empty()) fail("{}: no prompts (one per line, or JSONL with \"prompt\")", path);
  return prompts;
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::None:
      return "none";
    case ChatFormat::ChatML:
      return "chatml";
    case ChatFormat::Llama3:
      return "llama3";
    case ChatFormat::Llama2:
      return "llama2";
    case ChatFormat::Gemma:
      return "gemma";
    case ChatFormat::Phi3:
      return "phi3";
  }
  return "none";
}

std::string find_chat_template(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    const fs::path dir(model_path);
    if (fs::is_regular_file(dir / "chat_template.jinja", ec)) {
      return read_text_file((dir / "chat_template.jinja").string(), kMaxTokenizerConfigBytes);
    }
    const fs::path cfg = dir / "tokenizer_config.json";
    if (!fs::is_regular_file(cfg, ec)) return "";
    const nlohmann::json j = read_json_file(cfg.string(), kMaxTokenizerConfigBytes);
    if (!j.is_object() || !j.contains("chat_template")) return "";
    const nlohmann::json& t = j["chat_template"];
    if (t.is_string()) return t.get<std::string>();
    if (t.is_array()) {  // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      std::string first;
      for (const auto& e : t) {
        if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
        if (e.contains("name") && e["name"] == "default") return e["template"].get<std::string>();
        if (first.empty()) first = e["template"].get<std::string>();
      }
      return first;
    }
    return "";
  }
  // A GGUF file carries it as metadata; other single files (llama2.c) have none.
  char magic[4] = {};
  if (FILE* f = std::fopen(model_path.c_str(), "rb")) {
    const size_t got = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (got == 4 && std::string_view(magic, 4) == "GGUF") {
      auto gguf = GGUFFile::open(model_path);
      return gguf->get_string("tokenizer.chat_template").value_or("");
    }
  }
  return "";
}

ChatFormat detect_chat_format(std::string_view t) {
  auto has = [&](std::string_view s) { return t.find(s) != std::string_view::npos; };
  if (t.empty()) return ChatFormat::None;
  if (has("<|start_header_id|>")) return ChatFormat::Llama3;
  if (has("<|im_start|>")) return ChatFormat::ChatML;
  if (has("<start_of_turn>")) return ChatFormat::Gemma;
  if (has("<|user|>") && has("<|assistant|>")) return ChatFormat::Phi3;
  if (has("[INST]")) return ChatFormat::Llama2;
  return ChatFormat::None;
}

std::string apply_chat_format(ChatFormat f, std::string_view prompt) {
  const std::string p(prompt);
  switch (f) {
    case ChatFormat::None:
      return p;
    case ChatFormat::ChatML:
      return "<|im_start|>user\n" + p + "<|im_end|>\n<|im_start|>assistant\n";
    case ChatFormat::Llama3:
      return "<|start_header_id|>user<|end_header_id|>\n\n" + p +
             "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatFormat::Llama2:
      return "[INST] " + p + " [/INST]";
    case ChatFormat::Gemma:
      return "<start_of_turn>user\n" + p + "<end_of_turn>\n<start_of_turn>model\n";
    case ChatFormat::Phi3:
      return "<|user|>\n" + p + "<|end|>\n<|assistant|>\n";
  }
  return p;
}

const char* chat_end_of_turn(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML:
      return "<|im_end|>";
    case ChatFormat::Llama3:
      return "<|eot_id|>";
    case ChatFormat::Gemma:
      return "<end_of_turn>";
    case ChatFormat::Phi3:
      return "<|end|>";
    case ChatFormat::Llama2:  // ends with EOS
    case ChatFormat::None:
      return "";
  }
  return "";
}

CompareResult compare_models(const Model& base, const Model& model, const Tokenizer& tok,
                             const std::vector<std::string>& prompts, const CompareOptions& options,
                             const CompareProgress& progress) {
  const int V = base.config.n_vocab;
  if (model.config.n_vocab != V) {
    fail("{} and {} have different vocabularies ({} vs {} tokens)", base.path, model.path, V,
         model.config.n_vocab);
  }
  if (options.n_predict < 1) fail("compare: the number of tokens to generate must be >= 1");
  std::vector<int32_t> stop_ids;
  if (tok.eos_id() >= 0) stop_ids.push_back(tok.eos_id());
  if (const std::string eot = chat_end_of_turn(options.chat); !eot.empty()) {
    if (int32_t id = tok.token_id(eot); id >= 0) stop_ids.push_back(id);
  }
  // Encode everything first, so a prompt that does not fit fails before any generation.
  std::vector<std::vector<int32_t>> encoded;
  std::vector<std::string> formatted;
  for (size_t i = 0; i < prompts.size(); ++i) {
    formatted.push_back(apply_chat_format(options.chat, prompts[i]));
    std::vector<int32_t> ids;
    if (tok.add_bos() && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    const std::vector<int32_t> body =
        tok.encode(formatted.back(), options.chat != ChatFormat::None);
    ids.insert(ids.end(), body.begin(), body.end());
    if (ids.empty()) fail("prompt {} is empty after tokenization", i + 1);
    encoded.push_back(std::move(ids));
  }
  SessionOptions so;
  so.n_ctx = options.n_ctx;
  so.n_threads = options.n_threads;
  Session sb(base, so), sm(model, so);
  const int n_ctx = std::min(sb.n_ctx(), sm.n_ctx());
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (static_cast<int64_t>(encoded[i].size()) + options.n_predict > n_ctx) {
      fail("prompt {} ({} tokens) + {} new tokens exceed the context length {} (use --ctx)", i + 1,
           encoded[i].size(), options.n_predict, n_ctx);
    }
  }

  CompareResult result;
  result.n_ctx = n_ctx;
  std::vector<double> lp, lq;
  std::vector<float> lb, lm;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t>& ids = encoded[i];
    const int n_prompt = static_cast<int>(ids.size());
    PromptComparison c;
    c.prompt = prompts[i];
    c.formatted = formatted[i];
    c.n_prompt_tokens = n_prompt;
    Generation gb = generate(sb, ids, V, options, stop_ids);
    Generation gm = generate(sm, ids, V, options, stop_ids);
    c.base_tokens = gb.tokens;
    c.model_tokens = gm.tokens;
    c.base_stopped = gb.stopped;
    c.model_stopped = gm.stopped;
    c.base_answer = answer_text(tok, gb.tokens, gb.stopped);
    c.model_answer = answer_text(tok, gm.tokens, gm.stopped);
    const size_t common = std::min(gb.tokens.size(), gm.tokens.size());
    while (c.match_length < static_cast<int>(common) &&
           gb.tokens[c.match_length] == gm.tokens[c.match_length]) {
      ++c.match_length;
    }
    c.identical = gb.tokens == gm.tokens;

    // KL along the base's answer. Position 0 comes from the prompt; positions 1.. from feeding the
    // base's tokens through both models from the cached prompt, the same way for both, so a model
    // compared with itself gives exactly 0.
    const int L = static_cast<int>(gb.tokens.size());
    c.kld.push_back(kl_divergence(gb.first_logits.data(), gm.first_logits.data(), V, lp, lq));
    sb.truncate(n_prompt);
    sm.truncate(n_prompt);
    for (int s = 0; s < L - 1; s += kTeacherChunk) {
      const int n = std::min(kTeacherChunk, L - 1 - s);
      sb.eval(gb.tokens.data() + s, n, true, lb);
      sm.eval(gb.tokens.data() + s, n, true, lm);
      for (int r = 0; r < n; ++r) {
        const size_t off = static_cast<size_t>(r) * V;
        c.kld.push_back(kl_divergence(lb.data() + off, lm.data() + off, V, lp, lq));
      }
    }
    double sum = 0;
    for (double k : c.kld) {
      sum += k;
      c.kld_max = std::max(c.kld_max, k);
    }
    c.kld_mean = sum / c.kld.size();
    c.diverges_early = !c.identical && 2 * c.match_length < L;
    result.prompts.push_back(std::move(c));
    if (progress) progress(static_cast<int>(i + 1), static_cast<int>(prompts.size()));
  }

  CompareSummary& s = result.summary;
  s.n_prompts = static_cast<int>(result.prompts.size());
  double kld_sum = 0;
  size_t kld_n = 0;
  for (const PromptComparison& c : result.prompts) {
    s.mean_match_length += c.match_length;
    s.mean_match_fraction += static_cast<double>(c.match_length) / c.base_tokens.size();
    s.n_identical += c.identical;
    s.n_diverges_early += c.diverges_early;
    for (double k : c.kld) kld_sum += k;
    kld_n += c.kld.size();
    s.max_kld = std::max(s.max_kld, c.kld_max);
  }
  if (s.n_prompts > 0) {
    s.mean_match_length /= s.n_prompts;
    s.mean_match_fraction /= s.n_prompts;
    s.identical_fraction = static_cast<double>(s.n_identical) / s.n_prompts;
  }
  s.mean_kld = kld_n > 0 ? kld_sum / kld_n : 0;
  return result;
}

nlohmann::json compare_result_json(const CompareResult& r, const CompareOptions& o,
                                   const CompareRunInfo& info) {
  using nlohmann::json;
  json prompts = json::array();
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const PromptComparison& c = r.prompts[i];
    prompts.push_back({{"index", i},
                       {"prompt", to_valid_utf8(c.prompt)},
                       {"formatted_prompt", to_valid_utf8(c.formatted)},
                       {"n_prompt_tokens", c.n_prompt_tokens},
                       {"base_answer", c.base_answer},
                       {"model_answer", c.model_answer},
                       {"base_tokens", c.base_tokens},
                       {"model_tokens", c.model_tokens},
                       {"base_stop", c.base_stopped ? "eog" : "length"},
                       {"model_stop", c.model_stopped ? "eog" : "length"},
                       {"answer_length", c.base_tokens.size()},
                       {"model_answer_length", c.model_tokens.size()},
                       {"match_length", c.match_length},
                       {"identical", c.identical},
                       {"kld_mean", c.kld_mean},
                       {"kld_max", c.kld_max},
                       {"kld", c.kld},
                       {"diverges_early", c.diverges_early}});
  }
  const CompareSummary& s = r.summary;
  return {{"schema", "squish-compare/1"},
          {"base", info.base},
          {"model", info.model},
          {"prompts_file", info.prompts_file},
          {"chat",
           {{"requested", info.chat_requested},
            {"format", chat_format_name(o.chat)},
            {"note", info.chat_note}}},
          {"n_predict", o.n_predict},
          {"n_ctx", r.n_ctx},
          {"sampling",
           {{"temperature", o.sampling.temperature},
            {"top_k", o.sampling.top_k},
            {"top_p", o.sampling.top_p},
            {"seed", o.sampling.seed}}},
          {"ignore_eos", o.ignore_eos},
          {"prompts", prompts},
          {"summary",
           {{"n_prompts", s.n_prompts},
            {"mean_match_length", s.mean_match_length},
            {"mean_match_fraction", s.mean_match_fraction},
            {"n_identical", s.n_identical},
            {"identical_fraction", s.identical_fraction},
            {"n_diverges_early", s.n_diverges_early},
            {"mean_kld", s.mean_kld},
            {"max_kld", s.max_kld}}}};
}

}  // namespace squish
