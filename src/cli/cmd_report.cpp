#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "report/report.h"

namespace squish::cli {

namespace {
struct ReportArgs {
  std::string dir, out = "report.html", base;
};
}  // namespace

void register_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "One self-contained HTML page (and JSON) about the models in a folder: quality vs size, "
      "per-tensor error heatmaps, frequency buckets, side-by-side answers, manifests");
  cmd->add_option("dir", a->dir, "Folder with *.eval.json, *.compare.json and *.gguf files")
      ->required();
  cmd->add_option("-o,--output", a->out, "HTML file to write (the JSON goes next to it)");
  cmd->add_option("--base", a->base,
                  "Base model for the per-tensor errors (default: the eval outputs' base)");
  cmd->callback([a] {
    if (!a->out.ends_with(".html") && !a->out.ends_with(".htm")) {
      fail("{}: the output must be an .html file", a->out);
    }
    ReportOptions o;
    o.dir = a->dir;
    o.base = a->base;
    const nlohmann::json data = collect_report(o);
    if (const auto parent = std::filesystem::path(a->out).parent_path(); !parent.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec) fail("{}: cannot create the folder: {}", parent.string(), ec.message());
    }
    const std::string json_path = report_json_path(a->out);
    write_file_atomic(json_path,
                      data.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    write_file_atomic(a->out, render_report_html(data));
    std::printf("wrote %s and %s: %zu models, %zu evaluations, %zu comparisons\n", a->out.c_str(),
                json_path.c_str(), data["models"].size(), data["evals"].size(),
                data["compares"].size());
  });
}

}  // namespace squish::cli
