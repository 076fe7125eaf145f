#include "core/json_file.h"

#include "core/error.h"
#include "core/text.h"

namespace squish {

nlohmann::json read_json_file(const std::string& path, size_t max_bytes) {
  const std::string text = read_text_file(path, max_bytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann's messages are one line; drop the "[json.exception.parse_error.101] " tag.
    std::string msg = e.what();
    if (auto pos = msg.find("] "); pos != std::string::npos) msg = msg.substr(pos + 2);
    fail("{}: not valid JSON: {}", path, msg);
  }
}

}  // namespace squish
