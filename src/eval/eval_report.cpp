#include "eval/eval_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace squish {

namespace {
using nlohmann::json;

int frequency_bucket(int32_t rank) {
  if (rank < 0) return 3;
  for (int b = 0; b < 3; ++b) {
    if (rank < kFrequencyBucketEdges[b]) return b;
  }
  return 3;
}

json estimate_json(const Estimate& e) {
  return {{"value", e.value}, {"stderr", e.stderr_}, {"ci95", {e.lo, e.hi}}};
}

// A number, or null when there is no model (base-only run) or no token in the group.
json num(bool valid, double v) {
  return valid ? json(v) : json(nullptr);
}

json group_json(const GroupReport& g, bool has_model) {
  const Summary& s = g.summary;
  const bool any = s.n > 0, m = any && has_model;
  return {{"n_scored", s.n},
          {"base_ppl", num(any, s.ppl_base.value)},
          {"model_ppl", num(m, s.ppl_model.value)},
          {"mean_delta_nll", num(m, s.ln_ppl_ratio.value)},
          {"mean_kld", num(m, s.kld.value)},
          {"kld_stderr", num(m, s.kld.stderr_)},
          {"same_top", num(m, s.same_top.value)},
          {"rms_delta_p", num(m, s.rms_p_diff.value)}};
}

void finish_group(GroupReport& g) {
  g.summary = summarize(g.sums);
}
}  // namespace

EvalReport build_report(const EvalRun& run, const EvalText& text,
                        const std::vector<EvalWindow>& windows, const std::vector<int32_t>& ranks,
                        int n_ctx, int position_bins) {
  EvalReport r;
  const int first = n_ctx / 2, n_full_rows = n_ctx - 1 - n_ctx / 2;
  const int bins = std::clamp(position_bins, 1, std::max(1, n_full_rows));
  // Frequency buckets.
  const char* labels[4] = {"top-100", "100-1k", "1k-10k", "rarer"};
  r.frequency.resize(4);
  for (int b = 0; b < 4; ++b) {
    r.frequency[b].label = labels[b];
    r.frequency[b].rank_min = b == 0 ? 0 : kFrequencyBucketEdges[b - 1];
    r.frequency[b].rank_max = b < 3 ? kFrequencyBucketEdges[b] - 1 : -1;
  }
  std::vector<std::set<int32_t>> distinct(4);
  // Position bins: rows r of a window's scored half with floor(r * bins / n_rows) == b.
  r.position.resize(bins);
  for (int b = 0; b < bins; ++b) {
    const int r_min = (b * n_full_rows + bins - 1) / bins;
    const int r_max = ((b + 1) * n_full_rows + bins - 1) / bins - 1;
    r.position[b].label = fmt::format("{}-{}", first + 1 + r_min, first + 1 + r_max);
    r.position[b].pos_min = first + 1 + r_min;
    r.position[b].pos_max = first + 1 + r_max;
  }
  r.slices.resize(text.slices.size());
  for (size_t s = 0; s < text.slices.size(); ++s) {
    r.slices[s].label = text.slices[s].label;
    r.slices[s].n_tokens = static_cast<int64_t>(text.slices[s].tokens.size());
  }
  for (const EvalWindow& w : windows) r.slices[w.slice].n_chunks++;

  std::vector<double> klds, p_diffs;
  klds.reserve(run.tokens.size());
  p_diffs.reserve(run.tokens.size());
  for (const TokenRecord& t : run.tokens) {
    r.sums.add(t);
    const int fb =
        frequency_bucket(t.target < static_cast<int32_t>(ranks.size()) ? ranks[t.target] : -1);
    r.frequency[fb].sums.add(t);
    distinct[fb].insert(t.target);
    const int pb = static_cast<int>(static_cast<int64_t>(t.row) * bins / std::max(1, t.n_rows));
    r.position[std::min(pb, bins - 1)].sums.add(t);
    r.slices[t.slice].sums.add(t);
    klds.push_back(t.kld);
    p_diffs.push_back(t.p_diff);
  }
  for (int b = 0; b < 4; ++b) r.frequency[b].n_distinct = static_cast<int64_t>(distinct[b].size());
  for (auto* groups : {&r.frequency, &r.position, &r.slices}) {
    for (GroupReport& g : *groups) finish_group(g);
  }
  r.total = summarize(r.sums);
  std::sort(klds.begin(), klds.end());
  std::sort(p_diffs.begin(), p_diffs.end());
  if (!klds.empty()) {
    r.kld_min = klds.front();
    r.kld_p1 = percentile(klds, 0.01);
    r.kld_p5 = percentile(klds, 0.05);
    r.kld_p10 = percentile(klds, 0.10);
    r.kld_median = median(klds);
    r.kld_p90 = percentile(klds, 0.90);
    r.kld_p95 = percentile(klds, 0.95);
    r.kld_p99 = percentile(klds, 0.99);
    r.kld_p999 = percentile(klds, 0.999);
    r.kld_max = klds.back();
    r.p_diff_median = median(p_diffs);
    r.p_diff_p1 = percentile(p_diffs, 0.01);
    r.p_diff_p99 = percentile(p_diffs, 0.99);
  }
  if (!run.tail_mass.empty()) {
    double sum = 0;
    for (float m : run.tail_mass) {
      sum += m;
      r.max_tail_mass = std::max(r.max_tail_mass, static_cast<double>(m));
    }
    r.mean_tail_mass = sum / run.tail_mass.size();
  }
  return r;
}

json eval_report_json(const EvalReport& r, const EvalRun& run, const EvalMeta& meta) {
  const Summary& s = r.total;
  const bool m = run.has_model && s.n > 0;
  json j;
  j["schema"] = "squish-eval/1";
  j["model"] = meta.model ? json(*meta.model) : json(nullptr);
  j["base"] = meta.base;
  j["base_kind"] = meta.base_kind;
  j["file"] = meta.file;
  j["ctx"] = meta.ctx;
  j["n_vocab"] = meta.n_vocab;
  j["n_chunks"] = run.n_windows;
  j["n_scored"] = s.n;
  // The flat keys of the first --json output, kept for existing readers.
  j["base_ppl"] = s.ppl_base.value;
  j["model_ppl"] = num(m, s.ppl_model.value);
  j["ppl_ratio"] = num(m, s.ppl_ratio.value);
  j["mean_kld"] = num(m, s.kld.value);
  j["kld_stderr"] = num(m, s.kld.stderr_);
  j["median_kld"] = num(m, r.kld_median);
  j["p90_kld"] = num(m, r.kld_p90);
  j["p99_kld"] = num(m, r.kld_p99);
  j["max_kld"] = num(m, r.kld_max);
  j["top1_agreement"] = num(m, s.same_top.value);
  j["seconds"] = run.seconds;
  auto est = [&](const Estimate& e) { return m ? estimate_json(e) : json(nullptr); };
  j["ppl"] = {
      {"base", estimate_json(s.ppl_base)}, {"model", est(s.ppl_model)},
      {"delta", est(s.ppl_delta)},         {"ratio", est(s.ppl_ratio)},
      {"ln_ratio", est(s.ln_ppl_ratio)},   {"ln_correlation", num(m, s.ln_ppl_correlation)}};
  if (m) {
    j["kld"] = {{"mean", estimate_json(s.kld)},
                {"min", r.kld_min},
                {"p1", r.kld_p1},
                {"p5", r.kld_p5},
                {"p10", r.kld_p10},
                {"median", r.kld_median},
                {"p90", r.kld_p90},
                {"p95", r.kld_p95},
                {"p99", r.kld_p99},
                {"p999", r.kld_p999},
                {"max", r.kld_max}};
    j["same_top"] = estimate_json(s.same_top);
    j["delta_p"] = {{"mean", estimate_json(s.p_diff)},
                    {"rms", estimate_json(s.rms_p_diff)},
                    {"max_abs", s.max_abs_p_diff},
                    {"median", r.p_diff_median},
                    {"p1", r.p_diff_p1},
                    {"p99", r.p_diff_p99}};
  } else {
    j["kld"] = nullptr;
    j["same_top"] = nullptr;
    j["delta_p"] = nullptr;
  }
  if (meta.saved) {
    const bool read = meta.saved->mode == "read";
    j["saved_base"] = {{"path", meta.saved->path},
                       {"mode", meta.saved->mode},
                       {"top_k", meta.saved->top_k},
                       {"tail_samples", meta.saved->tail_samples},
                       {"bytes", meta.saved->bytes},
                       {"mean_tail_mass", r.mean_tail_mass},
                       {"max_tail_mass", r.max_tail_mass},
                       {"kld_tail_error_bound", num(read && m, s.mean_tail_bound)}};
  } else {
    j["saved_base"] = nullptr;
  }
  json buckets = json::array(), bins = json::array();
  for (const GroupReport& g : r.frequency) {
    json b = {{"label", g.label},
              {"rank_min", g.rank_min},
              {"rank_max", g.rank_max < 0 ? json(nullptr) : json(g.rank_max)},
              {"n_distinct", g.n_distinct}};
    b.update(group_json(g, run.has_model));
    buckets.push_back(b);
  }
  for (const GroupReport& g : r.position) {
    json b = {{"pos_min", g.pos_min}, {"pos_max", g.pos_max}};
    b.update(group_json(g, run.has_model));
    bins.push_back(b);
  }
  j["breakdowns"] = {{"frequency", {{"source", meta.freq_source}, {"buckets", buckets}}},
                     {"position", {{"bins", bins}}}};
  if (r.slices.size() == 1 && r.slices[0].label.empty()) {
    j["slices"] = nullptr;
  } else {
    json slices = json::array();
    for (const GroupReport& g : r.slices) {
      json e = {{"label", g.label}, {"n_tokens", g.n_tokens}, {"n_chunks", g.n_chunks}};
      e.update(group_json(g, run.has_model));
      slices.push_back(e);
    }
    j["slices"] = slices;
  }
  return j;
}

namespace {
std::string pm(const Estimate& e, double scale, int prec) {
  return fmt::format("{:.{}f} ± {:.{}f}  [95% CI {:.{}f} .. {:.{}f}]", scale * e.value, prec,
                     scale * e.stderr_, prec, scale * e.lo, prec, scale * e.hi, prec);
}

std::string group_line(const std::string& name, const GroupReport& g, bool has_model) {
  const Summary& s = g.summary;
  if (s.n == 0) return fmt::format("  {:<14} {:>8}\n", name, 0);
  if (!has_model) {
    return fmt::format("  {:<14} {:>8} {:>12.4f}\n", name, s.n, s.ppl_base.value);
  }
  return fmt::format("  {:<14} {:>8} {:>12.4f} {:>12.4f} {:>+10.5f} {:>11.6f} {:>9.2f}%\n", name,
                     s.n, s.ppl_base.value, s.ppl_model.value, s.ln_ppl_ratio.value, s.kld.value,
                     100 * s.same_top.value);
}

std::string group_header(const std::string& first, bool has_model) {
  if (!has_model) return fmt::format("  {:<14} {:>8} {:>12}\n", first, "tokens", "PPL(base)");
  return fmt::format("  {:<14} {:>8} {:>12} {:>12} {:>10} {:>11} {:>10}\n", first, "tokens",
                     "PPL(base)", "PPL(model)", "mean ΔNLL", "mean KLD", "same top");
}
}  // namespace

std::string eval_report_text(const EvalReport& r, const EvalRun& run, const EvalMeta& meta) {
  const Summary& s = r.total;
  const bool m = run.has_model && s.n > 0;
  std::string o;
  o += fmt::format("{} vs {} on {}: {} windows of {}, {} scored tokens, {:.1f} s\n",
                   meta.model ? *meta.model : std::string("(base only)"), meta.base, meta.file,
                   run.n_windows, meta.ctx, s.n, run.seconds);
  o += "\n====== Perplexity ======\n";
  o += fmt::format("PPL(base)                    {}\n", pm(s.ppl_base, 1, 4));
  if (m) {
    o += fmt::format("PPL(model)                   {}\n", pm(s.ppl_model, 1, 4));
    o += fmt::format("PPL(model) - PPL(base)       {}\n", pm(s.ppl_delta, 1, 4));
    o += fmt::format("PPL(model) / PPL(base)       {}\n", pm(s.ppl_ratio, 1, 5));
    o += fmt::format("ln(PPL(model) / PPL(base))   {}\n", pm(s.ln_ppl_ratio, 1, 5));
    o += fmt::format("Cor(ln PPL(model), ln PPL(base))  {:.2f}%\n", 100 * s.ln_ppl_correlation);
    o += "\n====== KL divergence (base || model) ======\n";
    o += fmt::format("mean     {}\n", pm(s.kld, 1, 6));
    o +=
        fmt::format("median {:.6f}, p90 {:.6f}, p95 {:.6f}, p99 {:.6f}, p99.9 {:.6f}, max {:.6f}\n",
                    r.kld_median, r.kld_p90, r.kld_p95, r.kld_p99, r.kld_p999, r.kld_max);
    o += "\n====== Token probability ======\n";
    o += fmt::format("same top     {} %\n", pm(s.same_top, 100, 3));
    o += fmt::format("RMS Δp       {} %\n", pm(s.rms_p_diff, 100, 3));
    o += fmt::format("mean Δp      {} %\n", pm(s.p_diff, 100, 3));
    o += fmt::format("max |Δp|     {:.3f} %\n", 100 * s.max_abs_p_diff);
  }
  if (meta.saved) {
    o += fmt::format(
        "\nsaved base {} ({}): top-{} + {} tail samples, {} bytes, tail mass mean {:.3g} max "
        "{:.3g}",
        meta.saved->path, meta.saved->mode, meta.saved->top_k, meta.saved->tail_samples,
        meta.saved->bytes, r.mean_tail_mass, r.max_tail_mass);
    if (meta.saved->mode == "read" && m) {
      o += fmt::format(", KLD tail error bound (mean) {:.3g}", s.mean_tail_bound);
    }
    o += "\n";
  }
  o += fmt::format(
      "\n====== By target-token frequency (ranked over {}) ======\n",
      meta.freq_source == "text" ? std::string("the evaluated text") : meta.freq_source);
  o += group_header("bucket", run.has_model);
  for (const GroupReport& g : r.frequency) {
    o += group_line(fmt::format("{} ({})", g.label, g.n_distinct), g, run.has_model);
  }
  o += "\n====== By position in the window ======\n";
  o += group_header("positions", run.has_model);
  for (const GroupReport& g : r.position) o += group_line(g.label, g, run.has_model);
  if (!(r.slices.size() == 1 && r.slices[0].label.empty())) {
    o += "\n====== By slice ======\n";
    o += group_header("slice", run.has_model);
    for (const GroupReport& g : r.slices) o += group_line(g.label, g, run.has_model);
  }
  return o;
}

}  // namespace squish
