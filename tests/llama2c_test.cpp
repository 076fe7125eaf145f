#include "formats/llama2c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace squish {
namespace {

using test::TempDir;
using test::write_bytes;

struct Params {
  int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 10, seq = 4;
  bool shared = true;
};

void put_i32(std::string& out, int32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}

std::string header_bytes(int version, const Params& p) {
  std::string out;
  if (version == 1) {
    put_i32(out, 0x616b3432);
    put_i32(out, 1);
  }
  const int32_t vocab = version == 0 && !p.shared ? -p.vocab : p.vocab;
  for (int32_t v : {p.dim, p.hidden, p.layers, p.heads, p.kv_heads, vocab, p.seq}) put_i32(out, v);
  if (version == 1) {
    out.push_back(p.shared ? 1 : 0);
    out.resize(256, '\0');
  }
  return out;
}

// Writes a checkpoint whose weight arrays are filled with their own float index, and returns
// the index at which each named array (export order) starts so views can be checked by value.
std::string make_checkpoint(int version, const Params& p, std::map<std::string, int64_t>* starts) {
  const int64_t dim = p.dim, hidden = p.hidden, L = p.layers, vocab = p.vocab;
  const int64_t kv_dim = dim / p.heads * p.kv_heads, head_size = dim / p.heads;
  std::vector<std::pair<std::string, int64_t>> arrays;
  if (version == 0) {
    arrays = {{"emb", vocab * dim},     {"rms_att", L * dim},     {"wq", L * dim * dim},
              {"wk", L * kv_dim * dim}, {"wv", L * kv_dim * dim}, {"wo", L * dim * dim},
              {"rms_ffn", L * dim},     {"w1", L * hidden * dim}, {"w2", L * dim * hidden},
              {"w3", L * hidden * dim}, {"rms_final", dim},       {"freq", p.seq * head_size}};
  } else {
    arrays = {{"rms_att", L * dim},     {"rms_ffn", L * dim},    {"rms_final", dim},
              {"emb", vocab * dim},     {"wq", L * dim * dim},   {"wk", L * kv_dim * dim},
              {"wv", L * kv_dim * dim}, {"wo", L * dim * dim},   {"w1", L * hidden * dim},
              {"w2", L * dim * hidden}, {"w3", L * hidden * dim}};
  }
  if (!p.shared) arrays.push_back({"wcls", vocab * dim});
  std::string out = header_bytes(version, p);
  int64_t index = 0;
  for (const auto& [name, n] : arrays) {
    (*starts)[name] = index;
    for (int64_t k = 0; k < n; ++k, ++index) {
      const float v = static_cast<float>(index);
      out.append(reinterpret_cast<const char*>(&v), 4);
    }
  }
  return out;
}

float first(const TensorInfo& t) {
  float v;
  std::memcpy(&v, t.data, 4);
  return v;
}

const TensorInfo& get(const Llama2cCheckpoint& ck, const std::string& name) {
  for (const TensorInfo& t : ck.tensors) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("missing tensor " + name);
}

void expect_bad(const std::string& bytes, const std::string& needle) {
  test::expect_open_error(bytes, "bad.bin", needle,
                          [](const std::string& path) { open_llama2c(path); });
}

TEST(Llama2c, Stories260K) {
  const std::string path = test::shared_path("models/stories260K/stories260K.bin");
  const Llama2cCheckpoint ck = open_llama2c(path);
  EXPECT_EQ(ck.version, 0);
  EXPECT_EQ(ck.dim, 64);
  EXPECT_EQ(ck.hidden_dim, 172);
  EXPECT_EQ(ck.n_layers, 5);
  EXPECT_EQ(ck.n_heads, 8);
  EXPECT_EQ(ck.n_kv_heads, 4);
  EXPECT_EQ(ck.vocab_size, 512);
  EXPECT_EQ(ck.seq_len, 512);
  EXPECT_TRUE(ck.shared_classifier);
  // Header + weights + freq_cis tables, nothing else: the size check passed exactly.
  EXPECT_EQ(ck.file->size(),
            28u + 4u * (512 * 64 + 5 * (64 + 64 * 64 * 2 + 32 * 64 * 2 + 64 + 3 * 172 * 64) + 64 +
                        512 * 8));
  ASSERT_EQ(ck.tensors.size(), 1u + 5 * 9 + 2);
  EXPECT_EQ(ck.tensors.front().name, "token_embd.weight");
  EXPECT_EQ(ck.tensors.back().name, "output.weight");

  using Shape = std::vector<int64_t>;
  EXPECT_EQ(get(ck, "token_embd.weight").shape, (Shape{512, 64}));
  EXPECT_EQ(get(ck, "blk.4.attn_norm.weight").shape, (Shape{64}));
  EXPECT_EQ(get(ck, "blk.0.attn_q.weight").shape, (Shape{64, 64}));
  EXPECT_EQ(get(ck, "blk.0.attn_k.weight").shape, (Shape{32, 64}));
  EXPECT_EQ(get(ck, "blk.0.attn_v.weight").shape, (Shape{32, 64}));
  EXPECT_EQ(get(ck, "blk.0.attn_output.weight").shape, (Shape{64, 64}));
  EXPECT_EQ(get(ck, "blk.0.ffn_norm.weight").shape, (Shape{64}));
  EXPECT_EQ(get(ck, "blk.3.ffn_gate.weight").shape, (Shape{172, 64}));
  EXPECT_EQ(get(ck, "blk.3.ffn_down.weight").shape, (Shape{64, 172}));
  EXPECT_EQ(get(ck, "blk.3.ffn_up.weight").shape, (Shape{172, 64}));
  EXPECT_EQ(get(ck, "output_norm.weight").shape, (Shape{64}));
  EXPECT_EQ(get(ck, "output.weight").shape, (Shape{512, 64}));
  // Views point into the map; the shared classifier is the embedding table itself.
  const float* base = reinterpret_cast<const float*>(ck.file->data() + 28);
  EXPECT_EQ(get(ck, "token_embd.weight").data, base);
  EXPECT_EQ(get(ck, "blk.0.attn_norm.weight").data, base + 512 * 64);
  EXPECT_EQ(get(ck, "blk.1.attn_norm.weight").data, base + 512 * 64 + 64);
  EXPECT_EQ(get(ck, "output.weight").data, get(ck, "token_embd.weight").data);
  for (const TensorInfo& t : ck.tensors) {
    EXPECT_EQ(t.type, DType::F32);
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * 4) << t.name;
  }
  // RMSNorm weights of a trained model are O(1) positive numbers: a cheap check that the
  // offsets land on the right arrays rather than on projection weights.
  const float* norm = static_cast<const float*>(get(ck, "output_norm.weight").data);
  for (int i = 0; i < 64; ++i) EXPECT_GT(norm[i], 0.0f) << i;
  EXPECT_TRUE(looks_like_llama2c(*ck.file));
}

TEST(Llama2c, SyntheticVersion1Unshared) {
  Params p;
  p.shared = false;
  std::map<std::string, int64_t> starts;
  TempDir dir;
  const std::string path = dir.file("v1.bin");
  write_bytes(path, make_checkpoint(1, p, &starts));
  const Llama2cCheckpoint ck = open_llama2c(path);
  EXPECT_EQ(ck.version, 1);
  EXPECT_FALSE(ck.shared_classifier);
  EXPECT_EQ(ck.vocab_size, 10);
  const int64_t dim = 8, hidden = 12, kv = 4;
  EXPECT_EQ(first(get(ck, "token_embd.weight")), starts["emb"]);
  EXPECT_EQ(first(get(ck, "blk.0.attn_norm.weight")), starts["rms_att"]);
  EXPECT_EQ(first(get(ck, "blk.1.attn_norm.weight")), starts["rms_att"] + dim);
  EXPECT_EQ(first(get(ck, "blk.1.ffn_norm.weight")), starts["rms_ffn"] + dim);
  EXPECT_EQ(first(get(ck, "output_norm.weight")), starts["rms_final"]);
  EXPECT_EQ(first(get(ck, "blk.1.attn_q.weight")), starts["wq"] + dim * dim);
  EXPECT_EQ(first(get(ck, "blk.1.attn_k.weight")), starts["wk"] + kv * dim);
  EXPECT_EQ(first(get(ck, "blk.1.attn_v.weight")), starts["wv"] + kv * dim);
  EXPECT_EQ(first(get(ck, "blk.1.attn_output.weight")), starts["wo"] + dim * dim);
  EXPECT_EQ(first(get(ck, "blk.1.ffn_gate.weight")), starts["w1"] + hidden * dim);
  EXPECT_EQ(first(get(ck, "blk.1.ffn_down.weight")), starts["w2"] + dim * hidden);
  EXPECT_EQ(first(get(ck, "blk.1.ffn_up.weight")), starts["w3"] + hidden * dim);
  EXPECT_EQ(first(get(ck, "output.weight")), starts["wcls"]);
  EXPECT_EQ(get(ck, "blk.0.attn_k.weight").shape, (std::vector<int64_t>{4, 8}));
  EXPECT_TRUE(looks_like_llama2c(*ck.file));
}

TEST(Llama2c, SyntheticVersion1SharedAndLegacyUnshared) {
  {
    std::map<std::string, int64_t> starts;
    TempDir dir;
    write_bytes(dir.file("v1.bin"), make_checkpoint(1, Params{}, &starts));
    const Llama2cCheckpoint ck = open_llama2c(dir.file("v1.bin"));
    EXPECT_TRUE(ck.shared_classifier);
    EXPECT_EQ(get(ck, "output.weight").data, get(ck, "token_embd.weight").data);
  }
  {
    Params p;
    p.shared = false;  // legacy: negative vocab_size; wcls follows the freq_cis tables
    std::map<std::string, int64_t> starts;
    TempDir dir;
    write_bytes(dir.file("v0.bin"), make_checkpoint(0, p, &starts));
    const Llama2cCheckpoint ck = open_llama2c(dir.file("v0.bin"));
    EXPECT_EQ(ck.version, 0);
    EXPECT_FALSE(ck.shared_classifier);
    EXPECT_EQ(ck.vocab_size, 10);
    EXPECT_EQ(first(get(ck, "output.weight")), starts["wcls"]);
    EXPECT_EQ(first(get(ck, "output_norm.weight")), starts["rms_final"]);
    EXPECT_EQ(first(get(ck, "blk.1.ffn_up.weight")), starts["w3"] + 12 * 8);
  }
}

TEST(Llama2cBad, TruncatedAndTrailingGarbage) {
  for (int version : {0, 1}) {
    SCOPED_TRACE(version);
    std::map<std::string, int64_t> starts;
    const std::string full = make_checkpoint(version, Params{}, &starts);
    TempDir dir;
    const std::string path = dir.file("cut.bin");
    for (size_t len = 0; len < full.size(); len += (len < 300 ? 1 : 37)) {
      write_bytes(path, full.substr(0, len));
      EXPECT_THROW(open_llama2c(path), Error) << "cut at " << len;
    }
    write_bytes(path, full.substr(0, full.size() - 1));
    EXPECT_THROW(open_llama2c(path), Error);
    expect_bad(full + "x", "implies");
    expect_bad(full + std::string(4, '\0'), "implies");
  }
}

TEST(Llama2cBad, NonPositiveDims) {
  const std::pair<const char*, int32_t Params::*> fields[] = {
      {"dim", &Params::dim},       {"hidden_dim", &Params::hidden},   {"n_layers", &Params::layers},
      {"n_heads", &Params::heads}, {"n_kv_heads", &Params::kv_heads}, {"seq_len", &Params::seq}};
  for (const auto& [name, field] : fields) {
    for (int32_t bad : {0, -1, std::numeric_limits<int32_t>::min()}) {
      Params p;
      p.*field = bad;
      std::string bytes = header_bytes(0, p);
      bytes.append(4096, '\0');
      expect_bad(bytes, std::string(name) + " is " + std::to_string(bad));
      bytes = header_bytes(1, p);
      bytes.append(4096, '\0');
      expect_bad(bytes, std::string(name) + " is " + std::to_string(bad));
    }
  }
  Params p;
  p.vocab = 0;
  expect_bad(header_bytes(0, p), "vocab_size is 0");
  p.vocab = std::numeric_limits<int32_t>::min();
  expect_bad(header_bytes(0, p), "out of range");
  p.vocab = -5;
  expect_bad(header_bytes(1, p), "vocab_size -5 is not positive");
}

TEST(Llama2cBad, HeadsNotDividingDim) {
  Params p;
  p.heads = 3;  // 8 % 3 != 0
  expect_bad(header_bytes(0, p) + std::string(4096, '\0'), "n_heads 3 does not divide dim 8");
  p = Params{};
  p.kv_heads = 3;  // does not divide 2 query heads
  expect_bad(header_bytes(1, p) + std::string(4096, '\0'),
             "n_kv_heads 3 does not divide n_heads 2");
  p = Params{};
  p.heads = 8;  // head size 1 cannot hold rotary pairs
  p.kv_heads = 8;
  expect_bad(header_bytes(0, p) + std::string(4096, '\0'), "head size 1 is odd");
}

TEST(Llama2cBad, HeaderProblems) {
  expect_bad("", "truncated");
  expect_bad(std::string(27, '\x01'), "truncated");
  std::string v1 = header_bytes(1, Params{});
  expect_bad(v1.substr(0, 100), "truncated");
  std::string v2 = v1;
  v2[4] = 2;  // version 2 (int8 quantized) is not read
  expect_bad(v2, "unsupported llama2.c checkpoint version 2");
  std::string flag = v1;
  flag[36] = 7;
  expect_bad(flag, "shared_classifier flag is 7");
  // Dimensions whose product overflows 64 bits must be rejected, not wrapped.
  Params huge;
  huge.dim = 1 << 30;
  huge.hidden = 1 << 30;
  huge.layers = 1 << 30;
  huge.heads = 2;
  huge.kv_heads = 2;
  expect_bad(header_bytes(0, huge), "overflows");
}

TEST(Llama2c, LooksLike) {
  TempDir dir;
  auto probe = [&](const std::string& bytes) {
    write_bytes(dir.file("p.bin"), bytes);
    return looks_like_llama2c(*MappedFile::open(dir.file("p.bin")));
  };
  std::map<std::string, int64_t> starts;
  const std::string legacy = make_checkpoint(0, Params{}, &starts);
  EXPECT_TRUE(probe(legacy));
  EXPECT_FALSE(probe(legacy + "x"));              // no magic, so only an exact size match counts
  EXPECT_TRUE(probe(header_bytes(1, Params{})));  // the magic alone identifies version 1
  EXPECT_FALSE(probe(""));
  EXPECT_FALSE(probe(std::string("GGUF\x03\0\0\0", 8) + std::string(64, '\0')));
  EXPECT_FALSE(probe(std::string(4096, '\0')));
}

}  // namespace
}  // namespace squish
