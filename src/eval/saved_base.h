// A base model's per-token distributions saved once (.squishkl), so KL divergence against it can be
// measured later without the base model.
//
// Per scored token the file keeps the top_k most likely tokens with their exact log-probabilities
// (logit minus the log-sum-exp over the WHOLE vocabulary, so each kept log p is exact, not
// renormalised over the kept set), the exact log p of the actual next token, the tail mass
// P_tail = sum of p over the non-kept tokens (summed directly, in double precision), and
// tail_samples stratified samples of the tail: the tail sorted by p (descending) is cut into
// tail_samples strata of equal mass P_tail / S and the token at the middle of each stratum's mass
// is stored with its exact log p.
//
// Everything but KLD is then exact (base NLL, Δp, top-1). KLD(P || Q) = head + tail, where the
// head (kept tokens) is exact and the tail term sum_{i in tail} p_i ln(p_i / q_i) lies in
//     [ L, U ],   L = P_tail ln(P_tail / Q_tail),
//                 U = max of sum p_i ln(p_i / q_i) over {0 <= p_i <= p_min, sum p_i = P_tail},
// Q_tail being the model's mass on the same tail tokens and p_min the smallest kept probability.
// L is the log-sum inequality (the tail treated as one outcome); U holds because every tail token
// has p_i <= p_min, and since the objective is convex its maximum sits at a vertex: p_min on the
// floor(P_tail / p_min) tail tokens the model finds least likely, the remainder on the next one.
// The estimate used is the stratified (midpoint) quadrature of the tail term,
//     (P_tail / S) * sum_j ln(p_{s_j} / q_{s_j}),
// clamped to [L, U] (with no samples it is L). So for every token the error is at most U - L,
// which squish reports as kld_tail_error_bound (a rigorous but loose bound); the quadrature is far
// tighter in practice, measured in docs/results.md.
//
// File layout (little-endian), version 1:
//   0  char[8]  "SQUISHKL"
//   8  u32      version (1)
//   12 u32      header bytes (88)
//   16 u32      n_vocab
//   20 u32      n_ctx
//   24 u32      top_k
//   28 u32      id bytes (2 when n_vocab <= 65536, else 4)
//   32 u32      windows
//   36 u32      flags (bit 0: each window's first token was replaced by BOS)
//   40 u64      scored tokens (records)
//   48 u64      bytes of the evaluated text
//   56 u64      FNV-1a 64 of the text's bytes
//   64 u64      FNV-1a 64 of the window layout and token ids (eval_text.h: token_layout_hash)
//   72 u64      bytes per record
//   80 u32      tail samples per record (S)
//   84 u32      reserved (0)
//   88 records, one per scored token in evaluation order:
//        f32 log p(target), f32 P_tail, top_k ids (id bytes each), top_k f32 log p (descending),
//        S ids, S f32 log p (the tail samples)
// The file size must be exactly 88 + records * record bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "eval/eval_text.h"

namespace squish {

struct SavedBaseHeader {
  uint32_t n_vocab = 0, n_ctx = 0, top_k = 0, id_bytes = 0, n_windows = 0, flags = 0;
  uint64_t n_scored = 0, n_text_bytes = 0, text_hash = 0, token_hash = 0;
  uint32_t tail_samples = 0;
  uint64_t record_bytes() const { return 8 + (uint64_t{top_k} + tail_samples) * (id_bytes + 4); }
};

constexpr uint32_t kSavedBaseVersion = 1;
constexpr uint32_t kSavedBaseHeaderBytes = 88;
constexpr uint32_t kMaxSavedTopK = 4096;
constexpr int kDefaultSavedTopK = 32;
constexpr uint32_t kMaxTailSamples = 4096;
constexpr int kDefaultTailSamples = 32;

// One decoded record.
struct SavedRow {
  float target_logp = 0;
  float tail_mass = 0;
  std::vector<int32_t> ids;  // most likely first
  std::vector<float> logp;
  std::vector<int32_t> sample_ids;  // stratified samples of the tail (see above)
  std::vector<float> sample_logp;
};

// Streams records into an AtomicFile; the file appears only after commit().
class SavedBaseWriter {
 public:
  SavedBaseWriter(const std::string& path, const SavedBaseHeader& header);
  // Encodes one token from the base's full log-softmax row (thread-safe; `scratch` per thread).
  // Returns the tail mass.
  double encode(const double* logp, int target, std::vector<uint8_t>& record,
                std::vector<int32_t>& scratch) const;
  void append(const std::vector<uint8_t>& record);
  void commit();  // checks that exactly n_scored records were written
  const SavedBaseHeader& header() const { return header_; }

 private:
  SavedBaseHeader header_;
  AtomicFile file_;
  uint64_t written_ = 0;
};

class SavedBaseReader {
 public:
  // Validates magic, version, header fields and the exact file size.
  explicit SavedBaseReader(const std::string& path);
  const SavedBaseHeader& header() const { return header_; }
  const std::string& path() const { return map_->path(); }
  uint64_t file_bytes() const { return map_->size(); }

  // Checks that this file was saved for exactly this evaluation; one-line errors otherwise.
  void check_matches(const EvalText& text, const std::vector<EvalWindow>& windows, int n_ctx,
                     bool replace_first_with_bos, int n_vocab) const;

  // Decodes and validates record `index` (ids in range and distinct is checked by saved_kld).
  void row(uint64_t index, SavedRow& out) const;

 private:
  std::shared_ptr<MappedFile> map_;
  SavedBaseHeader header_;
};

// KL(base || model) from a saved row and the model's full log-softmax row, with the tail
// approximation above. `tail_bound` receives the rigorous upper bound on the under-estimate.
// `mask` and `scratch` are per-thread scratch. Throws on duplicate kept ids.
double saved_kld(const SavedRow& row, const double* model_logp, int n_vocab, double* tail_bound,
                 std::vector<uint8_t>& mask, std::vector<double>& scratch, const std::string& path,
                 uint64_t index);

}  // namespace squish
