// Model manifests (src/export/manifest), both forms: input starting with the GGUF magic is read as
// a GGUF and its squish.* keys parsed; anything else is a sidecar (<model>.manifest.json) whose
// every field is validated. The result is formatted for `squish info` and written back to JSON.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

#include "core/error.h"
#include "core/json_file.h"
#include "export/manifest.h"
#include "formats/gguf.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    std::optional<squish::Manifest> m;
    if (size >= 4 && std::memcmp(data, "GGUF", 4) == 0) {
      m = squish::manifest_from_gguf(*squish::GGUFFile::open(path));
    } else {
      m = squish::manifest_from_json(squish::read_json_file(path, size_t{1} << 20), path);
    }
    if (m) {
      (void)squish::format_manifest(*m);
      (void)squish::manifest_to_json(*m).dump();
    }
  } catch (const squish::Error&) {
  }
  return 0;
}
