// Integer settings from the environment (tuning and test switches such as SQUISH_CUDA_*), parsed
// strictly: a value that is not a whole decimal number, or is out of range, gives the caller's
// default instead of atoi's 0 or a prefix ("16x" is not 16). Header-only: the CUDA kernels'
// library uses it without linking the rest of squish.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <optional>

namespace squish {

// name's value when set to a decimal integer (an optional sign, nothing after the digits).
inline std::optional<long> env_integer(const char* name) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') return std::nullopt;
  return v;
}

// name's value when it lies in [lo, hi], else fallback (unset, not a number, out of range).
inline int env_int_in(const char* name, int lo, int hi, int fallback) {
  const std::optional<long> v = env_integer(name);
  return v && *v >= lo && *v <= hi ? static_cast<int>(*v) : fallback;
}

// name's value when it is one of `allowed`, else fallback.
inline int env_one_of(const char* name, std::initializer_list<int> allowed, int fallback) {
  const std::optional<long> v = env_integer(name);
  if (!v) return fallback;
  for (int a : allowed) {
    if (*v == a) return a;
  }
  return fallback;
}

}  // namespace squish
