#include "tokenizer/bpe.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/text_util.h"

namespace squish::tok {

void BpeModel::set_vocab(std::vector<std::string> tokens, const std::string& what) {
  tokens_ = std::move(tokens);
  ids_.clear();
  char_ids_.clear();
  byte_ids_.fill(-1);
  ids_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const std::string& t = tokens_[i];
    if (t.empty()) continue;
    const auto id = static_cast<int32_t>(i);
    if (!ids_.emplace(t, id).second) {
      fail("{}: token {} appears twice in the vocabulary (ids {} and {})", what, t, ids_[t], id);
    }
    const size_t n = valid_utf8_len(t, 0);
    if (n == t.size()) char_ids_.emplace(decode_utf8(t, 0, n), id);
    if (const int b = parse_byte_token(t); b >= 0 && t[3] <= 'F' && t[4] <= 'F') {
      byte_ids_[b] = id;  // the reference writes these as <0x%02X>: uppercase only
    }
  }
  producing_rank_.assign(tokens_.size(), -1);
}

int32_t BpeModel::find(std::string_view token) const {
  auto it = ids_.find(std::string(token));
  return it == ids_.end() ? -1 : it->second;
}

int32_t BpeModel::producing_rank(int32_t id) const {
  return (id >= 0 && static_cast<size_t>(id) < producing_rank_.size()) ? producing_rank_[id] : -1;
}

void BpeModel::add_merge(const std::string& left, const std::string& right,
                         const std::string& what) {
  const auto rank = static_cast<int32_t>(merge_list_.size());
  const int32_t a = find(left), b = find(right);
  if (a < 0 || b < 0) {
    fail("{}: merge {} refers to token \"{}\", which is not in the vocabulary", what, rank,
         a < 0 ? left : right);
  }
  const int32_t c = find(left + right);
  if (c < 0) {
    fail("{}: merge {} produces \"{}\", which is not in the vocabulary", what, rank, left + right);
  }
  // A repeated pair keeps its last rank, as the reference's HashMap collect does.
  merges_[key(a, b)] = Merge{rank, c};
  merge_list_.emplace_back(a, b);
  if (producing_rank_[c] < 0) producing_rank_[c] = rank;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = ids_.find(std::string(word)); it != ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // Symbols of the word in a linked list; a merged-away symbol gets id -1.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  const auto push = [&](int32_t id) {
    const auto n = static_cast<int32_t>(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back({id, n - 1, -1});
  };
  // The reference's merge_word: unknown characters become bytes (byte_fallback) or <unk>,
  // consecutive <unk>s fusing into one when fuse_unk is set.
  bool pending_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t v = valid_utf8_len(word, i);
    const size_t n = v == 0 ? 1 : v;  // a stray byte goes to byte fallback or <unk>
    int32_t id = -1;
    if (v > 0) {
      if (auto it = char_ids_.find(decode_utf8(word, i, n)); it != char_ids_.end()) id = it->second;
    }
    if (id >= 0) {
      if (pending_unk) push(unk_id);
      pending_unk = false;
      push(id);
    } else {
      bool done = false;
      if (byte_fallback) {
        done = true;
        for (size_t k = 0; k < n; ++k)
          done = done && byte_ids_[static_cast<uint8_t>(word[i + k])] >= 0;
        // The reference adds the bytes without flushing a pending <unk> first; so do we.
        if (done) {
          for (size_t k = 0; k < n; ++k) push(byte_ids_[static_cast<uint8_t>(word[i + k])]);
        }
      }
      if (!done && unk_id >= 0) {
        if (pending_unk && !fuse_unk) push(unk_id);
        pending_unk = true;
      }
      // No <unk> and no byte token: the reference drops the character.
    }
    i += n;
  }
  if (pending_unk) push(unk_id);

  // The reference's Word::merge_all: a heap of candidate merges ordered by rank, then position;
  // entries made stale by an earlier merge are recognized and skipped when popped.
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator<(const Cand& o) const {  // priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand> heap;
  const auto candidate = [&](int32_t pos) {
    const int32_t next = sym[pos].next;
    if (next < 0) return;
    auto it = merges_.find(key(sym[pos].id, sym[next].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) candidate(i);
  while (!heap.empty()) {
    const Cand top = heap.top();
    heap.pop();
    Symbol& s = sym[top.pos];
    if (s.id < 0 || s.next < 0) continue;
    const int32_t right = s.next;
    auto it = merges_.find(key(s.id, sym[right].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    s.id = top.new_id;
    s.next = sym[right].next;
    sym[right].id = -1;
    if (s.next >= 0) sym[s.next].prev = top.pos;
    if (s.prev >= 0) candidate(s.prev);
    candidate(top.pos);
  }
  for (const Symbol& s : sym) {
    if (s.id >= 0) out.push_back(s.id);
  }
}

}  // namespace squish::tok
