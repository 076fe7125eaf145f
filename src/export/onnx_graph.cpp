#include "export/onnx_graph.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "core/error.h"

namespace squish {

namespace {

struct OnnxModule {
  OnnxSerializeFn serialize = nullptr;
  OnnxReadFn read = nullptr;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Candidates: $SQUISH_ONNX_MODULE, the build's own copy, then beside the running executable.
const OnnxModule& onnx_module() {
  static OnnxModule module;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    if (kSanitized) {
      failure = "not available in sanitizer builds (ASan refuses RTLD_DEEPBIND)";
      return;
    }
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("SQUISH_ONNX_MODULE"); env != nullptr && *env != '\0')
      candidates.push_back(env);
#ifdef SQUISH_ONNX_MODULE_PATH
    candidates.push_back(SQUISH_ONNX_MODULE_PATH);
#endif
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path() / "libsquish_onnx.so").string());
    for (const std::string& path : candidates) {
      if (!std::filesystem::exists(path)) continue;
      // Local + deep binding: the module's libprotobuf resolves to itself, never to the copy
      // inside libsentencepiece (see onnx_graph.h).
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle == nullptr) {
        failure = fmt::format("{}: cannot load ({})", path, dlerror());
        continue;
      }
      module.serialize = reinterpret_cast<OnnxSerializeFn>(dlsym(handle, "squish_onnx_serialize"));
      module.read = reinterpret_cast<OnnxReadFn>(dlsym(handle, "squish_onnx_read"));
      if (module.serialize != nullptr && module.read != nullptr) return;
      failure = fmt::format("{}: not squish's ONNX module", path);
    }
    if (failure.empty()) failure = "libsquish_onnx.so not found (set SQUISH_ONNX_MODULE)";
  });
  if (module.serialize == nullptr) fail("ONNX support: {}", failure);
  return module;
}

}  // namespace

std::string onnx_unavailable_reason() {
  try {
    onnx_module();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::string onnx_serialize_checked(const OnnxModel& model, const std::string& model_dir) {
  std::string bytes, error;
  if (onnx_module().serialize(&model, &model_dir, &bytes, &error) != 0) {
    fail("{}: ONNX check failed: {}", model_dir, error);
  }
  return bytes;
}

OnnxModel onnx_read_checked(const std::string& path) {
  OnnxModel model;
  std::string error;
  if (onnx_module().read(&path, &model, &error) != 0) fail("{}: {}", path, error);
  return model;
}

}  // namespace squish
