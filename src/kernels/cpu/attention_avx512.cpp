#define SQUISH_ATTENTION_SUFFIX avx512
#include "kernels/cpu/attention_impl.h"
