// Turns an evaluation run into the numbers squish eval reports: totals, KLD distribution, and
// breakdowns by target-token frequency, by position in the window and by slice; rendered as JSON
// (schema squish-eval/1, docs/eval-json.md) or as text.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/eval_text.h"
#include "eval/kld.h"
#include "eval/kld_stats.h"

namespace squish {

// A group of scored tokens (frequency bucket, position bin or slice).
struct GroupReport {
  std::string label;
  // frequency buckets
  int64_t rank_min = 0, rank_max = -1;  // rank_max -1: open-ended
  int64_t n_distinct = 0;
  // position bins: target positions covered in a full window
  int pos_min = 0, pos_max = 0;
  // slices
  int64_t n_tokens = 0;
  int n_chunks = 0;
  StatSums sums;
  Summary summary;
};

// Rank boundaries of the frequency buckets: [0,100), [100,1k), [1k,10k), the rest (and tokens
// absent from the frequency source).
constexpr int64_t kFrequencyBucketEdges[] = {100, 1000, 10000};

struct EvalReport {
  StatSums sums;
  Summary total;
  // KLD distribution (llama.cpp's percentile definition) and Δp distribution.
  double kld_min = 0, kld_p1 = 0, kld_p5 = 0, kld_p10 = 0, kld_median = 0, kld_p90 = 0, kld_p95 = 0,
         kld_p99 = 0, kld_p999 = 0, kld_max = 0;
  double p_diff_median = 0, p_diff_p1 = 0, p_diff_p99 = 0;
  double mean_tail_mass = 0, max_tail_mass = 0;
  std::vector<GroupReport> frequency, position, slices;
};

// ranks: frequency rank per vocabulary id (-1: absent), from frequency_ranks().
EvalReport build_report(const EvalRun& run, const EvalText& text,
                        const std::vector<EvalWindow>& windows, const std::vector<int32_t>& ranks,
                        int n_ctx, int position_bins);

// What the report is about (paths and settings), for the renderers.
struct EvalMeta {
  std::optional<std::string> model;  // absent in a base-only (--save-base) run
  std::string base, base_kind;       // base_kind: "model" or "saved"
  std::string file, freq_source;     // freq_source: "text" or the --freq-file path
  int ctx = 0, n_vocab = 0;
  struct Saved {
    std::string path, mode;  // mode: "read" or "written"
    int top_k = 0;
    uint64_t bytes = 0;
    int tail_samples = 0;
  };
  std::optional<Saved> saved;
};

nlohmann::json eval_report_json(const EvalReport& report, const EvalRun& run, const EvalMeta& meta);
std::string eval_report_text(const EvalReport& report, const EvalRun& run, const EvalMeta& meta);

}  // namespace squish
