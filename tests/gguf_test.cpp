#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace squish {
namespace {

using test::TempDir;
using test::write_bytes;

// Builds GGUF bytes by hand so each bad-input test can break exactly one field.
class Builder {
 public:
  template <typename T>
  Builder& put(T v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof(v));
    return *this;
  }
  Builder& u32(uint32_t v) { return put(v); }
  Builder& u64(uint64_t v) { return put(v); }
  Builder& str(const std::string& s) {
    u64(s.size());
    bytes += s;
    return *this;
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    bytes += "GGUF";
    return u32(version).u64(n_tensors).u64(n_kv);
  }
  Builder& kv_u32(const std::string& key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(GGUFType::UINT32)).u32(v);
  }
  // ne is in GGUF order (innermost first).
  Builder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                  uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Builder& pad(size_t alignment) {
    bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  Builder& data(size_t n, char fill = '\x11') {
    bytes.append(n, fill);
    return *this;
  }
  std::string bytes;
};

// Expects opening `bytes` to throw a one-line squish::Error naming the file and containing
// `needle`.
void expect_bad(const std::string& bytes, const std::string& needle) {
  test::expect_open_error(bytes, "bad.gguf", needle,
                          [](const std::string& path) { GGUFFile::open(path); });
}

GGUFValue scalar(GGUFType t, int64_t i) {
  GGUFValue v;
  v.type = t;
  v.i = i;
  return v;
}

GGUFValue int_array(GGUFType elem, std::vector<int64_t> ints) {
  GGUFValue v;
  v.type = GGUFType::ARRAY;
  v.elem_type = elem;
  v.ints = std::move(ints);
  return v;
}

GGUFValue nested(std::vector<GGUFValue> arrays) {
  GGUFValue v;
  v.type = GGUFType::ARRAY;
  v.elem_type = GGUFType::ARRAY;
  v.arrays = std::move(arrays);
  return v;
}

void expect_same_value(const GGUFValue& a, const GGUFValue& b, const std::string& key) {
  SCOPED_TRACE(key);
  ASSERT_EQ(a.type, b.type);
  if (a.type == GGUFType::FLOAT32) {
    EXPECT_EQ(static_cast<float>(a.f), static_cast<float>(b.f));
  } else {
    EXPECT_EQ(a.f, b.f);
  }
  EXPECT_EQ(a.i, b.i);
  EXPECT_EQ(a.s, b.s);
  if (!a.is_array()) return;
  ASSERT_EQ(a.elem_type, b.elem_type);
  EXPECT_EQ(a.ints, b.ints);
  EXPECT_EQ(a.strs, b.strs);
  ASSERT_EQ(a.floats.size(), b.floats.size());
  for (size_t k = 0; k < a.floats.size(); ++k) {
    if (a.elem_type == GGUFType::FLOAT32) {
      EXPECT_EQ(static_cast<float>(a.floats[k]), static_cast<float>(b.floats[k]));
    } else {
      EXPECT_EQ(a.floats[k], b.floats[k]);
    }
  }
  ASSERT_EQ(a.arrays.size(), b.arrays.size());
  for (size_t k = 0; k < a.arrays.size(); ++k) expect_same_value(a.arrays[k], b.arrays[k], key);
}

std::vector<std::pair<std::string, GGUFValue>> all_metadata() {
  GGUFValue f64;
  f64.type = GGUFType::FLOAT64;
  f64.f = -1.0 / 3.0;
  GGUFValue f64_array;
  f64_array.type = GGUFType::ARRAY;
  f64_array.elem_type = GGUFType::FLOAT64;
  f64_array.floats = {1e300, -2.5, 0.0};
  GGUFValue empty = int_array(GGUFType::UINT16, {});
  return {
      {"general.architecture", GGUFValue::str("llama")},
      {"t.u8", scalar(GGUFType::UINT8, 255)},
      {"t.i8", scalar(GGUFType::INT8, -128)},
      {"t.u16", scalar(GGUFType::UINT16, 65535)},
      {"t.i16", scalar(GGUFType::INT16, -32768)},
      {"t.u32", GGUFValue::u32(4000000000u)},
      {"t.i32", GGUFValue::i32(-2000000000)},
      {"t.f32", GGUFValue::f32(0.1f)},
      {"t.bool", GGUFValue::boolean(true)},
      {"t.str", GGUFValue::str(std::string("h\xc3\xa9llo\n\0x", 9))},
      {"t.u64", GGUFValue::u64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", scalar(GGUFType::INT64, std::numeric_limits<int64_t>::min())},
      {"t.f64", f64},
      {"a.u8", int_array(GGUFType::UINT8, {0, 1, 255})},
      {"a.i8", int_array(GGUFType::INT8, {-128, 127})},
      {"a.u16", int_array(GGUFType::UINT16, {65535})},
      {"a.i16", int_array(GGUFType::INT16, {-1, 2})},
      {"a.u32", int_array(GGUFType::UINT32, {4294967295LL, 7})},
      {"a.i32", GGUFValue::i32_array({-1, 0, 1})},
      {"a.f32", GGUFValue::f32_array({1.5f, -0.25f, 3e-8f})},
      {"a.bool", int_array(GGUFType::BOOL, {1, 0, 1})},
      {"a.str", GGUFValue::str_array({"a", "", "\xe2\x96\x81the"})},
      {"a.u64", int_array(GGUFType::UINT64, {-1, 5})},
      {"a.i64", int_array(GGUFType::INT64, {std::numeric_limits<int64_t>::min(), 9})},
      {"a.f64", f64_array},
      {"a.empty", empty},
      {"a.nested", nested({GGUFValue::i32_array({1, 2}), GGUFValue::i32_array({}),
                           nested({GGUFValue::str_array({"deep"})})})},
      {"a.nested_str", nested({GGUFValue::str_array({"x", "y"}), GGUFValue::str_array({"z"})})},
  };
}

struct RawTensor {
  std::string name;
  DType type;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::vector<RawTensor> raw_tensors() {
  auto pattern = [](size_t n, int seed) {
    std::string s(n, '\0');
    for (size_t k = 0; k < n; ++k) s[k] = static_cast<char>((k * 31 + seed) & 0xff);
    return s;
  };
  return {
      {"f32", DType::F32, {2, 3}, pattern(2 * 3 * 4, 1)},
      {"f16", DType::F16, {5}, pattern(5 * 2, 2)},
      {"bf16", DType::BF16, {3, 1, 7}, pattern(3 * 7 * 2, 3)},
      {"q8_0", DType::Q8_0, {2, 64}, pattern(2 * 2 * 34, 4)},
  };
}

void write_model(const std::string& path, uint32_t alignment) {
  GGUFWriter w(path, alignment);
  for (auto& [k, v] : all_metadata()) w.set(k, v);
  for (const RawTensor& t : raw_tensors()) w.add_tensor(t.name, t.type, t.shape);
  w.write_header();
  for (const RawTensor& t : raw_tensors())
    w.write_tensor_data(t.name, t.bytes.data(), t.bytes.size());
  w.finish();
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(GGUF, RoundTripEveryMetadataTypeAndTensorType) {
  for (uint32_t alignment : {32u, 64u, 8u}) {
    SCOPED_TRACE(alignment);
    TempDir dir;
    const std::string path = dir.file("m.gguf");
    write_model(path, alignment);
    auto f = GGUFFile::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->file()->size() % alignment, 0u);

    const auto want = all_metadata();
    const auto& got = f->metadata();
    // A non-default alignment is recorded as general.alignment after the caller's keys.
    ASSERT_EQ(got.size(), want.size() + (alignment != 32 ? 1 : 0));
    for (size_t k = 0; k < want.size(); ++k) {
      EXPECT_EQ(got[k].first, want[k].first);
      expect_same_value(want[k].second, got[k].second, want[k].first);
    }
    if (alignment != 32) {
      EXPECT_EQ(f->get_uint("general.alignment"), alignment);
    }

    const auto raws = raw_tensors();
    ASSERT_EQ(f->tensors().size(), raws.size());
    for (size_t k = 0; k < raws.size(); ++k) {
      const TensorInfo& t = f->tensors()[k];
      SCOPED_TRACE(t.name);
      EXPECT_EQ(t.name, raws[k].name);
      EXPECT_EQ(t.type, raws[k].type);
      EXPECT_EQ(t.shape, raws[k].shape);
      ASSERT_EQ(t.nbytes, raws[k].bytes.size());
      EXPECT_EQ(std::memcmp(t.data, raws[k].bytes.data(), t.nbytes), 0);
      const size_t at = static_cast<const uint8_t*>(t.data) - f->file()->data();
      EXPECT_EQ(at % alignment, 0u);
      EXPECT_EQ(f->find_tensor(t.name), &t);
    }
    EXPECT_EQ(f->find_tensor("nope"), nullptr);
  }
}

TEST(GGUF, TypedAccessors) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_model(path, 32);
  auto f = GGUFFile::open(path);
  EXPECT_EQ(f->get_uint("t.u8"), 255u);
  EXPECT_EQ(f->get_uint("t.u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f->get_int("t.i8"), -128);
  EXPECT_EQ(f->get_int("t.u32"), 4000000000LL);
  EXPECT_EQ(f->get_float("t.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(f->get_float("t.i16"), -32768.0);
  EXPECT_EQ(f->get_bool("t.bool"), true);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_uint("missing"), std::nullopt);
  EXPECT_EQ(f->get_str_array("missing"), nullptr);
  ASSERT_NE(f->get_str_array("a.str"), nullptr);
  EXPECT_EQ(f->get_str_array("a.str")->size(), 3u);
  ASSERT_NE(f->get_float_array("a.f64"), nullptr);
  EXPECT_EQ(f->get_float_array("a.f64")->at(1), -2.5);
  ASSERT_NE(f->get_int_array("a.u8"), nullptr);
  EXPECT_EQ(f->get_int_array("a.u8")->at(2), 255);
  // Mismatches are errors naming the file and key, never silent conversions.
  EXPECT_THROW(f->get_uint("t.i8"), Error);        // negative
  EXPECT_THROW(f->get_int("t.u64"), Error);        // too large
  EXPECT_THROW(f->get_uint("t.str"), Error);       // not an integer
  EXPECT_THROW(f->get_bool("t.u8"), Error);        // not a bool
  EXPECT_THROW(f->get_string("t.u32"), Error);     // not a string
  EXPECT_THROW(f->get_float("t.str"), Error);      // not a number
  EXPECT_THROW(f->get_str_array("a.i32"), Error);  // wrong element type
  EXPECT_THROW(f->get_int_array("t.i32"), Error);  // scalar, not an array
  EXPECT_THROW(f->get_float_array("a.nested"), Error);
  try {
    f->get_string("t.u32");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.u32"), std::string::npos) << e.what();
  }
}

TEST(GGUF, ValueToString) {
  EXPECT_EQ(GGUFValue::u64(std::numeric_limits<uint64_t>::max()).to_string(),
            "18446744073709551615");
  EXPECT_EQ(GGUFValue::f32(0.1f).to_string(), "0.1");
  EXPECT_EQ(GGUFValue::boolean(false).to_string(), "false");
  EXPECT_EQ(GGUFValue::str("a\"b\n").to_string(), "\"a\\\"b\\n\"");
  EXPECT_EQ(GGUFValue::i32_array({1, 2, 3}).to_string(), "[1, 2, 3]");
  EXPECT_EQ(GGUFValue::i32_array({1, 2, 3, 4, 5}).to_string(2), "[1, 2, ... +3 more]");
  EXPECT_EQ(GGUFValue::str_array({"x"}).to_string(), "[\"x\"]");
  EXPECT_EQ(nested({GGUFValue::i32_array({1}), GGUFValue::i32_array({})}).to_string(), "[[1], []]");
  EXPECT_EQ(GGUFValue::i32_array({1, 2}).array_size(), 2u);
  EXPECT_EQ(GGUFValue::u32(1).array_size(), 0u);
}

TEST(GGUF, WriterEnforcesDeclarationOrderAndSizes) {
  TempDir dir;
  const std::string path = dir.file("w.gguf");
  const std::string a(4 * 4, 'a'), b(2 * 2, 'b');
  {
    GGUFWriter w(path);
    w.add_tensor("a", DType::F32, {4});
    w.add_tensor("b", DType::F16, {2});
    EXPECT_THROW(w.write_tensor_data("a", a.data(), a.size()), Error);  // before the header
    w.write_header();
    EXPECT_THROW(w.add_tensor("c", DType::F32, {1}), Error);  // after the header
    EXPECT_THROW(w.set("k", GGUFValue::u32(1)), Error);
    EXPECT_THROW(w.write_tensor_data("b", b.data(), b.size()), Error);      // out of order
    EXPECT_THROW(w.write_tensor_data("a", a.data(), a.size() - 1), Error);  // wrong size
    w.write_tensor_data("a", a.data(), a.size());
    EXPECT_THROW(w.finish(), Error);  // "b" missing
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  // The abandoned writer left nothing behind: no file, no temp file.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path));

  GGUFWriter w(path);
  w.set("k", GGUFValue::u32(1));
  w.set("k", GGUFValue::str("replaced"));  // in place
  w.set("gone", GGUFValue::u32(2));
  w.remove("gone");
  w.add_tensor("a", DType::F32, {4});
  EXPECT_THROW(w.add_tensor("a", DType::F32, {4}), Error);       // duplicate
  EXPECT_THROW(w.add_tensor("q", DType::Q8_0, {2, 33}), Error);  // not whole blocks
  EXPECT_THROW(w.add_tensor("z", DType::F32, {2, 0}), Error);    // empty dim
  EXPECT_THROW(w.add_tensor("d5", DType::F32, {1, 1, 1, 1, 1}), Error);
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), DType::F32, {1}), Error);
  w.write_header();
  EXPECT_FALSE(std::filesystem::exists(path));  // nothing visible before finish()
  w.write_tensor_data("a", a.data(), a.size());
  EXPECT_THROW(w.write_tensor_data("a", a.data(), a.size()), Error);  // one too many
  w.finish();
  EXPECT_THROW(w.finish(), Error);
  auto f = GGUFFile::open(path);
  ASSERT_EQ(f->metadata().size(), 1u);
  EXPECT_EQ(f->get_string("k"), "replaced");
  ASSERT_EQ(f->tensors().size(), 1u);
}

TEST(GGUF, WriterRejectsBadAlignmentAndValues) {
  TempDir dir;
  EXPECT_THROW(GGUFWriter(dir.file("x.gguf"), 48), Error);
  EXPECT_THROW(GGUFWriter(dir.file("x.gguf"), 0), Error);
  {
    GGUFWriter w(dir.file("x.gguf"), 64);
    w.set("general.alignment", GGUFValue::u32(32));  // disagrees with the writer
    EXPECT_THROW(w.write_header(), Error);
  }
  {
    GGUFWriter w(dir.file("x.gguf"));
    w.set("v", scalar(GGUFType::UINT8, 256));  // does not fit
    EXPECT_THROW(w.finish(), Error);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

TEST(GGUF, ReadsVersion2) {
  Builder b;
  b.header(1, 1, 2).kv_u32("k", 7).tensor("t", {4}, 0, 0).pad(32).data(16);
  TempDir dir;
  write_bytes(dir.file("v2.gguf"), b.bytes);
  auto f = GGUFFile::open(dir.file("v2.gguf"));
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->get_uint("k"), 7u);
  EXPECT_EQ(f->tensors().at(0).shape, std::vector<int64_t>{4});
}

TEST(GGUF, ShapeIsReversedNe) {
  Builder b;
  b.header(1, 0).tensor("t", {3, 2, 5}, 0, 0).pad(32).data(3 * 2 * 5 * 4);
  TempDir dir;
  write_bytes(dir.file("s.gguf"), b.bytes);
  auto f = GGUFFile::open(dir.file("s.gguf"));
  EXPECT_EQ(f->tensors().at(0).shape, (std::vector<int64_t>{5, 2, 3}));
  EXPECT_EQ(f->tensors().at(0).nbytes, 120u);
}

TEST(GGUFBad, TruncatedAtEveryLength) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_model(path, 32);
  const std::string full = read_all(path);
  size_t end = 0;  // end of the last tensor's data: shorter files must all be rejected
  {
    auto f = GGUFFile::open(path);
    for (const TensorInfo& t : f->tensors()) {
      end = std::max(
          end,
          static_cast<size_t>(static_cast<const uint8_t*>(t.data) - f->file()->data()) + t.nbytes);
    }
  }
  ASSERT_GT(end, 500u);
  const std::string cut_path = dir.file("cut.gguf");
  for (size_t len = 0; len < end; ++len) {
    write_bytes(cut_path, full.substr(0, len));
    EXPECT_THROW(GGUFFile::open(cut_path), Error) << "cut at " << len;
  }
}

TEST(GGUFBad, BadMagic) {
  Builder b;
  b.header(0, 0);
  b.bytes[0] = 'X';
  expect_bad(b.bytes, "bad magic");
  expect_bad("", "bad magic");
  expect_bad("GG", "bad magic");
}

TEST(GGUFBad, BadVersion) {
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    Builder b;
    b.header(0, 0, v);
    expect_bad(b.bytes, "version " + std::to_string(v));
  }
  Builder be;
  be.header(0, 0, 0x03000000);
  expect_bad(be.bytes, "big-endian");
}

TEST(GGUFBad, HugeStringLength) {
  Builder b;
  b.header(0, 1).u64(uint64_t{1} << 60).data(16);  // key claims 2^60 bytes
  expect_bad(b.bytes, "key length 1152921504606846976 exceeds");
  Builder v;
  v.header(0, 1).str("k").u32(static_cast<uint32_t>(GGUFType::STRING)).u64(~uint64_t{0});
  expect_bad(v.bytes, "string length");
}

TEST(GGUFBad, HugeArrayCount) {
  for (GGUFType elem : {GGUFType::UINT8, GGUFType::STRING, GGUFType::ARRAY, GGUFType::UINT64}) {
    Builder b;
    b.header(0, 1).str("a").u32(static_cast<uint32_t>(GGUFType::ARRAY));
    b.u32(static_cast<uint32_t>(elem)).u64(uint64_t{1} << 60).data(64);
    expect_bad(b.bytes, "array element count 1152921504606846976 cannot fit");
  }
}

TEST(GGUFBad, HugeKeyValueAndTensorCounts) {
  Builder kv;
  kv.header(0, uint64_t{1} << 60);
  expect_bad(kv.bytes, "metadata key-value count");
  Builder t;
  t.header(uint64_t{1} << 60, 0).data(256);
  expect_bad(t.bytes, "tensor count 1152921504606846976 cannot fit");
}

TEST(GGUFBad, NDims5) {
  Builder b;
  b.header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad(32).data(32);
  expect_bad(b.bytes, "n_dims 5 is not in 1..4");
  Builder z;
  z.header(1, 0).tensor("t", {}, 0, 0).pad(32).data(32);
  expect_bad(z.bytes, "n_dims 0 is not in 1..4");
}

TEST(GGUFBad, DimZero) {
  Builder b;
  b.header(1, 0).tensor("t", {4, 0}, 0, 0).pad(32).data(32);
  expect_bad(b.bytes, "dimension 1 is 0");
}

TEST(GGUFBad, ElementCountOverflow) {
  Builder b;
  b.header(1, 0).tensor("t", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0).pad(32).data(32);
  expect_bad(b.bytes, "element count overflows");
  Builder big;
  big.header(1, 0).tensor("t", {~uint64_t{0}}, 0, 0).pad(32).data(32);
  expect_bad(big.bytes, "element count overflows");
  Builder bytes;  // fits int64 elements, but not as F32 bytes
  bytes.header(1, 0).tensor("t", {uint64_t{1} << 62}, 0, 0).pad(32).data(32);
  expect_bad(bytes.bytes, "byte size overflows");
}

TEST(GGUFBad, UnknownTensorType) {
  for (uint32_t type : {4u, 31u, 1000u}) {
    Builder b;
    b.header(1, 0).tensor("t", {32}, type, 0).pad(32).data(256);
    expect_bad(b.bytes, "unknown tensor type " + std::to_string(type));
  }
  Builder kv;  // unknown metadata value type
  kv.header(0, 1).str("k").u32(13).u32(0);
  expect_bad(kv.bytes, "unknown metadata value type 13");
}

TEST(GGUFBad, InnermostDimNotWholeBlocks) {
  Builder b;
  b.header(1, 0).tensor("t", {48, 2}, static_cast<uint32_t>(DType::Q8_0), 0).pad(32).data(256);
  expect_bad(b.bytes, "not a multiple of Q8_0's block size 32");
}

TEST(GGUFBad, MisalignedOffset) {
  Builder b;
  b.header(2, 0).tensor("a", {4}, 0, 0).tensor("b", {4}, 0, 16).pad(32).data(64);
  expect_bad(b.bytes, "data offset 16 is not a multiple of the alignment 32");
}

TEST(GGUFBad, OffsetPastEnd) {
  Builder b;
  b.header(1, 0).tensor("t", {4}, 0, 64).pad(32).data(64);  // needs [64, 80) of a 64-byte section
  expect_bad(b.bytes, "extends past the end of the file");
  Builder wrap;  // offset + size wraps around 2^64
  wrap.header(1, 0).tensor("t", {64}, 0, ~uint64_t{0} - 31).pad(32).data(64);
  expect_bad(wrap.bytes, "extends past the end of the file");
  Builder tail;  // data section one byte short
  tail.header(1, 0).tensor("t", {4}, 0, 0).pad(32).data(15);
  expect_bad(tail.bytes, "extends past the end of the file");
}

TEST(GGUFBad, OverlappingTensors) {
  Builder b;
  b.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {4}, 0, 32).pad(32).data(128);
  expect_bad(b.bytes, "tensors 'a' and 'b' overlap");
  Builder same;
  same.header(2, 0).tensor("a", {4}, 0, 0).tensor("b", {4}, 0, 0).pad(32).data(64);
  expect_bad(same.bytes, "overlap");
}

TEST(GGUFBad, NonPowerOfTwoAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 0x80000001u}) {
    Builder b;
    b.header(0, 1).kv_u32("general.alignment", a);
    expect_bad(b.bytes,
               "general.alignment " + std::to_string(a) + " is not a nonzero power of two");
  }
  Builder s;
  s.header(0, 1).str("general.alignment").u32(static_cast<uint32_t>(GGUFType::STRING)).str("32");
  expect_bad(s.bytes, "general.alignment has type STRING");
}

TEST(GGUFBad, DuplicateKeysAndNames) {
  Builder k;
  k.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  expect_bad(k.bytes, "duplicate metadata key 'k'");
  Builder t;
  t.header(2, 0).tensor("a", {4}, 0, 0).tensor("a", {4}, 0, 32).pad(32).data(64);
  expect_bad(t.bytes, "duplicate tensor name 'a'");
}

TEST(GGUFBad, InvalidBoolAndDeepNesting) {
  Builder b;
  b.header(0, 1).str("b").u32(static_cast<uint32_t>(GGUFType::BOOL)).put<uint8_t>(2);
  expect_bad(b.bytes, "invalid BOOL value 2");
  // 100k nested one-element arrays: must be rejected without exhausting the stack.
  Builder deep;
  deep.header(0, 1).str("d").u32(static_cast<uint32_t>(GGUFType::ARRAY));
  for (int k = 0; k < 100000; ++k) deep.u32(static_cast<uint32_t>(GGUFType::ARRAY)).u64(1);
  deep.u32(static_cast<uint32_t>(GGUFType::UINT8)).u64(0);
  expect_bad(deep.bytes, "nested deeper than");
}

TEST(GGUFBad, ControlCharactersInNamesStayOnOneLine) {
  Builder b;
  b.header(2, 0).tensor("a\nb", {4}, 0, 0).tensor("a\nb", {4}, 0, 32).pad(32).data(64);
  expect_bad(b.bytes, "duplicate tensor name 'a\\nb'");
}

}  // namespace
}  // namespace squish
