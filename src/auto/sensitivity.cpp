#include "auto/sensitivity.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "calib/calib_data.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/progress.h"
#include "eval/eval_text.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"
#include "runtime/session.h"

namespace squish {

namespace fs = std::filesystem;

namespace {

constexpr int kCacheVersion = 2;  // 2: probes keyed by their own windows
constexpr size_t kMaxCacheBytes = 64u << 20;

uint64_t aligned(uint64_t bytes) {
  return (bytes + kAutoTensorAlignment - 1) / kAutoTensorAlignment * kAutoTensorAlignment;
}

// The plan llama-quantize --pure would give for one type: every matrix in `type`, or in its
// fallback where the rows do not fill the type's blocks.
std::vector<TensorPlan> pure_plan(const Model& model, DType type) {
  QuantPlanOptions po;
  po.mix = QuantMix{dtype_name(type), type, -1};
  po.pure = true;
  return plan_quantization(model, po);
}

// Swaps quantized tensors into the model and puts the originals back on destruction. The model's
// layer pointers point at its tensors, so the forward pass reads the swapped data.
class TensorSwap {
 public:
  explicit TensorSwap(Model& model) : model_(model) {}
  ~TensorSwap() { restore(); }
  TensorSwap(const TensorSwap&) = delete;
  TensorSwap& operator=(const TensorSwap&) = delete;

  void swap_in(const std::string& name, DType type, const std::vector<uint8_t>& data) {
    // Model only hands out const views; the tensor objects themselves belong to this non-const
    // model, so modifying them through a cast is well defined.
    TensorInfo* t = const_cast<TensorInfo*>(model_.find(name));
    if (t == nullptr) fail("internal: no tensor '{}'", name);
    saved_.push_back(*t);
    t->type = type;
    t->data = data.data();
    t->nbytes = data.size();
  }
  void restore() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      TensorInfo* t = const_cast<TensorInfo*>(model_.find(it->name));
      *t = *it;
    }
    saved_.clear();
  }

 private:
  Model& model_;
  std::vector<TensorInfo> saved_;
};

// Quantizes a tensor (rows in the model's order) exactly as export_gguf does.
std::vector<uint8_t> quantize_tensor(const TensorInfo& t, DType type) {
  const QuantTraits* qt = quant_traits(type);
  if (qt == nullptr) fail("internal: {} is not a quantized type", dtype_name(type));
  const int64_t rows = t.rows(), cols = t.cols();
  const size_t in_row = row_bytes(t.type, cols), out_row = row_bytes(type, cols);
  std::vector<uint8_t> out(out_row * rows);
#pragma omp parallel
  {
    std::vector<float> row(cols);
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      convert_row_to_f32(t.type, static_cast<const uint8_t*>(t.data) + r * in_row, row.data(),
                         cols);
      qt->quantize(row.data(), out.data() + r * out_row, cols, nullptr);
    }
  }
  return out;
}

// Sum of squared differences between a tensor and its quantized-then-dequantized copy.
double weight_error(const TensorInfo& t, DType type) {
  const std::vector<uint8_t> q = quantize_tensor(t, type);
  const QuantTraits* qt = quant_traits(type);
  const int64_t rows = t.rows(), cols = t.cols();
  const size_t in_row = row_bytes(t.type, cols), out_row = row_bytes(type, cols);
  double sum = 0;
#pragma omp parallel reduction(+ : sum)
  {
    std::vector<float> a(cols), b(cols);
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      convert_row_to_f32(t.type, static_cast<const uint8_t*>(t.data) + r * in_row, a.data(), cols);
      qt->dequantize(q.data() + r * out_row, b.data(), cols);
      for (int64_t c = 0; c < cols; ++c) {
        const double d = static_cast<double>(a[c]) - b[c];
        sum += d * d;
      }
    }
  }
  return sum;
}

// The float model's log-probabilities on the scored rows of every window (rows n/2 .. n-2, as
// squish eval and llama-perplexity score them), and KL(base || model) of a modified model.
class KldMeter {
 public:
  KldMeter(Model& model, const CalibrationWindows& windows, int n_threads)
      : model_(model), windows_(windows), n_threads_(n_threads) {
    n_vocab_ = model.config.n_vocab;
    first_ = windows.n_ctx / 2;
    n_scored_ = windows.n_ctx - 1 - first_;
    base_.resize(static_cast<size_t>(windows.n_windows()) * n_scored_ * n_vocab_);
    run([&](int w, int r, const float* lp) { std::copy(lp, lp + n_vocab_, base_row(w, r)); });
  }

  // Mean KL divergence over every scored token.
  double kld() {
    double sum = 0;
    run([&](int w, int r, const float* lp) {
      const float* b = base_row(w, r);
      double k = 0;
      for (int v = 0; v < n_vocab_; ++v) {
        const double pb = std::exp(static_cast<double>(b[v]));
        k += pb * (static_cast<double>(b[v]) - lp[v]);
      }
      sum += std::max(0.0, k);
    });
    return sum / (static_cast<double>(windows_.n_windows()) * n_scored_);
  }

 private:
  float* base_row(int w, int r) {
    return base_.data() + (static_cast<size_t>(w) * n_scored_ + r) * n_vocab_;
  }
  template <typename F>
  void run(F&& per_row) {
    SessionOptions so;
    so.n_ctx = windows_.n_ctx;
    so.n_threads = n_threads_;
    so.n_batch = std::min(windows_.n_ctx, 512);
    so.pack_weights = false;  // tensors change between runs; packing would cost more than it saves
    Session session(model_, so);
    std::vector<float> logits, lp(n_vocab_);
    for (int w = 0; w < windows_.n_windows(); ++w) {
      session.reset();
      session.eval(windows_.window(w), windows_.n_ctx, true, logits);
      for (int r = 0; r < n_scored_; ++r) {
        const float* row = logits.data() + static_cast<size_t>(first_ + r) * n_vocab_;
        const float mx = *std::max_element(row, row + n_vocab_);
        double sum = 0;
        for (int v = 0; v < n_vocab_; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
        const float lse = mx + static_cast<float>(std::log(sum));
        for (int v = 0; v < n_vocab_; ++v) lp[v] = row[v] - lse;
        per_row(w, r, lp.data());
      }
    }
  }

  Model& model_;
  const CalibrationWindows& windows_;
  int n_threads_;
  int n_vocab_ = 0, first_ = 0, n_scored_ = 0;
  std::vector<float> base_;
};

std::string hex16(uint64_t h) {
  return fmt::format("{:016x}", h);
}

// Identifies a set of windows (length and token ids).
std::string windows_id(const CalibrationWindows& w) {
  const int32_t head[2] = {w.n_ctx, w.n_windows()};
  const uint64_t h = fnv1a64(head, sizeof(head));
  return hex16(fnv1a64(w.tokens.data(), w.tokens.size() * sizeof(int32_t), h));
}

// Everything that determines the measurements; the cache is valid only for an equal key.
nlohmann::json cache_key(const Model& model, const CalibrationWindows& windows) {
  nlohmann::json files = nlohmann::json::array();
  std::vector<std::string> paths;
  std::error_code ec;
  if (fs::is_directory(model.path, ec)) {
    for (const auto& e : fs::directory_iterator(model.path, ec)) {
      if (e.is_regular_file() && e.path().extension() == ".safetensors")
        paths.push_back(e.path().string());
    }
    std::sort(paths.begin(), paths.end());
  } else {
    paths.push_back(model.path);
  }
  for (const std::string& p : paths) {
    const auto size = fs::file_size(p, ec);
    const auto mtime = fs::last_write_time(p, ec).time_since_epoch().count();
    files.push_back({{"path", fs::absolute(p, ec).string()},
                     {"bytes", ec ? 0 : size},
                     {"mtime", static_cast<int64_t>(mtime)}});
  }
  return {{"version", kCacheVersion},
          {"source", files},
          {"quantizer", "rtn"},
          {"n_ctx", windows.n_ctx},
          {"n_windows", windows.n_windows()},
          {"tokens_fnv1a64",
           hex16(fnv1a64(windows.tokens.data(), windows.tokens.size() * sizeof(int32_t)))}};
}

std::string model_stem(const Model& model) {
  fs::path p(model.path);
  std::string s = p.filename().string();
  if (s.empty()) s = p.parent_path().filename().string();
  const size_t dot = s.rfind('.');
  if (dot != std::string::npos && dot > 0) s = s.substr(0, dot);
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  return s.empty() ? "model" : s;
}

struct Cache {
  std::string path;
  nlohmann::json key;
  std::map<std::string, std::map<std::string, double>> tensors;  // name -> type -> delta KLD
  std::string probe_windows;                                     // windows_id of the probes'
  std::map<std::string, ProbePoint> probes;  // requested type -> probe on probe_windows
  nlohmann::json other_probes = nlohmann::json::array();     // on other windows, kept as they are
  std::map<std::string, std::map<std::string, double>> mse;  // name -> type -> weight error

  void load() {
    std::error_code ec;
    if (!fs::exists(path, ec)) return;
    const nlohmann::json j = read_json_file(path, kMaxCacheBytes);
    if (!j.is_object() || j.value("key", nlohmann::json()) != key) return;  // other settings
    try {
      for (const auto& [name, types] : j.at("tensors").items()) {
        for (const auto& [type, v] : types.items()) tensors[name][type] = v.get<double>();
      }
      for (const auto& p : j.at("probes")) {
        if (p.at("windows").get<std::string>() != probe_windows) {
          other_probes.push_back(p);
          continue;
        }
        ProbePoint pp{p.at("type").get<std::string>(), 0.0, p.at("measured").get<double>()};
        probes[pp.type] = pp;
      }
      if (j.contains("mse")) {
        for (const auto& [name, types] : j.at("mse").items()) {
          for (const auto& [type, v] : types.items()) mse[name][type] = v.get<double>();
        }
      }
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not a squish auto cache ({}); delete it to measure again", path, e.what());
    }
  }
  void save() const {
    nlohmann::json j;
    j["key"] = key;
    j["tensors"] = nlohmann::json::object();
    for (const auto& [name, types] : tensors) {
      for (const auto& [type, v] : types) j["tensors"][name][type] = v;
    }
    j["probes"] = other_probes;
    for (const auto& [type, p] : probes) {
      j["probes"].push_back(
          {{"type", p.type}, {"windows", probe_windows}, {"measured", p.measured}});
    }
    j["mse"] = nlohmann::json::object();
    for (const auto& [name, types] : mse) {
      for (const auto& [type, v] : types) j["mse"][name][type] = v;
    }
    write_file_atomic(path, j.dump(1) + "\n");
  }
};

// Least squares of log(measured) = log(a) + b log(additive) over the probes with signal.
void fit_power_law(Sensitivity& s) {
  std::vector<std::pair<double, double>> pts;
  for (const ProbePoint& p : s.probes) {
    if (p.additive > 0 && p.measured > 0)
      pts.push_back({std::log(p.additive), std::log(p.measured)});
  }
  s.fit_a = 1;
  s.fit_b = 1;
  if (pts.empty()) return;
  double mx = 0, my = 0;
  for (auto [x, y] : pts) {
    mx += x;
    my += y;
  }
  mx /= pts.size();
  my /= pts.size();
  double sxx = 0, sxy = 0;
  for (auto [x, y] : pts) {
    sxx += (x - mx) * (x - mx);
    sxy += (x - mx) * (y - my);
  }
  // With one probe or a degenerate spread, a constant factor; the exponent is kept in a sane
  // range so extrapolation beyond the probes stays monotone and mild.
  s.fit_b = (pts.size() >= 2 && sxx > 1e-12) ? std::clamp(sxy / sxx, 0.5, 2.0) : 1.0;
  s.fit_a = std::exp(my - s.fit_b * mx);
}

}  // namespace

std::vector<DType> default_auto_types() {
  return {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0};
}

std::vector<AutoTensor> auto_candidates(const Model& model, const std::vector<DType>& types,
                                        uint64_t* fixed_bytes) {
  if (types.empty()) fail("--types: no candidate types");
  std::vector<std::vector<TensorPlan>> plans;
  for (DType t : types) {
    if (!is_quantized(t)) fail("--types: {} is not a quantized type", dtype_name(t));
    plans.push_back(pure_plan(model, t));
  }
  std::vector<AutoTensor> out;
  uint64_t fixed = 0;
  const auto& tensors = model.tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    AutoTensor a{t.name, i, t.numel(), {}};
    for (const auto& plan : plans) {
      const DType type = plan[i].type;
      if (!is_quantized(type)) continue;
      bool seen = false;
      for (const AutoOption& o : a.options) seen = seen || o.type == type;
      if (!seen) a.options.push_back({type, row_bytes(type, t.cols()) * t.rows(), 0.0});
    }
    if (a.options.empty()) {
      fixed += aligned(row_bytes(plans[0][i].type, t.cols()) * t.rows());
      continue;
    }
    std::sort(a.options.begin(), a.options.end(),
              [](const AutoOption& x, const AutoOption& y) { return x.bytes < y.bytes; });
    out.push_back(std::move(a));
  }
  if (out.empty()) fail("{}: no weight matrix can take the candidate types", model.path);
  if (fixed_bytes) *fixed_bytes = fixed;
  return out;
}

CalibrationWindows spread_windows(const CalibrationWindows& all, int n) {
  const int available = all.n_windows();
  if (n <= 0 || n >= available) return all;
  CalibrationWindows out;
  out.n_ctx = all.n_ctx;
  out.tokens.reserve(static_cast<size_t>(n) * all.n_ctx);
  for (int i = 0; i < n; ++i) {
    // The middle window of the i-th of n equal stretches.
    const int w = static_cast<int>((2 * static_cast<int64_t>(i) + 1) * available / (2 * n));
    out.tokens.insert(out.tokens.end(), all.window(w), all.window(w) + all.n_ctx);
  }
  return out;
}

Sensitivity measure_sensitivity(Model& model, const std::vector<DType>& types,
                                const SensitivityOptions& o) {
  if (o.calib_files.empty()) fail("squish auto needs calibration text: --calib FILE");
  if (o.n_windows < 1 || o.n_windows > 4096) fail("--sens-windows {} is out of range", o.n_windows);
  if (o.n_probe_windows < 1 || o.n_probe_windows > 4096)
    fail("--probe-windows {} is out of range", o.n_probe_windows);
  CalibrationOptions co;
  co.n_ctx = o.n_ctx;
  co.max_windows = 0;  // every window, then a spread subset: the text's start may be atypical
  const CalibrationWindows all = calibration_windows(model, o.calib_files, co);
  return measure_sensitivity(model, types, spread_windows(all, o.n_windows),
                             spread_windows(all, o.n_probe_windows), o);
}

Sensitivity measure_sensitivity(Model& model, const std::vector<DType>& types,
                                const CalibrationWindows& windows,
                                const CalibrationWindows& probe_windows,
                                const SensitivityOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  Sensitivity s;
  s.tensors = auto_candidates(model, types, &s.fixed_bytes);
  for (const TensorInfo& t : model.tensors()) s.n_params += t.numel();
  if (windows.n_windows() < 1 || windows.n_ctx < 4 || probe_windows.n_windows() < 1 ||
      probe_windows.n_ctx < 4)
    fail("sensitivity: no calibration windows");
  s.n_windows = windows.n_windows();
  s.n_probe_windows = probe_windows.n_windows();

  Cache cache;
  cache.key = cache_key(model, windows);
  cache.probe_windows = windows_id(probe_windows);
  const uint64_t key_hash = fnv1a64(cache.key.dump().data(), cache.key.dump().size());
  cache.path = (fs::path(o.cache_dir.empty() ? "." : o.cache_dir) /
                fmt::format("squish-auto-{}-{}.json", model_stem(model), hex16(key_hash)))
                   .string();
  cache.load();
  s.cache_path = cache.path;

  // What to run: every candidate (full), or the fewest-bytes one of each tensor (scaled; the
  // others follow from it by their weight error), plus the probes.
  auto measured = [&](const AutoTensor& t, const AutoOption& opt) {
    const auto it = cache.tensors.find(t.name);
    return it != cache.tensors.end() && it->second.count(dtype_name(opt.type)) > 0;
  };
  // Scaled mode measures the fewest-bytes candidate and, with three or more, the middle one.
  auto wanted = [&](const AutoTensor& t, size_t j) {
    return o.measure_all || j == 0 || (t.options.size() >= 3 && j == t.options.size() / 2);
  };
  size_t missing = 0;
  for (const AutoTensor& t : s.tensors) {
    for (size_t j = 0; j < t.options.size(); ++j)
      missing += wanted(t, j) && !measured(t, t.options[j]);
  }
  for (DType t : types) missing += !cache.probes.count(dtype_name(t));

  std::error_code ec;
  if (!o.cache_dir.empty()) fs::create_directories(o.cache_dir, ec);
  std::unique_ptr<KldMeter> meter;
  std::unique_ptr<Progress> progress;
  size_t done = 0;
  if (missing > 0) {
    if (!o.quiet) {
      std::fprintf(stderr,
                   "auto: measuring %zu sensitivities on %d windows of %d tokens, probes on %d "
                   "(cache %s)\n",
                   missing, windows.n_windows(), windows.n_ctx, probe_windows.n_windows(),
                   cache.path.c_str());
    }
    progress = std::make_unique<Progress>("sensitivity", missing, o.quiet);
    for (const AutoTensor& t : s.tensors) {
      bool changed = false;
      for (const AutoOption& opt : t.options) {
        if (measured(t, opt)) continue;
        if (!wanted(t, static_cast<size_t>(&opt - t.options.data()))) continue;
        if (!meter) meter = std::make_unique<KldMeter>(model, windows, o.n_threads);
        const std::vector<uint8_t> q = quantize_tensor(model.tensors()[t.index], opt.type);
        TensorSwap swap(model);
        swap.swap_in(t.name, opt.type, q);
        cache.tensors[t.name][dtype_name(opt.type)] = meter->kld();
        s.evaluations++;
        changed = true;
        progress->update(++done, t.name + " " + dtype_name(opt.type));
      }
      if (changed) cache.save();
    }
  }
  // Unmeasured candidates: the measured increase nearest in weight error, scaled by the ratio of
  // squared weight errors (KLD grows with the squared output error, to first order).
  bool mse_changed = false;
  for (AutoTensor& t : s.tensors) {
    const AutoOption* ref = nullptr;
    for (AutoOption& opt : t.options) {
      opt.measured = measured(t, opt);
      if (opt.measured) {
        opt.delta_kld = std::max(0.0, cache.tensors[t.name][dtype_name(opt.type)]);
        if (ref == nullptr) ref = &opt;
      }
    }
    bool all = true;
    for (const AutoOption& opt : t.options) all = all && opt.measured;
    if (all) continue;
    auto& mse = cache.mse[t.name];
    for (const AutoOption& opt : t.options) {
      if (!mse.count(dtype_name(opt.type))) {
        mse[dtype_name(opt.type)] = weight_error(model.tensors()[t.index], opt.type);
        mse_changed = true;
      }
    }
    for (AutoOption& opt : t.options) {
      if (opt.measured) continue;
      // From the measured candidate nearest in weight error (log scale).
      const double e = mse[dtype_name(opt.type)];
      const AutoOption* best = ref;
      double best_gap = INFINITY;
      for (const AutoOption& m : t.options) {
        const double em = mse[dtype_name(m.type)];
        if (!m.measured || em <= 0 || e <= 0) continue;
        const double gap = std::abs(std::log(e / em));
        if (gap < best_gap) {
          best_gap = gap;
          best = &m;
        }
      }
      const double ref_mse = mse[dtype_name(best->type)];
      opt.delta_kld = ref_mse > 0 ? best->delta_kld * e / ref_mse : 0.0;
    }
  }
  if (mse_changed) cache.save();
  // Probes: every tensor at one requested type at once, on the probe windows (the per-tensor
  // meter's base distributions are dropped first; only one set is held at a time).
  meter.reset();
  for (DType type : types) {
    const std::vector<TensorPlan> plan = pure_plan(model, type);
    double additive = 0;
    for (const AutoTensor& t : s.tensors) {
      for (const AutoOption& opt : t.options) {
        if (opt.type == plan[t.index].type) additive += opt.delta_kld;
      }
    }
    if (!cache.probes.count(dtype_name(type))) {
      if (!meter) meter = std::make_unique<KldMeter>(model, probe_windows, o.n_threads);
      std::vector<std::vector<uint8_t>> data;
      data.reserve(s.tensors.size());
      for (const AutoTensor& t : s.tensors)
        data.push_back(quantize_tensor(model.tensors()[t.index], plan[t.index].type));
      TensorSwap swap(model);
      for (size_t k = 0; k < s.tensors.size(); ++k)
        swap.swap_in(s.tensors[k].name, plan[s.tensors[k].index].type, data[k]);
      cache.probes[dtype_name(type)] = ProbePoint{dtype_name(type), 0.0, meter->kld()};
      swap.restore();
      s.evaluations++;
      cache.save();
      if (progress) progress->update(++done, std::string("probe ") + dtype_name(type));
    }
    ProbePoint p = cache.probes[dtype_name(type)];
    p.additive = additive;
    s.probes.push_back(p);
  }
  if (progress) progress->finish();
  fit_power_law(s);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

double predict_kld(const Sensitivity& s, double additive) {
  if (additive <= 0) return 0.0;
  // Between two probes: log(measured / additive) interpolated linearly in log(additive), so a
  // plan is calibrated by the probes nearest its own error level; beyond the probes: the nearest
  // probe's ratio. Without usable probes: the power law (a = b = 1 when there is none).
  std::vector<std::pair<double, double>> pts;  // (log additive, log ratio)
  for (const ProbePoint& p : s.probes) {
    if (p.additive > 0 && p.measured > 0)
      pts.push_back({std::log(p.additive), std::log(p.measured / p.additive)});
  }
  if (pts.empty()) return s.fit_a * std::pow(additive, s.fit_b);
  std::sort(pts.begin(), pts.end());
  const double x = std::log(additive);
  double log_ratio = pts.front().second;
  if (x >= pts.back().first) {
    log_ratio = pts.back().second;
  } else if (x > pts.front().first) {
    for (size_t i = 1; i < pts.size(); ++i) {
      if (x <= pts[i].first) {
        const double span = pts[i].first - pts[i - 1].first;
        const double t = span > 0 ? (x - pts[i - 1].first) / span : 1.0;
        log_ratio = pts[i - 1].second + t * (pts[i].second - pts[i - 1].second);
        break;
      }
    }
  }
  return additive * std::exp(log_ratio);
}

double additive_for_kld(const Sensitivity& s, double kld) {
  if (kld <= 0) return 0.0;
  // The largest additive sum whose prediction stays within kld (bisection in log space).
  double lo = 1e-12, hi = 1e3;
  if (predict_kld(s, lo) > kld) return lo;
  for (int it = 0; it < 100; ++it) {
    const double mid = std::sqrt(lo * hi);
    if (predict_kld(s, mid) <= kld)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

std::vector<SolverItem> solver_items(const Sensitivity& s) {
  std::vector<SolverItem> items;
  for (const AutoTensor& t : s.tensors) {
    SolverItem item;
    for (const AutoOption& o : t.options) item.options.push_back({aligned(o.bytes), o.delta_kld});
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<TensorPlan> auto_plan(const Model& model, const Sensitivity& s,
                                  const std::vector<int>& choice) {
  // Start from a pure plan (1-D tensors F32), then set every decided tensor.
  std::vector<TensorPlan> plan = pure_plan(model, s.tensors[0].options[0].type);
  for (TensorPlan& p : plan) p.reason.clear();
  for (size_t k = 0; k < s.tensors.size(); ++k) {
    const AutoTensor& t = s.tensors[k];
    const AutoOption& o = t.options.at(choice.at(k));
    plan[t.index].type = o.type;
    plan[t.index].reason = fmt::format("auto: +{:.3g} KLD", o.delta_kld);
  }
  return plan;
}

}  // namespace squish
