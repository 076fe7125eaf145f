// squish report, end to end: a folder with two quantizations of gcide-llama-16M, their eval
// outputs and a comparison becomes one HTML page and its JSON; headless Chromium renders the page
// (screenshot decoded and checked for content, DOM checked for the plots, heatmaps and table rows).
// Chromium is optional locally (the test then stops before rendering) and required when CI is set.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "report/report.h"
#include "test_util.h"

namespace squish {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int run(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// Runs `squish args`, stdout to `out_file`; returns the exit code, stderr in `err`.
int run_squish(const std::string& args, const std::string& out_file, std::string& err) {
  const std::string err_file = out_file + ".stderr";
  const int rc = run(test::squish_binary() + " " + args + " >" + out_file + " 2>" + err_file);
  err = test::read_bytes(err_file);
  fs::remove(err_file);
  return rc;
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

std::string chromium_binary() {
  if (const char* c = std::getenv("SQUISH_CHROMIUM"); c != nullptr && *c != '\0') return c;
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (fs::exists(p)) return p;
  }
  return "";
}

// A decoded 8-bit RGB or RGBA PNG (what Chromium writes).
struct Image {
  uint32_t width = 0, height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // rows of width * channels bytes, filters undone
};

uint32_t be32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

Image decode_png(const std::string& png) {
  Image img;
  if (png.size() < 33 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
    ADD_FAILURE() << "not a PNG";
    return img;
  }
  std::string idat;
  int bit_depth = 0, colour_type = -1, interlace = 0;
  for (size_t p = 8; p + 12 <= png.size();) {
    const uint32_t len = be32(png, p);
    const std::string type = png.substr(p + 4, 4);
    if (p + 12 + len > png.size()) break;
    if (type == "IHDR") {
      img.width = be32(png, p + 8);
      img.height = be32(png, p + 12);
      bit_depth = static_cast<uint8_t>(png[p + 16]);
      colour_type = static_cast<uint8_t>(png[p + 17]);
      interlace = static_cast<uint8_t>(png[p + 20]);
    } else if (type == "IDAT") {
      idat.append(png, p + 8, len);
    }
    p += 12 + len;
  }
  if (bit_depth != 8 || (colour_type != 2 && colour_type != 6) || interlace != 0) {
    ADD_FAILURE() << "unexpected PNG format: depth " << bit_depth << " colour " << colour_type;
    return img;
  }
  img.channels = colour_type == 6 ? 4 : 3;
  const size_t stride = static_cast<size_t>(img.width) * img.channels;
  std::vector<uint8_t> raw((stride + 1) * img.height);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_len != raw.size()) {
    ADD_FAILURE() << "PNG image data does not decompress to " << raw.size() << " bytes";
    return img;
  }
  img.pixels.assign(stride * img.height, 0);
  const int bpp = img.channels;
  for (uint32_t y = 0; y < img.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    uint8_t* out = &img.pixels[y * stride];
    const uint8_t* prev = y > 0 ? &img.pixels[(y - 1) * stride] : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= static_cast<size_t>(bpp) ? out[x - bpp] : 0;
      const int b = prev ? prev[x] : 0;
      const int c = prev && x >= static_cast<size_t>(bpp) ? prev[x - bpp] : 0;
      int v = in[x];
      switch (filter) {
        case 1:
          v += a;
          break;
        case 2:
          v += b;
          break;
        case 3:
          v += (a + b) / 2;
          break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          v += (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          break;
      }
      out[x] = static_cast<uint8_t>(v);
    }
  }
  return img;
}

TEST(Report, MissingFolderAndBadEvalOutputAreOneLineErrors) {
  test::TempDir tmp;
  ReportOptions o;
  o.dir = tmp.file("nope");
  try {
    collect_report(o);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a folder"), std::string::npos) << e.what();
  }
  o.dir = tmp.path.string();
  for (const auto& [bytes, needle] : std::vector<std::pair<std::string, std::string>>{
           {"", "not valid JSON"},
           {"[1, 2]", "not a squish eval"},
           {R"({"model": "m.gguf", "mean_kld": "high"})", "'mean_kld' is not a number"}}) {
    test::write_bytes(tmp.file("x.eval.json"), bytes);
    try {
      collect_report(o);
      ADD_FAILURE() << "expected an error for " << bytes;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(tmp.file("x.eval.json") + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

TEST(Report, EmptyFolderSaysWhatIsMissing) {
  test::TempDir tmp;
  ReportOptions o;
  o.dir = tmp.path.string();
  const json r = collect_report(o);
  EXPECT_EQ(r["schema"], "squish-report/1");
  EXPECT_TRUE(r["models"].empty());
  EXPECT_FALSE(r["notes"].empty());
  const std::string html = render_report_html(r);
  EXPECT_NE(html.find("id=\"frequency-not-measured\""), std::string::npos);
  EXPECT_NE(html.find("No evaluations in this folder"), std::string::npos);
  EXPECT_EQ(report_json_path("out/x.html"), "out/x.json");
}

TEST(Report, FolderOfQuantizationsRendersInHeadlessChromium) {
  const std::string base = test::shared_path("models/gcide-llama-16M");
  const std::string text = test::shared_path("data/gcide-valid.txt");
  test::TempDir tmp;
  const std::string dir = tmp.file("models");
  fs::create_directory(dir);
  std::string err;
  // Two models: Q2_K in the blocks (embeddings kept F16, which halves the quantizer's time) and a
  // plain F16 conversion, each evaluated on two short windows.
  ASSERT_EQ(run_squish("quantize " + base + " -o " + dir + "/q2k.gguf --type Q2_K --pure " +
                           "--tensor-type '^(token_embd|output)\\.weight$=F16'",
                       tmp.file("quantize.out"), err),
            0)
      << err;
  ASSERT_EQ(run_squish("convert " + base + " -o " + dir + "/f16.gguf --type f16",
                       tmp.file("convert.out"), err),
            0)
      << err;
  for (const std::string name : {"q2k", "f16"}) {
    ASSERT_EQ(run_squish("eval " + dir + "/" + name + ".gguf --base " + base + " -f " + text +
                             " --ctx 128 --chunks 2 --json",
                         dir + "/" + name + ".eval.json", err),
              0)
        << err;
  }
  test::write_bytes(tmp.file("prompts.txt"), "Dictionary, n.\nApple, n. The fleshy fruit\n");
  ASSERT_EQ(run_squish("compare " + base + " " + dir + "/q2k.gguf --prompts " +
                           tmp.file("prompts.txt") + " -n 10 --ctx 64 --json",
                       dir + "/q2k.compare.json", err),
            0)
      << err;
  // A manifest sidecar, unless quantize already wrote one.
  if (!fs::exists(dir + "/q2k.gguf.manifest.json")) {
    test::write_bytes(dir + "/q2k.gguf.manifest.json",
                      R"({"tool": "squish", "method": {"command": "quantize", "type": "Q2_K"}})");
  }
  const std::string html_path = tmp.file("out/report.html");
  ASSERT_EQ(run_squish("report " + dir + " -o " + html_path, tmp.file("report.out"), err), 0)
      << err;

  // The JSON: both models compared tensor by tensor with the base, evals tied to their models.
  const json r = json::parse(test::read_bytes(tmp.file("out/report.json")));
  EXPECT_EQ(r["schema"], "squish-report/1");
  ASSERT_TRUE(r["base"].is_object());
  ASSERT_EQ(r["models"].size(), 2u);
  ASSERT_EQ(r["evals"].size(), 2u);
  ASSERT_EQ(r["compares"].size(), 1u);
  EXPECT_EQ(r["compares"][0]["prompts"].size(), 2u);
  std::map<std::string, double> max_err, bpw;
  for (const json& m : r["models"]) {
    const std::string name = m["name"];
    ASSERT_TRUE(m["tensor_errors"].is_array()) << name << ": " << m["note"];
    EXPECT_EQ(m["tensor_errors"].size(), 57u);  // 6 layers x 9 + token_embd, output_norm, output
    double mx = 0;
    for (const json& t : m["tensor_errors"]) {
      ASSERT_TRUE(t["rel_rmse"].is_number()) << t["name"];
      const double e = t["rel_rmse"];
      if (t["type"] == "F32") {
        EXPECT_EQ(e, 0.0) << t["name"];  // norms are kept exactly
      }
      mx = std::max(mx, e);
    }
    max_err[name] = mx;
    bpw[name] = m["bits_per_weight"];
  }
  // F16 holds the BF16 base almost exactly (Q/K rows matched across the HF/GGUF RoPE layouts: a
  // mismatch would give errors near 1.4); Q2_K does not.
  EXPECT_LT(max_err["f16.gguf"], 1e-6);
  EXPECT_GT(max_err["q2k.gguf"], 0.1);
  EXPECT_LT(bpw["q2k.gguf"], bpw["f16.gguf"]);
  for (const json& e : r["evals"]) {
    EXPECT_TRUE(e["model_index"].is_number()) << e["file"];
    EXPECT_GE(e["mean_kld"].get<double>(), 0.0);
  }
  EXPECT_GT(r["evals"][1]["mean_kld"].get<double>(), 0.01);  // q2k.eval.json, after f16's
  EXPECT_TRUE(r["models"][1]["manifest"].is_object());       // q2k.gguf, sorted after f16.gguf

  // The HTML: self-contained (no scripts, nothing fetched) with every section present.
  const std::string html = test::read_bytes(html_path);
  for (const char* id : {"plot-kld", "plot-ppl-ratio", "heatmap-0", "heatmap-1", "heatmap-legend",
                         "compare-table-0", "eval-table", "manifests"}) {
    EXPECT_NE(html.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  EXPECT_EQ(count(html, "<tr class=\"prompt-row"), 2u);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_EQ(html.find(" href="), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);

  // Keep the page and its screenshot where a person can look at them.
  const fs::path keep = fs::path(test::squish_binary()).parent_path() / "test-output" / "report";
  fs::create_directories(keep);
  fs::copy_file(html_path, keep / "report.html", fs::copy_options::overwrite_existing);

  const std::string chromium = chromium_binary();
  if (chromium.empty()) {
    if (std::getenv("CI") != nullptr)
      FAIL() << "chromium is required in CI (scripts/install-deps.sh)";
    GTEST_SKIP() << "chromium not installed: the page was not rendered (apt-get install chromium)";
  }
  const std::string png = (keep / "screenshot.png").string();
  fs::remove(png);
  const std::string dom_file = tmp.file("dom.html");
  const std::string cmd = "HOME=" + tmp.path.string() + " timeout 180 " + chromium +
                          " --headless --no-sandbox --disable-gpu --no-first-run "
                          "--disable-extensions --disable-background-networking --user-data-dir=" +
                          tmp.file("chromium-profile") +
                          " --window-size=1280,2000 --screenshot=" + png + " --dump-dom file://" +
                          fs::absolute(html_path).string() + " >" + dom_file + " 2>" +
                          tmp.file("chromium.err");
  ASSERT_EQ(run(cmd), 0) << cmd << "\n" << test::read_bytes(tmp.file("chromium.err"));
  std::cout << "[report] screenshot: " << png
            << "\n[report] page: " << (keep / "report.html").string() << std::endl;

  // Screenshot: the requested size, and a page with content (many colours, mostly not background).
  ASSERT_TRUE(fs::exists(png));
  const Image img = decode_png(test::read_bytes(png));
  EXPECT_EQ(img.width, 1280u);
  EXPECT_EQ(img.height, 2000u);
  ASSERT_FALSE(img.pixels.empty());
  std::set<uint32_t> colours;
  size_t not_background = 0;
  const size_t n = img.pixels.size() / img.channels;
  const uint8_t* bg = img.pixels.data();  // top-left corner: the page background
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &img.pixels[i * img.channels];
    colours.insert((p[0] << 16) | (p[1] << 8) | p[2]);
    not_background += p[0] != bg[0] || p[1] != bg[1] || p[2] != bg[2];
  }
  EXPECT_GT(colours.size(), 50u);
  EXPECT_GT(static_cast<double>(not_background) / n, 0.05);

  // DOM as Chromium parsed it: plots with their points, heatmap cells, the table rows.
  const std::string dom = test::read_bytes(dom_file);
  for (const char* id :
       {"plot-kld", "plot-ppl-ratio", "heatmap-0", "heatmap-1", "compare-table-0"}) {
    EXPECT_NE(dom.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  EXPECT_GE(count(dom, "<svg"), 5u);
  EXPECT_GE(count(dom, "<circle"),
            3u);  // both models in the PPL plot, Q2_K at least in the KLD plot
  EXPECT_EQ(count(dom, "class=\"cell\""), 2u * 57);
  EXPECT_EQ(count(dom, "<tr class=\"prompt-row"), 2u);
}

}  // namespace
}  // namespace squish
