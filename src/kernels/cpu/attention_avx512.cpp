// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*; GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SQUISH_ATTENTION_SUFFIX avx512
#include "kernels/cpu/attention_impl.h"
