#include "quant/mix.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace squish {

const std::vector<QuantMix>& quant_mixes() {
  static const std::vector<QuantMix> mixes = {
      {"Q2_K", DType::Q2_K, 10},     {"Q2_K_S", DType::Q2_K, 21},   {"Q3_K_S", DType::Q3_K, 11},
      {"Q3_K_M", DType::Q3_K, 12},   {"Q3_K_L", DType::Q3_K, 13},   {"Q4_K_S", DType::Q4_K, 14},
      {"Q4_K_M", DType::Q4_K, 15},   {"Q5_K_S", DType::Q5_K, 16},   {"Q5_K_M", DType::Q5_K, 17},
      {"Q6_K", DType::Q6_K, 18},     {"Q8_0", DType::Q8_0, 7},      {"Q4_0", DType::Q4_0, 2},
      {"Q4_1", DType::Q4_1, 3},      {"Q5_0", DType::Q5_0, 8},      {"Q5_1", DType::Q5_1, 9},
      {"IQ4_NL", DType::IQ4_NL, 25}, {"IQ4_XS", DType::IQ4_XS, 30}, {"F16", DType::F16, 1},
      {"BF16", DType::BF16, 32},     {"F32", DType::F32, 0},
  };
  return mixes;
}

std::optional<QuantMix> find_quant_mix(const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const QuantMix& m : quant_mixes()) {
    if (m.name == upper) return m;
  }
  return std::nullopt;
}

TensorTypeOverride parse_tensor_type_override(const std::string& spec) {
  const size_t eq = spec.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    fail("--tensor-type '{}': expected PATTERN=TYPE, e.g. attn_v=q8_0", spec);
  }
  TensorTypeOverride o;
  o.pattern = spec.substr(0, eq);
  const auto type = parse_dtype(spec.substr(eq + 1));
  if (!type || *type == DType::Q8_1 || *type == DType::Q8_K || *type == DType::I8 ||
      *type == DType::I16 || *type == DType::I32 || *type == DType::I64 || *type == DType::F64) {
    fail("--tensor-type '{}': '{}' is not a weight type squish can write", spec,
         spec.substr(eq + 1));
  }
  o.type = *type;
  try {
    o.re = std::regex(o.pattern);
  } catch (const std::regex_error& e) {
    fail("--tensor-type '{}': invalid regular expression: {}", spec, e.what());
  }
  return o;
}

namespace {

bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// Types whose 256-wide super-blocks do not fit a row fall back to a 32-wide type, as llama.cpp
// does.
DType fallback(DType t, int64_t cols, std::string& reason) {
  const int bs = traits(t).block_size;
  if (cols % bs == 0) return t;
  DType r;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K:
      r = DType::Q4_0;
      break;
    case DType::Q4_K:
      r = DType::Q5_0;
      break;
    case DType::Q5_K:
      r = DType::Q5_1;
      break;
    case DType::Q6_K:
      r = DType::Q8_0;
      break;
    case DType::IQ4_XS:
      r = DType::IQ4_NL;
      break;
    default:
      r = t;
      break;
  }
  if (cols % traits(r).block_size != 0) r = DType::F16;
  reason = fmt::format("{} columns not divisible by {} ({} -> {})", cols, bs, dtype_name(t),
                       dtype_name(r));
  return r;
}

}  // namespace

std::vector<TensorPlan> plan_quantization(const Model& model, const QuantPlanOptions& o) {
  const ModelConfig& c = model.config;
  const std::string& mix = o.mix.name;
  const bool quantized_mix = traits(o.mix.base).block_size > 1;
  const int n_gqa = c.n_head / c.n_head_kv;
  const bool has_output = model.find("output.weight") != nullptr;
  int n_attn_v = 0;
  for (const TensorInfo& t : model.tensors()) {
    if (t.name.find("attn_v.weight") != std::string::npos ||
        t.name.find("attn_qkv.weight") != std::string::npos) {
      n_attn_v++;
    }
  }
  const int n_layer = c.n_layer;
  std::vector<TensorPlan> plan;
  for (const TensorInfo& t : model.tensors()) {
    TensorPlan p{t.name, t.type, ""};
    const bool matrix = t.shape.size() >= 2 && t.name.ends_with("weight") &&
                        t.name.find("_norm.weight") == std::string::npos;
    if (!matrix) {
      p.type = DType::F32;
      plan.push_back(p);
      continue;
    }
    const bool is_output =
        t.name == "output.weight" || (!has_output && t.name == "token_embd.weight");
    if (o.embd_type && t.name == "token_embd.weight") {
      p.type = *o.embd_type;
      p.reason = "--token-embedding-type";
      plan.push_back(p);
      continue;
    }
    if (o.output_type && is_output) {
      p.type = *o.output_type;
      p.reason = "--output-tensor-type";
      plan.push_back(p);
      continue;
    }
    DType type = o.mix.base;
    if (!quantized_mix) {
      p.type = type;
      plan.push_back(p);
      continue;
    }
    std::string reason;
    bool manual = false;
    for (const TensorTypeOverride& ov : o.overrides) {
      if (std::regex_search(t.name, ov.re)) {
        type = ov.type;
        reason = "--tensor-type " + ov.pattern;
        manual = true;
        break;
      }
    }
    const bool attn_v = t.name.find("attn_v.weight") != std::string::npos ||
                        t.name.find("attn_qkv.weight") != std::string::npos;
    const bool ffn_down = t.name.find("ffn_down.weight") != std::string::npos;
    // llama.cpp counts these tensors in file order, which is layer order in its converters' files.
    const int layer = t.name.rfind("blk.", 0) == 0 ? std::atoi(t.name.c_str() + 4) : 0;
    if (!manual && !o.pure) {
      DType before = type;
      if (is_output) {
        if (t.cols() % traits(type).block_size != 0) {
          type = DType::Q8_0;
        } else if (type != DType::Q8_0) {
          type = DType::Q6_K;
        }
      } else if (attn_v) {
        const int i = layer;
        if (mix == "Q2_K")
          type = n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
        else if (mix == "Q2_K_S" && n_gqa >= 4)
          type = DType::Q4_K;
        else if (mix == "Q3_K_M")
          type = i < 2 ? DType::Q5_K : DType::Q4_K;
        else if (mix == "Q3_K_L")
          type = DType::Q5_K;
        else if ((mix == "IQ4_NL" || mix == "IQ4_XS") && n_gqa >= 4)
          type = DType::Q5_K;
        else if ((mix == "Q4_K_M" || mix == "Q5_K_M") && use_more_bits(i, n_attn_v))
          type = DType::Q6_K;
        else if (mix == "Q4_K_S" && i < 4)
          type = DType::Q5_K;
      } else if (ffn_down) {
        const int i = layer;
        if (mix == "Q2_K")
          type = DType::Q3_K;
        else if (mix == "Q2_K_S") {
          if (i < n_layer / 8) type = DType::Q4_K;
        } else if (mix == "Q3_K_M")
          type = i < n_layer / 16 ? DType::Q5_K : DType::Q4_K;
        else if (mix == "Q3_K_L")
          type = DType::Q5_K;
        else if (mix == "Q4_K_M") {
          if (use_more_bits(i, n_layer)) type = DType::Q6_K;
        } else if (i < n_layer / 8 && (mix == "IQ4_NL" || mix == "IQ4_XS") && !o.has_imatrix)
          type = DType::Q5_K;
        else if (mix == "Q5_K_M" && use_more_bits(i, n_layer))
          type = DType::Q6_K;
        else if (mix == "Q4_K_S" && i < n_layer / 8)
          type = DType::Q5_K;
        else if ((mix == "Q4_0" || mix == "Q5_0") && o.has_imatrix && i < n_layer / 8) {
          type = mix == "Q4_0" ? DType::Q4_1 : DType::Q5_1;
        }
      } else if (t.name.find("attn_output.weight") != std::string::npos) {
        if (mix == "Q2_K")
          type = DType::Q3_K;
        else if (mix == "Q3_K_M")
          type = DType::Q4_K;
        else if (mix == "Q3_K_L")
          type = DType::Q5_K;
      }
      if (type != before)
        reason = fmt::format("{} rule for {}", mix,
                             is_output  ? "output"
                             : attn_v   ? "attn_v"
                             : ffn_down ? "ffn_down"
                                        : "attn_output");
    }
    std::string fb;
    type = fallback(type, t.cols(), fb);
    if (!fb.empty()) reason = reason.empty() ? fb : reason + "; " + fb;
    p.type = type;
    p.reason = reason;
    plan.push_back(p);
  }
  return plan;
}

}  // namespace squish
