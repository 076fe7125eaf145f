// Asynchronous copies (cp.async, sm_80+) of one lane's weights for one item of Q4_K, Q6_K or Q8_0
// (q8_items.h) into a shared-memory slot laid out as the type's Raw struct, for decode kernels
// that keep more steps in flight than registers hold (kernels_q8.cu: decode_body with kStages).
// The copies bypass L1 (.cg: weights are read once) and complete in the order of
// cp.async.commit_group: cp_async_wait<n> returns when at most n of this thread's groups are
// still in flight. A lane reads back only the slot it filled, so no barrier is needed; its
// generic reads of a slot come before its next copy into the slot in program order (the asm
// statements clobber memory, so the compiler keeps them there).
#pragma once

#include <cstdint>

#include "kernels/cuda/layout.h"
#include "kernels/cuda/q8_items.h"

namespace squish::cuda::q8 {

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const auto s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
// 4 bytes: a 2-byte scale is copied with its neighbour (the aligned word holding it).
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const auto s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kInFlight>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kInFlight) : "memory");
}

// The aligned 4 bytes holding the 2-byte value at p (meta regions start 16-byte aligned), and
// the value taken out of them again (h2f reads the low 16 bits).
__device__ __forceinline__ const uint8_t* word_of(const uint8_t* p) {
  return reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{3});
}
__device__ __forceinline__ uint32_t half_of(uint32_t word, int64_t index) {
  return index & 1 ? word >> 16 : word;
}

// issue(): the copies of T::load(v, r, it) into *dst; fix(): what load() would have returned,
// from the slot's bytes.
template <class T>
struct AsyncItem;

template <>
struct AsyncItem<Q4K> {
  __device__ static void issue(const View& v, int64_t r, int it, Q4K::Raw* dst) {
    const int64_t n_items = v.nb * Q4K::kItems, blk = r * v.nb + it / Q4K::kItems;
    cp_async16(&dst->c0, v.codes + code_half_at(n_items, r, it, 0));
    cp_async16(&dst->c1, v.codes + code_half_at(n_items, r, it, 1));
    cp_async16(&dst->m, v.meta + blk * Q4K::kMeta);
  }
  __device__ static void fix(Q4K::Raw&, const View&, int64_t, int) {}
};

template <>
struct AsyncItem<Q6K> {
  __device__ static void issue(const View& v, int64_t r, int it, Q6K::Raw* dst) {
    const int64_t blk = r * v.nb + it / Q6K::kItems;
    const int s = it % Q6K::kItems, n = s >> 1, o = (s & 1) * 16;
    const uint8_t* c = v.codes + blk * Q6K::kCode;
    cp_async16(&dst->l0, c + n * 64 + o);
    cp_async16(&dst->l1, c + n * 64 + 32 + o);
    cp_async16(&dst->h, c + 128 + n * 32 + o);
    cp_async16(&dst->sc, v.meta + blk * Q6K::kMeta);
    cp_async4(&dst->d, word_of(v.meta2 + blk * Q6K::kMeta2));
  }
  __device__ static void fix(Q6K::Raw& w, const View& v, int64_t r, int it) {
    w.d = half_of(w.d, r * v.nb + it / Q6K::kItems);
  }
};

template <>
struct AsyncItem<Q80> {
  __device__ static void issue(const View& v, int64_t r, int it, Q80::Raw* dst) {
    const int64_t blk = r * v.nb + it;
    cp_async16(&dst->c0, v.codes + code_half_at(v.nb, r, it, 0));
    cp_async16(&dst->c1, v.codes + code_half_at(v.nb, r, it, 1));
    cp_async4(&dst->d, word_of(v.meta + blk * Q80::kMeta));
  }
  __device__ static void fix(Q80::Raw& w, const View& v, int64_t r, int it) {
    w.d = half_of(w.d, r * v.nb + it);
  }
};

}  // namespace squish::cuda::q8
