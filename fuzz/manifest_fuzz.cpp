// Manifest sidecar (<model>.manifest.json, src/export/manifest): JSON text -> Manifest with every
// field validated, then formatting it for `squish info` and writing it back to JSON.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/json_file.h"
#include "export/manifest.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    nlohmann::json j = squish::read_json_file(path, size_t{1} << 20);
    squish::Manifest m = squish::manifest_from_json(j, path);
    (void)squish::format_manifest(m);
    (void)squish::manifest_to_json(m).dump();
  } catch (const squish::Error&) {
  }
  return 0;
}
