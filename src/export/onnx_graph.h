// A plain description of an ONNX model (graph, initializers, opsets) and the bridge to the code
// that turns it into ONNX's protobuf classes, validates it with onnx::checker and serializes it.
//
// Why a bridge: Debian's libsentencepiece carries its own copy of protobuf-lite and exports its
// symbols; loading libprotobuf (which libonnx needs) into the same global symbol scope makes
// libprotobuf's initialisers bind to sentencepiece's copy and crash at start-up. So everything
// that touches libonnx / libprotobuf lives in a small module (libsquish_onnx.so, built from
// onnx_proto_module.cpp) that squish loads on first use with RTLD_LOCAL | RTLD_DEEPBIND: its
// protobuf resolves to itself, and sentencepiece keeps its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace squish {

// Element types, numbered as onnx.TensorProto.DataType.
enum class OnnxType : int32_t { Float = 1, Uint8 = 2, Int32 = 6, Int64 = 7, Float16 = 10 };

struct OnnxInitializer {
  std::string name;
  OnnxType type = OnnxType::Float;
  std::vector<int64_t> dims;
  std::string raw;        // inline bytes, or empty when external
  bool external = false;  // bytes in the external data file at [offset, offset + length)
  uint64_t offset = 0, length = 0;
};

struct OnnxAttribute {
  enum class Kind { Int, Float, Ints } kind = Kind::Int;
  std::string name;
  int64_t i = 0;
  float f = 0;
  std::vector<int64_t> ints;
};

struct OnnxNode {
  std::string op, domain, name;
  std::vector<std::string> inputs, outputs;
  std::vector<OnnxAttribute> attributes;
};

struct OnnxValueInfo {
  std::string name;
  OnnxType type = OnnxType::Float;
  std::vector<std::string> dims;  // a number for a fixed size, else a symbolic name
};

struct OnnxModel {
  int64_t ir_version = 8;
  std::vector<std::pair<std::string, int64_t>> opsets;  // (domain, version)
  std::string producer, producer_version, graph_name;
  std::string data_file;  // external data file name (relative to the model), if any
  std::vector<OnnxValueInfo> inputs, outputs;
  std::vector<OnnxNode> nodes;
  std::vector<OnnxInitializer> initializers;
};

// "" when the ONNX module can be loaded here, else why not (not found; or a sanitizer build:
// ASan refuses RTLD_DEEPBIND, and without it the module would bind to sentencepiece's protobuf).
std::string onnx_unavailable_reason();

// Builds the protobuf model, checks it with onnx::checker (model_dir: where external data files
// are) and returns its serialized bytes. Throws squish::Error with the checker's message.
std::string onnx_serialize_checked(const OnnxModel& model, const std::string& model_dir);

// Reads and checks a model file (onnx::checker::check_model on the path) and returns its
// structure (initializer bytes left out). Throws squish::Error naming the file.
OnnxModel onnx_read_checked(const std::string& path);

// Entry points of libsquish_onnx.so (C linkage, looked up with dlsym): 0 on success, else 1 with
// the reason in *error.
extern "C" {
using OnnxSerializeFn = int (*)(const OnnxModel* model, const std::string* model_dir,
                                std::string* bytes, std::string* error);
using OnnxReadFn = int (*)(const std::string* path, OnnxModel* model, std::string* error);
}

}  // namespace squish
