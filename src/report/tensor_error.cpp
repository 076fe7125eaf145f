#include "report/tensor_error.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {

namespace {

// Any stored row to F32: block types through their quant traits, floats by conversion.
void row_to_f32(DType type, const void* src, float* dst, int64_t n) {
  if (const QuantTraits* qt = quant_traits(type)) {
    qt->dequantize(src, dst, n);
  } else {
    convert_row_to_f32(type, src, dst, n);
  }
}

// Maps a row of `model`'s Q or K to the base row holding the same weights. Within a head of D
// rows, rotate-half (Neox, Hugging Face) keeps pair (j, j + D/2) apart; interleaved (GGUF Llama)
// stores it at rows (2j, 2j + 1).
int64_t base_row_for(int64_t r, int head_dim, RopeStyle model_style) {
  const int64_t h = r / head_dim, p = r % head_dim, half = head_dim / 2;
  if (model_style == RopeStyle::Interleaved) return h * head_dim + (p % 2) * half + p / 2;
  return h * head_dim + 2 * (p % half) + p / half;  // model rotate-half, base interleaved
}

bool is_qk(const std::string& kind) {
  return kind == "attn_q" || kind == "attn_k" || kind == "attn_q.bias" || kind == "attn_k.bias";
}

}  // namespace

void split_tensor_name(const std::string& name, int& layer, std::string& kind) {
  layer = -1;
  kind = name;
  if (name.rfind("blk.", 0) == 0) {
    const size_t dot = name.find('.', 4);
    if (dot != std::string::npos && dot > 4 && dot - 4 <= 6) {
      char* end = nullptr;
      const long l = std::strtol(name.c_str() + 4, &end, 10);
      if (end == name.c_str() + dot) {
        layer = static_cast<int>(l);
        kind = name.substr(dot + 1);
      }
    }
  }
  if (kind.size() > 7 && kind.ends_with(".weight")) kind.resize(kind.size() - 7);
}

std::vector<TensorError> compute_tensor_errors(const Model& base, const Model& model,
                                               const TensorErrorProgress& progress) {
  const bool styles_differ = base.config.arch == Arch::Llama && model.config.arch == Arch::Llama &&
                             base.config.rope_style != model.config.rope_style;
  const int head_dim = model.config.head_dim;
  std::vector<TensorError> out;
  const auto& tensors = model.tensors();
  for (size_t k = 0; k < tensors.size(); ++k) {
    const TensorInfo& t = tensors[k];
    const TensorInfo* b = base.find(t.name);
    if (b == nullptr) fail("{}: tensor '{}' is not in the base {}", model.path, t.name, base.path);
    if (b->shape != t.shape) {
      fail("{}: tensor '{}' has shape {}, the base {} has {}", model.path, t.name,
           shape_string(t.shape), base.path, shape_string(b->shape));
    }
    TensorError e;
    e.name = t.name;
    split_tensor_name(t.name, e.layer, e.kind);
    e.type = t.type;
    e.base_type = b->type;
    e.numel = t.numel();
    const bool permute = styles_differ && is_qk(e.kind) && head_dim > 0;
    double diff2 = 0, ref2 = 0;
    if (t.shape.size() == 1) {
      // Vectors (norms, biases) are small; a permuted bias maps element by element.
      std::vector<float> x(t.numel()), y(t.numel());
      row_to_f32(t.type, t.data, x.data(), t.numel());
      row_to_f32(b->type, b->data, y.data(), t.numel());
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double ref = y[permute ? base_row_for(i, head_dim, model.config.rope_style) : i];
        diff2 += (x[i] - ref) * (x[i] - ref);
        ref2 += ref * ref;
      }
    } else {
      const int64_t rows = t.rows(), cols = t.cols();
      const size_t row_m = row_bytes(t.type, cols), row_b = row_bytes(b->type, cols);
      if (row_m * rows > t.nbytes || row_b * rows > b->nbytes) {
        fail("{}: tensor '{}' is smaller than its shape says", model.path, t.name);
      }
#pragma omp parallel reduction(+ : diff2, ref2)
      {
        std::vector<float> x(cols), y(cols);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t rb = permute ? base_row_for(r, head_dim, model.config.rope_style) : r;
          row_to_f32(t.type, static_cast<const uint8_t*>(t.data) + r * row_m, x.data(), cols);
          row_to_f32(b->type, static_cast<const uint8_t*>(b->data) + rb * row_b, y.data(), cols);
          double d2 = 0, r2 = 0;
          for (int64_t i = 0; i < cols; ++i) {
            const double d = static_cast<double>(x[i]) - y[i];
            d2 += d * d;
            r2 += static_cast<double>(y[i]) * y[i];
          }
          diff2 += d2;
          ref2 += r2;
        }
      }
    }
    e.rmse = e.numel > 0 ? std::sqrt(diff2 / e.numel) : 0;
    e.rel_rmse = ref2 > 0 ? std::sqrt(diff2 / ref2) : (diff2 > 0 ? INFINITY : 0);
    out.push_back(std::move(e));
    if (progress) progress(k + 1, tensors.size());
  }
  return out;
}

}  // namespace squish
