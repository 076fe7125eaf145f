#include "calib/imatrix_collect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "calib/tensor_store.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace squish {

void ImatrixCollector::observe(const TensorInfo& weight, const float* x, int n_tokens) {
  const bool wanted =
      weight.name.starts_with("blk.") || (include_output_ && weight.name == "output.weight");
  if (!wanted) return;
  const int64_t cols = weight.cols();
  Accumulator& a = acc_[weight.name];
  if (a.sums.empty()) a.sums.assign(cols, 0.0);
  for (int t = 0; t < n_tokens; ++t) {
    const float* row = x + t * cols;
    for (int64_t j = 0; j < cols; ++j) a.sums[j] += static_cast<double>(row[j]) * row[j];
  }
  a.count += n_tokens;
}

Imatrix ImatrixCollector::result() const {
  Imatrix m;
  for (const auto& [name, a] : acc_) {
    ImatrixEntry e;
    e.sums.resize(a.sums.size());
    for (size_t j = 0; j < a.sums.size(); ++j) {
      e.sums[j] = static_cast<float>(a.sums[j]);
      if (!std::isfinite(e.sums[j])) fail("imatrix: non-finite activations in '{}'", name);
    }
    e.counts = {static_cast<float>(a.count)};
    m.entries.emplace(name, std::move(e));
  }
  return m;
}

namespace {

constexpr char kCheckpointMagic[8] = {'S', 'Q', 'I', 'M', 'X', 'C', 'K', '1'};
constexpr const char* kCheckpointFile = "imatrix.checkpoint";

// What makes two runs the same job. The weights themselves are not hashed (gigabytes); their
// names, types, shapes and sizes, the model path and every calibration token are.
uint64_t job_fingerprint(const Model& model, const CalibrationWindows& windows,
                         const ImatrixOptions& options) {
  std::string d = model.path + "\n";
  for (const TensorInfo& t : model.tensors()) {
    d += fmt::format("{} {} {}", t.name, dtype_name(t.type), t.nbytes);
    for (int64_t n : t.shape) d += fmt::format(" {}", n);
    d += "\n";
  }
  d += fmt::format("ctx {} output {}\n", windows.n_ctx, options.include_output);
  const uint64_t h = fnv1a(d.data(), d.size());
  return fnv1a(windows.tokens.data(), windows.tokens.size() * sizeof(int32_t), h);
}

}  // namespace

void ImatrixCollector::save(const std::string& path, uint64_t fingerprint, int windows_done) const {
  AtomicFile f(path);
  auto put = [&](const auto& v) { f.write(&v, sizeof v); };
  f.write(kCheckpointMagic, sizeof kCheckpointMagic);
  put(fingerprint);
  put(static_cast<uint32_t>(windows_done));
  put(static_cast<uint32_t>(acc_.size()));
  for (const auto& [name, a] : acc_) {
    put(static_cast<uint32_t>(name.size()));
    f.write(name.data(), name.size());
    put(a.count);
    put(static_cast<uint64_t>(a.sums.size()));
    f.write(a.sums.data(), a.sums.size() * sizeof(double));
  }
  f.commit();
}

int ImatrixCollector::load(const std::string& path, uint64_t fingerprint, int n_windows) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  auto file = MappedFile::open(path);
  ByteReader r(file->data(), file->size(), path);
  char magic[8];
  r.read_bytes(magic, sizeof magic);
  if (std::memcmp(magic, kCheckpointMagic, sizeof magic) != 0 ||
      r.read<uint64_t>() != fingerprint) {
    return 0;  // another job's (or an older squish's): start over
  }
  const uint32_t done = r.read<uint32_t>();
  const uint32_t entries = r.read<uint32_t>();
  if (done < 1 || done > static_cast<uint32_t>(n_windows))
    r.error(fmt::format("checkpoint covers {} of {} windows", done, n_windows));
  std::map<std::string, Accumulator> acc;
  for (uint32_t i = 0; i < entries; ++i) {
    const uint32_t name_len = r.read<uint32_t>();
    if (name_len == 0 || name_len > 4096) r.error("bad tensor name length");
    const uint8_t* name = r.take(name_len);
    Accumulator a;
    a.count = r.read<int64_t>();
    const uint64_t cols = r.read<uint64_t>();
    if (cols == 0 || cols > r.remaining() / sizeof(double)) r.error("bad column count");
    a.sums.resize(cols);
    r.read_bytes(a.sums.data(), cols * sizeof(double));
    acc.emplace(std::string(reinterpret_cast<const char*>(name), name_len), std::move(a));
  }
  if (r.remaining() != 0) r.error("trailing bytes");
  acc_ = std::move(acc);
  return static_cast<int>(done);
}

void remove_imatrix_work_dir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove(std::filesystem::path(dir) / kCheckpointFile, ec);
  std::filesystem::remove_all(dir, ec);
}

Imatrix collect_imatrix(const Model& model, const CalibrationWindows& windows,
                        const ImatrixOptions& options,
                        const std::function<void(int, int)>& progress) {
  const int n_ctx = windows.n_ctx, n = windows.n_windows();
  if (n < 1) fail("imatrix: no calibration windows");
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = options.n_threads;
  so.n_batch = n_ctx;
  Session session(model, so);
  ImatrixCollector collector(options.include_output);
  session.set_matmul_observer(&collector);
  int start = 0;
  uint64_t fingerprint = 0;
  std::string checkpoint;
  if (!options.work_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.work_dir, ec);
    if (ec) fail("{}: cannot create the work folder: {}", options.work_dir, ec.message());
    checkpoint = (std::filesystem::path(options.work_dir) / kCheckpointFile).string();
    fingerprint = job_fingerprint(model, windows, options);
    start = collector.load(checkpoint, fingerprint, n);
    if (start > 0) std::fprintf(stderr, "imatrix: resuming after window %d of %d\n", start, n);
  }
  if (progress && start > 0) progress(start, n);
  const int every = std::max(options.checkpoint_every, 1);
  std::vector<float> logits;
  for (int w = start; w < n; ++w) {
    session.reset();
    // Logits of every position only when output.weight's inputs are wanted.
    session.eval(windows.window(w), n_ctx, options.include_output, logits);
    if (!checkpoint.empty() && (w + 1) % every == 0 && w + 1 < n)
      collector.save(checkpoint, fingerprint, w + 1);
    if (progress) progress(w + 1, n);
  }
  Imatrix m = collector.result();
  m.datasets = options.datasets;
  m.chunk_count = n;
  m.chunk_size = n_ctx;
  return m;
}

}  // namespace squish
