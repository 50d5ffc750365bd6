// The SVG pieces of the report page (see report.h): the Pareto curve, the format map and the
// sensitivity heat map. Every SVG is drawn in a 1200-unit-wide viewBox and scaled to the page
// with width="100%"; text sizes are in viewBox units (≈ pixels at a 1280-px window).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "pq/report/report.h"

namespace pq::report {
namespace {

constexpr double kWidth = 1200;

std::string F(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string SvgOpen(double height, const std::string& cls, const std::string& label) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"" + cls + "\" viewBox=\"0 0 " +
         F(kWidth, 0) + " " + F(height, 0) +
         "\" width=\"100%\" preserveAspectRatio=\"xMinYMin meet\" role=\"img\" aria-label=\"" +
         HtmlEscape(label) + "\">\n";
}

std::string Text(double x, double y, std::string_view s, const std::string& attrs = "") {
  return "<text x=\"" + F(x) + "\" y=\"" + F(y) + "\"" + (attrs.empty() ? "" : " " + attrs) + ">" +
         HtmlEscape(s) + "</text>\n";
}

std::string Title(std::string_view s) { return "<title>" + HtmlEscape(s) + "</title>"; }

std::string Line(double x1, double y1, double x2, double y2, const std::string& cls) {
  return "<line class=\"" + cls + "\" x1=\"" + F(x1) + "\" y1=\"" + F(y1) + "\" x2=\"" + F(x2) +
         "\" y2=\"" + F(y2) + "\"/>\n";
}

// Black or white, whichever reads better on `hex` ("#rrggbb").
std::string InkFor(const std::string& hex) {
  if (hex.size() != 7) return "#000";
  auto c = [&](int i) { return std::stoi(hex.substr(1 + 2 * i, 2), nullptr, 16) / 255.0; };
  const double lum = 0.299 * c(0) + 0.587 * c(1) + 0.114 * c(2);
  return lum > 0.6 ? "#111" : "#fff";
}

// ---- axes ----

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double pix_lo = 0, pix_hi = 1;  // screen coordinates of lo and hi
  double Map(double v) const {
    double a = log ? std::log10(std::max(v, 1e-300)) : v;
    return pix_lo + (a - lo) / (hi - lo) * (pix_hi - pix_lo);
  }
};

double NiceStep(double range, int n) {
  const double raw = range / std::max(n, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 2.5 ? 2.5 : r <= 5 ? 5 : 10) * mag;
}

// A linear axis over [lo, hi] widened to whole steps; returns the tick values.
std::vector<double> NiceLinear(Axis* a, double lo, double hi, int n) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double step = NiceStep(hi - lo, n);
  a->lo = std::floor(lo / step) * step;
  a->hi = std::ceil(hi / step) * step;
  std::vector<double> ticks;
  for (double t = a->lo; t <= a->hi + step * 1e-6; t += step) ticks.push_back(t);
  return ticks;
}

std::string TickLabel(double v, bool log) {
  if (log) {
    const int e = static_cast<int>(std::lround(v));
    return e >= -2 && e <= 3 ? ShortNumber(std::pow(10.0, e)) : "1e" + std::to_string(e);
  }
  return ShortNumber(std::abs(v) < 1e-12 ? 0 : v);
}

// ---- Pareto ----

struct Frame {
  double left = 92, right = kWidth - 36, top = 34, bottom = 372, height = 430;
};

std::string ParetoAxes(const Frame& fr, const Axis& x, const std::vector<double>& xt, const Axis& y,
                       const std::vector<double>& yt) {
  std::string s = "<rect class=\"plot\" x=\"" + F(fr.left) + "\" y=\"" + F(fr.top) + "\" width=\"" +
                  F(fr.right - fr.left) + "\" height=\"" + F(fr.bottom - fr.top) + "\"/>\n";
  for (double t : xt) {
    const double px = x.Map(t);
    s += Line(px, fr.top, px, fr.bottom, "grid");
    s += Text(px, fr.bottom + 18, TickLabel(t, false), "class=\"tick\" text-anchor=\"middle\"");
  }
  for (double t : yt) {
    const double py = y.pix_lo + (t - y.lo) / (y.hi - y.lo) * (y.pix_hi - y.pix_lo);
    s += Line(fr.left, py, fr.right, py, "grid");
    s += Text(fr.left - 8, py + 4, TickLabel(t, y.log), "class=\"tick\" text-anchor=\"end\"");
  }
  s += Line(fr.left, fr.bottom, fr.right, fr.bottom, "axis");
  s += Line(fr.left, fr.top, fr.left, fr.bottom, "axis");
  s += Text((fr.left + fr.right) / 2, fr.bottom + 44,
            "achieved bits / parameter (quantizable Linears)",
            "class=\"axis-title\" text-anchor=\"middle\"");
  const std::string ytitle =
      std::string("predicted Δloss, nats/token") + (y.log ? " (log scale)" : "");
  s += "<text class=\"axis-title\" text-anchor=\"middle\" transform=\"translate(22 " +
       F((fr.top + fr.bottom) / 2) + ") rotate(-90)\">" + HtmlEscape(ytitle) + "</text>\n";
  return s;
}

// Positions the y axis: log when every value is positive and they span more than 2 decades.
std::vector<double> PlaceY(Axis* y, const std::vector<double>& vals, const Frame& fr) {
  const auto [mn, mx] = std::minmax_element(vals.begin(), vals.end());
  y->pix_lo = fr.bottom;
  y->pix_hi = fr.top;
  y->log = *mn > 0 && *mx / *mn > 100;
  if (!y->log) return NiceLinear(y, std::min(0.0, *mn), *mx, 6);
  y->lo = std::floor(std::log10(*mn));
  y->hi = std::ceil(std::log10(*mx));
  if (y->hi <= y->lo) y->hi = y->lo + 1;
  std::vector<double> ticks;
  for (double e = y->lo; e <= y->hi + 1e-9; ++e) ticks.push_back(e);
  return ticks;
}

std::string Marker(const std::string& cls, double px, double py, const std::string& title) {
  if (cls == "knee")
    return "<polygon class=\"knee\" points=\"" + F(px) + "," + F(py - 9) + " " + F(px + 9) + "," +
           F(py) + " " + F(px) + "," + F(py + 9) + " " + F(px - 9) + "," + F(py) + "\">" +
           Title(title) + "</polygon>\n";
  return "<circle class=\"chosen\" cx=\"" + F(px) + "\" cy=\"" + F(py) + "\" r=\"10\">" +
         Title(title) + "</circle>\n";
}

std::string MarkerLabel(const Frame& fr, double px, double py, double dy, const std::string& s,
                        const std::string& cls) {
  const bool right = px > fr.right - 330;
  const double ty = std::clamp(py + dy, fr.top + 14, fr.bottom - 6);
  return Text(right ? px - 14 : px + 14, ty, s,
              "class=\"" + cls + "-label\" text-anchor=\"" + (right ? "end" : "start") + "\"");
}

std::string ParetoLegend(const Frame& fr) {
  const double x = fr.right - 290, y = fr.top - 14;
  return "<circle class=\"pt\" cx=\"" + F(x) + "\" cy=\"" + F(y - 4) + "\" r=\"5\"/>" +
         Text(x + 10, y, "sweep point", "class=\"tick\"") + Marker("knee", x + 110, y - 4, "knee") +
         Text(x + 124, y, "knee", "class=\"tick\"") + Marker("chosen", x + 185, y - 4, "chosen") +
         Text(x + 201, y, "chosen", "class=\"tick\"");
}

std::string ChosenText(const ReportData& d) {
  return "chosen · " + F(d.achieved_bits, 3) + " bits, Δloss " + ShortNumber(d.predicted_dloss);
}

std::string ParetoCurve(const std::vector<ReportParetoPoint>& pts, const Axis& x, const Axis& y) {
  std::string poly, s;
  for (const auto& p : pts)
    poly += F(x.Map(p.achieved_bits)) + "," + F(y.Map(p.predicted_dloss)) + " ";
  s += "<polyline class=\"curve\" points=\"" + poly + "\"/>\n";
  for (const auto& p : pts)
    s += "<circle class=\"pt" + std::string(p.optimal ? "" : " approx") + "\" cx=\"" +
         F(x.Map(p.achieved_bits)) + "\" cy=\"" + F(y.Map(p.predicted_dloss)) + "\" r=\"5\">" +
         Title("target " + F(p.target_bits, 3) + " → " + F(p.achieved_bits, 3) + " bits/param, " +
               std::to_string(p.total_bytes) + " bytes, predicted Δloss " +
               ShortNumber(p.predicted_dloss) + (p.optimal ? "" : " (not proven optimal)")) +
         "</circle>\n";
  return s;
}

// The knee (at the sweep point nearest knee_bits) and the chosen point, labelled; one label
// when they coincide.
std::string ParetoMarkers(const ReportData& d, const std::vector<ReportParetoPoint>& pts,
                          const Frame& fr, const Axis& x, const Axis& y) {
  std::string s;
  const double cx = x.Map(d.achieved_bits), cy = y.Map(d.predicted_dloss);
  bool knee_is_chosen = false;
  if (d.knee_bits && !pts.empty()) {
    const auto knee = *std::min_element(pts.begin(), pts.end(), [&](const auto& a, const auto& b) {
      return std::abs(a.achieved_bits - *d.knee_bits) < std::abs(b.achieved_bits - *d.knee_bits);
    });
    const double kx = x.Map(*d.knee_bits), ky = y.Map(knee.predicted_dloss);
    knee_is_chosen = std::hypot(kx - cx, ky - cy) < 8;
    const std::string kt =
        "knee · " + F(*d.knee_bits, 3) + " bits, Δloss " + ShortNumber(knee.predicted_dloss);
    s += Marker("knee", kx, ky, kt);
    if (!knee_is_chosen) s += MarkerLabel(fr, kx, ky, 24, kt, "knee");
  }
  s += Marker("chosen", cx, cy, ChosenText(d));
  s += MarkerLabel(fr, cx, cy, -14, (knee_is_chosen ? "knee = " : "") + ChosenText(d), "chosen");
  return s;
}

}  // namespace

std::string HtmlEscape(std::string_view s) {
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

std::string ShortNumber(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5))
    std::snprintf(buf, sizeof buf, "%.2e", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string FormatColor(std::string_view format) {
  static const std::map<std::string_view, std::string> kColors = {
      {"BF16", "#6b7280"},  {"NVFP4", "#d62728"}, {"NVFP4A16", "#ff8c1a"}, {"MXFP8", "#2ca02c"},
      {"MXFP4", "#e377c2"}, {"FP8", "#1f77b4"},   {"INT4", "#9467bd"},     {"INT8", "#17becf"}};
  auto it = kColors.find(format);
  return it == kColors.end() ? "#d9d9d9" : it->second;
}

std::string ParetoSvg(const ReportData& d) {
  const Frame fr;
  std::vector<ReportParetoPoint> pts = d.pareto;
  std::sort(pts.begin(), pts.end(),
            [](const auto& a, const auto& b) { return a.achieved_bits < b.achieved_bits; });
  std::vector<double> xs = {d.achieved_bits}, ys = {d.predicted_dloss};
  for (const auto& p : pts) {
    xs.push_back(p.achieved_bits);
    ys.push_back(p.predicted_dloss);
  }
  Axis x, y;
  x.pix_lo = fr.left;
  x.pix_hi = fr.right;
  const auto [xmn, xmx] = std::minmax_element(xs.begin(), xs.end());
  const std::vector<double> xt = NiceLinear(&x, *xmn, *xmx, 10);
  const std::vector<double> yt = PlaceY(&y, ys, fr);
  std::string s = SvgOpen(fr.height, "pareto", "Pareto curve: predicted loss against bits");
  s += "<g data-yscale=\"" + std::string(y.log ? "log" : "linear") + "\">\n";
  s += ParetoAxes(fr, x, xt, y, yt);
  s += ParetoCurve(pts, x, y);
  s += ParetoMarkers(d, pts, fr, x, y);
  s += ParetoLegend(fr);
  return s + "</g>\n</svg>\n";
}

// ---- grids (format map and sensitivity) ----

namespace {

struct Grid {
  double label_w = 118, left = 0, top = 0, col_w = 0, row_h = 0, width = 0;
  bool rotate = false;
  double Y(size_t row) const { return top + static_cast<double>(row) * row_h; }
  double X(size_t col) const { return left + static_cast<double>(col) * col_w; }
};

constexpr double kCharW = 6.3;  // average glyph width at font-size 11

// A column label as two lines: "mlp.experts.*" over "gate_proj" (prefix empty if no dot).
std::pair<std::string, std::string> SplitLabel(const std::string& s) {
  const size_t dot = s.rfind('.');
  if (dot == std::string::npos) return {"", s};
  return {s.substr(0, dot), s.substr(dot + 1)};
}

// Lays out rows × columns in `width` viewBox units: two-line column labels, rotated when a
// line does not fit its column; row height shrinking with the number of rows.
Grid Layout(const ReportData& d, double width) {
  Grid g;
  g.width = width;
  g.left = g.label_w;
  const size_t cols = std::max<size_t>(d.columns.size(), 1);
  size_t longest = 0, longest_line = 0;
  for (const auto& c : d.columns) {
    const auto [prefix, leaf] = SplitLabel(c);
    longest = std::max(longest, c.size());
    longest_line = std::max({longest_line, prefix.size(), leaf.size()});
  }
  g.col_w = (width - g.left) / static_cast<double>(cols);
  g.rotate = static_cast<double>(longest_line) * kCharW + 8 > g.col_w;
  if (g.rotate) {  // labels at -55°: each reaches cos(55°)·length to the right
    const double right_pad = std::min(160.0, static_cast<double>(longest) * kCharW * 0.574);
    g.col_w = std::max(1.0, (width - g.left - right_pad) / static_cast<double>(cols));
  }
  g.top = g.rotate ? std::min(170.0, 14 + static_cast<double>(longest) * kCharW * 0.82) : 38;
  const size_t rows = d.row_labels.size();
  g.row_h = rows <= 16 ? 24 : rows <= 40 ? 17 : 13;
  return g;
}

std::string Truncate(const std::string& s, size_t n) {
  return s.size() <= n ? s : s.substr(0, n - 1) + "…";
}

std::string ColumnLabel(double cx, double top, const std::string& label) {
  const auto [prefix, leaf] = SplitLabel(label);
  std::string s = "<g>" + Title(label);
  if (!prefix.empty())
    s += Text(cx, top - 21, prefix, "class=\"col-prefix\" text-anchor=\"middle\"");
  return s + Text(cx, top - 8, leaf, "class=\"col-label\" text-anchor=\"middle\"") + "</g>\n";
}

std::string GridLabels(const ReportData& d, const Grid& g) {
  std::string s;
  for (size_t c = 0; c < d.columns.size(); ++c) {
    const double cx = g.X(c) + g.col_w / 2;
    if (g.rotate)
      s += "<text class=\"col-label\" text-anchor=\"start\" transform=\"translate(" + F(cx - 3) +
           " " + F(g.top - 6) + ") rotate(-55)\">" + HtmlEscape(d.columns[c]) +
           Title(d.columns[c]) + "</text>\n";
    else
      s += ColumnLabel(cx, g.top, d.columns[c]);
  }
  for (size_t r = 0; r < d.row_labels.size(); ++r) {
    s += "<rect class=\"row-bg\" x=\"" + F(g.left) + "\" y=\"" + F(g.Y(r) + 1) + "\" width=\"" +
         F(g.col_w * static_cast<double>(d.columns.size())) + "\" height=\"" + F(g.row_h - 2) +
         "\"/>\n";
    s += Text(g.left - 8, g.Y(r) + g.row_h / 2 + 4, Truncate(d.row_labels[r], 18),
              "class=\"row-label\" text-anchor=\"end\"");
  }
  return s;
}

std::string CellRect(const Grid& g, const ReportCell& c, const std::string& cls,
                     const std::string& fill, const std::string& title, const std::string& text) {
  const double w = g.col_w * static_cast<double>(c.span);
  std::string s = "<g><rect class=\"" + cls + "\" x=\"" + F(g.X(c.column) + 1) + "\" y=\"" +
                  F(g.Y(c.row) + 1) + "\" width=\"" + F(w - 2) + "\" height=\"" + F(g.row_h - 2) +
                  "\" fill=\"" + fill + "\">" + Title(title) + "</rect>";
  const double room = static_cast<double>(text.size()) * 5.8 + 6;
  if (!text.empty() && w >= room && g.row_h >= 13)
    s += Text(g.X(c.column) + w / 2, g.Y(c.row) + g.row_h / 2 + 3.5, text,
              "class=\"cell-text\" text-anchor=\"middle\" fill=\"" + InkFor(fill) + "\"");
  return s + "</g>\n";
}

std::string CellTitle(const ReportData& d, const ReportCell& c) {
  std::string t = c.label + "\nformat: " + (c.format.empty() ? "not allocated" : c.format);
  if (c.members > 1) t += " (" + std::to_string(c.members) + " Linears)";
  t += "\npredicted Δloss in it: " + ShortNumber(c.chosen_cost) + " nats/token (" + d.estimator +
       ")";
  return t;
}

// YlOrRd from low to high sensitivity.
std::string HeatColor(double t) {
  static const int kStops[5][3] = {
      {255, 255, 204}, {254, 217, 118}, {253, 141, 60}, {227, 26, 28}, {128, 0, 38}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  char buf[8];
  int rgb[3];
  for (int k = 0; k < 3; ++k)
    rgb[k] = static_cast<int>(std::lround(kStops[i][k] + f * (kStops[i + 1][k] - kStops[i][k])));
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return buf;
}

struct HeatScale {
  double lo = 0, hi = 1;  // log10 of the smallest and largest positive value
  double T(double v) const {
    if (v <= 0) return 0;
    return hi > lo ? (std::log10(v) - lo) / (hi - lo) : 1;
  }
};

HeatScale ScaleOf(const ReportData& d) {
  double mn = 0, mx = 0;
  for (const auto& c : d.cells)
    if (c.reference_cost && *c.reference_cost > 0) {
      mn = mn == 0 ? *c.reference_cost : std::min(mn, *c.reference_cost);
      mx = std::max(mx, *c.reference_cost);
    }
  if (mx <= 0) return {};
  return {std::log10(mn), std::log10(mx)};
}

std::string ColorBar(const HeatScale& h, double x, double y, double w) {
  std::string s = "<defs><linearGradient id=\"pq-heat\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">";
  for (int i = 0; i <= 8; ++i)
    s += "<stop offset=\"" + F(i / 8.0, 3) + "\" stop-color=\"" + HeatColor(i / 8.0) + "\"/>";
  s += "</linearGradient></defs>\n";
  s += "<rect class=\"colorbar\" x=\"" + F(x) + "\" y=\"" + F(y) + "\" width=\"" + F(w) +
       "\" height=\"12\" fill=\"url(#pq-heat)\"/>\n";
  s += Text(x - 8, y + 10, "predicted Δloss (log)", "class=\"tick\" text-anchor=\"end\"");
  const double lo = std::ceil(h.lo - 1e-9), hi = std::floor(h.hi + 1e-9);
  std::vector<double> ticks = {h.lo, h.hi};
  for (double e = lo; e <= hi; ++e) ticks.push_back(e);
  for (double e : ticks) {
    const double px = x + (h.hi > h.lo ? (e - h.lo) / (h.hi - h.lo) : 1) * w;
    s += Line(px, y + 12, px, y + 16, "axis");
    const bool edge = e == h.lo || e == h.hi;
    if (!edge &&
        (std::abs(e - h.lo) < 0.12 * (h.hi - h.lo) || std::abs(e - h.hi) < 0.12 * (h.hi - h.lo)))
      continue;
    s += Text(px, y + 28, ShortNumber(std::pow(10.0, e)), "class=\"tick\" text-anchor=\"middle\"");
  }
  return s;
}

// Per-row totals of the reference cost as bars right of the heat map.
std::string RowBars(const ReportData& d, const Grid& g, double x, double w) {
  std::vector<double> total(d.row_labels.size(), 0);
  for (const auto& c : d.cells)
    if (c.reference_cost) total[c.row] += *c.reference_cost;
  const double mx = *std::max_element(total.begin(), total.end());
  std::string s = Text(x, g.top - 8, "row total", "class=\"col-label\" text-anchor=\"start\"");
  for (size_t r = 0; r < total.size(); ++r) {
    const double bw = mx > 0 ? total[r] / mx * (w - 70) : 0;
    s += "<rect class=\"bar\" x=\"" + F(x) + "\" y=\"" + F(g.Y(r) + 3) + "\" width=\"" + F(bw) +
         "\" height=\"" + F(g.row_h - 6) + "\">" +
         Title(d.row_labels[r] + ": Σ predicted Δloss in " + d.reference_format + " = " +
               ShortNumber(total[r])) +
         "</rect>\n";
    s += Text(x + bw + 4, g.Y(r) + g.row_h / 2 + 4, ShortNumber(total[r]), "class=\"tick\"");
  }
  return s;
}

}  // namespace

std::string FormatMapSvg(const ReportData& d) {
  const Grid g = Layout(d, kWidth);
  const double height = g.Y(d.row_labels.size()) + 6;
  std::string s = SvgOpen(height, "format-map", "Format chosen per layer and module");
  s += GridLabels(d, g);
  for (const ReportCell& c : d.cells)
    s += CellRect(g, c, "cell", FormatColor(c.format), CellTitle(d, c), c.format);
  return s + "</svg>\n";
}

std::string SensitivitySvg(const ReportData& d) {
  constexpr double kBarsW = 230;
  const Grid g = Layout(d, kWidth - kBarsW - 16);
  const HeatScale h = ScaleOf(d);
  const double grid_bottom = g.Y(d.row_labels.size());
  const double height = grid_bottom + 48;
  std::string s = SvgOpen(height, "sensitivity", "Predicted loss in the reference format");
  s += GridLabels(d, g);
  for (const ReportCell& c : d.cells) {
    std::string title = c.label + "\nfisher_trace: " + ShortNumber(c.fisher_trace);
    if (c.members > 1) title += " (Σ of " + std::to_string(c.members) + " Linears)";
    if (!c.reference_cost) {
      title += "\n" + d.reference_format + " not available for this shape";
      s += CellRect(g, c, "heat missing", "#eeeeee", title, "n/a");
      continue;
    }
    title += "\npredicted Δloss in " + d.reference_format + ": " + ShortNumber(*c.reference_cost) +
             " nats/token (" + d.estimator + ")";
    s += CellRect(g, c, "heat", HeatColor(h.T(*c.reference_cost)), title,
                  ShortNumber(*c.reference_cost));
  }
  s += RowBars(d, g, kWidth - kBarsW, kBarsW);
  s += ColorBar(h, g.left + 160, grid_bottom + 12, std::min(420.0, g.width - g.left - 170));
  return s + "</svg>\n";
}

}  // namespace pq::report
