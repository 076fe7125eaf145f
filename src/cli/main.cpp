#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/memory_check.h"

int main(int argc, char** argv) {
  squish::install_interrupt_cleanup();
  CLI::App app{"squish: make language models small, fast and cheap, and measure what it cost"};
  app.set_version_flag("--version", SQUISH_VERSION);
  app.require_subcommand(1);
  // Global, and accepted after the subcommand too (fallthrough): runs a model whose estimated
  // memory need exceeds what is available (core/memory_check.h).
  app.add_flag_callback(
      "--no-memory-check", [] { squish::set_memory_check_enabled(false); },
      "Run even when the model needs more memory than is available");
  app.fallthrough();
  squish::cli::register_info(app);
  squish::cli::register_run(app);
  squish::cli::register_perplexity(app);
  squish::cli::register_convert(app);
  squish::cli::register_bench(app);
  squish::cli::register_tokenize(app);
  squish::cli::register_quantize(app);
  squish::cli::register_eval(app);
  squish::cli::register_doctor(app);
  squish::cli::register_compare(app);
  squish::cli::register_report(app);
  squish::cli::register_imatrix(app);
  squish::cli::register_synth(app);
  squish::cli::register_export(app);
  squish::cli::register_auto(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const squish::Error& e) {
    std::fprintf(stderr, "squish: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "squish: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "squish: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
