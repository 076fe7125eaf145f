// `squish report`: one self-contained HTML page (inline CSS, plots as inline SVG, no scripts, no
// network) and the same data as JSON, about every model measured in a folder:
//  - quality vs size: each `squish eval --json` output (*.eval.json) as a point of mean KLD and
//    PPL ratio against bits per weight, with file sizes;
//  - per-tensor weight error: every GGUF in the folder against the base, relative RMSE of each
//    dequantized tensor, as a layers x tensor-kinds heatmap labelled with the stored type;
//  - KLD by token-frequency bucket, from the eval outputs' breakdowns when they have them;
//  - the side-by-side answers of each `squish compare --json` output (*.compare.json);
//  - each model's manifest sidecar (<model>.manifest.json) when there is one.
// The JSON schema (squish-report/1) is documented in docs/report-json.md.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace squish {

struct ReportOptions {
  std::string dir;   // folder with *.eval.json, *.compare.json, *.gguf
  std::string base;  // base model for the tensor errors; "" = the base named by the eval outputs
  bool quiet = false;
};

// Reads the folder and computes the tensor errors: the report.json document. Eval and compare
// outputs that cannot be read are one-line errors naming the file; models that cannot be loaded
// or do not match the base are listed with a note instead.
nlohmann::json collect_report(const ReportOptions& options);

// The HTML page for a collected report.
std::string render_report_html(const nlohmann::json& report);

// The JSON written next to an HTML output: "<dir>/<stem>.json" ("report.html" -> "report.json").
std::string report_json_path(const std::string& html_path);

}  // namespace squish
