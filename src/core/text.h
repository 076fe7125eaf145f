// Reading user text (evaluation/calibration files, prompts): size-bounded and UTF-8 validated,
// so a binary or mis-encoded file gets a clear error instead of garbage tokens.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace squish {

// Returns the byte offset of the first invalid UTF-8 sequence, or npos when valid.
size_t find_invalid_utf8(std::string_view text);

// Reads a whole text file (at most max_bytes) and checks it is UTF-8.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t{1} << 30);

}  // namespace squish
