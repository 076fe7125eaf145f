#define SQUISH_ATTENTION_SUFFIX avx2
#include "kernels/cpu/attention_impl.h"
