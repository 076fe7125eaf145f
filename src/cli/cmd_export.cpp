// `squish export MODEL --format onnx -o DIR`: an ONNX decoder for ONNX Runtime / genai, with
// float weights or MatMulNBits from the same quantization plan and quantizers as `squish quantize`.
#include <cstdio>

#include "cli/calib_flags.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "export/onnx_export.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/mix.h"
#include "quant/quant.h"

namespace squish::cli {

namespace {
struct ExportArgs {
  std::string model, out, format = "onnx", type = "auto", imatrix, tokenizer;
  int block_size = 32;
  int accuracy_level = 4;
  int max_length = 0;
  bool external_data = false;
  bool f32_embedding = false;
  bool pure = false;
  CalibFlags calib;
};

bool has_quantized_matrix(const Model& model) {
  for (const TensorInfo& t : model.tensors()) {
    if (is_quantized(t.type)) return true;
  }
  return false;
}
}  // namespace

void register_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Export a model for another runtime (ONNX for ONNX Runtime / onnxruntime-genai)");
  cmd->add_option("model", a->model,
                  "HF folder, GGUF file (float or quantized) or llama2.c checkpoint")
      ->required();
  cmd->add_option("--format", a->format, "Output format")->check(CLI::IsMember({"onnx"}));
  cmd->add_option("-o,--output", a->out, "Output folder (model.onnx, genai_config.json, tokenizer)")
      ->required();
  cmd->add_option("--type", a->type,
                  "auto (a quantized GGUF keeps its types, else f32), f32, f16, or a quantization "
                  "mix (q4_0, q8_0, q4_k_m, ...) mapped to MatMulNBits")
      ->capture_default_str();
  add_calib_flags(cmd, a->calib);
  // --block-size here is MatMulNBits'; GPTQ's lazy-batch width moves to --gptq-block-size.
  cmd->remove_option(cmd->get_option("--block-size"));
  cmd->add_option("--gptq-block-size", a->calib.block_size, "GPTQ lazy-batch width in columns")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--block-size", a->block_size, "MatMulNBits block size (16, 32, 64, 128, 256)")
      ->capture_default_str();
  cmd->add_option("--accuracy-level", a->accuracy_level,
                  "MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 (CPU)")
      ->capture_default_str();
  cmd->add_flag("--external-data", a->external_data,
                "Weights in model.onnx.data (automatic above 1.8 GB)");
  cmd->add_flag("--f32-embedding", a->f32_embedding,
                "Keep the embedding table in F32 (default: F16 unless --type f32)");
  cmd->add_option("--max-length", a->max_length, "Longest sequence (RoPE cache, genai context)");
  cmd->add_flag("--pure", a->pure, "Every matrix in the mix's base type (no per-tensor bumps)");
  cmd->add_option("--imatrix", a->imatrix, "Importance matrix for the quantizers");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->callback([a] {
    LoadOptions lo;
    lo.tokenizer_path = a->tokenizer;
    auto model = load_model(a->model, lo);
    OnnxExportOptions oo;
    oo.block_size = a->block_size;
    oo.accuracy_level = a->accuracy_level;
    oo.external_data = a->external_data;
    oo.f32_embedding = a->f32_embedding;
    oo.max_length = a->max_length;
    std::unique_ptr<Imatrix> imatrix;
    if (!a->imatrix.empty()) imatrix = std::make_unique<Imatrix>(read_imatrix(a->imatrix));
    oo.imatrix = imatrix.get();
    std::string type = a->type;
    for (char& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (type == "auto") {
      if (has_quantized_matrix(*model)) {
        // Keep the file's own quantization: each tensor in its stored type.
        for (const TensorInfo& t : model->tensors()) oo.plan.push_back({t.name, t.type, "stored"});
      } else {
        oo.type = DType::F32;
      }
    } else if (type == "f32" || type == "f16") {
      oo.type = type == "f32" ? DType::F32 : DType::F16;
    } else {
      auto mix = find_quant_mix(type);
      if (!mix) fail("--type '{}': not f32, f16 or a quantization mix", a->type);
      QuantPlanOptions po;
      po.mix = *mix;
      po.pure = a->pure;
      po.has_imatrix = imatrix != nullptr;
      oo.plan = plan_quantization(*model, po);
    }
    if (!a->calib.method.empty() && oo.plan.empty()) {
      fail("--method {} needs a quantized --type", a->calib.method);
    }
    // Calibrated methods run exactly as for `squish quantize`; their tensors feed the export.
    GGUFExportOptions eo;
    eo.plan = oo.plan;
    const std::string model_path = a->out + "/model.onnx";
    const auto calibrated = run_calibration(*model, a->calib, model_path, eo);
    oo.prequantized = eo.prequantized;
    Progress progress("export", model->tensors().size());
    oo.progress = [&](size_t done, size_t) { progress.update(done); };
    OnnxExportResult r = export_onnx(*model, a->out, oo);
    if (calibrated) calibrated->tensors->remove();
    progress.finish(r.model_path);
    std::fprintf(stderr, "wrote %s (%.2f MiB of weights%s)", r.model_path.c_str(),
                 r.weight_bytes / 1048576.0, r.data_path.empty() ? "" : ", external data");
    if (r.exact_matrices + r.requantized_matrices > 0) {
      std::fprintf(stderr, "; MatMulNBits: %d exact, %d requantized", r.exact_matrices,
                   r.requantized_matrices);
      if (r.requantized_matrices > 0)
        std::fprintf(stderr, " (worst relative RMS error %.4f)", r.max_requant_rel_rms);
    }
    std::fprintf(stderr, "\n");
    if (r.copied_files.empty()) {
      std::fprintf(stderr,
                   "note: no tokenizer files to copy (the source is not a Hugging Face folder)\n");
    }
  });
}

}  // namespace squish::cli
