// Reading a JSON file (config.json, tokenizer.json, tokenizer_config.json): size-bounded, UTF-8
// checked, and a one-line error naming the file when it is not valid JSON.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace squish {

nlohmann::json read_json_file(const std::string& path, size_t max_bytes);

}  // namespace squish
