// AVX-512 VNNI parts of the int8 GEMM (gemm_int8.h): the micro-kernel and the activation
// quantizer.
//
// Micro-kernel: 16 weight rows (one int32 lane each) x NT tokens of accumulators in registers.
// Per step of four columns: one 64-byte load of the panel's codes and NT vpdpbusd, each with
// four activation bytes of one token broadcast. Per group the int32 sums are multiplied by the
// group's integer scales (vpmulld) into the scale block's sum I, and pairs of groups' mins dot
// the activation group sums (vpdpwssd) into J; per scale block I and J go to float.
//
// Helpers here have internal linkage and call no inline functions of shared headers: this file
// is compiled with AVX-512 flags, and an externally visible inline function instantiated here
// could be picked by the linker for callers that run on CPUs without it.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*; GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/gemm_int8.h"

namespace squish::kernels {

namespace {

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The accumulation scheme of one GemmFormat (see gemm_int8.h), as compile-time constants.
template <int G_, int GPS_, int kBits_, int kHighBits_, bool kOffset_, bool kIntScales_,
          bool kIntMins_, bool kFloatMins_>
struct Scheme {
  static constexpr int G = G_, GPS = GPS_, kBits = kBits_, kHighBits = kHighBits_;
  static constexpr bool kOffset = kOffset_, kIntScales = kIntScales_, kIntMins = kIntMins_,
                        kFloatMins = kFloatMins_;
  // Registers: NT each for the group sums, I, J and the float accumulators, within 32.
  static constexpr int kTokens = kIntMins ? 6 : 8;
};

// Panel arrays (gemm_panel_layout).
struct Panel {
  const uint8_t* codes;
  const uint64_t* high;
  const int8_t* sc;
  const int8_t* mn;
  const uint16_t* d;
  const uint16_t* m;
};

template <class S, int NT>
inline void micro(const Panel& p, const GemmActivations& a, int64_t t0, float* y, int64_t ldy,
                  __mmask16 mask) {
  constexpr int G = S::G, GPS = S::GPS, kBits = S::kBits;
  constexpr int kSlices = 8 / kBits;         // four-column slices per 64-byte step
  constexpr int kSteps = G / (4 * kSlices);  // steps per group
  const __m512i code_mask = _mm512_set1_epi8(static_cast<char>((1 << kBits) - 1));
  const int64_t k = a.k, ng = k / G, ns = ng / GPS;
  const int8_t* q = a.q + t0 * k;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t s = 0; s < ns; ++s) {
    __m512i I[NT], J[NT];
    for (int t = 0; t < NT; ++t) I[t] = J[t] = _mm512_setzero_si512();
    for (int gi = 0; gi < GPS; ++gi) {
      const int64_t g = s * GPS + gi;
      __m512i isum[NT];
      for (int t = 0; t < NT; ++t) {
        // Starting at -offset * sum q takes the code offset out exactly.
        isum[t] =
            S::kOffset ? _mm512_set1_epi32(a.qoff[(t0 + t) * ng + g]) : _mm512_setzero_si512();
      }
      const uint8_t* c = p.codes + g * kSteps * 64;
      const int8_t* qg = q + g * G;
      for (int st = 0; st < kSteps; ++st) {
        const __m512i v = _mm512_load_si512(c + 64 * st);
        for (int m = 0; m < kSlices; ++m) {
          __m512i cv = kBits == 8 ? v
                                  : _mm512_and_si512(m == 0 ? v : _mm512_srli_epi16(v, m * kBits),
                                                     code_mask);
          const int64_t slice = (g * kSteps + st) * kSlices + m;
          if constexpr (S::kHighBits == 1) {  // from a byte mask
            cv = _mm512_mask_add_epi8(cv, _cvtu64_mask64(p.high[slice]), cv,
                                      _mm512_set1_epi8(static_cast<char>(1 << kBits)));
          } else if constexpr (S::kHighBits == 2) {
            // From the 2-bit plane: bits 2 * (slice % 4) moved up to kBits (shifting 16-bit
            // lanes; the mask drops what crosses bytes), or-ed in with one ternary-logic op.
            static_assert(kSteps * kSlices % 4 == 0, "a group covers whole 2-bit vectors");
            const __m512i hv =
                _mm512_load_si512(reinterpret_cast<const uint8_t*>(p.high) + (slice / 4) * 64);
            const int up = kBits - 2 * ((st * kSlices + m) % 4);  // slice % 4, known statically
            const __m512i moved = up >= 0 ? _mm512_slli_epi16(hv, up) : _mm512_srli_epi16(hv, -up);
            cv = _mm512_ternarylogic_epi32(cv, moved,
                                           _mm512_set1_epi8(static_cast<char>(3 << kBits)), 0xF8);
          }
          const int col = 4 * (kSlices * st + m);
          for (int t = 0; t < NT; ++t) {
            isum[t] =
                _mm512_dpbusd_epi32(isum[t], cv, _mm512_set1_epi32(load_i32(qg + t * k + col)));
          }
        }
      }
      if constexpr (S::kIntScales) {
        const __m512i scv = _mm512_cvtepi8_epi32(
            _mm_load_si128(reinterpret_cast<const __m128i*>(p.sc + kGemmPanelRows * g)));
        for (int t = 0; t < NT; ++t)
          I[t] = _mm512_add_epi32(I[t], _mm512_mullo_epi32(isum[t], scv));
      } else {
        for (int t = 0; t < NT; ++t) I[t] = isum[t];
      }
      if constexpr (S::kIntMins) {
        if (gi % 2 == 1) {  // mins of groups g - 1 and g against their activation sums
          const __m512i mnv = _mm512_cvtepi8_epi16(
              _mm256_load_si256(reinterpret_cast<const __m256i*>(p.mn + kGemmPanelRows * (g - 1))));
          for (int t = 0; t < NT; ++t) {
            J[t] = _mm512_dpwssd_epi32(J[t], mnv,
                                       _mm512_set1_epi32(load_i32(a.qsum + (t0 + t) * ng + g - 1)));
          }
        }
      }
    }
    const __m512 dv = _mm512_cvtph_ps(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(p.d + kGemmPanelRows * s)));
    __m512 mv = _mm512_setzero_ps();
    if constexpr (S::kIntMins || S::kFloatMins) {
      mv = _mm512_cvtph_ps(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(p.m + kGemmPanelRows * s)));
    }
    for (int t = 0; t < NT; ++t) {
      const __m512 da = _mm512_set1_ps(a.da[(t0 + t) * ns + s]);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[t]), _mm512_mul_ps(dv, da), acc[t]);
      if constexpr (S::kIntMins) {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(J[t]), _mm512_mul_ps(mv, da), acc[t]);
      }
      if constexpr (S::kFloatMins) {  // one group per scale block: g == s
        acc[t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(a.da_qsum[(t0 + t) * ng + s]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
}

template <class S, int NT>
inline void tail(int64_t n, const Panel& p, const GemmActivations& a, int64_t t0, float* y,
                 int64_t ldy, __mmask16 mask) {
  if constexpr (NT > 0) {
    if (n == NT) return micro<S, NT>(p, a, t0, y + t0 * ldy, ldy, mask);
    tail<S, NT - 1>(n, p, a, t0, y, ldy, mask);
  }
}

template <class S>
void run_panel(const Panel& p, const GemmActivations& a, float* y, int64_t ldy, int nr) {
  const __mmask16 mask = static_cast<__mmask16>((1u << nr) - 1);
  constexpr int NT = S::kTokens;
  const int64_t n = a.n_tokens;
  int64_t t = 0;
  for (; t + NT <= n; t += NT) micro<S, NT>(p, a, t, y + t * ldy, ldy, mask);
  tail<S, NT - 1>(n - t, p, a, t, y, ldy, mask);
}

// ---- Activations, bit-identical to quantize_act_q8_0 / _q8_1 / _q8_K ----

inline float fp16_round_trip(float f) {
  return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// Q8_0 / Q8_1 block of 32 (ggml-cpu's activation rounding: id = 127 / amax, round half to
// even): quants to q, returns the fp16-rounded scale; *sum gets the quants' sum.
inline float quantize_q8_0_block(const float* x, int8_t* q, int* sum) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127;
  const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  // Rounds to nearest even (the default MXCSR mode, as nearbyint); NaN becomes INT_MIN -> -127.
  const __m512i q0 =
      _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, id)), hi), lo);
  const __m512i q1 =
      _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, id)), hi), lo);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(q1));
  *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  return fp16_round_trip(d);
}

// Q8_K super-block of 256: scale from the signed value of largest magnitude (the first on
// ties), q = min(127, round(-127 / max * x)); sums[16] of each 16 quants. Returns d.
inline float quantize_q8_K_block(const float* x, int8_t* q, int* sums) {
  __m512 amaxv = _mm512_setzero_ps();
  for (int i = 0; i < 16; ++i)
    amaxv = _mm512_max_ps(amaxv, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)));
  const float amax = _mm512_reduce_max_ps(amaxv);
  if (amax == 0.0f) {
    std::memset(q, 0, QK_K);
    for (int i = 0; i < 16; ++i) sums[i] = 0;
    return 0.0f;
  }
  float max = amax;
  for (int i = 0; i < 16; ++i) {
    const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)),
                                             _mm512_set1_ps(amax), _CMP_EQ_OQ);
    if (hit != 0) {
      max = x[16 * i + __builtin_ctz(hit)];
      break;
    }
  }
  const float iscale = -127.f / max;
  const __m512 is = _mm512_set1_ps(iscale);
  const __m512i hi = _mm512_set1_epi32(127);
  for (int i = 0; i < 16; ++i) {
    const __m512i qi =
        _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), is)), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * i), _mm512_cvtepi32_epi8(qi));
    sums[i] = _mm512_reduce_add_epi32(qi);
  }
  return 1 / iscale;
}

}  // namespace

void gemm_panel_avx512(DType type, const uint8_t* panel, const GemmActivations& act, float* y,
                       int64_t ldy, int nr, const uint8_t* prefetch, size_t prefetch_bytes) {
  // Decode streams every panel once: without this, the hardware prefetcher restarts on the
  // panel's separate arrays each time and the kernel waits on memory (2x slower in measurements).
  for (size_t o = 0; o < prefetch_bytes; o += 64) _mm_prefetch(prefetch + o, _MM_HINT_T0);
  const GemmPanelLayout l = gemm_panel_layout(gemm_format(type), act.k);
  const Panel p{panel + l.codes,
                reinterpret_cast<const uint64_t*>(panel + l.high),
                reinterpret_cast<const int8_t*>(panel + l.sc),
                reinterpret_cast<const int8_t*>(panel + l.mn),
                reinterpret_cast<const uint16_t*>(panel + l.d),
                reinterpret_cast<const uint16_t*>(panel + l.m)};
  // One instantiation per type family: (group, groups per scale, low bits, high bits, offset,
  // int scales, int mins, float mins).
  switch (type) {
    case DType::Q4_0:
      return run_panel<Scheme<32, 1, 4, 0, true, false, false, false>>(p, act, y, ldy, nr);
    case DType::Q5_0:
      return run_panel<Scheme<32, 1, 4, 1, true, false, false, false>>(p, act, y, ldy, nr);
    case DType::Q8_0:
    case DType::IQ4_NL:
      return run_panel<Scheme<32, 1, 8, 0, true, false, false, false>>(p, act, y, ldy, nr);
    case DType::Q4_1:
      return run_panel<Scheme<32, 1, 4, 0, false, false, false, true>>(p, act, y, ldy, nr);
    case DType::Q5_1:
      return run_panel<Scheme<32, 1, 4, 1, false, false, false, true>>(p, act, y, ldy, nr);
    case DType::Q2_K:
      return run_panel<Scheme<16, 16, 2, 0, false, true, true, false>>(p, act, y, ldy, nr);
    case DType::Q3_K:
      return run_panel<Scheme<16, 16, 2, 1, true, true, false, false>>(p, act, y, ldy, nr);
    case DType::Q6_K:
      return run_panel<Scheme<16, 16, 4, 2, true, true, false, false>>(p, act, y, ldy, nr);
    case DType::Q4_K:
      return run_panel<Scheme<32, 8, 4, 0, false, true, true, false>>(p, act, y, ldy, nr);
    case DType::Q5_K:
      return run_panel<Scheme<32, 8, 4, 1, false, true, true, false>>(p, act, y, ldy, nr);
    default:  // IQ4_XS
      return run_panel<Scheme<32, 8, 8, 0, true, true, false, false>>(p, act, y, ldy, nr);
  }
}

void gemm_prepare_activations_avx512(const float* x, int64_t t0, int64_t t1,
                                     const GemmActivations& act) {
  const GemmFormat& f = act.format;
  const int64_t k = act.k, G = f.group, ng = k / G, ns = ng / f.groups_per_scale;
  const int64_t S = k / ns;
  const bool super = f.act_type == DType::Q8_K;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * k;
    int8_t* q = act.q + t * k;
    for (int64_t s = 0; s < ns; ++s) {
      // Sums of 16 quants (Q8_K) or of the one 32-quant block.
      int sums[16];
      const float d = super ? quantize_q8_K_block(xt + s * S, q + s * S, sums)
                            : quantize_q8_0_block(xt + s * S, q + s * S, sums);
      act.da[t * ns + s] = d;
      const int groups = static_cast<int>(f.groups_per_scale);
      for (int j = 0; j < groups; ++j) {
        // Group j of the block: one 16-sum (G = 16), two (G = 32 in Q8_K) or the block's sum.
        const int sum = !super ? sums[0] : G == 16 ? sums[j] : sums[2 * j] + sums[2 * j + 1];
        const int64_t g = s * groups + j;
        act.qsum[t * ng + g] = static_cast<int16_t>(sum);
        act.qoff[t * ng + g] = -f.code_offset * sum;
        act.da_qsum[t * ng + g] = d * static_cast<float>(sum);
      }
    }
  }
}

}  // namespace squish::kernels
