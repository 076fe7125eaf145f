#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "test_util.h"

namespace squish {
namespace {

using test::TempDir;
using test::write_bytes;

// A safetensors file: little-endian header length, header JSON, then the data section.
std::string st_bytes(const std::string& header, const std::string& data,
                     uint64_t len_override = 0) {
  const uint64_t len = len_override ? len_override : header.size();
  std::string out(reinterpret_cast<const char*>(&len), 8);
  return out + header + data;
}

void write_st(const std::string& path, const std::string& header, const std::string& data) {
  write_bytes(path, st_bytes(header, data));
}

void expect_bad(const std::string& bytes, const std::string& needle) {
  test::expect_open_error(bytes, "bad.safetensors", needle,
                          [](const std::string& path) { open_safetensors(path); });
}

void expect_bad_header(const std::string& header, const std::string& data,
                       const std::string& needle) {
  expect_bad(st_bytes(header, data), needle);
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t k = 0; k < n; ++k) s[k] = static_cast<char>(k * 7 + 3);
  return s;
}

// Three tensors deliberately not in alphabetical order, header padded with spaces as the
// reference writer does.
const char* kGoodHeader = R"({"zeta":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                          R"("__metadata__":{"format":"pt","note":"h\u00e9"},)"
                          R"("alpha":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},)"
                          R"("mid":{"dtype":"BF16","shape":[],"data_offsets":[32,34]},)"
                          R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[34,34]}}      )";

TEST(Safetensors, SyntheticFile) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  const std::string data = pattern(34);
  write_st(path, kGoodHeader, data);
  const SafetensorsSet set = open_safetensors(path);
  ASSERT_EQ(set.files.size(), 1u);
  ASSERT_EQ(set.tensors.size(), 4u);
  EXPECT_EQ(set.tensors[0].name, "zeta");  // header order, not sorted
  EXPECT_EQ(set.tensors[1].name, "alpha");
  EXPECT_EQ(set.tensors[2].name, "mid");
  EXPECT_EQ(set.tensors[3].name, "empty");
  EXPECT_EQ(set.metadata.at("format"), "pt");
  EXPECT_EQ(set.metadata.at("note"), "h\xc3\xa9");

  const TensorInfo* z = set.find("zeta");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->type, DType::F32);
  EXPECT_EQ(z->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(z->nbytes, 24u);
  const uint8_t* data_start = set.files[0]->data() + 8 + std::strlen(kGoodHeader);
  EXPECT_EQ(z->data, data_start);
  EXPECT_EQ(std::memcmp(z->data, data.data(), 24), 0);
  const TensorInfo* a = set.find("alpha");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, DType::F16);
  EXPECT_EQ(a->data, data_start + 24);
  const TensorInfo* m = set.find("mid");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->type, DType::BF16);
  EXPECT_TRUE(m->shape.empty());
  EXPECT_EQ(m->nbytes, 2u);
  EXPECT_EQ(set.find("empty")->nbytes, 0u);
  EXPECT_EQ(set.find("missing"), nullptr);
}

TEST(Safetensors, RealModelFolder) {
  const std::string folder = test::shared_path("models/gcide-llama-16M");
  const SafetensorsSet set = open_safetensors(folder);
  ASSERT_EQ(set.files.size(), 1u);
  EXPECT_EQ(set.tensors.size(), 57u);  // 6 layers x 9 + embeddings + final norm + lm_head
  const TensorInfo* emb = set.find("model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, DType::BF16);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{8192, 384}));
  EXPECT_EQ(emb->nbytes, 8192u * 384u * 2u);
  const TensorInfo* k = set.find("model.layers.5.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{128, 384}));  // 2 KV heads x 64
  EXPECT_EQ(set.metadata.at("format"), "pt");
  // Every byte of the data section is used by exactly one tensor.
  size_t total = 0;
  for (const TensorInfo& t : set.tensors) total += t.nbytes;
  const size_t header_len = static_cast<const uint8_t*>(set.tensors[0].data) -
                            set.files[0]->data();  // lm_head.weight is at offset 0
  EXPECT_EQ(total + header_len, set.files[0]->size());

  // Opening the file directly gives the same tensors.
  const SafetensorsSet direct = open_safetensors(folder + "/model.safetensors");
  ASSERT_EQ(direct.tensors.size(), set.tensors.size());
  for (size_t i = 0; i < set.tensors.size(); ++i) {
    EXPECT_EQ(direct.tensors[i].name, set.tensors[i].name);
    EXPECT_EQ(direct.tensors[i].nbytes, set.tensors[i].nbytes);
  }
}

TEST(Safetensors, ShardedFolderViaIndex) {
  TempDir dir;
  write_st(
      dir.file("model-00001-of-00002.safetensors"),
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]}})",
      pattern(16));
  write_st(dir.file("model-00002-of-00002.safetensors"),
           R"({"c":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})", pattern(6));
  write_bytes(
      dir.file("model.safetensors.index.json"),
      R"({"metadata":{"total_size":22},"weight_map":{"c":"model-00002-of-00002.safetensors",)"
      R"("a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})");
  // A stray file that the index does not name must not be opened.
  write_st(dir.file("model.safetensors"), "{}", "");
  const SafetensorsSet set = open_safetensors(dir.path.string());
  ASSERT_EQ(set.files.size(), 2u);  // each shard opened once
  ASSERT_EQ(set.tensors.size(), 3u);
  EXPECT_EQ(set.tensors[0].name, "a");
  EXPECT_EQ(set.tensors[1].name, "b");
  EXPECT_EQ(set.tensors[2].name, "c");
  EXPECT_EQ(set.find("c")->type, DType::F16);
  EXPECT_EQ(set.find("c")->data, set.files[1]->data() + set.files[1]->size() - 6);
  EXPECT_EQ(set.metadata.at("format"), "pt");
}

TEST(SafetensorsBad, IndexProblems) {
  TempDir dir;
  write_st(dir.file("s1.safetensors"), R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
           pattern(4));
  write_st(dir.file("s2.safetensors"), R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
           pattern(4));
  const std::string index = dir.file("model.safetensors.index.json");
  auto expect_index_error = [&](const std::string& json, const std::string& needle) {
    write_bytes(index, json);
    try {
      open_safetensors(dir.path.string());
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_index_error(R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})",
                     "tensor 'b' is listed in weight_map but missing from s1.safetensors");
  expect_index_error(R"({"weight_map":{"a":"s1.safetensors","x":"s2.safetensors"}})",
                     "tensor 'a' appears in both s1.safetensors and s2.safetensors");
  expect_index_error(R"({"weight_map":{"a":"../s1.safetensors"}})", "not a plain file name");
  expect_index_error(R"({"weight_map":{"a":"gone.safetensors"}})", "gone.safetensors: cannot open");
  expect_index_error(R"({"nothing":1})", "no \"weight_map\" object");
  expect_index_error(R"({"weight_map":)", "invalid JSON");
}

TEST(SafetensorsBad, FolderWithoutModel) {
  TempDir dir;
  try {
    open_safetensors(dir.path.string());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(dir.path.string() + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("no model.safetensors.index.json"), std::string::npos);
  }
  // One file under another name is taken; two are ambiguous.
  write_st(dir.file("weights.safetensors"), "{}", "");
  EXPECT_TRUE(open_safetensors(dir.path.string()).tensors.empty());
  write_st(dir.file("other.safetensors"), "{}", "");
  EXPECT_THROW(open_safetensors(dir.path.string()), Error);
  EXPECT_THROW(open_safetensors(dir.file("does-not-exist")), Error);
}

TEST(SafetensorsBad, HeaderLength2GB) {
  expect_bad(st_bytes("{}", "", uint64_t{2} << 30), "header length 2147483648 exceeds the 100 MiB");
  expect_bad(st_bytes("{}", "", ~uint64_t{0}), "exceeds the 100 MiB");
}

TEST(SafetensorsBad, HeaderLengthPastFile) {
  expect_bad(st_bytes("{}", "", 1000), "header length 1000 exceeds the 2 bytes");
  expect_bad("abc", "too small");
}

TEST(SafetensorsBad, TruncatedAtEveryLength) {
  const std::string full = st_bytes(kGoodHeader, pattern(34));
  TempDir dir;
  const std::string path = dir.file("cut.safetensors");
  for (size_t len = 0; len < full.size(); ++len) {
    // Cuts inside the trailing header padding still leave valid JSON but then the
    // last byte of data goes missing, so every cut must fail.
    write_bytes(path, full.substr(0, len));
    EXPECT_THROW(open_safetensors(path), Error) << "cut at " << len;
  }
}

TEST(SafetensorsBad, InvalidJson) {
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", pattern(4),
                    "invalid JSON in header");
  expect_bad_header("[1,2]", "", "header is not a JSON object");
  expect_bad_header(R"({"a":5})", "", "entry for tensor 'a' is not an object");
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    pattern(8), "duplicate key 'a'");
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", pattern(4),
                    "not a non-negative integer");
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", pattern(4),
                    "no \"data_offsets\" pair");
  expect_bad_header(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", pattern(4),
                    "no string \"dtype\"");
  expect_bad_header(R"({"__metadata__":{"k":1}})", "",
                    "__metadata__ value for 'k' is not a string");
}

TEST(SafetensorsBad, NonUtf8Header) {
  expect_bad_header("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    pattern(4), "header is not valid UTF-8 (byte 3");
  // Overlong encoding of '/' and a lone surrogate are not UTF-8 either.
  expect_bad_header("{\"\xc0\xaf\":1}", "", "not valid UTF-8");
  expect_bad_header("{\"\xed\xa0\x80\":1}", "", "not valid UTF-8");
}

TEST(SafetensorsBad, OffsetsPastEnd) {
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", pattern(4),
                    "data_offsets [0, 8] extend past the 4-byte data section");
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", pattern(8),
                    "are reversed");
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})",
                    pattern(4), "extend past");
}

TEST(SafetensorsBad, Overlap) {
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    pattern(12), "tensors 'a' and 'b' overlap");
  expect_bad_header(R"({"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},)"
                    R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                    pattern(8), "tensors 'a' and 'b' overlap");
}

TEST(SafetensorsBad, SizeMismatch) {
  expect_bad_header(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", pattern(8),
                    "tensor 'a' BF16 [3] needs 6 bytes but data_offsets [0, 8] span 8");
  expect_bad_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                    pattern(8), "element count overflows");
}

TEST(SafetensorsBad, UnknownDtype) {
  expect_bad_header(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", pattern(1),
                    "unsupported dtype F8_E4M3 for tensor 'w'");
  expect_bad_header(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", pattern(8),
                    "unsupported dtype I64 for tensor 'w'");
}

}  // namespace
}  // namespace squish
