// Where a calibrated quantization keeps its finished tensors, and, for resuming a killed run,
// the hidden states after the last finished block. In memory, or in a work folder: each tensor
// one file written atomically, then state.json naming the blocks done and a fingerprint of the
// job (model, plan, calibration tokens, options), so a folder left by a different job is never
// resumed from. Peak memory with a folder: the tensors are on disk, not held until the export.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace squish {

class TensorStore {
 public:
  // dir empty: in memory. Otherwise the folder is created if missing.
  explicit TensorStore(std::string dir = "");

  void put(const std::string& name, std::vector<uint8_t> bytes);
  bool contains(const std::string& name) const;
  // The tensor's bytes (null when absent), valid until the next get() on this store.
  const uint8_t* get(const std::string& name, size_t* size = nullptr);
  size_t size() const { return names_.size(); }
  const std::string& dir() const { return dir_; }

  // Resuming (folder stores only). The number of blocks finished by an earlier run of the same
  // job (0 when none; a folder from a different job is emptied first).
  int resume(uint64_t fingerprint);
  // Hidden states: rows x width floats. Name them by the block count they follow
  // ("quantized.3"); mark_done(layers) removes the streams of other counts.
  void save_stream(const std::string& name, const float* data, size_t n);
  void load_stream(const std::string& name, float* data, size_t n);
  // Records `layers` blocks done, with the caller's JSON (statistics) to hand back on resume.
  void mark_done(int layers, const std::string& extra_json);
  const std::string& resumed_extra() const { return resumed_extra_; }
  // Deletes the folder (after the output was written).
  void remove();

 private:
  std::string path(const std::string& file) const;

  std::string dir_;
  uint64_t fingerprint_ = 0;
  std::map<std::string, std::vector<uint8_t>> memory_;
  std::map<std::string, size_t> names_;  // name -> bytes
  std::shared_ptr<MappedFile> mapped_;
  std::string resumed_extra_;
};

// FNV-1a, for job fingerprints.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull);

}  // namespace squish
