#include "eval/saved_base.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace squish {

namespace {
constexpr char kMagic[8] = {'S', 'Q', 'U', 'I', 'S', 'H', 'K', 'L'};
constexpr uint32_t kMaxVocab = 1u << 24;

template <typename T>
void put(uint8_t*& p, T v) {
  std::memcpy(p, &v, sizeof(T));
  p += sizeof(T);
}
template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
}  // namespace

SavedBaseWriter::SavedBaseWriter(const std::string& path, const SavedBaseHeader& header)
    : header_(header), file_(path) {
  uint8_t buf[kSavedBaseHeaderBytes] = {};
  uint8_t* p = buf;
  std::memcpy(p, kMagic, 8);
  p += 8;
  put<uint32_t>(p, kSavedBaseVersion);
  put<uint32_t>(p, kSavedBaseHeaderBytes);
  put<uint32_t>(p, header.n_vocab);
  put<uint32_t>(p, header.n_ctx);
  put<uint32_t>(p, header.top_k);
  put<uint32_t>(p, header.id_bytes);
  put<uint32_t>(p, header.n_windows);
  put<uint32_t>(p, header.flags);
  put<uint64_t>(p, header.n_scored);
  put<uint64_t>(p, header.n_text_bytes);
  put<uint64_t>(p, header.text_hash);
  put<uint64_t>(p, header.token_hash);
  put<uint64_t>(p, header.record_bytes());
  put<uint32_t>(p, header.tail_samples);
  put<uint32_t>(p, 0);
  file_.write(buf, sizeof(buf));
}

double SavedBaseWriter::encode(const double* logp, int target, std::vector<uint8_t>& record,
                               std::vector<int32_t>& scratch) const {
  const int V = static_cast<int>(header_.n_vocab);
  const int k = static_cast<int>(header_.top_k);
  const int S = static_cast<int>(header_.tail_samples);
  scratch.resize(V);
  for (int i = 0; i < V; ++i) scratch[i] = i;
  // Most likely first; equal log p by id, so kept[0] is the first arg-max like llama.cpp's top.
  auto more_likely = [&](int32_t a, int32_t b) {
    return logp[a] > logp[b] || (logp[a] == logp[b] && a < b);
  };
  std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), more_likely);
  // Tail mass summed over the tail itself (not 1 - kept), so it keeps its relative precision.
  double tail = 0;
  for (int i = k; i < V; ++i) tail += std::exp(logp[scratch[i]]);
  record.resize(header_.record_bytes());
  uint8_t* p = record.data();
  put<float>(p, static_cast<float>(logp[target]));
  put<float>(p, static_cast<float>(tail));
  auto put_id = [&](int32_t id) {
    if (header_.id_bytes == 2) {
      put<uint16_t>(p, static_cast<uint16_t>(id));
    } else {
      put<uint32_t>(p, static_cast<uint32_t>(id));
    }
  };
  for (int j = 0; j < k; ++j) put_id(scratch[j]);
  for (int j = 0; j < k; ++j) put<float>(p, static_cast<float>(logp[scratch[j]]));
  if (S == 0) return tail;
  // Stratified tail samples: tail in descending p (tokens far too unlikely to matter are left
  // unsorted at the end), the token at the middle of each of S equal-mass strata.
  std::vector<int32_t> samples(S, k < V ? scratch[V - 1] : scratch[0]);
  if (k < V && tail > 0) {
    const double negligible = std::log(tail / (static_cast<double>(S) * 1e6));
    auto mid = std::partition(scratch.begin() + k, scratch.end(),
                              [&](int32_t i) { return logp[i] >= negligible; });
    std::sort(scratch.begin() + k, mid, more_likely);
    double cum = 0;
    int j = 0;
    for (int i = k; i < V && j < S; ++i) {
      cum += std::exp(logp[scratch[i]]);
      while (j < S && cum >= (j + 0.5) * tail / S) samples[j++] = scratch[i];
    }
    for (; j < S; ++j) samples[j] = scratch[V - 1];  // rounding: the sum fell just short
  }
  for (int j = 0; j < S; ++j) put_id(samples[j]);
  for (int j = 0; j < S; ++j) put<float>(p, static_cast<float>(logp[samples[j]]));
  return tail;
}

void SavedBaseWriter::append(const std::vector<uint8_t>& record) {
  file_.write(record.data(), record.size());
  ++written_;
}

void SavedBaseWriter::commit() {
  if (written_ != header_.n_scored) {
    fail("{}: internal: wrote {} of {} records", file_.path(), written_, header_.n_scored);
  }
  file_.commit();
}

SavedBaseReader::SavedBaseReader(const std::string& path) : map_(MappedFile::open(path)) {
  const uint8_t* d = map_->data();
  const size_t size = map_->size();
  if (size < 8 || std::memcmp(d, kMagic, 8) != 0) {
    fail("{}: not a squish saved-base file (bad magic; expected 'SQUISHKL')", path);
  }
  if (size < kSavedBaseHeaderBytes) {
    fail("{}: truncated header ({} of {} bytes)", path, size, kSavedBaseHeaderBytes);
  }
  const uint32_t version = get<uint32_t>(d + 8);
  if (version != kSavedBaseVersion) {
    fail("{}: unsupported saved-base version {} (this squish reads version {})", path, version,
         kSavedBaseVersion);
  }
  if (get<uint32_t>(d + 12) != kSavedBaseHeaderBytes) {
    fail("{}: bad header size {}", path, get<uint32_t>(d + 12));
  }
  SavedBaseHeader& h = header_;
  h.n_vocab = get<uint32_t>(d + 16);
  h.n_ctx = get<uint32_t>(d + 20);
  h.top_k = get<uint32_t>(d + 24);
  h.id_bytes = get<uint32_t>(d + 28);
  h.n_windows = get<uint32_t>(d + 32);
  h.flags = get<uint32_t>(d + 36);
  h.n_scored = get<uint64_t>(d + 40);
  h.n_text_bytes = get<uint64_t>(d + 48);
  h.text_hash = get<uint64_t>(d + 56);
  h.token_hash = get<uint64_t>(d + 64);
  const uint64_t record_bytes = get<uint64_t>(d + 72);
  h.tail_samples = get<uint32_t>(d + 80);
  if (h.tail_samples > kMaxTailSamples) fail("{}: bad tail sample count {}", path, h.tail_samples);
  if (get<uint32_t>(d + 84) != 0) fail("{}: reserved header field is not 0", path);
  if (h.n_vocab < 2 || h.n_vocab > kMaxVocab) fail("{}: bad vocabulary size {}", path, h.n_vocab);
  if (h.n_ctx < 8 || h.n_ctx > (1u << 20)) fail("{}: bad context length {}", path, h.n_ctx);
  if (h.top_k < 1 || h.top_k > std::min(kMaxSavedTopK, h.n_vocab)) {
    fail("{}: bad top-k {} (vocabulary {})", path, h.top_k, h.n_vocab);
  }
  if (h.id_bytes != (h.n_vocab <= 65536 ? 2u : 4u)) fail("{}: bad id size {}", path, h.id_bytes);
  if (h.flags > 1) fail("{}: unknown flags {:#x}", path, h.flags);
  if (record_bytes != h.record_bytes()) fail("{}: bad record size {}", path, record_bytes);
  if (h.n_windows < 1 || h.n_scored < 1 || h.n_scored > (uint64_t{1} << 40)) {
    fail("{}: bad counts ({} windows, {} scored tokens)", path, h.n_windows, h.n_scored);
  }
  const uint64_t expected = kSavedBaseHeaderBytes + h.n_scored * record_bytes;
  if (size != expected) {
    fail("{}: {} ({} bytes, expected {} for {} scored tokens)", path,
         size < expected ? "truncated" : "trailing bytes", size, expected, h.n_scored);
  }
}

void SavedBaseReader::check_matches(const EvalText& text, const std::vector<EvalWindow>& windows,
                                    int n_ctx, bool replace_first_with_bos, int n_vocab) const {
  const SavedBaseHeader& h = header_;
  const std::string& p = path();
  if (h.text_hash != text.text_hash || h.n_text_bytes != text.n_text_bytes) {
    fail("{}: saved for a different text ({} bytes, hash {:016x}); {} has {} bytes, hash {:016x}",
         p, h.n_text_bytes, h.text_hash, text.path, text.n_text_bytes, text.text_hash);
  }
  if (static_cast<int>(h.n_vocab) != n_vocab) {
    fail("{}: saved for a vocabulary of {} tokens; the model has {}", p, h.n_vocab, n_vocab);
  }
  if (static_cast<int>(h.n_ctx) != n_ctx) {
    fail("{}: saved with --ctx {}, this run uses --ctx {}", p, h.n_ctx, n_ctx);
  }
  if (h.n_windows != windows.size()) {
    fail("{}: saved with {} windows, this run has {} (use the same --chunks)", p, h.n_windows,
         windows.size());
  }
  if (h.token_hash != token_layout_hash(text, windows, n_ctx, replace_first_with_bos)) {
    fail("{}: the token ids differ from the ones it was saved for (another tokenizer?)", p);
  }
  uint64_t scored = 0;
  for (const EvalWindow& w : windows) scored += w.n_scored();
  if (scored != h.n_scored) {
    fail("{}: holds {} scored tokens, this run scores {}", p, h.n_scored, scored);
  }
}

void SavedBaseReader::row(uint64_t index, SavedRow& out) const {
  const SavedBaseHeader& h = header_;
  if (index >= h.n_scored) fail("{}: record {} out of range", path(), index);
  const uint8_t* p = map_->data() + kSavedBaseHeaderBytes + index * h.record_bytes();
  const int k = static_cast<int>(h.top_k);
  out.target_logp = get<float>(p);
  out.tail_mass = get<float>(p + 4);
  out.ids.resize(k);
  out.logp.resize(k);
  const uint8_t* ids = p + 8;
  const uint8_t* lps = ids + static_cast<size_t>(k) * h.id_bytes;
  // Stored log p are exact up to float rounding; a little above 0 is rounding, more is damage.
  constexpr float kSlack = 1e-4f;
  auto bad_logp = [](float v) { return !std::isfinite(v) || v > kSlack; };
  if (bad_logp(out.target_logp)) fail("{}: record {}: bad target log p", path(), index);
  if (!std::isfinite(out.tail_mass) || out.tail_mass < 0 || out.tail_mass > 1 + kSlack) {
    fail("{}: record {}: bad tail mass {}", path(), index, out.tail_mass);
  }
  double mass = out.tail_mass;
  for (int j = 0; j < k; ++j) {
    const uint32_t id = h.id_bytes == 2 ? get<uint16_t>(ids + 2 * j) : get<uint32_t>(ids + 4 * j);
    if (id >= h.n_vocab) fail("{}: record {}: token id {} out of range", path(), index, id);
    out.ids[j] = static_cast<int32_t>(id);
    out.logp[j] = get<float>(lps + 4 * j);
    if (bad_logp(out.logp[j])) fail("{}: record {}: bad log p", path(), index);
    mass += std::exp(static_cast<double>(out.logp[j]));
  }
  const int S = static_cast<int>(h.tail_samples);
  out.sample_ids.resize(S);
  out.sample_logp.resize(S);
  const uint8_t* sample_ids = lps + 4 * static_cast<size_t>(k);
  const uint8_t* sample_lps = sample_ids + static_cast<size_t>(S) * h.id_bytes;
  for (int j = 0; j < S; ++j) {
    const uint32_t id =
        h.id_bytes == 2 ? get<uint16_t>(sample_ids + 2 * j) : get<uint32_t>(sample_ids + 4 * j);
    if (id >= h.n_vocab) fail("{}: record {}: sample id {} out of range", path(), index, id);
    out.sample_ids[j] = static_cast<int32_t>(id);
    out.sample_logp[j] = get<float>(sample_lps + 4 * j);
    if (bad_logp(out.sample_logp[j])) fail("{}: record {}: bad sample log p", path(), index);
  }
  if (std::fabs(mass - 1.0) > 1e-3) {
    fail("{}: record {}: probabilities sum to {:.6f}, not 1", path(), index, mass);
  }
}

double saved_kld(const SavedRow& row, const double* model_logp, int n_vocab, double* tail_bound,
                 std::vector<uint8_t>& mask, std::vector<double>& scratch, const std::string& path,
                 uint64_t index) {
  mask.assign(n_vocab, 0);
  double head = 0;
  double min_kept = 0;
  for (size_t j = 0; j < row.ids.size(); ++j) {
    const int id = row.ids[j];
    if (mask[id]) fail("{}: record {}: token id {} kept twice", path, index, id);
    mask[id] = 1;
    const double lp = row.logp[j];
    head += std::exp(lp) * (lp - model_logp[id]);
    min_kept = j == 0 ? lp : std::min(min_kept, lp);
  }
  // The model's log p of every tail token (for Q_tail and for the upper bound).
  scratch.clear();
  double q_tail = 0;
  for (int i = 0; i < n_vocab; ++i) {
    if (mask[i]) continue;
    scratch.push_back(model_logp[i]);
    q_tail += std::exp(model_logp[i]);
  }
  const double p_tail = row.tail_mass;
  *tail_bound = 0;
  if (p_tail <= 0 || scratch.empty()) return head;
  for (int32_t id : row.sample_ids) {
    if (mask[id]) fail("{}: record {}: tail sample {} is a kept token", path, index, id);
  }
  // Lower bound: the tail as one outcome (log-sum inequality).
  const double lower = p_tail * (std::log(p_tail) - std::log(std::max(q_tail, 1e-300)));
  // Upper bound: the vertex of {0 <= p_i <= p_min, sum p_i = P_tail} that maximises
  // sum p_i ln(p_i/q_i): p_min on the tokens with the smallest q, the remainder on the next one.
  const double p_min = std::exp(min_kept);
  // p_min underflows to 0 for a very small kept log-probability: compare in double before
  // converting (saved_base_fuzz finding: inf does not fit size_t).
  const double slots = p_tail / p_min;
  const size_t m = slots < static_cast<double>(scratch.size() - 1) ? static_cast<size_t>(slots)
                                                                   : scratch.size() - 1;
  std::partial_sort(scratch.begin(), scratch.begin() + m + 1, scratch.end());
  double upper = 0;
  for (size_t j = 0; j < m; ++j) upper += p_min * (min_kept - scratch[j]);
  const double rest = p_tail - static_cast<double>(m) * p_min;
  if (rest > 0) upper += rest * (std::log(rest) - scratch[m]);
  upper = std::max(upper, lower);
  double tail = lower;
  if (!row.sample_ids.empty()) {
    double sum = 0;
    for (size_t j = 0; j < row.sample_ids.size(); ++j) {
      sum += row.sample_logp[j] - model_logp[row.sample_ids[j]];
    }
    tail = std::clamp(p_tail * sum / static_cast<double>(row.sample_ids.size()), lower, upper);
  }
  *tail_bound = upper - lower;
  return head + tail;
}

}  // namespace squish
