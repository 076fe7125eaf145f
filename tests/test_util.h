// Shared helpers for tests: where the shared data lives and where fixtures are.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "core/error.h"

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

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A finished command: its exit code (128 + the signal when killed), stdout and stderr.
struct CmdResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs a shell command line (one command: the redirections are appended) with stdout and stderr
// captured apart, through files so that neither pipe can fill up and stall the child.
inline CmdResult run_command(const std::string& cmd_line) {
  TempDir tmp;
  const std::string out_file = tmp.file("stdout"), err_file = tmp.file("stderr");
  const int status = std::system((cmd_line + " >" + out_file + " 2>" + err_file).c_str());
  CmdResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_bytes(out_file);
  r.err = read_bytes(err_file);
  return r;
}

// The squish CLI with `args` (a shell fragment); `env` assignments (e.g.
// "SQUISH_MEMORY_LIMIT=1000") go before it.
inline CmdResult run_squish(const std::string& args, const std::string& env = "") {
  return run_command((env.empty() ? "" : env + " ") + squish_binary() + " " + args);
}

// The llama.cpp reference peer (tools/llama_cpp: `llama_logits`), set up by scripts/test.sh;
// empty when absent.
inline std::string llama_peer() {
  const char* p = std::getenv("SQUISH_LLAMA_LOGITS");
  return p ? p : "";
}

// llama.cpp's logits (n_tokens x n_vocab) for `tokens` on `gguf`, through the peer; `out` is a
// scratch file for them.
inline std::vector<float> llama_cpp_logits(const std::string& gguf,
                                           const std::vector<int32_t>& tokens,
                                           const std::string& out) {
  std::string cmd = llama_peer();
  cmd.append(" logits ").append(gguf).append(" ").append(out);
  for (int32_t t : tokens) cmd.append(" ").append(std::to_string(t));
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string bytes = read_bytes(out);
  std::vector<float> logits(bytes.size() / sizeof(float));
  std::memcpy(logits.data(), bytes.data(), logits.size() * sizeof(float));
  return logits;
}

// Writes `bytes` to a fresh file named `file_name`, calls open(path), and expects a one-line
// squish::Error that starts with "<path>: " and contains `needle`.
template <typename Open>
void expect_open_error(const std::string& bytes, const std::string& file_name,
                       const std::string& needle, Open open) {
  TempDir dir;
  const std::string path = dir.file(file_name);
  write_bytes(path, bytes);
  try {
    open(path);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

}  // namespace squish::test
