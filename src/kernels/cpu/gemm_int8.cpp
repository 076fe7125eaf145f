#include "kernels/cpu/gemm_int8.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant_k.h"
#include "quant/blocks.h"

namespace squish {

namespace {

inline float half(uint16_t h) {
  return fp16_to_fp32(h);
}

// ---- Per-type unpacking: codes in element order, sc / mn per group, d / m per scale block ----

// Legacy blocks of 32: low nibbles are elements 0..15, high nibbles 16..31.
void nibbles(const uint8_t* qs, uint8_t* u) {
  for (int j = 0; j < 16; ++j) {
    u[j] = qs[j] & 15;
    u[j + 16] = qs[j] >> 4;
  }
}

void fifth_bits(const uint8_t* qh, uint8_t* u) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  for (int j = 0; j < 32; ++j) u[j] |= static_cast<uint8_t>(((h >> j) & 1) << 4);
}

// IQ4_NL / IQ4_XS: the code book shifted to unsigned (value + 128).
void book_codes(const uint8_t* qs, int n_bytes, uint8_t* u) {
  for (int j = 0; j < n_bytes; ++j) {
    u[j] = static_cast<uint8_t>(kIQ4Values[qs[j] & 15] + 128);
    u[j + n_bytes] = static_cast<uint8_t>(kIQ4Values[qs[j] >> 4] + 128);
  }
}

// Legacy types: one group per scale block, sc = 1.
void unpack_legacy(DType type, const void* row, int64_t k, const GemmRow& out) {
  for (int64_t i = 0; i < k / 32; ++i) {
    uint8_t* u = out.codes + 32 * i;
    out.sc[i] = 1, out.mn[i] = 0, out.m[i] = 0.0f;
    switch (type) {
      case DType::Q4_0: {
        const auto& blk = static_cast<const block_q4_0*>(row)[i];
        nibbles(blk.qs, u);
        out.d[i] = half(blk.d);
        break;
      }
      case DType::Q4_1: {
        const auto& blk = static_cast<const block_q4_1*>(row)[i];
        nibbles(blk.qs, u);
        out.d[i] = half(blk.d), out.m[i] = half(blk.m), out.mn[i] = 1;
        break;
      }
      case DType::Q5_0: {
        const auto& blk = static_cast<const block_q5_0*>(row)[i];
        nibbles(blk.qs, u);
        fifth_bits(blk.qh, u);
        out.d[i] = half(blk.d);
        break;
      }
      case DType::Q5_1: {
        const auto& blk = static_cast<const block_q5_1*>(row)[i];
        nibbles(blk.qs, u);
        fifth_bits(blk.qh, u);
        out.d[i] = half(blk.d), out.m[i] = half(blk.m), out.mn[i] = 1;
        break;
      }
      case DType::Q8_0: {
        const auto& blk = static_cast<const block_q8_0*>(row)[i];
        for (int j = 0; j < 32; ++j) u[j] = static_cast<uint8_t>(blk.qs[j] + 128);
        out.d[i] = half(blk.d);
        break;
      }
      case DType::IQ4_NL: {
        const auto& blk = static_cast<const block_iq4_nl*>(row)[i];
        book_codes(blk.qs, 16, u);
        out.d[i] = half(blk.d);
        break;
      }
      default:
        fail("internal: {} is not a legacy type", dtype_name(type));
    }
  }
}

// Q2_K / Q3_K low bits: element 128h + 32g + l is bits 2g of qs[32h + l].
void two_bit_codes(const uint8_t* qs, uint8_t* u) {
  for (int h = 0; h < 2; ++h) {
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) u[128 * h + 32 * g + l] = (qs[32 * h + l] >> (2 * g)) & 3;
    }
  }
}

// Q4_K / Q5_K low nibbles: chunk c of 64 elements, byte l holds elements l and l + 32.
void chunk_nibbles(const uint8_t* qs, uint8_t* u) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      u[64 * c + l] = qs[32 * c + l] & 15;
      u[64 * c + 32 + l] = qs[32 * c + l] >> 4;
    }
  }
}

void unpack_k(DType type, const void* row, int64_t k, const GemmRow& out) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    uint8_t* u = out.codes + QK_K * i;
    out.m[i] = 0.0f;
    switch (type) {
      case DType::Q2_K: {  // 16 groups of 16 with 4-bit scales and mins
        const auto& blk = static_cast<const block_q2_K*>(row)[i];
        two_bit_codes(blk.qs, u);
        for (int j = 0; j < 16; ++j) {
          out.sc[16 * i + j] = blk.scales[j] & 15;
          out.mn[16 * i + j] = static_cast<int16_t>(-(blk.scales[j] >> 4));
        }
        out.d[i] = half(blk.d), out.m[i] = half(blk.dmin);
        break;
      }
      case DType::Q3_K: {  // codes value + 4, 16 groups of 16 with signed 6-bit scales
        const auto& blk = static_cast<const block_q3_K*>(row)[i];
        two_bit_codes(blk.qs, u);
        for (int h = 0; h < 2; ++h) {
          for (int g = 0; g < 4; ++g) {
            for (int l = 0; l < 32; ++l) {
              u[128 * h + 32 * g + l] |= ((blk.hmask[l] >> (4 * h + g)) & 1) << 2;
            }
          }
        }
        int8_t sc[16];
        unpack_scales_q3_K(blk.scales, sc);
        for (int j = 0; j < 16; ++j) out.sc[16 * i + j] = sc[j], out.mn[16 * i + j] = 0;
        out.d[i] = half(blk.d);
        break;
      }
      case DType::Q4_K: {  // 8 groups of 32 with 6-bit scales and mins
        const auto& blk = static_cast<const block_q4_K*>(row)[i];
        chunk_nibbles(blk.qs, u);
        uint8_t sc[8], mn[8];
        unpack_scale_min_k4(blk.scales, sc, mn);
        for (int j = 0; j < 8; ++j) out.sc[8 * i + j] = sc[j], out.mn[8 * i + j] = -mn[j];
        out.d[i] = half(blk.d), out.m[i] = half(blk.dmin);
        break;
      }
      case DType::Q5_K: {  // as Q4_K plus the fifth bit: qh[l] bits 2c (low) and 2c + 1 (high)
        const auto& blk = static_cast<const block_q5_K*>(row)[i];
        chunk_nibbles(blk.qs, u);
        for (int c = 0; c < 4; ++c) {
          for (int l = 0; l < 32; ++l) {
            u[64 * c + l] |= ((blk.qh[l] >> (2 * c)) & 1) << 4;
            u[64 * c + 32 + l] |= ((blk.qh[l] >> (2 * c + 1)) & 1) << 4;
          }
        }
        uint8_t sc[8], mn[8];
        unpack_scale_min_k4(blk.scales, sc, mn);
        for (int j = 0; j < 8; ++j) out.sc[8 * i + j] = sc[j], out.mn[8 * i + j] = -mn[j];
        out.d[i] = half(blk.d), out.m[i] = half(blk.dmin);
        break;
      }
      case DType::Q6_K: {  // codes value + 32, 16 groups of 16 with int8 scales
        const auto& blk = static_cast<const block_q6_K*>(row)[i];
        for (int h = 0; h < 2; ++h) {
          const uint8_t* ql = blk.ql + 64 * h;
          const uint8_t* qh = blk.qh + 32 * h;
          uint8_t* o = u + 128 * h;
          for (int l = 0; l < 32; ++l) {
            o[l] = (ql[l] & 15) | ((qh[l] & 3) << 4);
            o[l + 32] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
            o[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            o[l + 96] = (ql[l + 32] >> 4) | ((qh[l] >> 6) << 4);
          }
        }
        for (int j = 0; j < 16; ++j) out.sc[16 * i + j] = blk.scales[j], out.mn[16 * i + j] = 0;
        out.d[i] = half(blk.d);
        break;
      }
      case DType::IQ4_XS: {  // codes value + 128, 8 groups of 32 with signed 6-bit scales
        const auto& blk = static_cast<const block_iq4_xs*>(row)[i];
        for (int ib = 0; ib < 8; ++ib) {
          book_codes(blk.qs + 16 * ib, 16, u + 32 * ib);
          out.sc[8 * i + ib] = iq4xs_scale(blk, ib), out.mn[8 * i + ib] = 0;
        }
        out.d[i] = half(blk.d);
        break;
      }
      default:
        fail("internal: {} is not a k-quant type", dtype_name(type));
    }
  }
}

bool cpu_has_vnni() {
  static const bool vnni = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return vnni;
}

}  // namespace

GemmFormat gemm_format(DType type) {
  GemmFormat f;
  switch (type) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
    case DType::IQ4_NL:
      f.group = 32, f.groups_per_scale = 1, f.act_type = DType::Q8_0;
      f.code_offset = type == DType::Q4_0 ? 8 : type == DType::Q5_0 ? 16 : 128;
      f.code_bits = type == DType::IQ4_NL ? 8 : type == DType::Q8_0 ? 8 : 4;
      f.high_bits = type == DType::Q5_0 ? 1 : 0;
      break;
    case DType::Q4_1:
    case DType::Q5_1:
      f.group = 32, f.groups_per_scale = 1, f.act_type = DType::Q8_1, f.float_mins = true;
      f.code_bits = 4;
      f.high_bits = type == DType::Q5_1 ? 1 : 0;
      break;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q6_K:
      f.group = 16, f.groups_per_scale = 16, f.act_type = DType::Q8_K, f.int_scales = true;
      f.int_mins = type == DType::Q2_K;
      f.code_offset = type == DType::Q3_K ? 4 : type == DType::Q6_K ? 32 : 0;
      f.code_bits = type == DType::Q6_K ? 4 : 2;
      f.high_bits = type == DType::Q6_K ? 2 : type == DType::Q3_K ? 1 : 0;
      break;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::IQ4_XS:
      f.group = 32, f.groups_per_scale = 8, f.act_type = DType::Q8_K, f.int_scales = true;
      f.int_mins = type != DType::IQ4_XS;
      f.code_offset = type == DType::IQ4_XS ? 128 : 0;
      f.code_bits = type == DType::IQ4_XS ? 8 : 4;
      f.high_bits = type == DType::Q5_K ? 1 : 0;
      break;
    default:
      break;
  }
  return f;
}

void gemm_unpack_row(DType type, const void* row, int64_t k, const GemmRow& out) {
  if (traits(type).block_size == QK_K) {
    unpack_k(type, row, k, out);
  } else {
    unpack_legacy(type, row, k, out);
  }
}

size_t gemm_activation_bytes(const GemmFormat& f, int64_t n_tokens, int64_t k) {
  const size_t ng = k / f.group, ns = ng / f.groups_per_scale, n = n_tokens;
  return n * k + n * ns * sizeof(float) +
         n * ng * (sizeof(int16_t) + sizeof(int32_t) + sizeof(float)) + 5 * 64;
}

GemmActivations gemm_bind_activations(const GemmFormat& f, void* scratch, int64_t n_tokens,
                                      int64_t k) {
  GemmActivations a;
  a.k = k, a.n_tokens = n_tokens, a.format = f;
  const size_t ng = k / f.group, ns = ng / f.groups_per_scale, n = n_tokens;
  uintptr_t p = reinterpret_cast<uintptr_t>(scratch);
  auto take = [&](size_t bytes) {
    p = (p + 63) / 64 * 64;
    const uintptr_t at = p;
    p += bytes;
    return at;
  };
  a.q = reinterpret_cast<int8_t*>(take(n * k));
  a.da = reinterpret_cast<float*>(take(n * ns * sizeof(float)));
  a.qsum = reinterpret_cast<int16_t*>(take(n * ng * sizeof(int16_t)));
  a.qoff = reinterpret_cast<int32_t*>(take(n * ng * sizeof(int32_t)));
  a.da_qsum = reinterpret_cast<float*>(take(n * ng * sizeof(float)));
  return a;
}

void gemm_prepare_activations_reference(const float* x, int64_t t0, int64_t t1,
                                        const GemmActivations& act) {
  const GemmFormat& f = act.format;
  const int64_t k = act.k, G = f.group, ng = k / G, ns = ng / f.groups_per_scale;
  const int64_t S = k / ns;  // elements per scale block: the activation block size
  std::vector<uint8_t> row(row_bytes(f.act_type, k));
  for (int64_t t = t0; t < t1; ++t) {
    quantize_activations(f.act_type, x + t * k, row.data(), k);
    int8_t* q = act.q + t * k;
    for (int64_t s = 0; s < ns; ++s) {
      const int8_t* qs;
      float d;
      if (f.act_type == DType::Q8_K) {
        const auto& b = reinterpret_cast<const block_q8_K*>(row.data())[s];
        d = b.d, qs = b.qs;
      } else if (f.act_type == DType::Q8_1) {
        const auto& b = reinterpret_cast<const block_q8_1*>(row.data())[s];
        d = half(b.d), qs = b.qs;
      } else {
        const auto& b = reinterpret_cast<const block_q8_0*>(row.data())[s];
        d = half(b.d), qs = b.qs;
      }
      std::memcpy(q + s * S, qs, S);
      act.da[t * ns + s] = d;
    }
    for (int64_t g = 0; g < ng; ++g) {
      int sum = 0;
      for (int64_t j = 0; j < G; ++j) sum += q[g * G + j];
      act.qsum[t * ng + g] = static_cast<int16_t>(sum);
      act.qoff[t * ng + g] = -f.code_offset * sum;
      act.da_qsum[t * ng + g] = act.da[t * ns + g / f.groups_per_scale] * static_cast<float>(sum);
    }
  }
}

void gemm_prepare_activations(const float* x, int64_t t0, int64_t t1, const GemmActivations& act) {
  kernels::gemm_prepare_activations_avx512(x, t0, t1, act);
}

void gemm_pack_panel(DType type, const uint8_t* w, int64_t r0, int nr, int64_t k, uint8_t* panel) {
  const GemmFormat f = gemm_format(type);
  const int64_t ng = k / f.group, ns = ng / f.groups_per_scale;
  const GemmPanelLayout l = gemm_panel_layout(f, k);
  const size_t stride = row_bytes(type, k);
  constexpr int R = kGemmPanelRows;
  uint8_t* codes = panel + l.codes;
  auto* high = reinterpret_cast<uint64_t*>(panel + l.high);
  auto* sc = reinterpret_cast<int8_t*>(panel + l.sc);
  auto* mn = reinterpret_cast<int8_t*>(panel + l.mn);
  auto* d = reinterpret_cast<uint16_t*>(panel + l.d);
  auto* m = reinterpret_cast<uint16_t*>(panel + l.m);
  thread_local std::vector<uint8_t> row_codes;
  thread_local std::vector<int32_t> row_sc;
  thread_local std::vector<int16_t> row_mn;
  thread_local std::vector<float> row_d, row_m;
  row_codes.resize(k), row_sc.resize(ng), row_mn.resize(ng), row_d.resize(ns), row_m.resize(ns);
  const GemmRow row{row_codes.data(), row_sc.data(), row_mn.data(), row_d.data(), row_m.data()};
  const int slices = 8 / f.code_bits;  // four-column slices per byte
  const int hb = f.high_bits;
  const int64_t steps = k / (4 * slices);
  if (hb > 0) std::fill(high, high + steps * slices * hb, uint64_t{0});
  uint8_t* high2 = panel + l.high;  // two high bits: [slice / 4][16][4], bits 2 * (slice % 4)
  for (int j = 0; j < R; ++j) {
    if (j < nr) {
      gemm_unpack_row(type, w + (r0 + j) * stride, k, row);
    } else {  // padding rows contribute nothing
      std::fill(row_codes.begin(), row_codes.end(), 0);
      std::fill(row_sc.begin(), row_sc.end(), 0);
      std::fill(row_mn.begin(), row_mn.end(), 0);
      std::fill(row_d.begin(), row_d.end(), 0.0f);
      std::fill(row_m.begin(), row_m.end(), 0.0f);
    }
    // Step s covers columns [4 * slices * s, 4 * slices * (s + 1)); byte i of row j holds
    // column 4 * (slices * s + mi) + i at bits mi * code_bits.
    const int low_mask = (1 << f.code_bits) - 1;
    for (int64_t s = 0; s < steps; ++s) {
      for (int i = 0; i < 4; ++i) {
        int byte = 0;
        for (int mi = 0; mi < slices; ++mi) {
          const int code = row_codes[4 * (slices * s + mi) + i];
          byte |= (code & low_mask) << (mi * f.code_bits);
          const int64_t slice = s * slices + mi;
          if (hb == 1) {
            high[slice] |= static_cast<uint64_t>((code >> f.code_bits) & 1) << (4 * j + i);
          } else if (hb == 2) {
            high2[((slice / 4) * R + j) * 4 + i] |=
                static_cast<uint8_t>(((code >> f.code_bits) & 3) << (2 * (slice % 4)));
          }
        }
        codes[(s * R + j) * 4 + i] = static_cast<uint8_t>(byte);
      }
    }
    for (int64_t g = 0; g < ng; ++g) {
      sc[g * R + j] = static_cast<int8_t>(row_sc[g]);
      mn[((g / 2) * R + j) * 2 + g % 2] = static_cast<int8_t>(row_mn[g]);
    }
    // d and m come from fp16 fields, so the round trip is exact.
    for (int64_t s = 0; s < ns; ++s) {
      d[s * R + j] = fp32_to_fp16(row_d[s]);
      m[s * R + j] = fp32_to_fp16(row_m[s]);
    }
  }
}

void gemm_rows(DType type, const uint8_t* w, int64_t r0, int nr, const GemmActivations& act,
               uint8_t* panel, float* y, int64_t ldy) {
  gemm_pack_panel(type, w, r0, nr, act.k, panel);
  kernels::gemm_panel_avx512(type, panel, act, y + r0, ldy, nr);
}

void GemmPackedMatrix::pack(int64_t p) const {
  const int64_t r0 = p * kGemmPanelRows;
  const int nr = static_cast<int>(std::min<int64_t>(kGemmPanelRows, rows - r0));
  gemm_pack_panel(type, static_cast<const uint8_t*>(w), r0, nr, cols, panel(p));
}

void GemmPackedWeights::Free::operator()(uint8_t* p) const {
  std::free(p);
}

bool GemmPackedWeights::add(DType type, const void* w, int64_t rows, int64_t cols) {
  if (!gemm_available(type)) return false;
  if (index_.count(w) != 0) return true;
  index_.emplace(w, matrices_.size());
  GemmPackedMatrix m;
  m.type = type, m.w = w, m.rows = rows, m.cols = cols;
  m.n_panels = (rows + kGemmPanelRows - 1) / kGemmPanelRows;
  m.panel_bytes = gemm_panel_bytes(gemm_format(type), cols);
  matrices_.push_back(m);
  return true;
}

void GemmPackedWeights::pack() {
  size_t total = 0;
  for (const GemmPackedMatrix& m : matrices_) total += m.n_panels * m.panel_bytes;
  constexpr size_t kHuge = size_t{2} << 20;
  bytes_ = (total + kHuge - 1) / kHuge * kHuge;
  memory_.reset();
  if (total == 0) return;
  auto* mem = static_cast<uint8_t*>(std::aligned_alloc(kHuge, bytes_));
  if (mem == nullptr) throw std::bad_alloc();
  madvise(mem, bytes_, MADV_HUGEPAGE);  // advisory: without transparent huge pages, a no-op
  memory_.reset(mem);
  std::vector<std::pair<const GemmPackedMatrix*, int64_t>> panels;
  size_t at = 0;
  for (GemmPackedMatrix& m : matrices_) {
    m.data = mem + at;
    at += m.n_panels * m.panel_bytes;
    for (int64_t p = 0; p < m.n_panels; ++p) panels.emplace_back(&m, p);
  }
#pragma omp parallel for schedule(dynamic, 8)
  for (size_t i = 0; i < panels.size(); ++i) panels[i].first->pack(panels[i].second);
}

const GemmPackedMatrix* GemmPackedWeights::find(const void* w) const {
  const auto it = index_.find(w);
  if (it == index_.end() || matrices_[it->second].data == nullptr) return nullptr;  // not packed
  return &matrices_[it->second];
}

bool gemm_available(DType type) {
  return gemm_format(type).group != 0 && active_cpu_level() == CpuLevel::AVX512 && cpu_has_vnni();
}

void gemm_int8(const QuantTraits& qt, const float* x, int64_t n_tokens, const uint8_t* w,
               int64_t rows, int64_t cols, float* y, int64_t ldy) {
  const GemmFormat f = gemm_format(qt.type);
  if (f.group == 0 || cols % (f.group * f.groups_per_scale) != 0) {
    fail("internal: gemm_int8 cannot take {} with {} columns", dtype_name(qt.type), cols);
  }
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(gemm_activation_bytes(f, n_tokens, cols));
  const GemmActivations act = gemm_bind_activations(f, scratch.data(), n_tokens, cols);
  const int64_t n_panels = (rows + kGemmPanelRows - 1) / kGemmPanelRows;
  // Small products run on the calling thread: waking the team costs more than they take.
  const bool parallel = static_cast<double>(rows) * cols * n_tokens >= 4e6;
#pragma omp parallel if (parallel)
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    gemm_prepare_activations(x, n_tokens * id / nt, n_tokens * (id + 1) / nt, act);
    thread_local std::vector<uint8_t> panel_storage;
    panel_storage.resize(gemm_panel_bytes(f, cols) + 64);
    uint8_t* panel = panel_storage.data();
    panel += (64 - reinterpret_cast<uintptr_t>(panel) % 64) % 64;
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t p = 0; p < n_panels; ++p) {
      const int64_t r0 = p * kGemmPanelRows;
      const int nr = static_cast<int>(std::min<int64_t>(kGemmPanelRows, rows - r0));
      gemm_rows(qt.type, w, r0, nr, act, panel, y, ldy);
    }
  }
}

}  // namespace squish
