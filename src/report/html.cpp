// The HTML page of `squish report`: everything inline (CSS, SVG), no scripts, no network, so the
// file can be mailed, attached to a CI run or opened offline. Tooltips are SVG <title> elements.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "report/report.h"

namespace squish {

using nlohmann::json;

namespace {

std::string esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string str(const json& j, const char* key, const std::string& fallback = "") {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                : fallback;
}

bool has_num(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number();
}

double num(const json& j, const char* key) {
  return has_num(j, key) ? j[key].get<double>() : NAN;
}

std::string fmt_num(double v, int digits = 4) {
  if (!std::isfinite(v)) return "n/a";
  return fmt::format("{:.{}g}", v, digits);
}

std::string fmt_bytes(double b) {
  if (!std::isfinite(b) || b <= 0) return "n/a";
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
  return fmt::format("{:.1f} kB", b / 1e3);
}

const char* kPalette[] = {"#2563eb", "#dc2626", "#16a34a", "#9333ea",
                          "#ea580c", "#0891b2", "#be185d", "#4d7c0f"};

// ---- Plots ----

struct PlotPoint {
  double x, y;
  std::string label, tip;
  double y_lo = NAN, y_hi = NAN;  // error bar, when known
};
struct PlotSeries {
  std::string name;
  std::vector<PlotPoint> points;
  bool line = false;
};
struct PlotSpec {
  std::string id, title, x_title, y_title;
  bool log_y = false;
  std::vector<std::string> x_categories;  // non-empty: x is an index into these labels
};

std::vector<double> linear_ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(t);
  return ticks;
}

std::string svg_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series) {
  const double W = 580, H = 360, ml = 72, mr = 24, mt = 34, mb = 56;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series) {
    for (const auto& p : s.points) {
      x0 = std::min(x0, p.x);
      x1 = std::max(x1, p.x);
      for (double v : {p.y, p.y_lo, p.y_hi}) {
        if (!std::isfinite(v) || (spec.log_y && v <= 0)) continue;
        const double y = spec.log_y ? std::log10(v) : v;
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
    }
  }
  if (!spec.x_categories.empty()) {
    x0 = -0.5;
    x1 = spec.x_categories.size() - 0.5;
  } else {
    const double pad = x1 > x0 ? (x1 - x0) * 0.08 : std::max(0.5, std::fabs(x0) * 0.1);
    x0 -= pad;
    x1 += pad;
  }
  if (spec.log_y) {
    y0 = std::floor(y0);
    y1 = std::ceil(y1);
    if (y1 <= y0) y1 = y0 + 1;
  } else {
    const double pad = y1 > y0 ? (y1 - y0) * 0.1 : std::max(0.01, std::fabs(y0) * 0.05);
    y0 -= pad;
    y1 += pad;
  }
  auto X = [&](double x) { return ml + (x - x0) / (x1 - x0) * (W - ml - mr); };
  const double total_h = H + (series.size() > 1 ? 16.0 * series.size() + 10 : 0);
  auto Y = [&](double y) { return H - mb - (y - y0) / (y1 - y0) * (H - mt - mb); };
  std::string s = fmt::format(
      "<svg id=\"{}\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
      "height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
      esc(spec.id), W, total_h, W, total_h, esc(spec.title));
  s += fmt::format("<text x=\"{}\" y=\"20\" class=\"ptitle\">{}</text>\n", ml, esc(spec.title));
  s += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#9ca3af\"/>\n", ml,
      mt, W - ml - mr, H - mt - mb);
  // y grid and labels
  std::vector<std::pair<double, std::string>> yticks;
  if (spec.log_y) {
    for (int e = static_cast<int>(y0); e <= static_cast<int>(y1); ++e) {
      yticks.push_back({static_cast<double>(e), fmt::format("1e{}", e)});
      if (y1 - y0 <= 2 && e < y1) {
        for (double m : {2.0, 5.0})
          yticks.push_back({e + std::log10(m), fmt::format("{}e{}", m, e)});
      }
    }
  } else {
    for (double t : linear_ticks(y0, y1)) yticks.push_back({t, fmt_num(t, 4)});
  }
  for (const auto& [v, label] : yticks) {
    s += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" class=\"grid\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" class=\"tick\" text-anchor=\"end\">{5}</text>\n",
        ml, W - mr, Y(v), ml - 6, Y(v) + 4, esc(label));
  }
  // x labels
  if (!spec.x_categories.empty()) {
    for (size_t i = 0; i < spec.x_categories.size(); ++i) {
      s += fmt::format(
          "<text x=\"{:.1f}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n",
          X(static_cast<double>(i)), H - mb + 18, esc(spec.x_categories[i]));
    }
  } else {
    for (double t : linear_ticks(x0, x1)) {
      s += fmt::format(
          "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" class=\"grid\"/>"
          "<text x=\"{0:.1f}\" y=\"{3}\" class=\"tick\" text-anchor=\"middle\">{4}</text>\n",
          X(t), mt, H - mb, H - mb + 18, fmt_num(t, 4));
    }
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>\n",
                   (ml + W - mr) / 2, H - 14, esc(spec.x_title));
  s += fmt::format(
      "<text x=\"16\" y=\"{0}\" class=\"axis\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 16 {0})\">{1}</text>\n",
      (mt + H - mb) / 2, esc(spec.y_title));
  for (size_t k = 0; k < series.size(); ++k) {
    const char* colour = kPalette[k % std::size(kPalette)];
    const auto& ser = series[k];
    if (ser.line && ser.points.size() > 1) {
      std::string pts;
      for (const auto& p : ser.points) {
        pts += fmt::format("{:.1f},{:.1f} ", X(p.x), Y(spec.log_y ? std::log10(p.y) : p.y));
      }
      s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                       pts, colour);
    }
    for (const auto& p : ser.points) {
      const double px = X(p.x), py = Y(spec.log_y ? std::log10(p.y) : p.y);
      if (std::isfinite(p.y_lo) && std::isfinite(p.y_hi) && (!spec.log_y || p.y_lo > 0)) {
        const double lo = Y(spec.log_y ? std::log10(p.y_lo) : p.y_lo);
        const double hi = Y(spec.log_y ? std::log10(p.y_hi) : p.y_hi);
        s += fmt::format(
            "<line class=\"errbar\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\" "
            "stroke=\"{3}\" stroke-width=\"1.5\"/>\n",
            px, lo, hi, colour);
      }
      s += fmt::format(
          "<circle class=\"point\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" "
          "fill=\"{}\"><title>{}</title>"
          "</circle>\n",
          px, py, colour, esc(p.tip));
      if (!p.label.empty()) {  // to the left of points in the right half, so it stays inside
        const bool left = px > (ml + W - mr) / 2;
        s += fmt::format(
            "<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"plabel\" text-anchor=\"{}\">{}</text>\n",
            left ? px - 7 : px + 7, py - 7, left ? "end" : "start", esc(p.label));
      }
    }
  }
  // Legend: one row per series under the plot, so it never hides a point.
  if (series.size() > 1) {
    for (size_t k = 0; k < series.size(); ++k) {
      const double ly = H + 14 + 16 * k;
      s += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/>"
          "<text x=\"{}\" y=\"{}\" class=\"tick\">{}</text>\n",
          ml, ly - 9, kPalette[k % std::size(kPalette)], ml + 15, ly, esc(series[k].name));
    }
  }
  s += "</svg>\n";
  return s;
}

// ---- Heatmap ----

// Sequential multi-hue scale (viridis, reversed): light yellow (small error) to dark purple.
std::string heat_colour(double t, bool* dark) {
  static const double stops[][3] = {
      {253, 231, 37}, {94, 201, 98}, {33, 145, 140}, {59, 82, 139}, {68, 1, 84}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  double rgb[3];
  for (int c = 0; c < 3; ++c) rgb[c] = stops[i][c] + f * (stops[i + 1][c] - stops[i][c]);
  if (dark) *dark = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) < 140;
  return fmt::format("rgb({},{},{})", static_cast<int>(rgb[0]), static_cast<int>(rgb[1]),
                     static_cast<int>(rgb[2]));
}

int kind_order(const std::string& kind) {
  static const char* order[] = {"attn_norm",   "attn_q",     "attn_q.bias", "attn_k",
                                "attn_k.bias", "attn_v",     "attn_v.bias", "attn_qkv",
                                "attn_output", "ffn_norm",   "ffn_gate",    "ffn_up",
                                "ffn_down",    "token_embd", "output_norm", "output"};
  for (size_t i = 0; i < std::size(order); ++i) {
    if (kind == order[i]) return static_cast<int>(i);
  }
  return 100;
}

std::vector<std::string> ordered_kinds(const std::set<std::string>& kinds) {
  std::vector<std::string> v(kinds.begin(), kinds.end());
  std::stable_sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
    return kind_order(a) < kind_order(b);
  });
  return v;
}

struct HeatScale {
  double lo = -4, hi = 0;  // log10 of rel RMSE; values outside are clamped to the ends
};

// "0.081", "4.7e-03": two significant digits in at most six characters.
std::string short_num(double v) {
  if (v >= 0.01 && v < 100) return fmt::format("{:.2g}", v);
  return fmt::format("{:.1e}", v);
}

std::string svg_heatmap(const std::string& id, const json& errors, const HeatScale& scale) {
  std::set<std::string> layer_kinds, global_kinds;
  int n_layer = 0;
  for (const json& e : errors) {
    const int layer = e.value("layer", -1);
    if (layer >= 0) {
      layer_kinds.insert(str(e, "kind"));
      n_layer = std::max(n_layer, layer + 1);
    } else {
      global_kinds.insert(str(e, "kind"));
    }
  }
  const std::vector<std::string> lk = ordered_kinds(layer_kinds), gk = ordered_kinds(global_kinds);
  const double cw = 78, ch = 30, left = 64, top = 40;
  const size_t cols = std::max(lk.size(), gk.size());
  const double grid_top = top + (gk.empty() ? -ch + 10 : ch + 10);
  const double W = left + cols * cw + 10, H = grid_top + ch + n_layer * ch + 10;
  std::string s = fmt::format(
      "<svg id=\"{}\" class=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
      "height=\"{}\" viewBox=\"0 0 {} {}\">\n",
      esc(id), W, H, W, H);
  auto cell = [&](double x, double y, const json& e) {
    const std::string type = str(e, "type");
    std::string fill = "#e5e7eb", text_colour = "#111";
    std::string value = "exact", shown = "exact";
    if (e.contains("rel_rmse") && e["rel_rmse"].is_number()) {
      const double r = e["rel_rmse"].get<double>();
      if (r > 0) {
        bool dark = false;
        fill = heat_colour((std::log10(r) - scale.lo) / (scale.hi - scale.lo), &dark);
        text_colour = dark ? "#fff" : "#111";
        value = fmt_num(r, 4);
        shown = short_num(r);
      }
    } else {
      value = shown = "n/a";
    }
    return fmt::format(
        "<g class=\"cell\"><rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\" "
        "stroke=\"#fff\"/><text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"{}\" class=\"ctype\" "
        "text-anchor=\"middle\">{}</text><text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"{}\" "
        "class=\"cval\" text-anchor=\"middle\">{}</text><title>{}: {} (base {}), relative RMSE "
        "{}</title></g>\n",
        x, y, cw, ch, fill, x + cw / 2, y + 13, text_colour, esc(type), x + cw / 2, y + 25,
        text_colour, esc(shown), esc(str(e, "name")), esc(type), esc(str(e, "base_type")), value);
  };
  auto header = [&](const std::vector<std::string>& kinds, double y) {
    for (size_t c = 0; c < kinds.size(); ++c) {
      s += fmt::format(
          "<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n",
          left + c * cw + cw / 2, y, esc(kinds[c]));
    }
  };
  if (!gk.empty()) {
    header(gk, top - 6);
    s += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">global</text>\n", left - 6,
        top + ch / 2 + 4);
    for (const json& e : errors) {
      if (e.value("layer", -1) >= 0) continue;
      const size_t c = std::find(gk.begin(), gk.end(), str(e, "kind")) - gk.begin();
      s += cell(left + c * cw, top, e);
    }
  }
  header(lk, grid_top + ch - 6);
  for (int l = 0; l < n_layer; ++l) {
    s += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">layer {}</text>\n",
        left - 6, grid_top + ch + l * ch + ch / 2 + 4, l);
  }
  for (const json& e : errors) {
    const int layer = e.value("layer", -1);
    if (layer < 0) continue;
    const size_t c = std::find(lk.begin(), lk.end(), str(e, "kind")) - lk.begin();
    s += cell(left + c * cw, grid_top + ch + layer * ch, e);
  }
  s += "</svg>\n";
  return s;
}

std::string svg_heat_legend(const HeatScale& scale) {
  const double W = 560, H = 58, x0 = 20, w = 520;
  std::string s = fmt::format(
      "<svg id=\"heatmap-legend\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\">\n",
      W, H, W, H);
  const int steps = 60;
  for (int i = 0; i < steps; ++i) {
    s += fmt::format("<rect x=\"{:.2f}\" y=\"4\" width=\"{:.2f}\" height=\"14\" fill=\"{}\"/>\n",
                     x0 + i * w / steps, w / steps + 0.5, heat_colour((i + 0.5) / steps, nullptr));
  }
  // Ticks at 1, 2 and 5 times each power of ten inside the range.
  for (int e = static_cast<int>(std::floor(scale.lo)); e <= static_cast<int>(scale.hi); ++e) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = e + std::log10(m);
      if (v < scale.lo - 1e-9 || v > scale.hi + 1e-9) continue;
      const double x = x0 + (v - scale.lo) / (scale.hi - scale.lo) * w;
      s += fmt::format(
          "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"18\" y2=\"24\" stroke=\"#333\"/>"
          "<text x=\"{0:.1f}\" y=\"36\" class=\"tick\" text-anchor=\"middle\">{1}</text>\n",
          x, short_num(std::pow(10.0, v)));
    }
  }
  s += fmt::format(
      "<text x=\"{}\" y=\"53\" class=\"tick\">relative RMSE, log scale (values "
      "outside the bar take its end colours)</text>\n",
      x0);
  s += "</svg>\n";
  return s;
}

// ---- Compare table ----

// Length of the common prefix of two strings, cut back to a UTF-8 character boundary.
size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  while (n > 0 && n < a.size() && (static_cast<unsigned char>(a[n]) & 0xc0) == 0x80) --n;
  return n;
}

std::string answer_html(const std::string& answer, size_t same) {
  return "<span class=\"same\">" + esc(answer.substr(0, same)) + "</span><span class=\"diff\">" +
         esc(answer.substr(same)) + "</span>";
}

std::string compare_section(const json& c, size_t index) {
  std::string s;
  const json& sum = c["summary"];
  s += fmt::format("<h3>{}</h3>\n<p class=\"meta\">base <code>{}</code> vs model <code>{}</code>",
                   esc(str(c, "file")), esc(str(c, "base")), esc(str(c, "model")));
  if (has_num(c, "n_predict")) s += fmt::format(", up to {} tokens", c["n_predict"].get<int>());
  if (c.contains("sampling") && has_num(c["sampling"], "temperature")) {
    const double t = num(c["sampling"], "temperature");
    s += t > 0 ? fmt::format(", temperature {} seed {}", fmt_num(t), c["sampling"].value("seed", 0))
               : std::string(", greedy");
  }
  if (c.contains("chat") && c["chat"].is_object() && c["chat"].value("requested", false)) {
    s += ", chat: " + esc(str(c["chat"], "note"));
  }
  s += "</p>\n";
  s += fmt::format(
      "<p class=\"summary\">{} prompts: <b>{}</b> identical ({:.0f} %), mean match length "
      "<b>{}</b> tokens ({:.0f} % of the base answer), <b>{}</b> diverge early; KLD mean {}, max "
      "{}</p>\n",
      sum.value("n_prompts", 0), sum.value("n_identical", 0), 100 * num(sum, "identical_fraction"),
      fmt_num(num(sum, "mean_match_length"), 3), 100 * num(sum, "mean_match_fraction"),
      sum.value("n_diverges_early", 0), fmt_num(num(sum, "mean_kld")),
      fmt_num(num(sum, "max_kld")));
  s += fmt::format(
      "<table id=\"compare-table-{}\" class=\"compare\">\n<thead><tr><th>#</th><th>prompt</th>"
      "<th>base answer</th><th>model answer</th><th>match</th><th>KLD mean</th><th>KLD max</th>"
      "</tr></thead>\n<tbody>\n",
      index);
  size_t i = 0;
  for (const json& p : c["prompts"]) {
    const std::string a = str(p, "base_answer"), b = str(p, "model_answer");
    const size_t same = common_prefix(a, b);
    const bool flagged = p.value("diverges_early", false);
    const bool identical = p.value("identical", false);
    s += fmt::format(
        "<tr class=\"prompt-row{}\"><td>{}</td><td class=\"prompt\">{}</td><td class=\"answer\">{}"
        "</td><td class=\"answer\">{}</td><td class=\"num\">{}/{}{}</td><td class=\"num\">{}</td>"
        "<td class=\"num\">{}</td></tr>\n",
        flagged ? " flagged" : (identical ? " identical" : ""), ++i, esc(str(p, "prompt")),
        answer_html(a, same), answer_html(b, same), p["match_length"].get<int64_t>(),
        p["answer_length"].get<int64_t>(),
        flagged ? "<br><span class=\"flag\">diverges early</span>" : "",
        fmt_num(num(p, "kld_mean")), fmt_num(num(p, "kld_max")));
  }
  s += "</tbody></table>\n";
  return s;
}

// ---- Manifest ----

std::string manifest_html(const json& m) {
  std::string s = "<table class=\"kv\">\n";
  for (const auto& [key, value] : m.items()) {
    std::string shown;
    if (value.is_string()) {
      shown = esc(value.get<std::string>());
    } else if (value.is_array() && value.size() > 8) {
      shown = fmt::format("<details><summary>{} entries</summary><pre>{}</pre></details>",
                          value.size(), esc(value.dump(1)));
    } else if (value.is_structured()) {
      const std::string d = value.dump();
      shown = d.size() > 160 ? fmt::format("<details><summary>{}…</summary><pre>{}</pre></details>",
                                           esc(d.substr(0, 80)), esc(value.dump(1)))
                             : "<code>" + esc(d) + "</code>";
    } else {
      shown = esc(value.dump());
    }
    s += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", esc(key), shown);
  }
  return s + "</table>\n";
}

const char* kStyle = R"css(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#111;background:#f8fafc}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d1d5db;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 4px}.meta{color:#4b5563;margin:2px 0}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{background:#fff;border:1px solid #e5e7eb;border-radius:6px}
.ptitle{font-size:14px;font-weight:600}.tick{font-size:11px;fill:#374151}.axis{font-size:12px;fill:#111}
.plabel{font-size:11px;fill:#111}.grid{stroke:#e5e7eb}.ctype{font-size:10px;font-weight:600;font-family:ui-monospace,monospace}.cval{font-size:9px;font-family:ui-monospace,monospace}
table{border-collapse:collapse;background:#fff;margin:6px 0}th,td{border:1px solid #e5e7eb;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f1f5f9}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.compare td.answer{white-space:pre-wrap;max-width:420px;font-family:ui-monospace,monospace;font-size:12px}
table.compare td.prompt{max-width:220px;white-space:pre-wrap}
tr.flagged{background:#fef2f2}tr.identical{background:#f0fdf4}.flag{color:#b91c1c;font-weight:600;font-size:12px}
.diff{background:#fde68a}.same{color:#111}
.note{color:#92400e;background:#fffbeb;border:1px solid #fcd34d;padding:6px 10px;border-radius:4px}
.not-measured{color:#6b7280;font-style:italic}
.heatmap{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:4px 0 12px}
table.kv th{width:200px}code,pre{font-family:ui-monospace,monospace;font-size:12px}pre{margin:0;white-space:pre-wrap}
)css";

}  // namespace

std::string render_report_html(const json& r) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<title>squish report: " + esc(str(r, "dir")) + "</title>\n<style>" + kStyle +
       "</style>\n</head>\n<body>\n<main>\n";
  h += "<h1 id=\"title\">squish report</h1>\n";
  h += fmt::format("<p class=\"meta\">folder <code>{}</code>, squish {}", esc(str(r, "dir")),
                   esc(str(r, "squish_version")));
  const json& base = r["base"];
  if (base.is_object()) {
    h += fmt::format("; base <code>{}</code> ({}, {} parameters, {:.2f} bits per weight)",
                     esc(str(base, "path")), fmt_bytes(num(base, "file_bytes")),
                     base.value("n_params", int64_t{0}), num(base, "bits_per_weight"));
  }
  h += "</p>\n";
  const json& models = r["models"];
  const json& evals = r["evals"];

  // (a) Quality vs size.
  h += "<section id=\"quality\">\n<h2>Quality vs size</h2>\n";
  if (evals.empty()) {
    h += "<p class=\"not-measured\">No evaluations in this folder (run <code>squish eval MODEL "
         "--base BASE -f TEXT --json &gt; NAME.eval.json</code>).</p>\n";
  } else {
    h += "<table id=\"eval-table\">\n<thead><tr><th>model</th><th>file size</th><th>bits/weight"
         "</th><th>base PPL</th><th>model PPL</th><th>PPL ratio</th><th>mean KLD</th><th>top-1 "
         "agreement</th><th>scored tokens</th><th>eval file</th></tr></thead>\n<tbody>\n";
    std::vector<PlotSeries> kld_series(1), ppl_series(1);
    kld_series[0].name = ppl_series[0].name = "models";
    for (const json& e : evals) {
      const json* m =
          e["model_index"].is_number() ? &models[e["model_index"].get<size_t>()] : nullptr;
      const double bpw = m ? num(*m, "bits_per_weight") : NAN;
      const double bytes = m ? num(*m, "file_bytes") : NAN;
      const std::string name = m ? str(*m, "name") : str(e, "model");
      const double kld = num(e, "mean_kld"), ratio = num(e, "ppl_ratio");
      h += fmt::format(
          "<tr class=\"eval-row\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
          "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
          "<td class=\"num\">{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
          "<td>{}</td></tr>\n",
          esc(name), fmt_bytes(bytes), fmt_num(bpw, 4), fmt_num(num(e, "base_ppl"), 5),
          fmt_num(num(e, "model_ppl"), 5), fmt_num(ratio, 5), fmt_num(kld, 4),
          has_num(e, "kld_stderr") ? " ± " + fmt_num(num(e, "kld_stderr"), 2) : "",
          has_num(e, "top1_agreement") ? fmt::format("{:.2f} %", 100 * num(e, "top1_agreement"))
                                       : "n/a",
          e["n_scored"].is_number() ? std::to_string(e["n_scored"].get<int64_t>()) : "n/a",
          esc(str(e, "file")));
      if (!std::isfinite(bpw)) continue;
      const std::string tip = fmt::format("{}: {} ({:.2f} bpw), mean KLD {}, PPL ratio {}", name,
                                          fmt_bytes(bytes), bpw, fmt_num(kld), fmt_num(ratio, 5));
      const std::string label = fmt::format("{} ({})", name, fmt_bytes(bytes));
      if (std::isfinite(kld) && kld > 0) {
        PlotPoint p{bpw, kld, label, tip};
        if (const double se = num(e, "kld_stderr"); std::isfinite(se) && se > 0) {
          p.y_lo = kld - 1.96 * se;  // dropped on the log scale when it reaches 0
          p.y_hi = kld + 1.96 * se;
        }
        kld_series[0].points.push_back(p);
      }
      if (std::isfinite(ratio)) ppl_series[0].points.push_back({bpw, ratio, label, tip});
    }
    h += "</tbody></table>\n<div class=\"plots\">\n";
    if (!kld_series[0].points.empty()) {
      h += svg_plot({"plot-kld",
                     "Mean KLD vs bits per weight (log scale)",
                     "bits per weight",
                     "mean KL(base || model), nats",
                     true,
                     {}},
                    kld_series);
    } else {
      h += "<p class=\"not-measured\">No positive KLD with a known model size to plot.</p>\n";
    }
    if (!ppl_series[0].points.empty()) {
      h += svg_plot({"plot-ppl-ratio",
                     "PPL ratio vs bits per weight",
                     "bits per weight",
                     "PPL(model) / PPL(base)",
                     false,
                     {}},
                    ppl_series);
    }
    h += "</div>\n";
  }
  h += "</section>\n";

  // (b) Per-tensor error.
  h += "<section id=\"tensor-errors\">\n<h2>Per-tensor weight error</h2>\n";
  HeatScale scale;
  double lo = INFINITY, hi = -INFINITY;
  for (const json& m : models) {
    if (!m["tensor_errors"].is_array()) continue;
    for (const json& e : m["tensor_errors"]) {
      if (e["rel_rmse"].is_number() && e["rel_rmse"].get<double>() > 0) {
        lo = std::min(lo, std::log10(e["rel_rmse"].get<double>()));
        hi = std::max(hi, std::log10(e["rel_rmse"].get<double>()));
      }
    }
  }
  if (std::isfinite(lo)) {
    // At most three decades below the largest error, on half-decade bounds: float-exact and
    // near-exact tensors would otherwise stretch the scale and hide the differences that matter.
    scale.hi = std::ceil(hi * 2) / 2;
    scale.lo = std::max(std::floor(lo * 2) / 2, scale.hi - 3);
    if (scale.hi - scale.lo < 1) scale.lo = scale.hi - 1;
  }
  bool any_heatmap = false;
  for (size_t i = 0; i < models.size(); ++i) {
    const json& m = models[i];
    if (!m["tensor_errors"].is_array()) continue;
    if (!any_heatmap) {
      h += "<p class=\"meta\">Relative RMSE ‖W − W<sub>base</sub>‖ / ‖W<sub>base</sub>‖ of each "
           "dequantized tensor against the base; each cell is labelled with the stored type "
           "(hover for the value). Grey: identical to the base.</p>\n";
      h += svg_heat_legend(scale);
      any_heatmap = true;
    }
    h += fmt::format("<h3>{}</h3>\n<p class=\"meta\">{}, {:.2f} bits per weight</p>\n",
                     esc(str(m, "name")), fmt_bytes(num(m, "file_bytes")),
                     num(m, "bits_per_weight"));
    h += svg_heatmap(fmt::format("heatmap-{}", i), m["tensor_errors"], scale);
  }
  if (!any_heatmap) {
    h += "<p class=\"not-measured\">No tensor errors: no quantized model could be compared with a "
         "base (see notes).</p>\n";
  }
  for (const json& m : models) {
    if (m["note"].is_string()) {
      h += fmt::format("<p class=\"note\">{}: {}</p>\n", esc(str(m, "name")), esc(str(m, "note")));
    }
  }
  h += "</section>\n";

  // (c) Frequency buckets.
  h += "<section id=\"frequency\">\n<h2>KLD by token frequency</h2>\n";
  std::vector<std::string> labels;
  std::vector<PlotSeries> freq;
  for (const json& e : evals) {
    if (!e["frequency_buckets"].is_array()) continue;
    PlotSeries ser;
    const json* m =
        e["model_index"].is_number() ? &models[e["model_index"].get<size_t>()] : nullptr;
    ser.name = m ? str(*m, "name") : str(e, "model");
    ser.line = true;
    for (const json& b : e["frequency_buckets"]) {
      const std::string label = str(b, "label");
      auto it = std::find(labels.begin(), labels.end(), label);
      if (it == labels.end()) it = labels.insert(labels.end(), label);
      const double k = num(b, "mean_kld");
      if (std::isfinite(k) && k > 0) {
        ser.points.push_back({static_cast<double>(it - labels.begin()), k, "",
                              fmt::format("{} {}: mean KLD {} over {} tokens", ser.name, label,
                                          fmt_num(k), b.value("n_scored", int64_t{0}))});
      }
    }
    if (!ser.points.empty()) freq.push_back(std::move(ser));
  }
  if (freq.empty()) {
    h += "<p class=\"not-measured\" id=\"frequency-not-measured\">Not measured: the eval outputs "
         "in this folder have no frequency breakdown (<code>breakdowns.frequency</code>, see "
         "docs/eval-json.md).</p>\n";
  } else {
    h += "<p class=\"meta\">Target tokens bucketed by how often they occur (rank 0 = most "
         "frequent).</p>\n";
    h += svg_plot({"plot-frequency", "Mean KLD by frequency bucket (log scale)",
                   "token frequency rank bucket", "mean KLD, nats", true, labels},
                  freq);
  }
  h += "</section>\n";

  // (d) Side-by-side answers.
  h += "<section id=\"compare\">\n<h2>Side-by-side answers</h2>\n";
  if (r["compares"].empty()) {
    h += "<p class=\"not-measured\">No comparisons in this folder (run <code>squish compare BASE "
         "MODEL --prompts FILE --json &gt; NAME.compare.json</code>).</p>\n";
  } else {
    h += "<p class=\"meta\">Shared prefix in plain text, the part after the first difference "
         "highlighted. Match: generated tokens equal before the first difference / tokens in the "
         "base answer. KLD along the base's answer.</p>\n";
    for (size_t i = 0; i < r["compares"].size(); ++i) h += compare_section(r["compares"][i], i);
  }
  h += "</section>\n";

  // Manifests.
  bool any_manifest = false;
  for (const json& m : models) any_manifest |= m["manifest"].is_object();
  if (any_manifest) {
    h += "<section id=\"manifests\">\n<h2>Manifests</h2>\n";
    for (const json& m : models) {
      if (!m["manifest"].is_object()) continue;
      h += fmt::format("<h3>{}</h3>\n<p class=\"meta\">{}</p>\n", esc(str(m, "name")),
                       esc(str(m, "manifest_file")));
      h += manifest_html(m["manifest"]);
    }
    h += "</section>\n";
  }

  if (!r["notes"].empty()) {
    h += "<section id=\"notes\">\n<h2>Notes</h2>\n<ul>\n";
    for (const json& n : r["notes"]) h += "<li>" + esc(n.get<std::string>()) + "</li>\n";
    h += "</ul>\n</section>\n";
  }
  h += "</main>\n</body>\n</html>\n";
  return h;
}

}  // namespace squish
