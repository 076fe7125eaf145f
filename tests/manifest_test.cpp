// Model manifests: what squish records in every model it writes (squish.* GGUF keys and the
// <model>.manifest.json sidecar), that both forms round-trip, that `squish info` shows them, that
// quality is recorded atomically, that hostile sidecars give one-line errors, and that llama.cpp
// sees the keys as ordinary metadata.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "export/gguf_export.h"
#include "export/manifest.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/mix.h"
#include "test_util.h"

namespace squish {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string fixture(const std::string& name) {
  return test::data_path("fixtures/" + name);
}

using test::CmdResult;
using test::run_squish;

// A manifest with every optional part filled, as a quantize with an imatrix would write it.
Manifest full_manifest() {
  Manifest m;
  m.tool_version = "9.8.7";
  m.tool_commit = "0123456789ab";
  m.created = "2025-02-03T04:05:06Z";
  m.source_path = "models/My Model";
  m.source_format = "huggingface";
  m.source_architecture = "llama";
  m.source_sha256 = std::string(64, 'a');
  m.source_files = {{"model-00001-of-00002.safetensors", 100},
                    {"model-00002-of-00002.safetensors", 7}};
  m.parameters = 123456789012ull;
  m.method.command = "quantize";
  m.method.type = "Q4_K_M";
  m.method.algorithm = "imatrix";
  m.method.pure = true;
  m.method.tensor_type_overrides = {"attn_v=Q8_0", "ffn_(up|gate)=Q5_K", "a,b=\"Q6_K\""};
  m.method.output_tensor_type = "Q8_0";
  m.method.token_embedding_type = "Q6_K";
  m.method.calibration_files = {"calib-a.txt", "calib b.jsonl"};
  m.method.parameters = {{"damp", 0.01}, {"act_order", true}, {"block_size", 128}};
  m.calibration_sha256 = std::string(64, 'c');
  m.imatrix = ManifestImatrix{"im.gguf", std::string(64, 'b'), {"calib.txt"}, 100, 512, 154};
  m.file_name = "out.gguf";
  m.file_bytes = 4096;
  m.weight_bytes = 3000;
  m.bits_per_weight = 4.5;
  m.type_counts = {{"F32", 2}, {"Q4_K", 1}};
  m.tensors = {
      {"a.weight", "Q4_K", {256, 256}, 36864}, {"n", "F32", {4}, 16}, {"r", "F32", {2}, 8}};
  m.quality = {{"eval", {{"kld_mean", 0.01}}}};
  return m;
}

TEST(Manifest, Sha256MatchesKnownVectorsAndConcatenation) {
  EXPECT_EQ(sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  test::TempDir tmp;
  test::write_bytes(tmp.file("1"), "hello ");
  test::write_bytes(tmp.file("2"), "world");
  EXPECT_EQ(sha256_files({tmp.file("1"), tmp.file("2")}), sha256_hex("hello world", 11));
  try {
    sha256_files({tmp.file("missing")});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(tmp.file("missing")), std::string::npos) << e.what();
  }
}

TEST(Manifest, JsonRoundTrip) {
  const Manifest m = full_manifest();
  EXPECT_EQ(manifest_from_json(manifest_to_json(m), "x"), m);
  Manifest bare;  // nothing optional: commit, imatrix, calibration, overrides empty
  bare.created = "2025-01-01T00:00:00Z";
  const json j = manifest_to_json(bare);
  EXPECT_TRUE(j["tool"]["commit"].is_null());
  EXPECT_TRUE(j["method"]["imatrix"].is_null());
  EXPECT_TRUE(j["quality"].is_object() && j["quality"].empty());
  EXPECT_EQ(manifest_from_json(j, "x"), bare);
}

TEST(Manifest, GgufKeysRoundTripAsScalars) {
  const Manifest m = full_manifest();
  test::TempDir tmp;
  const std::string path = tmp.file("m.gguf");
  {
    GGUFWriter w(path);
    manifest_to_gguf(m, w);
    w.add_tensor("a.weight", DType::F32, {2, 2});
    w.write_header();
    const float data[4] = {1, 2, 3, 4};
    w.write_tensor_data("a.weight", data, sizeof data);
    w.finish();
  }
  auto g = GGUFFile::open(path);
  int n_keys = 0;
  for (const auto& [key, value] : g->metadata()) {
    if (!key.starts_with("squish.")) continue;
    ++n_keys;
    // llama.cpp's llama_model_meta_* API skips arrays: every key must be a scalar.
    EXPECT_FALSE(value.is_array()) << key;
  }
  EXPECT_GE(n_keys, 25);
  EXPECT_EQ(*g->get_string("squish.source.sha256"), m.source_sha256);
  EXPECT_EQ(*g->get_string("squish.method.type"), "Q4_K_M");
  const auto r = manifest_from_gguf(*g);
  ASSERT_TRUE(r.has_value());
  // Everything but what only the sidecar holds (quality) or the file itself defines.
  Manifest expect = m;
  expect.quality = json::object();
  expect.file_bytes = fs::file_size(path);
  expect.tensors = {{"a.weight", "F32", {2, 2}, 16}};
  EXPECT_EQ(*r, expect);

  // A file without squish keys has no manifest.
  const std::string plain = tmp.file("plain.gguf");
  GGUFWriter w(plain);
  w.set("general.name", GGUFValue::str("x"));
  w.write_header();
  w.finish();
  EXPECT_FALSE(manifest_from_gguf(*GGUFFile::open(plain)).has_value());
}

// Export writes the keys into the model and the sidecar after it; both describe the same file.
TEST(Manifest, ExportWritesKeysAndSidecar) {
  auto model = load_model(fixture("llama"));
  test::TempDir tmp;
  // An imatrix made by a squish calibration step may carry the calibration text's hash.
  Imatrix im;
  im.datasets = {"calib.txt"};
  im.chunk_count = 3;
  im.chunk_size = 64;
  im.entries["blk.0.attn_q.weight"] = {std::vector<float>(64, 2.0f), {3.0f}};
  write_imatrix(tmp.file("im.gguf"), im);

  QuantPlanOptions po;
  po.mix = *find_quant_mix("Q8_0");
  po.overrides.push_back(parse_tensor_type_override("attn_v=Q4_0"));
  GGUFExportOptions eo;
  eo.plan = plan_quantization(*model, po);
  eo.file_type = po.mix.file_type;
  eo.imatrix = &im;
  eo.method.type = "Q8_0";
  eo.method.tensor_type_overrides = {"attn_v=Q4_0"};
  eo.method.imatrix_path = tmp.file("im.gguf");
  test::write_bytes(tmp.file("calib1.txt"), "first calibration text\n");
  test::write_bytes(tmp.file("calib2.txt"), "second\n");
  eo.method.calibration_files = {tmp.file("calib1.txt"), tmp.file("calib2.txt")};
  const std::string out = tmp.file("out.gguf");
  setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  export_gguf(*model, out, eo);
  unsetenv("SOURCE_DATE_EPOCH");

  const ModelManifest mm = load_model_manifest(out);
  ASSERT_TRUE(mm.from_gguf && mm.from_sidecar);
  EXPECT_EQ(mm.mismatch, "");
  const Manifest& side = *mm.from_sidecar;
  EXPECT_EQ(side.created, "2023-11-14T22:13:20Z");
  EXPECT_EQ(side.tool_version, SQUISH_VERSION);
  EXPECT_EQ(side.source_format, "huggingface");
  EXPECT_EQ(side.source_architecture, "llama");
  EXPECT_EQ(side.source_sha256,
            sha256_files({fixture("llama") + "/model.safetensors"}));  // the only weight file
  ASSERT_EQ(side.source_files.size(), 1u);
  EXPECT_EQ(side.source_files[0].name, "model.safetensors");
  EXPECT_EQ(side.method.command, "quantize");
  EXPECT_EQ(side.method.algorithm, "imatrix");
  ASSERT_TRUE(side.imatrix.has_value());
  EXPECT_EQ(side.imatrix->sha256, sha256_files({tmp.file("im.gguf")}));
  EXPECT_EQ(side.imatrix->chunk_count, 3u);
  EXPECT_EQ(side.imatrix->chunk_size, 64u);
  EXPECT_EQ(side.imatrix->entries, 1u);
  EXPECT_EQ(side.imatrix->datasets, std::vector<std::string>{"calib.txt"});
  EXPECT_EQ(side.method.calibration_files, eo.method.calibration_files);
  EXPECT_EQ(side.calibration_sha256, sha256_hex("first calibration text\nsecond\n", 30));
  EXPECT_EQ(side.file_bytes, fs::file_size(out));
  EXPECT_EQ(side.file_name, "out.gguf");
  EXPECT_TRUE(side.quality.empty());
  EXPECT_GT(side.type_counts.at("Q4_0"), 0u);  // the override took effect and is counted
  EXPECT_GT(side.type_counts.at("Q8_0"), 0u);
  // The sidecar's tensor list is the file's, in file order (rope_freqs.weight included).
  auto g = GGUFFile::open(out);
  ASSERT_EQ(side.tensors.size(), g->tensors().size());
  uint64_t bytes = 0;
  for (size_t i = 0; i < side.tensors.size(); ++i) {
    EXPECT_EQ(side.tensors[i].name, g->tensors()[i].name);
    EXPECT_EQ(side.tensors[i].type, dtype_name(g->tensors()[i].type));
    EXPECT_EQ(side.tensors[i].bytes, g->tensors()[i].nbytes);
    bytes += g->tensors()[i].nbytes;
  }
  EXPECT_EQ(side.weight_bytes, bytes);
  // The GGUF keys say the same (bits per weight is an f32 there).
  Manifest keys = *mm.from_gguf;
  EXPECT_NEAR(keys.bits_per_weight, side.bits_per_weight, 1e-6);
  keys.bits_per_weight = side.bits_per_weight;
  EXPECT_EQ(keys, side);

  // Same inputs, same SOURCE_DATE_EPOCH: byte-identical model and sidecar.
  test::TempDir tmp2;
  const std::string again = tmp2.file("out.gguf");
  setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  export_gguf(*model, again, eo);
  unsetenv("SOURCE_DATE_EPOCH");
  EXPECT_TRUE(test::read_bytes(again) == test::read_bytes(out));
  EXPECT_TRUE(test::read_bytes(sidecar_path(again)) == test::read_bytes(sidecar_path(out)));
}

TEST(Manifest, FloatConvertDerivesTheMethod) {
  auto model = load_model(fixture("qwen2"));
  test::TempDir tmp;
  GGUFExportOptions eo;
  eo.type = DType::BF16;
  export_gguf(*model, tmp.file("m.gguf"), eo);
  auto side = read_sidecar(tmp.file("m.gguf"));
  ASSERT_TRUE(side.has_value());
  EXPECT_EQ(side->method.command, "convert");
  EXPECT_EQ(side->method.type, "BF16");
  EXPECT_EQ(side->method.algorithm, "cast");
  EXPECT_FALSE(side->imatrix.has_value());
  EXPECT_EQ(side->source_architecture, "qwen2");
}

TEST(Manifest, RecordQualityMergesAtomically) {
  auto model = load_model(fixture("llama"));
  test::TempDir tmp;
  const std::string out = tmp.file("m.gguf");
  GGUFExportOptions eo;
  eo.type = DType::F16;
  export_gguf(*model, out, eo);

  record_quality(out, {{"eval", {{"ppl", 12.5}, {"base", "x"}}}});
  record_quality(out, {{"speed", {{"tg", 100}}}});
  record_quality(out, {{"eval", {{"ppl", 11.0}}}});  // replaces the earlier eval entry
  const auto m = read_sidecar(out);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->quality, (json{{"eval", {{"ppl", 11.0}}}, {"speed", {{"tg", 100}}}}));
  for (const auto& e : fs::directory_iterator(tmp.path))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "temp file left";

  // The sidecar can be recreated from the GGUF keys.
  fs::remove(sidecar_path(out));
  record_quality(out, {{"eval", {{"ppl", 10.0}}}});
  const auto rebuilt = read_sidecar(out);
  ASSERT_TRUE(rebuilt.has_value());
  EXPECT_EQ(rebuilt->quality, (json{{"eval", {{"ppl", 10.0}}}}));
  EXPECT_EQ(rebuilt->method.type, "F16");

  EXPECT_THROW(record_quality(out, json::array({1, 2})), Error);
}

TEST(Manifest, ConcurrentRecordersLoseNothing) {
  auto model = load_model(fixture("llama"));
  test::TempDir tmp;
  const std::string out = tmp.file("m.gguf");
  GGUFExportOptions eo;
  eo.type = DType::F16;
  export_gguf(*model, out, eo);
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 5; ++k) record_quality(out, {{fmt::format("r{}_{}", t, k), t * 10 + k}});
    });
  }
  for (std::thread& th : threads) th.join();
  const auto m = read_sidecar(out);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->quality.size(), 30u);
  EXPECT_EQ(m->quality["r5_4"], 54);
}

TEST(Manifest, RecordQualityRefusesForeignModels) {
  test::TempDir tmp;
  // A GGUF squish did not write: no keys, no sidecar.
  const std::string plain = tmp.file("plain.gguf");
  {
    GGUFWriter w(plain);
    w.write_header();
    w.finish();
  }
  try {
    record_quality(plain, {{"x", 1}});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no squish manifest"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(sidecar_path(plain)));

  // A sidecar copied next to another squish model is detected, not overwritten.
  auto model = load_model(fixture("llama"));
  GGUFExportOptions eo;
  eo.type = DType::F16;
  export_gguf(*model, tmp.file("a.gguf"), eo);
  eo.type = DType::F32;
  export_gguf(*model, tmp.file("b.gguf"), eo);
  fs::copy_file(sidecar_path(tmp.file("a.gguf")), sidecar_path(tmp.file("b.gguf")),
                fs::copy_options::overwrite_existing);
  const std::string before = test::read_bytes(sidecar_path(tmp.file("b.gguf")));
  EXPECT_FALSE(load_model_manifest(tmp.file("b.gguf")).mismatch.empty());
  EXPECT_THROW(record_quality(tmp.file("b.gguf"), {{"x", 1}}), Error);
  EXPECT_EQ(test::read_bytes(sidecar_path(tmp.file("b.gguf"))), before);
}

// Every kind of broken sidecar: one line naming the sidecar and the problem.
TEST(Manifest, HostileSidecarIsAOneLineError) {
  test::TempDir tmp;
  const std::string model = tmp.file("m.gguf");
  test::write_bytes(model, "not a model");
  const std::string side = sidecar_path(model);
  json good = manifest_to_json(full_manifest());
  auto expect_error = [&](const std::string& bytes, const std::string& needle) {
    test::write_bytes(side, bytes);
    try {
      read_sidecar(model);
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(side + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  expect_error("{\"manifest_version\": 1, ", "not valid JSON");
  expect_error("\xff\xfe{}", "not valid UTF-8");
  expect_error(std::string(17u << 20, ' '), "larger than");  // no manifest is this big
  expect_error("[1, 2]", "not a squish manifest");
  json j = good;
  j["manifest_version"] = 99;
  expect_error(j.dump(), "manifest_version 99");
  j = good;
  j["source"]["sha256"] = 5;
  expect_error(j.dump(), "'source.sha256' must be a string");
  j = good;
  j["output"].erase("tensors");
  expect_error(j.dump(), "'output.tensors' is missing");
  j = good;
  j["output"]["tensors"][0]["shape"] = {1, -2};
  expect_error(j.dump(), "'output.tensors.shape'");
  j = good;
  j["quality"] = "great";
  expect_error(j.dump(), "'quality' must be an object");
  j = good;
  j["output"]["file_bytes"] = -1;
  expect_error(j.dump(), "'output.file_bytes' must be a non-negative integer");
}

TEST(Manifest, InfoShowsTheManifest) {
  test::TempDir tmp;
  const std::string out = tmp.file("q.gguf");
  CmdResult q = run_squish("quantize " + fixture("llama") +
                           " --type Q8_0 --tensor-type attn_v=Q4_0 -o " + out);
  ASSERT_EQ(q.exit_code, 0) << q.err;
  ASSERT_TRUE(fs::exists(sidecar_path(out)));
  record_quality(out, {{"eval", {{"ppl", 3.25}}}});

  CmdResult r = run_squish("info " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string hash = sha256_files({fixture("llama") + "/model.safetensors"});
  for (const std::string& needle :
       {std::string("made by:      squish " SQUISH_VERSION), "source:       " + fixture("llama"),
        "sha256 " + hash,
        std::string("method:       quantize Q8_0, rtn, --tensor-type attn_v=Q4_0"),
        std::string("bits per weight"), std::string("Q4_0 x"),
        std::string("quality:      eval: {\"ppl\":3.25}")}) {
    EXPECT_NE(r.out.find(needle), std::string::npos) << "missing '" << needle << "' in\n" << r.out;
  }

  CmdResult rj = run_squish("info --json " + out);
  ASSERT_EQ(rj.exit_code, 0) << rj.err;
  const json j = json::parse(rj.out);
  EXPECT_EQ(j["manifest"]["source"]["sha256"], hash);
  EXPECT_EQ(j["manifest"]["method"]["tensor_type_overrides"], json::array({"attn_v=Q4_0"}));
  EXPECT_EQ(j["manifest"]["quality"]["eval"]["ppl"], 3.25);
  EXPECT_EQ(j["manifest_sources"]["gguf_keys"], true);
  EXPECT_EQ(j["manifest"]["output"]["file_bytes"], fs::file_size(out));

  // Without the sidecar, the GGUF keys still tell the story (quality lives in the sidecar).
  fs::remove(sidecar_path(out));
  CmdResult keys_only = run_squish("info " + out);
  ASSERT_EQ(keys_only.exit_code, 0) << keys_only.err;
  EXPECT_NE(keys_only.out.find("sha256 " + hash), std::string::npos) << keys_only.out;
  EXPECT_NE(keys_only.out.find("not measured"), std::string::npos) << keys_only.out;

  // A broken sidecar: exit 1, one line naming it.
  test::write_bytes(sidecar_path(out), "{oops");
  CmdResult bad = run_squish("info " + out);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_NE(bad.err.find(sidecar_path(out) + ": not valid JSON"), std::string::npos) << bad.err;
}

// llama.cpp reads the squish.* keys as ordinary metadata (through libllama's llama_model_meta_*),
// with the values squish wrote. Peer set up by scripts/test.sh, as in interop_test.cpp.
TEST(ManifestInterop, LlamaCppSeesTheKeys) {
  const char* peer = std::getenv("SQUISH_LLAMA_LOGITS");
  if (peer == nullptr || *peer == '\0') {
    if (std::getenv("SQUISH_REQUIRE_PEER")) FAIL() << "SQUISH_LLAMA_LOGITS is not set";
    GTEST_SKIP() << "llama.cpp peer not set up (run scripts/test.sh)";
  }
  test::TempDir tmp;
  const std::string out = tmp.file("q.gguf");
  CmdResult q = run_squish("quantize " + test::shared_path("models/stories260K/stories260K.bin") +
                           " --type Q8_0 --tensor-type 'output=Q4_0' -o " + out);
  ASSERT_EQ(q.exit_code, 0) << q.err;
  const Manifest side = *read_sidecar(out);

  CmdResult meta = test::run_command(std::string(peer) + " meta " + out);
  ASSERT_EQ(meta.exit_code, 0) << meta.err;
  std::map<std::string, std::string> kv;
  size_t start = 0;
  while (start < meta.out.size()) {
    size_t end = meta.out.find('\n', start);
    if (end == std::string::npos) end = meta.out.size();
    const std::string line = meta.out.substr(start, end - start);
    if (auto tab = line.find('\t'); tab != std::string::npos)
      kv[line.substr(0, tab)] = line.substr(tab + 1);
    start = end + 1;
  }
  const std::map<std::string, std::string> expect = {
      {"squish.manifest.version", "1"},
      {"squish.tool.name", "squish"},
      {"squish.tool.version", SQUISH_VERSION},
      {"squish.created", side.created},
      {"squish.source.format", "llama2c"},
      {"squish.source.architecture", "llama"},
      {"squish.source.sha256", side.source_sha256},
      {"squish.source.parameters", std::to_string(side.parameters)},
      {"squish.method.command", "quantize"},
      {"squish.method.type", "Q8_0"},
      {"squish.method.algorithm", "rtn"},
      {"squish.method.pure", "0"},
      {"squish.method.tensor_type_overrides", "[\"output=Q4_0\"]"},
      {"squish.output.tensor_count", std::to_string(side.tensors.size())},
      {"squish.output.tensor_types", json(side.type_counts).dump()},
      {"squish.output.weight_bytes", std::to_string(side.weight_bytes)},
  };
  for (const auto& [key, value] : expect) {
    auto it = kv.find(key);
    ASSERT_NE(it, kv.end()) << key << " not seen by llama.cpp; it printed:\n" << meta.out;
    EXPECT_EQ(it->second, value) << key;
  }
  ASSERT_TRUE(kv.count("squish.output.bits_per_weight"));
  EXPECT_NEAR(std::stod(kv["squish.output.bits_per_weight"]), side.bits_per_weight, 1e-5);
  EXPECT_EQ(side.source_sha256,
            sha256_files({test::shared_path("models/stories260K/stories260K.bin")}));
}

}  // namespace
}  // namespace squish
