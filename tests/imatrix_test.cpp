// Importance-matrix files (llama.cpp's GGUF and legacy .dat forms): round trip, means, bad input.
#include <gtest/gtest.h>

#include <cstring>

#include "formats/gguf.h"
#include "quant/imatrix.h"
#include "test_util.h"

namespace squish {
namespace {

std::string legacy_bytes(const std::string& name, int32_t ncall, const std::vector<float>& v,
                         bool trailer) {
  std::string b;
  auto put = [&](const void* p, size_t n) { b.append(static_cast<const char*>(p), n); };
  const int32_t n_entries = 1, len = static_cast<int32_t>(name.size()),
                nval = static_cast<int32_t>(v.size());
  put(&n_entries, 4);
  put(&len, 4);
  put(name.data(), name.size());
  put(&ncall, 4);
  put(&nval, 4);
  put(v.data(), v.size() * 4);
  if (trailer) {
    const int32_t chunks = 7, dlen = 4;
    put(&chunks, 4);
    put(&dlen, 4);
    put("wiki", 4);
  }
  return b;
}

TEST(Imatrix, GgufRoundTripAndMeans) {
  Imatrix m;
  m.datasets = {"calib.txt"};
  m.chunk_count = 3;
  m.chunk_size = 512;
  m.entries["blk.0.attn_q.weight"] = {{2.0f, 4.0f, 6.0f, 8.0f}, {2.0f}};
  m.entries["blk.0.ffn_down.weight"] = {{1.0f, 1.0f}, {0.0f}};  // never seen: importance 1
  test::TempDir tmp;
  write_imatrix(tmp.file("im.gguf"), m);
  Imatrix r = read_imatrix(tmp.file("im.gguf"));
  EXPECT_FALSE(r.legacy);
  EXPECT_EQ(r.datasets, m.datasets);
  EXPECT_EQ(r.chunk_count, 3);
  EXPECT_EQ(r.chunk_size, 512);
  EXPECT_EQ(r.importance("blk.0.attn_q.weight"), (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
  EXPECT_EQ(r.importance("blk.0.ffn_down.weight"), (std::vector<float>{1.0f, 1.0f}));
  EXPECT_TRUE(r.importance("missing.weight").empty());
}

TEST(Imatrix, LegacyFormat) {
  test::TempDir tmp;
  test::write_bytes(tmp.file("im.dat"), legacy_bytes("output.weight", 4, {8.0f, 12.0f}, true));
  Imatrix r = read_imatrix(tmp.file("im.dat"));
  EXPECT_TRUE(r.legacy);
  EXPECT_EQ(r.chunk_count, 7);
  ASSERT_EQ(r.datasets.size(), 1u);
  EXPECT_EQ(r.datasets[0], "wiki");
  EXPECT_EQ(r.importance("output.weight"), (std::vector<float>{2.0f, 3.0f}));
}

TEST(Imatrix, BadInputIsAOneLineError) {
  const std::string good = legacy_bytes("output.weight", 4, {8.0f, 12.0f}, false);
  auto open = [](const std::string& path) { read_imatrix(path); };
  for (size_t cut : {size_t{0}, size_t{3}, size_t{6}, size_t{20}, good.size() - 1}) {
    test::expect_open_error(good.substr(0, cut), "im.dat", "", open);
  }
  std::string huge = good;
  const int32_t nval = 1 << 30;
  std::memcpy(&huge[4 + 4 + 13 + 4], &nval, 4);
  test::expect_open_error(huge, "im.dat", "value count", open);
  const int32_t zero = 0;
  std::string empty(4, '\0');
  std::memcpy(empty.data(), &zero, 4);
  test::expect_open_error(empty, "im.dat", "no entries", open);

  // GGUF without the matching .counts tensor.
  test::TempDir tmp;
  {
    GGUFWriter w(tmp.file("bad.gguf"));
    w.add_tensor("blk.0.attn_q.weight.in_sum2", DType::F32, {1, 4});
    w.write_header();
    const float v[4] = {1, 2, 3, 4};
    w.write_tensor_data("blk.0.attn_q.weight.in_sum2", v, sizeof(v));
    w.finish();
  }
  test::expect_open_error(test::read_bytes(tmp.file("bad.gguf")), "im.gguf", ".counts", open);
}

}  // namespace
}  // namespace squish
