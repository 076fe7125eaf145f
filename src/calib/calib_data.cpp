#include "calib/calib_data.h"

#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.h"
#include "core/text.h"

namespace squish {

namespace {

bool is_jsonl(const std::string& path) {
  return path.ends_with(".jsonl") || path.ends_with(".json-lines") || path.ends_with(".ndjson");
}

}  // namespace

std::string read_calibration_text(const std::string& path) {
  std::string raw = read_text_file(path);
  if (!is_jsonl(path)) return raw;
  std::string out;
  size_t line_no = 0, begin = 0;
  while (begin < raw.size()) {
    size_t end = raw.find('\n', begin);
    if (end == std::string::npos) end = raw.size();
    const std::string_view line(raw.data() + begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}: line {}: not valid JSON", path, line_no);
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      fail("{}: line {}: expected an object with a \"text\" string", path, line_no);
    if (!out.empty()) out += "\n\n";
    out += j["text"].get<std::string>();
  }
  if (out.empty()) fail("{}: no \"text\" entries", path);
  return out;
}

CalibrationWindows calibration_windows(const Model& model, const std::vector<std::string>& files,
                                       const CalibrationOptions& options) {
  if (files.empty()) fail("calibration: no text files given");
  if (!model.tokenizer) fail("{}: model has no tokenizer; pass --tokenizer FILE", model.path);
  if (options.n_ctx < 16 || options.n_ctx > (1 << 20))
    fail("calibration: window length {} is out of range (16 .. 2^20)", options.n_ctx);
  std::string text;
  for (const std::string& f : files) {
    if (!text.empty()) text += "\n\n";
    text += read_calibration_text(f);
  }
  const Tokenizer& tok = *model.tokenizer;
  const bool bos = options.bos && tok.add_bos() && tok.bos_id() >= 0;
  std::vector<int32_t> stream = tok.encode(text);
  if (bos) stream.insert(stream.begin(), tok.bos_id());
  const int available = static_cast<int>(stream.size() / options.n_ctx);
  if (available < 1) {
    fail("{}: the calibration text has {} tokens; at least {} (one window) are needed", files[0],
         stream.size(), options.n_ctx);
  }
  const int n = options.max_windows > 0 ? std::min(options.max_windows, available) : available;
  CalibrationWindows w;
  w.n_ctx = options.n_ctx;
  w.tokens.assign(stream.begin(), stream.begin() + static_cast<int64_t>(n) * options.n_ctx);
  if (bos) {
    for (int i = 0; i < n; ++i) w.tokens[static_cast<size_t>(i) * options.n_ctx] = tok.bos_id();
  }
  return w;
}

}  // namespace squish
