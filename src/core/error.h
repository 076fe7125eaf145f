// Errors: every failure the user can cause (bad file, bad flag) is a squish::Error whose message is
// one line naming the file and the problem. The CLI prints it and exits non-zero; nothing else
// catches it.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace squish {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace squish
