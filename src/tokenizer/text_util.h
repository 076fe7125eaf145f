// UTF-8 and byte-level helpers shared by the tokenizers (internal to src/tokenizer).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace squish::tok {

// Appends the UTF-8 encoding of a code point.
void append_utf8(std::string& out, uint32_t cp);

// Length in bytes of the well-formed UTF-8 sequence starting at s[i], or 0 when the bytes there
// are not one (bad lead byte, bad continuation, overlong, surrogate, truncated).
size_t valid_utf8_len(std::string_view s, size_t i);

// Decodes the well-formed sequence at s[i] (valid_utf8_len(s, i) must be n > 0).
uint32_t decode_utf8(std::string_view s, size_t i, size_t n);

bool is_valid_utf8(std::string_view s);

// Rust's String::from_utf8_lossy, which the reference decoders use: each maximal ill-formed
// subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view s);

// GPT-2's reversible byte <-> printable code point mapping (bytes_to_unicode in the reference).
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_utf8;  // byte -> UTF-8 of its stand-in code point
  std::array<int16_t, 324> cp_to_byte;        // stand-in code point -> byte, -1 if none
  int byte_of(uint32_t cp) const { return cp < cp_to_byte.size() ? cp_to_byte[cp] : -1; }
};
const ByteLevelTable& byte_level_table();

// "<0x0A>" -> 10; -1 when the text is not exactly of that form (uppercase or lowercase hex).
int parse_byte_token(std::string_view text);

// Replaces every occurrence of `from` (non-empty) by `to`.
std::string replace_all(std::string_view s, std::string_view from, std::string_view to);

// FNV-1a 64 over ids as little-endian uint32 (the goldens use it to fingerprint long encodings).
uint64_t fnv1a64_ids(const int32_t* ids, size_t n);

}  // namespace squish::tok
