#include "eval/eval_text.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/text.h"

namespace squish {

namespace {
constexpr std::string_view kSliceHeader = "### slice";
constexpr std::string_view kSlicePrefix = "### slice: ";

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}
}  // namespace

std::vector<EvalSlice> parse_slices(std::string_view text, const std::string& path) {
  std::vector<EvalSlice> slices;
  std::vector<size_t> header_lines;
  std::set<std::string> labels;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    const std::string_view line = text.substr(pos, end - pos);
    const size_t next = end < text.size() ? end + 1 : end;
    ++line_no;
    if (line.substr(0, kSliceHeader.size()) == kSliceHeader) {
      if (line.substr(0, kSlicePrefix.size()) != kSlicePrefix) {
        fail("{}: line {}: malformed slice header (expected '### slice: <label>')", path, line_no);
      }
      const std::string_view label = trim(line.substr(kSlicePrefix.size()));
      if (label.empty()) fail("{}: line {}: slice header without a label", path, line_no);
      if (label.size() > kMaxSliceLabelBytes) {
        fail("{}: line {}: slice label longer than {} bytes", path, line_no, kMaxSliceLabelBytes);
      }
      if (std::any_of(label.begin(), label.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
        fail("{}: line {}: slice label contains a control character", path, line_no);
      }
      if (!labels.insert(std::string(label)).second) {
        fail("{}: line {}: duplicate slice label '{}'", path, line_no, label);
      }
      slices.push_back({std::string(label), "", {}});
      header_lines.push_back(line_no);
    } else if (slices.empty()) {
      if (!is_blank(line)) {
        fail("{}: line {}: text before the first '### slice: <label>' header", path, line_no);
      }
    } else {
      slices.back().text.append(text.substr(pos, next - pos));
    }
    pos = next;
  }
  if (slices.empty()) fail("{}: no '### slice: <label>' header found", path);
  for (size_t i = 0; i < slices.size(); ++i) {
    if (is_blank(slices[i].text)) {
      fail("{}: line {}: slice '{}' has no text", path, header_lines[i], slices[i].label);
    }
  }
  return slices;
}

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

EvalText load_eval_text(const std::string& path, bool slices, const Tokenizer& tokenizer) {
  EvalText t;
  t.path = path;
  const std::string raw = read_text_file(path);
  t.text_hash = fnv1a64(raw.data(), raw.size());
  t.n_text_bytes = raw.size();
  t.labelled = slices;
  if (slices) {
    t.slices = parse_slices(raw, path);
  } else {
    t.slices.push_back({"", raw, {}});
  }
  for (EvalSlice& s : t.slices) {
    s.tokens = tokenizer.encode(s.text);
    if (tokenizer.add_bos()) s.tokens.insert(s.tokens.begin(), tokenizer.bos_id());
    if (slices && s.tokens.size() < static_cast<size_t>(kMinSliceTokens)) {
      fail("{}: slice '{}' has {} tokens; at least {} are needed", path, s.label, s.tokens.size(),
           kMinSliceTokens);
    }
  }
  return t;
}

std::vector<EvalWindow> plan_windows(const EvalText& text, int n_ctx, int max_chunks) {
  if (n_ctx < 8) fail("eval: context length {} is too small (minimum 8)", n_ctx);
  std::vector<EvalWindow> windows;
  for (size_t s = 0; s < text.slices.size(); ++s) {
    const int64_t n = static_cast<int64_t>(text.slices[s].tokens.size());
    int64_t full = n / n_ctx;
    if (full == 0) {
      if (!text.labelled) {
        fail("{}: the text has {} tokens; at least {} (one window of --ctx) are needed", text.path,
             n, n_ctx);
      }
      windows.push_back({static_cast<int32_t>(s), 0, static_cast<int32_t>(n)});
      continue;
    }
    if (max_chunks > 0) full = std::min<int64_t>(full, max_chunks);
    for (int64_t c = 0; c < full; ++c) {
      windows.push_back({static_cast<int32_t>(s), c * n_ctx, n_ctx});
    }
  }
  if (windows.size() > (size_t{1} << 30)) fail("{}: too many windows", text.path);
  return windows;
}

uint64_t token_layout_hash(const EvalText& text, const std::vector<EvalWindow>& windows, int n_ctx,
                           bool replace_first_with_bos) {
  const int32_t head[2] = {n_ctx, replace_first_with_bos ? 1 : 0};
  uint64_t h = fnv1a64(head, sizeof(head));
  for (const EvalWindow& w : windows) {
    const int64_t layout[3] = {w.slice, w.start, w.len};
    h = fnv1a64(layout, sizeof(layout), h);
    h = fnv1a64(text.slices[w.slice].tokens.data() + w.start, sizeof(int32_t) * w.len, h);
  }
  return h;
}

std::vector<int32_t> frequency_ranks(const std::vector<const std::vector<int32_t>*>& sources,
                                     int n_vocab, std::vector<int64_t>& counts) {
  counts.assign(n_vocab, 0);
  for (const auto* tokens : sources) {
    for (int32_t t : *tokens) {
      if (t >= 0 && t < n_vocab) counts[t]++;
    }
  }
  std::vector<int32_t> order(n_vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  std::vector<int32_t> rank(n_vocab, -1);
  for (int32_t r = 0; r < n_vocab; ++r) {
    if (counts[order[r]] > 0) rank[order[r]] = r;
  }
  return rank;
}

}  // namespace squish
