#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/calib_flags.h"
#include "cli/commands.h"
#include "cli/w8a8_quantize.h"
#include "core/error.h"
#include "core/progress.h"
#include "export/gguf_export.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/mix.h"
#include "quant/quant.h"

namespace squish::cli {

namespace {
struct QuantizeArgs {
  std::string model, out, type = "Q4_K_M", imatrix, output_type, embd_type, tokenizer, name;
  std::vector<std::string> tensor_types;
  bool pure = false;
  bool dry_run = false;
  bool json = false;
  CalibFlags calib;
};

std::optional<DType> parse_weight_type(const std::string& s, const char* flag) {
  if (s.empty()) return std::nullopt;
  auto t = parse_dtype(s);
  if (!t || (!is_quantized(*t) && *t != DType::F16 && *t != DType::BF16 && *t != DType::F32)) {
    fail("{} '{}': not a weight type squish can write", flag, s);
  }
  return t;
}
}  // namespace

void register_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  std::string types;
  for (const QuantMix& m : quant_mixes()) types += (types.empty() ? "" : ", ") + m.name;
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantize a model to a GGUF file llama.cpp loads (llama-quantize's mixes)");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-o,--output", a->out, "Output .gguf path");
  cmd->add_option("--type", a->type,
                  "Mix: " + types + "; or w8a8 (per-row int8 weights, per-token int8 activations)")
      ->capture_default_str();
  cmd->add_option("--tensor-type", a->tensor_types,
                  "PATTERN=TYPE override (regex searched in tensor names), repeatable");
  cmd->add_option("--imatrix", a->imatrix, "Importance matrix (llama.cpp imatrix GGUF or .dat)");
  add_calib_flags(cmd, a->calib);
  cmd->add_option("--output-tensor-type", a->output_type, "Type for output.weight");
  cmd->add_option("--token-embedding-type", a->embd_type, "Type for token_embd.weight");
  cmd->add_flag("--pure", a->pure, "No per-tensor bumps: every matrix gets the mix's base type");
  cmd->add_flag("--dry-run", a->dry_run, "Print the plan and the resulting size, write nothing");
  cmd->add_flag("--json", a->json, "Print the plan as JSON");
  cmd->add_option("--name", a->name, "general.name to record");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->callback([a] {
    if (is_w8a8_type(a->type)) {
      if (!a->imatrix.empty() || !a->tensor_types.empty() || a->pure || a->json ||
          !a->output_type.empty() || !a->embd_type.empty())
        fail(
            "--type w8a8 writes every matrix as per-row int8: no --imatrix, --tensor-type, "
            "--pure, --json, --output-tensor-type or --token-embedding-type");
      quantize_w8a8_command(a->model, a->out, a->calib, a->name, a->tokenizer, a->dry_run);
      return;
    }
    auto mix = find_quant_mix(a->type);
    if (!mix) fail("--type '{}': unknown quantization type", a->type);
    if (a->calib.method == "smoothquant" || a->calib.method == "rtn")
      fail("--method {} is for --type w8a8", a->calib.method);
    if (a->out.empty() && !a->dry_run) fail("-o OUT.gguf is required (or use --dry-run)");
    LoadOptions lo;
    lo.tokenizer_path = a->tokenizer;
    auto model = load_model(a->model, lo);
    std::unique_ptr<Imatrix> imatrix;
    if (!a->imatrix.empty()) imatrix = std::make_unique<Imatrix>(read_imatrix(a->imatrix));
    QuantPlanOptions po;
    po.mix = *mix;
    for (const std::string& spec : a->tensor_types)
      po.overrides.push_back(parse_tensor_type_override(spec));
    po.output_type = parse_weight_type(a->output_type, "--output-tensor-type");
    po.embd_type = parse_weight_type(a->embd_type, "--token-embedding-type");
    po.pure = a->pure;
    po.has_imatrix = imatrix != nullptr;
    std::vector<TensorPlan> plan = plan_quantization(*model, po);

    size_t in_bytes = 0, out_bytes = 0;
    int64_t n_params = 0;
    std::map<std::string, int> type_counts;
    int with_importance = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const TensorInfo& t = model->tensors()[i];
      in_bytes += t.nbytes;
      out_bytes += row_bytes(plan[i].type, t.cols()) * t.rows();
      n_params += t.numel();
      type_counts[dtype_name(plan[i].type)]++;
      if (imatrix && is_quantized(plan[i].type) && !imatrix->importance(t.name).empty())
        with_importance++;
    }
    const double bpw = 8.0 * out_bytes / n_params;
    if (a->json) {
      nlohmann::json j;
      j["type"] = mix->name;
      j["bytes"] = out_bytes;
      j["bits_per_weight"] = bpw;
      for (size_t i = 0; i < plan.size(); ++i) {
        j["tensors"].push_back({{"name", plan[i].name},
                                {"type", dtype_name(plan[i].type)},
                                {"reason", plan[i].reason}});
      }
      std::printf("%s\n", j.dump(2).c_str());
    } else if (a->dry_run) {
      for (size_t i = 0; i < plan.size(); ++i) {
        const TensorInfo& t = model->tensors()[i];
        std::printf("%-32s %-16s %-6s -> %-6s %s\n", t.name.c_str(), shape_string(t.shape).c_str(),
                    dtype_name(t.type), dtype_name(plan[i].type), plan[i].reason.c_str());
      }
    }
    std::fprintf(stderr, "%s: %.2f MiB -> %.2f MiB (%.3f bits per weight)", mix->name.c_str(),
                 in_bytes / 1048576.0, out_bytes / 1048576.0, bpw);
    for (const auto& [type, n] : type_counts) std::fprintf(stderr, ", %d x %s", n, type.c_str());
    std::fprintf(stderr, "\n");
    if (imatrix)
      std::fprintf(stderr, "imatrix: %d of the quantized tensors have importance data\n",
                   with_importance);
    if (a->dry_run) return;

    GGUFExportOptions eo;
    eo.plan = std::move(plan);
    eo.file_type = mix->file_type;
    eo.imatrix = imatrix.get();
    eo.name = a->name;
    // Disclosed in the output's manifest (squish.* keys + sidecar; docs/manifest.md).
    eo.method.type = mix->name;
    eo.method.pure = a->pure;
    eo.method.tensor_type_overrides = a->tensor_types;
    eo.method.output_tensor_type = a->output_type;
    eo.method.token_embedding_type = a->embd_type;
    eo.method.imatrix_path = a->imatrix;
    eo.method.algorithm = a->calib.method;  // "gptq"; empty: rtn or imatrix
    eo.method.calibration_files = a->calib.files;
    if (!a->calib.method.empty()) {
      eo.method.parameters = {{"calib_tokens", a->calib.calib_tokens}, {"calib_ctx", a->calib.ctx},
                              {"damp", a->calib.damp}, {"act_order", a->calib.act_order},
                              {"block_size", a->calib.block_size}};
    }
    if (imatrix) {
      eo.extra_metadata.push_back({"quantize.imatrix.file", GGUFValue::str(a->imatrix)});
      eo.extra_metadata.push_back({"quantize.imatrix.entries_count",
                                   GGUFValue::i32(static_cast<int32_t>(imatrix->entries.size()))});
      eo.extra_metadata.push_back(
          {"quantize.imatrix.chunks_count", GGUFValue::i32(imatrix->chunk_count)});
      if (!imatrix->datasets.empty()) {
        eo.extra_metadata.push_back(
            {"quantize.imatrix.dataset", GGUFValue::str(imatrix->datasets[0])});
      }
    }
    const auto calibrated = run_calibration(*model, a->calib, a->out, eo);
    Progress progress("quantize", model->tensors().size());
    eo.progress = [&](size_t done, size_t) { progress.update(done); };
    export_gguf(*model, a->out, eo);
    if (calibrated) calibrated->tensors->remove();  // the output exists: no resume needed
    progress.finish(a->out);
  });
}

}  // namespace squish::cli
