// Hidden states of every calibration token (tokens x width floats): in memory, or in a file
// under an offload folder, memory-mapped so the kernel pages it out under memory pressure (the
// layer-wise calibration touches it one window at a time).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace squish {

class ActivationCache {
 public:
  // offload_dir empty: plain memory.
  ActivationCache(size_t rows, size_t width, const std::string& offload_dir);
  ~ActivationCache();
  ActivationCache(const ActivationCache&) = delete;
  ActivationCache& operator=(const ActivationCache&) = delete;

  float* row(size_t r) { return data_ + r * width_; }
  float* data() { return data_; }
  size_t rows() const { return rows_; }
  size_t width() const { return width_; }
  size_t bytes() const { return rows_ * width_ * sizeof(float); }

 private:
  size_t rows_, width_;
  std::vector<float> memory_;
  float* data_ = nullptr;
  void* map_ = nullptr;
};

}  // namespace squish
