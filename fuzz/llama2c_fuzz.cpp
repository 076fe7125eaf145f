// llama2.c checkpoints: the legacy 7 x int32 header and the version-1 "ak42" header, and the
// file size each implies.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/llama2c.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    (void)squish::looks_like_llama2c(*squish::MappedFile::open(path));
    squish::Llama2cCheckpoint ckpt = squish::open_llama2c(path);
    (void)ckpt;
  } catch (const squish::Error&) {
  }
  return 0;
}
