// Drives llama.cpp's libllama (the reference peer) on a GGUF file:
//   llama_logits logits MODEL.gguf OUT.bin TOKEN...   all-position logits as float32 [n, vocab]
//   llama_logits logits-seq MODEL.gguf OUT.bin TOKEN... the same, one token per llama_decode call
//   llama_logits tokenize MODEL.gguf TEXT_FILE         token ids (parse_special off, add_special
//   on)
//   llama_logits meta MODEL.gguf                        every metadata key llama.cpp exposes
//   through llama_model_meta_* (arrays are skipped by llama.cpp), one "key<TAB>value" per line
// Built against llama.cpp's headers and library (see tools/llama_cpp/build.sh); used to produce
// the committed llama.cpp golden logits and by bench/ for side-by-side runs.
#include <ggml-backend.h>
#include <llama.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

int main(int argc, char** argv) {
  if (argc < 4 && !(argc == 3 && std::strcmp(argv[1], "meta") == 0)) {
    std::fprintf(stderr,
                 "usage: %s logits MODEL OUT.bin TOKEN... | tokenize MODEL TEXT | meta MODEL\n",
                 argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  llama_log_set(quiet_log, nullptr);
  // Prebuilt llama.cpp packages load their CPU backends as plugins from the library folder.
  if (const char* dir = std::getenv("SQUISH_GGML_BACKEND_DIR"))
    ggml_backend_load_all_from_path(dir);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.vocab_only = mode == "meta";  // metadata is read before tensors; skip loading them
  llama_model* model = llama_model_load_from_file(argv[2], mp);
  if (model == nullptr) {
    std::fprintf(stderr, "llama.cpp could not load %s\n", argv[2]);
    return 1;
  }
  if (mode == "meta") {
    const int32_t n = llama_model_meta_count(model);
    for (int32_t i = 0; i < n; ++i) {
      char key[512];
      if (llama_model_meta_key_by_index(model, i, key, sizeof key) < 0) return 1;
      // The call returns the full length (like snprintf); size the buffer from it.
      const int32_t len = llama_model_meta_val_str_by_index(model, i, nullptr, 0);
      if (len < 0) return 1;
      std::vector<char> val(static_cast<size_t>(len) + 1);
      llama_model_meta_val_str_by_index(model, i, val.data(), val.size());
      std::printf("%s\t%s\n", key, val.data());
    }
    llama_model_free(model);
    return 0;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  if (mode == "tokenize") {
    std::ifstream in(argv[3], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    std::vector<llama_token> ids(text.size() + 16);
    int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), ids.data(),
                           static_cast<int32_t>(ids.size()), true, false);
    if (n < 0) return 1;
    for (int i = 0; i < n; ++i) std::printf("%d%c", ids[i], i + 1 == n ? '\n' : ' ');
    return 0;
  }
  std::vector<llama_token> tokens;
  for (int i = 4; i < argc; ++i) tokens.push_back(std::atoi(argv[i]));
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(tokens.size() < 64 ? 64 : tokens.size());
  cp.n_batch = cp.n_ctx;
  cp.n_ubatch = cp.n_ctx;
  cp.type_k = GGML_TYPE_F32;  // exact reference: no F16 rounding of the cache
  cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) return 1;
  // "logits": one batch (prefill kernels); "logits-seq": one token per decode call (decode
  // kernels).
  const size_t step = mode == "logits-seq" ? 1 : tokens.size();
  const int n_vocab = llama_vocab_n_tokens(vocab);
  std::FILE* out = std::fopen(argv[3], "wb");
  llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
  for (size_t start = 0; start < tokens.size(); start += step) {
    const size_t n = std::min(step, tokens.size() - start);
    for (size_t i = 0; i < n; ++i) {
      batch.token[i] = tokens[start + i];
      batch.pos[i] = static_cast<llama_pos>(start + i);
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
    batch.n_tokens = static_cast<int32_t>(n);
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "llama_decode failed\n");
      return 1;
    }
    for (size_t i = 0; i < n; ++i) {
      std::fwrite(llama_get_logits_ith(ctx, static_cast<int32_t>(i)), sizeof(float), n_vocab, out);
    }
  }
  std::fclose(out);
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
