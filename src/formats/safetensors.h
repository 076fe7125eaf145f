// safetensors reader: one file, or a Hugging Face folder with a single model.safetensors or
// shards listed in model.safetensors.index.json. Tensors point into memory maps (no copies).
// The JSON header is bounded (100 MiB) before it is read; offsets, sizes, dtypes and overlaps
// are validated, and every failure is a squish::Error naming the file and the problem.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace squish {

struct SafetensorsSet {
  std::vector<std::shared_ptr<MappedFile>> files;  // keep-alive for the maps
  std::vector<TensorInfo> tensors;                 // all shards, in header order per shard
  std::map<std::string, std::string> metadata;     // "__metadata__" string pairs (first shard)

  const TensorInfo* find(const std::string& name) const;
};

// path: a .safetensors file, or a folder (index.json shards first, then model.safetensors,
// then the only *.safetensors file present).
SafetensorsSet open_safetensors(const std::string& path);

}  // namespace squish
