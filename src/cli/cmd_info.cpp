#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "export/manifest.h"
#include "model/model.h"

namespace squish::cli {

namespace {
struct InfoArgs {
  std::string model;
  std::string tokenizer;
  bool json = false;
  bool tensors = false;
};
}  // namespace

void register_info(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd =
      app.add_subcommand("info", "Show a model's architecture, size, types and tensors");
  cmd->add_option("model", args->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->add_flag("--json", args->json, "Machine-readable output");
  cmd->add_flag("--tensors", args->tensors, "List every tensor (always included with --json)");
  cmd->callback([args] {
    LoadOptions lo;
    lo.tokenizer_path = args->tokenizer;
    auto model = load_model(args->model, lo);
    const ModelConfig& c = model->config;
    // What made this model (squish.* keys, <model>.manifest.json with measured quality).
    const ModelManifest manifest = load_model_manifest(args->model);
    std::map<std::string, int64_t> by_type;
    for (const TensorInfo& t : model->tensors()) by_type[dtype_name(t.type)] += t.numel();
    if (args->json) {
      nlohmann::json j;
      j["path"] = model->path;
      j["format"] = source_format_name(model->format);
      j["architecture"] = c.arch_name();
      j["parameters"] = model->parameter_count();
      j["weight_bytes"] = model->weight_bytes();
      j["config"] = {{"n_vocab", c.n_vocab},
                     {"n_embd", c.n_embd},
                     {"n_layer", c.n_layer},
                     {"n_head", c.n_head},
                     {"n_head_kv", c.n_head_kv},
                     {"head_dim", c.head_dim},
                     {"n_ff", c.n_ff},
                     {"n_ctx_train", c.n_ctx_train},
                     {"rope_theta", c.rope_theta},
                     {"n_rot", c.n_rot},
                     {"norm_eps", c.norm_eps},
                     {"tied_embeddings", c.tied_embeddings},
                     {"rope_style", c.rope_style == RopeStyle::Neox ? "neox" : "interleaved"}};
      j["params_by_type"] = by_type;
      j["tokenizer"] = model->tokenizer
                           ? nlohmann::json{{"vocab_size", model->tokenizer->vocab_size()},
                                            {"bos_id", model->tokenizer->bos_id()},
                                            {"eos_id", model->tokenizer->eos_id()},
                                            {"add_bos", model->tokenizer->add_bos()}}
                           : nlohmann::json(nullptr);
      nlohmann::json ts = nlohmann::json::array();
      for (const TensorInfo& t : model->tensors()) {
        ts.push_back({{"name", t.name},
                      {"type", dtype_name(t.type)},
                      {"shape", t.shape},
                      {"bytes", t.nbytes}});
      }
      j["tensors"] = ts;
      const Manifest* best = manifest.best();
      j["manifest"] = best ? manifest_to_json(*best) : nlohmann::json(nullptr);
      j["manifest_sources"] = {
          {"gguf_keys", manifest.from_gguf.has_value()},
          {"sidecar", manifest.from_sidecar ? nlohmann::json(sidecar_path(args->model))
                                            : nlohmann::json(nullptr)}};
      if (!manifest.mismatch.empty()) j["manifest_warning"] = manifest.mismatch;
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("model:        %s (%s)\n", model->path.c_str(), source_format_name(model->format));
    std::printf("architecture: %s\n", c.arch_name());
    std::printf("parameters:   %lld (%.2f M)\n", static_cast<long long>(model->parameter_count()),
                model->parameter_count() / 1e6);
    std::printf("weights:      %.2f MiB\n", model->weight_bytes() / 1048576.0);
    std::printf("types:       ");
    for (const auto& [type, n] : by_type)
      std::printf(" %s: %lld", type.c_str(), static_cast<long long>(n));
    std::printf("\n");
    std::printf("layers %d, hidden %d, heads %d (kv %d, dim %d), ffn %d, vocab %d, context %d\n",
                c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab,
                c.n_ctx_train);
    std::printf("rope theta %g (%s, %d dims), norm eps %g, %s embeddings\n", c.rope_theta,
                c.rope_style == RopeStyle::Neox ? "neox" : "interleaved", c.n_rot, c.norm_eps,
                c.tied_embeddings ? "tied" : "untied");
    if (model->tokenizer) {
      std::printf("tokenizer:    %d tokens, bos %d, eos %d, add_bos %s\n",
                  model->tokenizer->vocab_size(), model->tokenizer->bos_id(),
                  model->tokenizer->eos_id(), model->tokenizer->add_bos() ? "yes" : "no");
    } else {
      std::printf("tokenizer:    none\n");
    }
    if (const Manifest* best = manifest.best()) {
      std::string from = manifest.from_gguf ? "squish.* keys" : "";
      if (manifest.from_sidecar && manifest.mismatch.empty())
        from += (from.empty() ? "" : " + ") + sidecar_path(args->model);
      std::printf("\nmanifest (%s):\n%s", from.c_str(), format_manifest(*best).c_str());
    } else if (model->format == SourceFormat::GGUF) {
      std::printf("manifest:     none (not written by squish)\n");
    }
    if (!manifest.mismatch.empty()) std::printf("warning:      %s\n", manifest.mismatch.c_str());
    if (args->tensors) {
      std::printf("\n%-36s %-6s %-16s %10s\n", "tensor", "type", "shape", "bytes");
      for (const TensorInfo& t : model->tensors()) {
        std::printf("%-36s %-6s %-16s %10zu\n", t.name.c_str(), dtype_name(t.type),
                    shape_string(t.shape).c_str(), t.nbytes);
      }
    }
  });
}

}  // namespace squish::cli
