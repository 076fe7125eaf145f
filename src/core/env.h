// Integer settings from the environment (tuning and test switches such as SQUISH_CUDA_*), parsed
// strictly: a value that is not a whole decimal number, or is out of range, gives the caller's
// default instead of atoi's 0 or a prefix ("16x" is not 16), and says so on stderr once (a typo
// in a switch must not pass for a measurement of it). Header-only: the CUDA kernels' library uses
// it without linking the rest of squish.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <set>
#include <string>

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

// One line on stderr, once per name and value: name's value was set but not taken.
inline void env_ignored(const char* name, const std::string& expected, int fallback) {
  static std::mutex mutex;
  static std::set<std::string> said;
  const char* value = std::getenv(name);
  const std::string line = std::string("squish: ") + name + "=" + (value != nullptr ? value : "") +
                           " ignored (expected " + expected + "); using " +
                           std::to_string(fallback) + "\n";
  const std::lock_guard<std::mutex> lock(mutex);
  if (said.insert(line).second) std::fputs(line.c_str(), stderr);
}

// Whether name is set to something other than the empty string.
inline bool env_set(const char* name) {
  const char* s = std::getenv(name);
  return s != nullptr && *s != '\0';
}

// name's value when it lies in [lo, hi], else fallback (unset, not a number, out of range; the
// last two said on stderr).
inline int env_int_in(const char* name, int lo, int hi, int fallback) {
  const std::optional<long> v = env_integer(name);
  if (v && *v >= lo && *v <= hi) return static_cast<int>(*v);
  if (env_set(name))
    env_ignored(name, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi),
                fallback);
  return fallback;
}

// name's value when it is one of `allowed`, else fallback (said on stderr when set).
inline int env_one_of(const char* name, std::initializer_list<int> allowed, int fallback) {
  const std::optional<long> v = env_integer(name);
  for (int a : allowed) {
    if (v && *v == a) return a;
  }
  if (env_set(name)) {  // the message is built only for a value that is said
    std::string expected = "one of";
    const char* separator = " ";
    for (int a : allowed) {
      expected += separator + std::to_string(a);
      separator = ", ";
    }
    env_ignored(name, expected, fallback);
  }
  return fallback;
}

}  // namespace squish
