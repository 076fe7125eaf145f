// The CUDA backend's weight layout (src/kernels/cuda/layout.h), the 8-bit kernels' per-lane
// arithmetic (q8_items.h), their decode loop's load / math order (pipeline.h) and the division
// of decode work among warps (schedule.h), on the host:
// built and run in every configuration, so CI checks what the GPU kernels read, how they
// multiply it and in which order, without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant_k.h"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/layout.h"
#include "kernels/cuda/pipeline.h"
#include "kernels/cuda/q8_items.h"
#include "kernels/cuda/schedule.h"
#include "quant/quant.h"
#include "weight_rows.h"

namespace squish {
namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

using test::encode_rows;

// The types of the 8-bit kernels (q8_items.h: with_q8_type).
constexpr DType kQ8Types[] = {DType::Q4_K, DType::Q6_K,   DType::Q8_0, DType::Q2_K,
                              DType::Q5_K, DType::Q4_0,   DType::Q4_1, DType::Q5_0,
                              DType::Q5_1, DType::IQ4_NL, DType::Q3_K, DType::IQ4_XS};

// Every byte of a matrix's code region is the target of exactly one 16-byte half, and the halves of
// consecutive items of a step are 16 bytes apart (a warp's load reads one contiguous run) with an
// item's second half m * 16 bytes after its first.
TEST(CudaLayout, CodeHalvesCoverEveryByteOnce) {
  constexpr int64_t kRows = 3;
  for (int64_t n_items : {1, 5, 31, 32, 33, 64, 100, 132}) {
    SCOPED_TRACE(testing::Message() << "items " << n_items);
    std::vector<int> hits(kRows * n_items * 32, 0);
    for (int64_t r = 0; r < kRows; ++r) {
      for (int it = 0; it < n_items; ++it) {
        const int64_t lo = cuda::code_half_at(n_items, r, it, 0);
        const int64_t hi = cuda::code_half_at(n_items, r, it, 1);
        ASSERT_EQ(lo % 16, 0);
        for (int64_t at : {lo, hi}) {
          ASSERT_GE(at, r * n_items * 32);
          ASSERT_LE(at + 16, (r + 1) * n_items * 32);
          for (int k = 0; k < 16; ++k) ++hits[at + k];
        }
        const int64_t step = it / 32 * 32, m = std::min<int64_t>(32, n_items - step);
        EXPECT_EQ(hi - lo, 16 * m);
        if (it % 32 != 0) {
          EXPECT_EQ(lo - cuda::code_half_at(n_items, r, it - 1, 0), 16);
        }
      }
    }
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 1) << "byte " << i;
  }
}

// Word s holds item s's two 6-bit scales and mins as get_scale_min_k4 decodes them and byte s of
// (d, dmin) on top.
TEST(CudaLayout, Q4KScaleWordsHoldTheUnpackedScales) {
  for (uint32_t seed = 1; seed <= 64; ++seed) {
    const std::vector<uint8_t> block = random_bytes(16, seed);
    uint8_t out[16];
    cuda::q4k_scale_words(block.data(), out);
    uint8_t sc[8], mn[8];
    unpack_scale_min_k4(block.data() + 4, sc, mn);
    for (int s = 0; s < 4; ++s) {
      const uint32_t w = out[4 * s] | out[4 * s + 1] << 8 | out[4 * s + 2] << 16 |
                         static_cast<uint32_t>(out[4 * s + 3]) << 24;
      EXPECT_EQ(w & 63, sc[2 * s]) << "seed " << seed << " item " << s;
      EXPECT_EQ((w >> 6) & 63, sc[2 * s + 1]);
      EXPECT_EQ((w >> 12) & 63, mn[2 * s]);
      EXPECT_EQ((w >> 18) & 63, mn[2 * s + 1]);
      EXPECT_EQ(w >> 24, block[s]);
    }
  }
}

// repack_q8 puts every field of every GGUF block where layout.h says: codes through
// code_half_at (Q4_K, Q8_0) or whole (Q6_K), then the scales, then Q6_K's d.
TEST(CudaLayout, RepackPutsEveryBlockFieldInPlace) {
  struct Case {
    DType type;
    int64_t cols;
    int code_at, code, meta_at, meta, meta2_at, meta2;
  };
  const Case cases[] = {
      {DType::Q4_K, 256 * 9, 16, 128, 0, 16, 0, 0},  // 36 items per row: a partial second step
      {DType::Q6_K, 256 * 3, 0, 192, 192, 16, 208, 2},
      {DType::Q8_0, 32 * 45, 2, 32, 0, 2, 0, 0},
      {DType::Q2_K, 256 * 17, 16, 64, 0, 16, 80, 4},  // 34 items per row
      {DType::Q5_K, 256 * 9, 48, 128, 0, 16, 16, 32},
      {DType::Q3_K, 256 * 3, 32, 96, 96, 12, 108, 2},
      {DType::IQ4_XS, 256 * 9, 8, 128, 0, 8, 0, 0},
  };
  constexpr int64_t kRows = 5;
  for (const Case& c : cases) {
    SCOPED_TRACE(dtype_name(c.type));
    const size_t bytes = row_bytes(c.type, c.cols) * kRows;
    const std::vector<uint8_t> src = random_bytes(bytes, 7);
    std::vector<uint8_t> dst(bytes, 0xEE);
    cuda::repack_q8(c.type, src.data(), kRows, c.cols, dst.data());
    const int64_t block_bytes = static_cast<int64_t>(row_bytes(c.type, c.cols)) /
                                (c.cols / (c.type == DType::Q8_0 ? 32 : 256));
    const int64_t nb = c.cols / (c.type == DType::Q8_0 ? 32 : 256), n = kRows * nb;
    const uint8_t* codes = dst.data();
    const uint8_t* meta = codes + n * c.code;
    const uint8_t* meta2 = meta + n * c.meta;
    const int items = c.code / 32;
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* b = src.data() + i * block_bytes;
      if (c.type == DType::Q6_K) {
        ASSERT_EQ(std::memcmp(codes + i * c.code, b + c.code_at, c.code), 0) << "block " << i;
      } else if (c.type == DType::Q3_K) {  // qs, then hmask (the block's first 32 bytes)
        ASSERT_EQ(std::memcmp(codes + i * c.code, b + c.code_at, 64), 0) << "block " << i;
        ASSERT_EQ(std::memcmp(codes + i * c.code + 64, b, 32), 0) << "block " << i;
      } else {
        for (int k = 0; k < items; ++k) {
          const int it = static_cast<int>(i % nb) * items + k;
          for (int h = 0; h < 2; ++h) {
            const int64_t at = cuda::code_half_at(nb * items, i / nb, it, h);
            const uint8_t* in = b + c.code_at + 32 * k + 16 * h;
            if (c.type == DType::IQ4_XS) {  // byte m: elements 2 m and 2 m + 1 of the group
              for (int e = 0; e < 32; ++e) {
                const int want = e < 16 ? in[e] & 15 : in[e - 16] >> 4;
                ASSERT_EQ((codes[at + e / 2] >> (4 * (e % 2))) & 15, want)
                    << "block " << i << " item " << k << " half " << h << " element " << e;
              }
              continue;
            }
            ASSERT_EQ(std::memcmp(codes + at, in, 16), 0)
                << "block " << i << " item " << k << " half " << h;
          }
        }
      }
      if (c.type == DType::Q4_K || c.type == DType::Q5_K) {
        uint8_t words[16];
        cuda::q4k_scale_words(b, words);
        ASSERT_EQ(std::memcmp(meta + i * c.meta, words, 16), 0) << "block " << i;
      } else {
        ASSERT_EQ(std::memcmp(meta + i * c.meta, b + c.meta_at, c.meta), 0) << "block " << i;
      }
      if (c.type == DType::Q5_K) {  // word w, bit l: bit w of qh[l]
        for (int w = 0; w < 8; ++w) {
          for (int l = 0; l < 32; ++l) {
            ASSERT_EQ((meta2[i * c.meta2 + 4 * w + l / 8] >> (l % 8)) & 1,
                      (b[c.meta2_at + l] >> w) & 1)
                << "block " << i << " word " << w << " bit " << l;
          }
        }
      } else if (c.meta2 > 0) {
        ASSERT_EQ(std::memcmp(meta2 + i * c.meta2, b + c.meta2_at, c.meta2), 0) << "block " << i;
      }
    }
    // The fields fill the buffer exactly (nothing left unwritten).
    EXPECT_EQ(n * (c.code + c.meta + c.meta2), static_cast<int64_t>(bytes));
  }
}

// The legacy 32-element types go in pairs of blocks: both blocks' codes as the halves of one item
// (IQ4_NL's re-ordered by iq4_pairs), then d0, d1 (m0, m1), then qh0, qh1.
TEST(CudaLayout, RepackPairsLegacyBlocks) {
  struct Case {
    DType type;
    int qs_at, m_at, qh_at;  // in one GGUF block; -1: none
  };
  const Case cases[] = {{DType::Q4_0, 2, -1, -1},
                        {DType::Q4_1, 4, 2, -1},
                        {DType::Q5_0, 6, -1, 2},
                        {DType::Q5_1, 8, 2, 4},
                        {DType::IQ4_NL, 2, -1, -1}};
  constexpr int64_t kRows = 3, kCols = 64 * 37;  // 37 items per row: a partial second step
  for (const Case& c : cases) {
    SCOPED_TRACE(dtype_name(c.type));
    ASSERT_TRUE(cuda::q8::with_q8_type(c.type, [](auto) {}));
    const size_t bytes = row_bytes(c.type, kCols) * kRows;
    const std::vector<uint8_t> src = random_bytes(bytes, 9);
    std::vector<uint8_t> dst(bytes, 0xEE);
    cuda::repack_q8(c.type, src.data(), kRows, kCols, dst.data());
    const int64_t nb = kCols / 64, n = kRows * nb;
    const int gguf = static_cast<int>(bytes / (n * 2));
    const int meta = c.m_at >= 0 ? 8 : 4, meta2 = c.qh_at >= 0 ? 8 : 0;
    EXPECT_EQ(n * (32 + meta + meta2), static_cast<int64_t>(bytes));
    const uint8_t* m = dst.data() + n * 32;
    const uint8_t* m2 = m + n * meta;
    for (int64_t i = 0; i < n; ++i) {
      for (int h = 0; h < 2; ++h) {
        const uint8_t* b = src.data() + (2 * i + h) * gguf;
        const uint8_t* codes = dst.data() + cuda::code_half_at(nb, i / nb, i % nb, h);
        uint8_t want[16];
        if (c.type == DType::IQ4_NL) {
          cuda::iq4_pairs(b + c.qs_at, want);
        } else {
          std::memcpy(want, b + c.qs_at, 16);
        }
        ASSERT_EQ(std::memcmp(codes, want, 16), 0) << "pair " << i << " block " << h;
        ASSERT_EQ(std::memcmp(m + i * meta + 2 * h, b, 2), 0) << "pair " << i << " block " << h;
        if (c.m_at >= 0) {
          ASSERT_EQ(std::memcmp(m + i * meta + 4 + 2 * h, b + c.m_at, 2), 0);
        }
        if (c.qh_at >= 0) {
          ASSERT_EQ(std::memcmp(m2 + i * meta2 + 4 * h, b + c.qh_at, 4), 0);
        }
      }
    }
  }
  uint8_t qs[16], out[16];  // iq4_pairs: byte m = elements 2 m | 2 m + 1 << 4
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  cuda::iq4_pairs(qs, out);
  EXPECT_EQ(out[0], 0x10);  // elements 0 and 1: codes 0, 1
  EXPECT_EQ(out[8], 0xEF);  // elements 16 and 17: codes 15, 14
}

// Each type's lane functions (load, load_act, dot) summed over every item of a row, on the CPU
// with the intrinsics written out, against the dequantized weights times the dequantized 8-bit
// activations in double; tolerance 2e-5 * sum |w x| + 1e-6, as the GPU tests. The weights come
// from the CPU quantizers, so the scales are real ones (the layout test uses random bytes).
template <class T>
void check_lane_dots(DType type) {
  SCOPED_TRACE(dtype_name(type));
  constexpr int64_t kRows = 7, kCols = 2304;  // 9 Q4_K / Q6_K blocks (36 items: a partial step)
  std::mt19937 rng(5);
  std::normal_distribution<float> weight(0.0f, 0.05f), act(0.0f, 1.0f);
  std::vector<float> wf(kRows * kCols), x(kCols);
  for (float& v : wf) v = weight(rng);
  for (float& v : x) v = act(rng);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero group: d = 0
  const size_t stride = row_bytes(type, kCols);
  const std::vector<uint8_t> w = encode_rows(type, wf.data(), kRows, kCols);
  std::vector<uint8_t> packed(w.size());
  for (int64_t r = 0; r < kRows; ++r)
    convert_row_to_f32(type, w.data() + r * stride, wf.data() + r * kCols, kCols);
  cuda::repack_q8(type, w.data(), kRows, kCols, packed.data());
  std::vector<int8_t> xq(kCols);
  std::vector<float> xd(kCols / 32), xr(kCols);
  for (int64_t g = 0; g < kCols / 32; ++g) {  // as quantize_activations_q8
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[g * 32 + i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    xd[g] = d;
    for (int i = 0; i < 32; ++i) {
      xq[g * 32 + i] = static_cast<int8_t>(std::round(x[g * 32 + i] * id));
      xr[g * 32 + i] = xq[g * 32 + i] * d;
    }
  }
  const cuda::q8::View v = cuda::q8::view_of<T>(packed.data(), kRows, kCols);
  const int n_items = static_cast<int>(v.nb) * T::kItems;
  for (int64_t r = 0; r < kRows; ++r) {
    double got = 0, want = 0, mag = 0;
    for (int it = 0; it < n_items; ++it) {
      const auto x = T::template load_act<false>(xq.data(), xd.data(), it);
      const float lane = T::dot(T::load(v, r, it), x, it);
      ASSERT_EQ(lane, T::dot(T::load(cuda::q8::row_view<T>(v, static_cast<int>(r)), 0, it), x, it))
          << "row " << r << " item " << it << ": row_view reads other bytes";
      got += lane;
    }
    for (int64_t i = 0; i < kCols; ++i) {
      want += static_cast<double>(wf[r * kCols + i]) * xr[i];
      mag += std::fabs(wf[r * kCols + i] * xr[i]);
    }
    EXPECT_NEAR(got, want, 2e-5 * mag + 1e-6) << "row " << r;
  }
}

// The F16 dequantize kernel's group decoding (prefill GEMM copies) gives convert_row_to_f32's
// values exactly.
template <class T>
void check_dequantize_groups(DType type) {
  SCOPED_TRACE(dtype_name(type));
  constexpr int64_t kRows = 3, kCols = 2304;
  std::mt19937 rng(6);
  std::normal_distribution<float> weight(0.0f, 0.05f);
  std::vector<float> f(kRows * kCols), want(kCols), got(kCols);
  for (float& v : f) v = weight(rng);
  const size_t stride = row_bytes(type, kCols);
  const std::vector<uint8_t> w = encode_rows(type, f.data(), kRows, kCols);
  std::vector<uint8_t> packed(w.size());
  cuda::repack_q8(type, w.data(), kRows, kCols, packed.data());
  const cuda::q8::View v = cuda::q8::view_of<T>(packed.data(), kRows, kCols);
  for (int64_t r = 0; r < kRows; ++r) {
    convert_row_to_f32(type, w.data() + r * stride, want.data(), kCols);
    for (int64_t g = 0; g < kCols / 32; ++g)
      cuda::q8::dequantize_group<T>(v, r, g, got.data() + g * 32);
    for (int64_t i = 0; i < kCols; ++i) ASSERT_EQ(got[i], want[i]) << "row " << r << " at " << i;
  }
}

TEST(CudaLaneMath, DequantizedGroupsMatchTheCpu) {
  for (DType type : kQ8Types) {
    ASSERT_TRUE(
        cuda::q8::with_q8_type(type, [&](auto t) { check_dequantize_groups<decltype(t)>(type); }));
  }
}

// The GGUF-layout group decoding of every type the GPU holds unrepacked (dequant.cuh: the F16
// copies of the prefill GEMM; the same field offsets as matvec.cu's kernels) gives
// convert_row_to_f32's values exactly: 3 rows of 2304 columns (9 super-blocks) of each type.
TEST(CudaLaneMath, GgufGroupsMatchTheCpu) {
  constexpr int64_t kRows = 3, kCols = 2304;
  std::mt19937 rng(8);
  std::normal_distribution<float> weight(0.0f, 0.05f);
  std::vector<float> f(kRows * kCols), want(kCols), got(kCols);
  for (float& v : f) v = weight(rng);
  int types = 0;
  for (int id = 0; id <= static_cast<int>(DType::BF16); ++id) {
    const auto type = static_cast<DType>(id);
    const bool has = cuda::dequant::with_gguf_type(type, [&](auto t) {
      using T = decltype(t);
      SCOPED_TRACE(dtype_name(type));
      const size_t stride = row_bytes(type, kCols);
      ASSERT_EQ(stride, static_cast<size_t>(kCols / T::kElems * T::kBytes));
      const std::vector<uint8_t> w = encode_rows(type, f.data(), kRows, kCols);
      for (int64_t r = 0; r < kRows; ++r) {
        const uint8_t* row = w.data() + r * stride;
        convert_row_to_f32(type, row, want.data(), kCols);
        for (int64_t g = 0; g < kCols / 32; ++g) {
          constexpr int kGroups = T::kElems / 32;
          T::group(row + g / kGroups * T::kBytes, static_cast<int>(g % kGroups),
                   got.data() + g * 32);
        }
        for (int64_t i = 0; i < kCols; ++i)
          ASSERT_EQ(got[i], want[i]) << "row " << r << " at " << i;
      }
    });
    types += has;
  }
  EXPECT_EQ(types, 15);  // F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K..Q6_K, IQ4_XS
}

TEST(CudaLaneMath, EveryTypeMatchesTheDequantizedProduct) {
  for (DType type : kQ8Types) {
    ASSERT_TRUE(cuda::q8::with_q8_type(type, [&](auto t) { check_lane_dots<decltype(t)>(type); }));
  }
}

// Every step is loaded once, into a free buffer, before its math reads it from that buffer, in
// step order; both first steps are loaded before the loop (the kernel's prologue runs between);
// while a step's math runs, the next step is already loaded (two in flight).
TEST(CudaPipeline, TwoBuffersLoadEveryStepOnceAheadOfItsMath) {
  for (int64_t total = 0; total <= 9; ++total) {
    SCOPED_TRACE(total);
    int64_t buffer[2] = {-1, -1}, loaded = 0, done = 0;
    int errors = 0;
    auto load = [&](auto b) {
      if (buffer[b.value] != -1) ++errors;  // still holds a step not multiplied yet
      buffer[b.value] = loaded++;
    };
    auto math = [&](auto b) {
      if (buffer[b.value] != done) ++errors;  // not this step, or not loaded
      if (loaded - done < std::min<int64_t>(2, total - done)) ++errors;  // next not in flight
      buffer[b.value] = -1;
      ++done;
    };
    cuda::two_buffer_preload(total, load);
    EXPECT_EQ(loaded, std::min<int64_t>(total, 2));
    cuda::two_buffer_steps(total, load, math);
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(loaded, total);
    EXPECT_EQ(done, total);
  }
}

// The per-row kernel's lane loop: items first, first + stride, ... below n, each loaded once into
// the free buffer before its math reads it, the next item loaded before each math (partial last
// steps: lanes whose first item is past n do nothing).
TEST(CudaPipeline, TwoBufferItemsLoadEachItemBeforeItsMath) {
  for (int stride : {32, 128}) {
    for (int first : {0, 5, 31, 100}) {
      for (int n = 0; n <= 300; n += 7) {
        SCOPED_TRACE(testing::Message() << "stride " << stride << " first " << first << " n " << n);
        int buffer[2] = {-1, -1}, errors = 0, loads = 0, maths = 0, expect = first;
        auto load = [&](auto b, int item) {
          if (buffer[b.value] != -1) ++errors;
          buffer[b.value] = item;
          ++loads;
        };
        auto math = [&](auto b, int item) {
          if (item != expect || buffer[b.value] != item) ++errors;
          if (item + stride < n && buffer[1 - b.value] != item + stride) ++errors;  // in flight
          buffer[b.value] = -1;
          expect += stride;
          ++maths;
        };
        cuda::two_buffer_items_preload(first, n, load);
        cuda::two_buffer_items(first, n, stride, load, math);
        const int items = first < n ? (n - first + stride - 1) / stride : 0;
        EXPECT_EQ(errors, 0);
        EXPECT_EQ(loads, items);
        EXPECT_EQ(maths, items);
      }
    }
  }
}

// Row groups over the warps of a persistent grid: at most max_blocks blocks, every warp's share
// within one group of every other's, and no whole block left idle.
TEST(CudaSchedule, BalancedBlocksShareGroupsEvenly) {
  for (int64_t groups : {1, 3, 4, 5, 100, 2048, 2049, 7168, 14336}) {
    for (int64_t max_blocks : {1, 2, 7, 132, 528, 660}) {
      SCOPED_TRACE(testing::Message() << groups << " groups, at most " << max_blocks << " blocks");
      const int64_t blocks = cuda::balanced_blocks(groups, max_blocks, 4);
      ASSERT_GE(blocks, 1);
      EXPECT_LE(blocks, max_blocks);
      const int64_t warps = blocks * 4;  // warp w takes groups w, w + warps, ...
      const int64_t most = (groups + warps - 1) / warps;
      EXPECT_GE(groups, (blocks - 1) * 4 * (most - 1) + 1) << "a whole block without work";
      // The busiest warp has as many groups as with all max_blocks blocks.
      EXPECT_EQ(most, (groups + max_blocks * 4 - 1) / (max_blocks * 4));
    }
  }
}

// Two products sharing a grid: blocks in proportion to their bytes, each at least one.
TEST(CudaSchedule, SplitBlocksFollowsTheBytes) {
  EXPECT_EQ(cuda::split_blocks(528, 3.0, 1.0), 396);  // a Q4_K [q | k] beside a Q6_K v
  EXPECT_EQ(cuda::split_blocks(10, 1.0, 1.0), 5);
  EXPECT_EQ(cuda::split_blocks(10, 1.0, 1e9), 1);
  EXPECT_EQ(cuda::split_blocks(10, 1e9, 1.0), 9);
  EXPECT_EQ(cuda::split_blocks(2, 5.0, 1.0), 1);
}

}  // namespace
}  // namespace squish
