#include "quant/imatrix.h"

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"

namespace squish {

std::vector<float> Imatrix::importance(const std::string& name) const {
  auto it = entries.find(name);
  if (it == entries.end()) return {};
  const ImatrixEntry& e = it->second;
  std::vector<float> out(e.sums.size());
  if (legacy) {  // legacy sums are already means scaled by ncall
    const float ncall = e.counts.empty() ? 0.0f : e.counts[0];
    for (size_t i = 0; i < out.size(); ++i) out[i] = ncall > 0 ? e.sums[i] / ncall : e.sums[i];
    return out;
  }
  const size_t n_mat = e.counts.size();
  const size_t ne0 = n_mat ? e.sums.size() / n_mat : 0;
  for (size_t j = 0; j < n_mat; ++j) {
    for (size_t i = 0; i < ne0; ++i) {
      out[j * ne0 + i] = e.counts[j] > 0 ? e.sums[j * ne0 + i] / e.counts[j] : 1.0f;
    }
  }
  return out;
}

namespace {

Imatrix read_legacy(const std::string& path) {
  auto file = MappedFile::open(path);
  ByteReader r(file->data(), file->size(), path);
  Imatrix m;
  m.legacy = true;
  const int32_t n = r.read<int32_t>();
  if (n < 1) r.error("no entries");
  for (int32_t k = 0; k < n; ++k) {
    const int32_t len = r.read<int32_t>();
    if (len < 1 || static_cast<size_t>(len) > r.remaining() || len > 4096)
      r.error("bad name length");
    std::string name(reinterpret_cast<const char*>(r.take(len)), len);
    const int32_t ncall = r.read<int32_t>();
    const int32_t nval = r.read<int32_t>();
    if (nval < 1 || static_cast<size_t>(nval) > r.remaining() / 4)
      r.error("bad value count for '" + name + "'");
    ImatrixEntry e;
    e.sums.resize(nval);
    r.read_bytes(e.sums.data(), nval * sizeof(float));
    e.counts = {static_cast<float>(ncall)};
    if (!m.entries.emplace(name, std::move(e)).second) r.error("duplicate entry '" + name + "'");
  }
  if (r.remaining() >= 4) {
    m.chunk_count = r.read<int32_t>();
    if (r.remaining() >= 4) {
      const int32_t len = r.read<int32_t>();
      if (len > 0 && static_cast<size_t>(len) <= r.remaining()) {
        m.datasets.emplace_back(reinterpret_cast<const char*>(r.take(len)), len);
      }
    }
  }
  return m;
}

}  // namespace

Imatrix read_imatrix(const std::string& path) {
  {
    auto file = MappedFile::open(path);
    if (file->size() < 4 || std::memcmp(file->data(), "GGUF", 4) != 0) return read_legacy(path);
  }
  auto g = GGUFFile::open(path);
  Imatrix m;
  if (const auto* ds = g->get_str_array("imatrix.datasets")) m.datasets = *ds;
  m.chunk_count = static_cast<int>(g->get_uint("imatrix.chunk_count").value_or(0));
  m.chunk_size = static_cast<int>(g->get_uint("imatrix.chunk_size").value_or(0));
  for (const TensorInfo& t : g->tensors()) {
    if (!t.name.ends_with(".in_sum2")) continue;
    const std::string name = t.name.substr(0, t.name.size() - 8);
    const TensorInfo* counts = g->find_tensor(name + ".counts");
    if (counts == nullptr) fail("{}: '{}' has no matching .counts tensor", path, t.name);
    if (t.type != DType::F32 || counts->type != DType::F32)
      fail("{}: imatrix tensors for '{}' must be F32", path, name);
    if (counts->numel() < 1 || t.numel() % counts->numel() != 0) {
      fail("{}: '{}' has {} values for {} counts", path, name, t.numel(), counts->numel());
    }
    ImatrixEntry e;
    e.sums.resize(t.numel());
    std::memcpy(e.sums.data(), t.data, t.numel() * sizeof(float));
    e.counts.resize(counts->numel());
    std::memcpy(e.counts.data(), counts->data, counts->numel() * sizeof(float));
    m.entries.emplace(name, std::move(e));
  }
  if (m.entries.empty()) fail("{}: no imatrix entries (no '*.in_sum2' tensors)", path);
  return m;
}

void write_imatrix(const std::string& path, const Imatrix& m) {
  GGUFWriter w(path);
  w.set("general.type", GGUFValue::str("imatrix"));
  w.set("imatrix.datasets", GGUFValue::str_array(m.datasets));
  w.set("imatrix.chunk_count", GGUFValue::u32(m.chunk_count));
  w.set("imatrix.chunk_size", GGUFValue::u32(m.chunk_size));
  for (const auto& [name, e] : m.entries) {
    const int64_t n_mat = static_cast<int64_t>(e.counts.size());
    w.add_tensor(name + ".in_sum2", DType::F32,
                 {n_mat, static_cast<int64_t>(e.sums.size()) / n_mat});
    w.add_tensor(name + ".counts", DType::F32, {n_mat, 1});
  }
  w.write_header();
  for (const auto& [name, e] : m.entries) {
    w.write_tensor_data(name + ".in_sum2", e.sums.data(), e.sums.size() * sizeof(float));
    w.write_tensor_data(name + ".counts", e.counts.data(), e.counts.size() * sizeof(float));
  }
  w.finish();
}

}  // namespace squish
