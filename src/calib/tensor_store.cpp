#include "calib/tensor_store.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"

namespace squish {

namespace fs = std::filesystem;

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

TensorStore::TensorStore(std::string dir) : dir_(std::move(dir)) {
  if (dir_.empty()) return;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail("{}: cannot create the work folder: {}", dir_, ec.message());
}

std::string TensorStore::path(const std::string& file) const {
  return (fs::path(dir_) / file).string();
}

void TensorStore::put(const std::string& name, std::vector<uint8_t> bytes) {
  names_[name] = bytes.size();
  if (dir_.empty()) {
    memory_[name] = std::move(bytes);
    return;
  }
  AtomicFile f(path("tensor." + name));
  f.write(bytes.data(), bytes.size());
  f.commit();
}

bool TensorStore::contains(const std::string& name) const {
  return names_.count(name) != 0;
}

const uint8_t* TensorStore::get(const std::string& name, size_t* size) {
  auto it = names_.find(name);
  if (it == names_.end()) return nullptr;
  if (size != nullptr) *size = it->second;
  if (dir_.empty()) return memory_.at(name).data();
  mapped_ = MappedFile::open(path("tensor." + name));
  if (mapped_->size() != it->second) fail("{}: tensor file of '{}' has the wrong size", dir_, name);
  return mapped_->data();
}

int TensorStore::resume(uint64_t fingerprint) {
  fingerprint_ = fingerprint;
  if (dir_.empty()) return 0;
  const std::string state = path("state.json");
  int done = 0;
  if (fs::exists(state)) {
    const nlohmann::json j = read_json_file(state, 1 << 26);
    const bool same = j.value("fingerprint", std::string()) == std::to_string(fingerprint);
    if (same) {
      done = j.value("layers_done", 0);
      resumed_extra_ = j.value("extra", std::string());
      for (const auto& [name, bytes] : j.at("tensors").items()) {
        const std::string file = path("tensor." + name);
        if (!fs::exists(file) || fs::file_size(file) != bytes.get<size_t>())
          fail("{}: work folder is missing '{}'; delete the folder to start over", dir_, name);
        names_[name] = bytes.get<size_t>();
      }
    }
  }
  if (done == 0) {  // a fresh job: nothing in the folder is ours
    for (const auto& entry : fs::directory_iterator(dir_)) fs::remove(entry.path());
    names_.clear();
  }
  return done;
}

void TensorStore::save_stream(const std::string& name, const float* data, size_t n) {
  AtomicFile f(path("stream." + name));
  f.write(data, n * sizeof(float));
  f.commit();
}

void TensorStore::load_stream(const std::string& name, float* data, size_t n) {
  auto file = MappedFile::open(path("stream." + name));
  if (file->size() != n * sizeof(float))
    fail("{}: hidden-state file '{}' has the wrong size", dir_, name);
  std::memcpy(data, file->data(), n * sizeof(float));
}

void TensorStore::mark_done(int layers, const std::string& extra_json) {
  if (dir_.empty()) return;
  nlohmann::json j;
  j["fingerprint"] = std::to_string(fingerprint_);
  j["layers_done"] = layers;
  j["extra"] = extra_json;
  j["tensors"] = nlohmann::json::object();
  for (const auto& [name, bytes] : names_) j["tensors"][name] = bytes;
  write_file_atomic(path("state.json"), j.dump(1));
  // Streams are saved as "<name>.<blocks done>": those of other block counts are stale now.
  const std::string current = std::string(".") += std::to_string(layers);
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string file = it->path().filename().string();
    if (file.rfind("stream.", 0) == 0 && !file.ends_with(current)) fs::remove(it->path(), ec);
  }
}

void TensorStore::remove() {
  mapped_.reset();
  if (dir_.empty()) return;
  std::error_code ec;
  // state.json first: a run killed halfway through remove_all() must not leave a state that
  // names tensors already deleted (the kill/resume test found that); without it, a rerun starts
  // the folder over.
  fs::remove(path("state.json"), ec);
  fs::remove_all(dir_, ec);
}

}  // namespace squish
