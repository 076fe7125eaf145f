// Importance matrices in llama.cpp's formats: the GGUF form written by llama-imatrix
// (tensors "<weight>.in_sum2" [n_mat, ne0] and "<weight>.counts" [n_mat, 1], keys
// imatrix.datasets / imatrix.chunk_count / imatrix.chunk_size) and the legacy ".dat" form.
// An entry's importance per input column is the mean of the squared activations that column saw,
// which is what quantizers weigh each weight's error by.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace squish {

struct ImatrixEntry {
  std::vector<float> sums;    // sum of squared activations per column (per matrix for 3-D)
  std::vector<float> counts;  // tokens seen, one per matrix
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by weight tensor name ("blk.0.attn_q.weight")
  std::vector<std::string> datasets;
  int chunk_count = 0;
  int chunk_size = 0;
  bool legacy = false;

  // Mean squared activation per column (counts of 0 give 1, as llama-quantize does); nullptr-free:
  // returns an empty vector when the tensor has no entry.
  std::vector<float> importance(const std::string& tensor_name) const;
};

// Reads either format (detected by the GGUF magic); throws squish::Error naming the file.
Imatrix read_imatrix(const std::string& path);
// Writes the GGUF form atomically.
void write_imatrix(const std::string& path, const Imatrix& imatrix);

}  // namespace squish
