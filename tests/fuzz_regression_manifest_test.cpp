// manifest_fuzz findings (docs/fuzzing.md). Kept apart from fuzz_regression_test.cpp because the
// manifest code needs the whole library, which the sanitized parsers-only test binary does not
// link. Each input must be rejected with a one-line squish::Error naming the file.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "export/manifest.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace squish {
namespace {

void expect_not_utf8(const std::string& path) {
  auto gguf = GGUFFile::open(path);
  try {
    manifest_from_gguf(*gguf);
    ADD_FAILURE() << path << ": accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find("is not valid UTF-8"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// The fuzzer's input: a squish.* string key holding bytes that are not UTF-8. The manifest was
// read, and `squish info --json` (manifest_to_json().dump()) then threw nlohmann's type_error.
TEST(FuzzRegression, ManifestGgufStringNotUtf8) {
  expect_not_utf8(test::data_path("fuzz/manifest_gguf_not_utf8.gguf"));
}

// The same fault through the other strings the manifest copies: a key and a tensor name.
TEST(FuzzRegression, ManifestGgufKeyAndTensorNameNotUtf8) {
  test::TempDir dir;
  auto write = [&](const std::string& name, const std::string& tool, const std::string& tensor) {
    const std::string path = dir.file(name);
    GGUFWriter w(path);
    w.set("squish.manifest.version", GGUFValue::u32(kManifestVersion));
    w.set("squish.tool.name", GGUFValue::str(tool));
    w.add_tensor(tensor, DType::F32, {4});
    w.write_header();
    const float zeros[4] = {};
    w.write_tensor_data(tensor, zeros, sizeof zeros);
    w.finish();
    return path;
  };
  const std::string good = write("good.gguf", "squish", "a.weight");
  const auto m = manifest_from_gguf(*GGUFFile::open(good));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->tool, "squish");
  EXPECT_NO_THROW((void)manifest_to_json(*m).dump());
  expect_not_utf8(write("bad_key.gguf", "squ\xc3(ish", "a.weight"));
  expect_not_utf8(write("bad_tensor.gguf", "squish", "a\xff.weight"));
}

}  // namespace
}  // namespace squish
