// Shared helpers for tests: where the shared data lives and where fixtures are.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace squish::test {

// ../shared beside the repo, overridable with SQUISH_SHARED (the one path setting for test data).
inline std::string shared_dir() {
  if (const char* env = std::getenv("SQUISH_SHARED"); env != nullptr && *env != '\0') return env;
  return SQUISH_DEFAULT_SHARED;
}
inline std::string shared_path(const std::string& rel) {
  return shared_dir() + "/" + rel;
}
// Committed fixtures (goldens, small synthetic files) in tests/data.
inline std::string data_path(const std::string& rel) {
  return std::string(SQUISH_TEST_DATA) + "/" + rel;
}
// The built CLI, for end-to-end tests.
inline std::string squish_binary() {
  return SQUISH_BINARY;
}

// A fresh temporary folder per test, removed at destruction.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/squish_test_XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

}  // namespace squish::test
