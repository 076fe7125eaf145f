// Subcommands of the `squish` binary. Each file registers one subcommand on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace squish::cli {

void register_info(CLI::App& app);
void register_run(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_convert(CLI::App& app);
void register_bench(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_quantize(CLI::App& app);
void register_eval(CLI::App& app);
void register_doctor(CLI::App& app);
void register_compare(CLI::App& app);
void register_report(CLI::App& app);
void register_imatrix(CLI::App& app);
void register_synth(CLI::App& app);
void register_export(CLI::App& app);
void register_auto(CLI::App& app);

}  // namespace squish::cli
