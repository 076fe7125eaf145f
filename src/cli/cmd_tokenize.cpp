#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text.h"
#include "model/model.h"

namespace squish::cli {

namespace {
struct TokenizeArgs {
  std::string model, prompt, file, tokenizer;
  bool pieces = false;
  bool special = false;
  bool no_bos = false;
};
}  // namespace

void register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("model", a->model, "HF folder, GGUF file, or a tokenizer.json / tokenizer.model")
      ->required();
  auto* p = cmd->add_option("-p,--prompt", a->prompt, "Text");
  cmd->add_option("-f,--file", a->file, "UTF-8 text file")->excludes(p);
  cmd->add_flag("--pieces", a->pieces, "Print id and token text, one per line");
  cmd->add_flag("--parse-special", a->special,
                "Map special-token text (e.g. <|endoftext|>) to its id");
  cmd->add_flag("--no-bos", a->no_bos, "Do not add BOS even if the tokenizer adds one");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->callback([a] {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> standalone;
    const Tokenizer* tok = nullptr;
    if (a->model.ends_with(".json")) {
      standalone = load_tokenizer_json(a->model);
      tok = standalone.get();
    } else if (a->model.ends_with(".model")) {
      standalone = load_sentencepiece_model(a->model);
      tok = standalone.get();
    } else {
      LoadOptions lo;
      lo.tokenizer_path = a->tokenizer;
      model = load_model(a->model, lo);
      if (!model->tokenizer) fail("{}: model has no tokenizer; pass --tokenizer FILE", a->model);
      tok = model->tokenizer.get();
    }
    std::string text = a->file.empty() ? a->prompt : read_text_file(a->file);
    if (a->file.empty() && find_invalid_utf8(text) != std::string::npos)
      fail("prompt is not valid UTF-8");
    std::vector<int32_t> ids = tok->encode(text, a->special);
    if (tok->add_bos() && !a->no_bos && tok->bos_id() >= 0) ids.insert(ids.begin(), tok->bos_id());
    if (a->pieces) {
      for (int32_t id : ids)
        std::printf("%6d  %s\n", id, nlohmann::json(tok->token_text(id)).dump().c_str());
    } else {
      for (size_t i = 0; i < ids.size(); ++i)
        std::printf("%d%c", ids[i], i + 1 == ids.size() ? '\n' : ' ');
    }
  });
}

}  // namespace squish::cli
