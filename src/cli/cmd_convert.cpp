#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "export/gguf_export.h"
#include "model/model.h"

namespace squish::cli {

namespace {
struct ConvertArgs {
  std::string model, out, tokenizer, type = "f16", name;
};
}  // namespace

void register_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* cmd =
      app.add_subcommand("convert", "Convert a model to a float GGUF file that llama.cpp loads");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-o,--output", a->out, "Output .gguf path")->required();
  cmd->add_option("--type", a->type, "Matrix type: f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}, CLI::ignore_case));
  cmd->add_option("--name", a->name, "general.name to record");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->callback([a] {
    LoadOptions lo;
    lo.tokenizer_path = a->tokenizer;
    auto model = load_model(a->model, lo);
    GGUFExportOptions eo;
    eo.type = *parse_dtype(a->type);
    eo.name = a->name;
    Progress progress("convert", model->tensors().size());
    eo.progress = [&](size_t done, size_t) { progress.update(done); };
    export_gguf(*model, a->out, eo);
    progress.finish(a->out);
  });
}

}  // namespace squish::cli
