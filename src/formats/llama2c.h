// llama2.c checkpoints (karpathy/llama2.c): the legacy header-of-7-int32 float32 format written by
// export.py --version 0 and the run.c reader, and the version-1 float32 format ("ak42" magic).
// Negative vocab_size in the legacy header means an unshared classifier follows the weights.
// Tensors get GGUF canonical names (token_embd.weight, blk.N.attn_q.weight, ..., output.weight).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace squish {

struct Llama2cCheckpoint {
  int version = 0;  // 0 legacy, 1 ak42 float32
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
      seq_len = 0;
  bool shared_classifier = true;
  std::shared_ptr<MappedFile> file;
  std::vector<TensorInfo> tensors;  // F32 views into `file`
};

// Rejects anything inconsistent: non-positive dims, heads not dividing dim, a file whose size
// does not equal the size the header implies (± the optional classifier), etc.
Llama2cCheckpoint open_llama2c(const std::string& path);

// True when the first bytes look like a llama2.c checkpoint (legacy or ak42).
bool looks_like_llama2c(const MappedFile& file);

}  // namespace squish
