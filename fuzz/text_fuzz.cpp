// User text: the size-bounded reader and its UTF-8 validation. The validator is also checked
// against a simple reference decoder, so an accepted invalid sequence is a finding too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "core/text.h"
#include "fuzz_util.h"

namespace {

// Offset of the first invalid sequence per RFC 3629 (no overlongs, no surrogates, <= U+10FFFF).
size_t reference_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    int n = 0;
    uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + n >= s.size()) return i;
    for (int k = 1; k <= n; ++k) {
      const uint8_t cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // Same rules, so the same answer, offset included.
  if (squish::find_invalid_utf8(text) != reference_invalid_utf8(text)) std::abort();
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    std::string read = squish::read_text_file(path, 1 << 16);
    if (read != text) std::abort();
  } catch (const squish::Error&) {
  }
  return 0;
}
