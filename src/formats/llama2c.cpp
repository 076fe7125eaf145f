#include "formats/llama2c.h"

#include <bit>
#include <cstring>
#include <limits>
#include <optional>

#include "core/error.h"

namespace squish {

static_assert(std::endian::native == std::endian::little,
              "llama2.c checkpoints are read as little-endian");

namespace {

constexpr uint32_t kMagicAk42 = 0x616b3432;  // "ak42" as export.py packs it ('I')
constexpr size_t kLegacyHeaderBytes = 7 * 4;
constexpr size_t kV1HeaderBytes = 256;
constexpr size_t kV1FlagOffset = 4 + 4 + 7 * 4;

struct Header {
  int version = 0;
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  bool shared = true;
  size_t header_bytes = 0;
};

// Offsets (in floats, from the end of the header) of each weight array, in the file's order.
struct Layout {
  uint64_t emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
  uint64_t total;  // floats after the header
};

// Sequential allocator over the float array; stays valid only while nothing overflowed.
class Cursor {
 public:
  uint64_t take(uint64_t a, uint64_t b = 1, uint64_t c = 1) {
    uint64_t n = 0;
    if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n)) overflow_ = true;
    const uint64_t at = pos_;
    if (__builtin_add_overflow(pos_, n, &pos_)) overflow_ = true;
    return at;
  }
  uint64_t pos() const { return pos_; }
  bool overflow() const { return overflow_; }

 private:
  uint64_t pos_ = 0;
  bool overflow_ = false;
};

int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Reads and checks the header. Returns an error message instead of throwing so that
// looks_like_llama2c can probe arbitrary files quietly.
std::optional<std::string> parse_header(const MappedFile& file, Header* h) {
  const uint8_t* p = file.data();
  const size_t size = file.size();
  if (size >= 8 && load_i32(p) == static_cast<int32_t>(kMagicAk42)) {
    const int32_t version = load_i32(p + 4);
    if (version != 1) {
      return fmt::format("unsupported llama2.c checkpoint version {} (only 0 and 1)", version);
    }
    if (size < kV1HeaderBytes) {
      return fmt::format("truncated: {} bytes, the version 1 header alone is {}", size,
                         kV1HeaderBytes);
    }
    h->version = 1;
    h->header_bytes = kV1HeaderBytes;
    p += 8;
  } else {
    if (size < kLegacyHeaderBytes) {
      return fmt::format("truncated: {} bytes, the header alone is {}", size, kLegacyHeaderBytes);
    }
    h->version = 0;
    h->header_bytes = kLegacyHeaderBytes;
  }
  int32_t* fields[] = {&h->dim,        &h->hidden_dim, &h->n_layers, &h->n_heads,
                       &h->n_kv_heads, &h->vocab_size, &h->seq_len};
  for (int32_t* f : fields) {
    *f = load_i32(p);
    p += 4;
  }
  if (h->version == 1) {
    const uint8_t flag = file.data()[kV1FlagOffset];
    if (flag > 1) return fmt::format("shared_classifier flag is {}, expected 0 or 1", flag);
    h->shared = flag == 1;
    if (h->vocab_size <= 0) return fmt::format("vocab_size {} is not positive", h->vocab_size);
  } else {
    // Legacy files flag an unshared classifier with a negative vocab_size.
    if (h->vocab_size == std::numeric_limits<int32_t>::min()) {
      return fmt::format("vocab_size {} is out of range", h->vocab_size);
    }
    h->shared = h->vocab_size > 0;
    if (h->vocab_size < 0) h->vocab_size = -h->vocab_size;
    if (h->vocab_size == 0) return std::string("vocab_size is 0");
  }
  const std::pair<const char*, int32_t> named[] = {
      {"dim", h->dim},         {"hidden_dim", h->hidden_dim}, {"n_layers", h->n_layers},
      {"n_heads", h->n_heads}, {"n_kv_heads", h->n_kv_heads}, {"seq_len", h->seq_len}};
  for (const auto& [name, v] : named) {
    if (v <= 0) return fmt::format("{} is {}, expected a positive value", name, v);
  }
  if (h->dim % h->n_heads != 0) {
    return fmt::format("n_heads {} does not divide dim {}", h->n_heads, h->dim);
  }
  if (h->n_kv_heads > h->n_heads || h->n_heads % h->n_kv_heads != 0) {
    return fmt::format("n_kv_heads {} does not divide n_heads {}", h->n_kv_heads, h->n_heads);
  }
  if ((h->dim / h->n_heads) % 2 != 0) {
    return fmt::format("head size {} is odd; rotary embeddings need pairs", h->dim / h->n_heads);
  }
  return std::nullopt;
}

Layout make_layout(const Header& h, bool* overflow) {
  const uint64_t L = static_cast<uint64_t>(h.n_layers), dim = static_cast<uint64_t>(h.dim),
                 hidden = static_cast<uint64_t>(h.hidden_dim),
                 vocab = static_cast<uint64_t>(h.vocab_size),
                 head_size = static_cast<uint64_t>(h.dim / h.n_heads),
                 kv_dim = head_size * static_cast<uint64_t>(h.n_kv_heads);
  Layout l{};
  Cursor c;
  auto attention_and_ffn = [&] {
    l.wq = c.take(L, dim, dim);
    l.wk = c.take(L, kv_dim, dim);
    l.wv = c.take(L, kv_dim, dim);
    l.wo = c.take(L, dim, dim);
  };
  auto ffn = [&] {
    l.w1 = c.take(L, hidden, dim);
    l.w2 = c.take(L, dim, hidden);
    l.w3 = c.take(L, hidden, dim);
  };
  if (h.version == 0) {  // run.c's memory_map_weights order
    l.emb = c.take(vocab, dim);
    l.rms_att = c.take(L, dim);
    attention_and_ffn();
    l.rms_ffn = c.take(L, dim);
    ffn();
    l.rms_final = c.take(dim);
    c.take(static_cast<uint64_t>(h.seq_len), head_size);  // freq_cis_real + freq_cis_imag (unused)
  } else {  // export.py version1_export order: norms first
    l.rms_att = c.take(L, dim);
    l.rms_ffn = c.take(L, dim);
    l.rms_final = c.take(dim);
    l.emb = c.take(vocab, dim);
    attention_and_ffn();
    ffn();
  }
  l.wcls = h.shared ? l.emb : c.take(vocab, dim);
  l.total = c.pos();
  *overflow = c.overflow();
  return l;
}

// Total file size the header implies, nullopt on arithmetic overflow.
std::optional<uint64_t> expected_size(const Header& h, Layout* layout) {
  bool overflow = false;
  *layout = make_layout(h, &overflow);
  uint64_t bytes = 0;
  if (overflow || __builtin_mul_overflow(layout->total, uint64_t{4}, &bytes) ||
      __builtin_add_overflow(bytes, static_cast<uint64_t>(h.header_bytes), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

}  // namespace

Llama2cCheckpoint open_llama2c(const std::string& path) {
  Llama2cCheckpoint ck;
  ck.file = MappedFile::open(path);
  Header h;
  if (std::optional<std::string> problem = parse_header(*ck.file, &h)) {
    fail("{}: {}", path, *problem);
  }
  Layout l;
  const std::optional<uint64_t> want = expected_size(h, &l);
  if (!want) fail("{}: header dimensions imply a size that overflows 64 bits", path);
  if (*want != ck.file->size()) {
    fail(
        "{}: file is {} bytes but the version {} header (dim {}, hidden_dim {}, {} layers, "
        "vocab {}, seq_len {}, {} classifier) implies {}",
        path, ck.file->size(), h.version, h.dim, h.hidden_dim, h.n_layers, h.vocab_size, h.seq_len,
        h.shared ? "shared" : "separate", *want);
  }

  ck.version = h.version;
  ck.dim = h.dim;
  ck.hidden_dim = h.hidden_dim;
  ck.n_layers = h.n_layers;
  ck.n_heads = h.n_heads;
  ck.n_kv_heads = h.n_kv_heads;
  ck.vocab_size = h.vocab_size;
  ck.seq_len = h.seq_len;
  ck.shared_classifier = h.shared;

  const float* base = reinterpret_cast<const float*>(ck.file->data() + h.header_bytes);
  auto add = [&](std::string name, uint64_t offset, std::vector<int64_t> shape) {
    TensorInfo t;
    t.name = std::move(name);
    t.type = DType::F32;
    t.shape = std::move(shape);
    t.data = base + offset;
    t.nbytes = static_cast<size_t>(t.numel()) * sizeof(float);
    ck.tensors.push_back(std::move(t));
  };
  const int64_t dim = h.dim, hidden = h.hidden_dim, vocab = h.vocab_size;
  const int64_t kv_dim = dim / h.n_heads * h.n_kv_heads;
  const uint64_t udim = static_cast<uint64_t>(dim), uhidden = static_cast<uint64_t>(hidden),
                 ukv = static_cast<uint64_t>(kv_dim);
  add("token_embd.weight", l.emb, {vocab, dim});
  for (uint64_t i = 0; i < static_cast<uint64_t>(h.n_layers); ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", l.rms_att + i * udim, {dim});
    add(p + "attn_q.weight", l.wq + i * udim * udim, {dim, dim});
    add(p + "attn_k.weight", l.wk + i * ukv * udim, {kv_dim, dim});
    add(p + "attn_v.weight", l.wv + i * ukv * udim, {kv_dim, dim});
    add(p + "attn_output.weight", l.wo + i * udim * udim, {dim, dim});
    add(p + "ffn_norm.weight", l.rms_ffn + i * udim, {dim});
    add(p + "ffn_gate.weight", l.w1 + i * uhidden * udim, {hidden, dim});
    add(p + "ffn_down.weight", l.w2 + i * udim * uhidden, {dim, hidden});
    add(p + "ffn_up.weight", l.w3 + i * uhidden * udim, {hidden, dim});
  }
  add("output_norm.weight", l.rms_final, {dim});
  add("output.weight", l.wcls, {vocab, dim});
  return ck;
}

bool looks_like_llama2c(const MappedFile& file) {
  if (file.size() >= 4 && load_i32(file.data()) == static_cast<int32_t>(kMagicAk42)) return true;
  // The legacy format has no magic: accept only a sane header whose implied size matches the
  // file exactly, which random or other-format bytes essentially never satisfy.
  Header h;
  if (parse_header(file, &h)) return false;
  Layout l;
  const std::optional<uint64_t> want = expected_size(h, &l);
  return want && *want == file.size();
}

}  // namespace squish
