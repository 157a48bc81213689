// The HTML report of a lower-bound analysis (see include/bricklab/lowerbound/report.hpp).
//
// Two steps: the JSON is read into plain structs (every type checked, errors name the field),
// then the page is written section by section. Charts are SVG drawn here with a fixed 1100-unit
// wide viewBox that scales with the page. Strings from the JSON go through esc() (text and
// attribute values alike); nothing from the JSON reaches the inline script.
#include "bricklab/lowerbound/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bricklab/core/error.hpp"

namespace bricklab::lowerbound {
namespace {

using json = nlohmann::json;
using opt = std::optional<double>;

// ---- the analysis, read from the JSON ----------------------------------------------------------

struct Variant {
  std::string name;
  opt ms;
  bool is_default = false;
};

struct Layer {
  std::string name, op, roofline_limit, default_variant, fastest_variant;
  opt flops, bytes, roofline_ms, default_ms, fastest_ms, start_ms, finish_ms;
  std::vector<Variant> variants;
  long group = -1;
  bool critical = false, missing = false;
};

struct Group {
  long id = -1;
  std::string label;
  std::vector<std::string> layers;
  opt fused_ms, unfused_ms;
};

struct Measured {
  std::string runtime;
  opt ms, p10_ms, p90_ms;
};

struct Advice {
  std::string kind, title, runtime, note;
  opt predicted_ms, predicted_pct, realised_ms, realised_pct;
  bool applied = false;
};

struct GapPart {
  std::string kind, what;
  opt ms, pct;
};

struct Analysis {
  std::string model, path, backend, fingerprint;
  std::string gap_baseline;  // "" when the analysis has no gap accounting (older JSON)
  opt gap_baseline_ms, gap_bound_ms;
  std::vector<GapPart> gap;
  opt batch, threads;
  bool has_machine = false;
  std::string cpu, device;
  std::vector<std::pair<std::string, double>> peaks;  // dtype -> GFLOP/s
  opt bandwidth_gbs;
  opt seq_ms, par_ms, roof_seq_ms, roof_par_ms, default_seq_ms;
  std::vector<Measured> measured;
  std::vector<Layer> layers;
  std::vector<Group> groups;
  std::vector<std::string> critical_path, missing;
  std::vector<Advice> advice;
};

[[noreturn]] void bad(const std::string& field, const std::string& problem) {
  throw InvalidArgument("lower-bound analysis JSON: field '" + field + "' " + problem);
}

const json* member(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

opt get_num(const json& obj, const char* key, const std::string& path) {
  const json* v = member(obj, key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_number()) bad(path + "." + key, "must be a number or null");
  double d = v->get<double>();
  if (!std::isfinite(d)) bad(path + "." + key, "must be finite");
  return d;
}

std::string get_str(const json& obj, const char* key, const std::string& path, bool required = false) {
  const json* v = member(obj, key);
  if (!v || v->is_null()) {
    if (required) bad(path.empty() ? key : path + "." + key, "is missing");
    return {};
  }
  if (!v->is_string()) bad(path.empty() ? key : path + "." + key, "must be a string");
  return v->get<std::string>();
}

// An integer id (group numbers): absent or null gives `absent`.
long get_id(const json& obj, const char* key, const std::string& path, long absent) {
  opt v = get_num(obj, key, path);
  if (!v) return absent;
  if (*v != std::floor(*v) || std::fabs(*v) > 1e15) bad(path + "." + key, "must be an integer");
  return static_cast<long>(*v);
}

bool get_bool(const json& obj, const char* key, const std::string& path) {
  const json* v = member(obj, key);
  if (!v || v->is_null()) return false;
  if (!v->is_boolean()) bad(path + "." + key, "must be true, false or null");
  return v->get<bool>();
}

// An optional array (absent or null: empty); `path` names it in errors.
const json& get_array(const json& obj, const char* key, const std::string& path, bool required = false) {
  static const json empty = json::array();
  const json* v = member(obj, key);
  if (!v || v->is_null()) {
    if (required) bad(path, "is missing");
    return empty;
  }
  if (!v->is_array()) bad(path, "must be an array");
  return *v;
}

void require_object(const json& v, const std::string& path) {
  if (!v.is_object()) bad(path, "must be an object");
}

std::vector<std::string> get_strings(const json& obj, const char* key, const std::string& path) {
  std::vector<std::string> out;
  const json& arr = get_array(obj, key, path);
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) bad(path + "[" + std::to_string(i) + "]", "must be a string");
    out.push_back(arr[i].get<std::string>());
  }
  return out;
}

Analysis parse(const std::string& text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw InvalidArgument(std::string("lower-bound analysis JSON: not valid JSON: ") + e.what());
  }
  if (!root.is_object()) throw InvalidArgument("lower-bound analysis JSON: the top level must be an object");
  Analysis a;
  std::string schema = get_str(root, "schema", "", true);
  if (schema != "bricklab.lowerbound/1")
    bad("schema", "is '" + schema + "', expected 'bricklab.lowerbound/1'");
  a.model = get_str(root, "model", "", true);
  a.path = get_str(root, "path", "");
  a.backend = get_str(root, "backend", "");
  a.fingerprint = get_str(root, "fingerprint", "");
  a.batch = get_num(root, "batch", "");
  a.threads = get_num(root, "threads", "");

  if (const json* m = member(root, "machine"); m && !m->is_null()) {
    require_object(*m, "machine");
    a.has_machine = true;
    a.cpu = get_str(*m, "cpu", "machine");
    a.device = get_str(*m, "device", "machine");
    a.bandwidth_gbs = get_num(*m, "bandwidth_gbs", "machine");
    if (const json* p = member(*m, "peak_gflops"); p && !p->is_null()) {
      require_object(*p, "machine.peak_gflops");
      for (auto it = p->begin(); it != p->end(); ++it) {
        if (it.value().is_null()) continue;
        if (!it.value().is_number()) bad("machine.peak_gflops." + it.key(), "must be a number or null");
        a.peaks.emplace_back(it.key(), it.value().get<double>());
      }
    }
  }
  if (const json* b = member(root, "bounds"); b && !b->is_null()) {
    require_object(*b, "bounds");
    a.seq_ms = get_num(*b, "sequential_ms", "bounds");
    a.par_ms = get_num(*b, "parallel_ms", "bounds");
    a.roof_seq_ms = get_num(*b, "roofline_sequential_ms", "bounds");
    a.roof_par_ms = get_num(*b, "roofline_parallel_ms", "bounds");
    a.default_seq_ms = get_num(*b, "default_sequential_ms", "bounds");
  }
  const json& measured = get_array(root, "measured", "measured");
  for (size_t i = 0; i < measured.size(); ++i) {
    std::string p = "measured[" + std::to_string(i) + "]";
    require_object(measured[i], p);
    Measured m;
    m.runtime = get_str(measured[i], "runtime", p);
    if (m.runtime.empty()) m.runtime = "runtime " + std::to_string(i + 1);
    m.ms = get_num(measured[i], "ms", p);
    m.p10_ms = get_num(measured[i], "p10_ms", p);
    m.p90_ms = get_num(measured[i], "p90_ms", p);
    a.measured.push_back(std::move(m));
  }

  const json& layers = get_array(root, "layers", "layers", true);
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string p = "layers[" + std::to_string(i) + "]";
    const json& lj = layers[i];
    require_object(lj, p);
    Layer l;
    l.name = get_str(lj, "name", p, true);
    l.op = get_str(lj, "op", p);
    if (l.op.empty()) l.op = "?";
    l.flops = get_num(lj, "flops", p);
    l.bytes = get_num(lj, "bytes", p);
    l.roofline_ms = get_num(lj, "roofline_ms", p);
    l.roofline_limit = get_str(lj, "roofline_limit", p);
    l.default_variant = get_str(lj, "default_variant", p);
    l.default_ms = get_num(lj, "default_ms", p);
    l.fastest_variant = get_str(lj, "fastest_variant", p);
    l.fastest_ms = get_num(lj, "fastest_ms", p);
    l.start_ms = get_num(lj, "start_ms", p);
    l.finish_ms = get_num(lj, "finish_ms", p);
    l.critical = get_bool(lj, "critical", p);
    l.missing = get_bool(lj, "missing", p);
    l.group = get_id(lj, "group", p, -1);
    const json& vars = get_array(lj, "variants", p + ".variants");
    for (size_t k = 0; k < vars.size(); ++k) {
      std::string vp = p + ".variants[" + std::to_string(k) + "]";
      require_object(vars[k], vp);
      Variant v;
      v.name = get_str(vars[k], "name", vp);
      v.ms = get_num(vars[k], "ms", vp);
      v.is_default = get_bool(vars[k], "default", vp);
      l.variants.push_back(std::move(v));
    }
    a.layers.push_back(std::move(l));
  }

  const json& groups = get_array(root, "groups", "groups");
  for (size_t i = 0; i < groups.size(); ++i) {
    std::string p = "groups[" + std::to_string(i) + "]";
    require_object(groups[i], p);
    Group g;
    g.id = get_id(groups[i], "id", p, -1);
    g.label = get_str(groups[i], "label", p);
    g.layers = get_strings(groups[i], "layers", p + ".layers");
    g.fused_ms = get_num(groups[i], "fused_ms", p);
    g.unfused_ms = get_num(groups[i], "unfused_ms", p);
    a.groups.push_back(std::move(g));
  }
  a.critical_path = get_strings(root, "critical_path", "critical_path");
  a.missing = get_strings(root, "missing", "missing");

  const json& advice = get_array(root, "advice", "advice");
  for (size_t i = 0; i < advice.size(); ++i) {
    std::string p = "advice[" + std::to_string(i) + "]";
    require_object(advice[i], p);
    Advice ad;
    ad.kind = get_str(advice[i], "kind", p);
    ad.title = get_str(advice[i], "title", p);
    ad.runtime = get_str(advice[i], "runtime", p);
    ad.note = get_str(advice[i], "note", p);
    ad.predicted_ms = get_num(advice[i], "predicted_ms", p);
    ad.predicted_pct = get_num(advice[i], "predicted_pct", p);
    ad.realised_ms = get_num(advice[i], "realised_ms", p);
    ad.realised_pct = get_num(advice[i], "realised_pct", p);
    ad.applied = get_bool(advice[i], "applied", p);
    a.advice.push_back(std::move(ad));
  }

  // The accounting of the time above the parallel bound (optional: older analyses lack it).
  if (const json* gap = member(root, "gap"); gap && !gap->is_null()) {
    require_object(*gap, "gap");
    a.gap_baseline = get_str(*gap, "baseline", "gap");
    a.gap_baseline_ms = get_num(*gap, "baseline_ms", "gap");
    a.gap_bound_ms = get_num(*gap, "bound_ms", "gap");
    const json& parts = get_array(*gap, "parts", "gap.parts");
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string q = "gap.parts[" + std::to_string(i) + "]";
      require_object(parts[i], q);
      a.gap.push_back({get_str(parts[i], "kind", q), get_str(parts[i], "what", q), get_num(parts[i], "ms", q),
                       get_num(parts[i], "pct", q)});
    }
  }

  // The critical path and the missing list may come from either place: merge them.
  std::set<std::string> crit(a.critical_path.begin(), a.critical_path.end());
  std::set<std::string> miss(a.missing.begin(), a.missing.end());
  for (Layer& l : a.layers) {
    if (crit.count(l.name)) l.critical = true;
    if (miss.count(l.name)) l.missing = true;
  }
  for (const Layer& l : a.layers)
    if (l.missing && !miss.count(l.name)) {
      a.missing.push_back(l.name);
      miss.insert(l.name);
    }
  return a;
}

// ---- formatting --------------------------------------------------------------------------------

std::string printf_str(const char* fmt, ...) {
  char buf[128];
  va_list args;
  va_start(args, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  if (n < 0) return {};
  return std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

std::string esc(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// A layer name for a table cell: escaped, with a line-break opportunity after every '/'.
std::string esc_name(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += esc(std::string(1, c));
    if (c == '/' && &c != &s.back()) out += "<wbr>";
  }
  return out;
}

// Three significant digits, no exponent for ordinary latencies.
std::string num3(double v) {
  double a = std::fabs(v);
  if (a == 0) return "0";
  if (a >= 100) return printf_str("%.0f", v);
  if (a >= 0.001) return printf_str("%.3g", v);
  return printf_str("%.2g", v);
}

std::string ms(const opt& v) { return v ? num3(*v) + " ms" : "n/a"; }
std::string ms_bare(const opt& v) { return v ? num3(*v) : "n/a"; }
std::string pct(double v) { return printf_str("%.1f%%", v); }

// 2.36e8 -> "236 M"; `unit` follows the prefix ("FLOP", "B").
std::string si(const opt& v, const char* unit) {
  if (!v) return "n/a";
  static const char* prefixes[] = {"", "k", "M", "G", "T", "P"};
  double x = *v;
  int p = 0;
  while (std::fabs(x) >= 1000 && p < 5) {
    x /= 1000;
    ++p;
  }
  return num3(x) + " " + prefixes[p] + unit;
}

std::string coord(double v) { return printf_str("%.1f", v); }

// Shortens to about `max_chars` code points, keeping the head and the (more telling) tail.
std::string shorten(const std::string& s, size_t max_chars) {
  std::vector<size_t> starts;  // byte offset of each UTF-8 code point
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  if (starts.size() <= max_chars) return s;
  size_t head = max_chars / 3, tail = max_chars - head - 1;
  return s.substr(0, starts[head]) + "\xE2\x80\xA6" + s.substr(starts[starts.size() - tail]);
}

// ---- colours -----------------------------------------------------------------------------------

const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                                "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295",
                                "#8cd17d", "#a0cbe8", "#ffbe7d", "#499894", "#f1ce63", "#d4a6c8"};
const char* const kOther = "#c7c7c7";

// Colours of the op types in one report: the heaviest types (summed default or fastest time,
// as the chart by operator type orders them) take the palette in order, so the types that
// matter are told apart; the rest share the neutral colour. No operator is singled out by name.
class OpColours {
 public:
  explicit OpColours(const std::vector<Layer>& layers) {
    const auto nz = [](const opt& v) { return v ? std::max(*v, 0.0) : 0.0; };
    std::map<std::string, std::pair<double, double>> time;
    for (const Layer& l : layers) {
      auto& t = time[l.op];
      t.first += nz(l.default_ms);
      t.second += nz(l.fastest_ms);
    }
    std::vector<std::pair<double, std::string>> order;
    for (const auto& [op, t] : time) order.push_back({std::max(t.first, t.second), op});
    std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) { return x.first != y.first ? x.first > y.first : x.second < y.second; });
    const size_t palette = sizeof kPalette / sizeof kPalette[0];
    for (size_t i = 0; i < order.size() && i < palette; ++i) colour_[order[i].second] = kPalette[i];
  }
  std::string operator()(const std::string& op) const {
    auto it = colour_.find(op);
    return it == colour_.end() ? kOther : it->second;
  }

 private:
  std::map<std::string, std::string> colour_;
};

const char* kDefaultColour = "#8796a8";
const char* kFastestColour = "#2b6cb0";
const char* kRooflineColour = "#38a169";
const char* kCriticalColour = "#dd5a1e";

// ---- the page ----------------------------------------------------------------------------------

constexpr double kW = 1100;  // SVG viewBox width

struct Page {
  std::string html;
  Page& operator<<(const std::string& s) {
    html += s;
    return *this;
  }
  Page& operator<<(const char* s) {
    html += s;
    return *this;
  }
};

const char* kCss = R"CSS(
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2933;background:#f4f6f8;margin:0}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:0 0 6px}
.sub{color:#52606d;font-size:13px}
section,header{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:0 0 18px}
.meta{display:flex;flex-wrap:wrap;gap:4px 22px;margin:8px 0 2px;font-size:13px}
.meta b{color:#52606d;font-weight:600;margin-right:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:14px}
.card{flex:1 1 170px;border:1px solid #dde3ea;border-radius:8px;padding:10px 14px;background:#fafbfc}
.card .k{font-size:12px;color:#52606d;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:26px;font-weight:700;margin:2px 0}
.card .s{font-size:12px;color:#616e7c}
.card.gap .v{color:#c05621}
.card.good .v{color:#2f855a}
.warn{background:#fff8e6;border:1px solid #f0b429;border-left:6px solid #de911d;border-radius:8px;padding:12px 18px;margin:0 0 18px}
.warn h2{color:#8d4b00}
.warn ul{margin:6px 0 0;padding-left:20px;columns:2;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
svg{display:block;width:100%;height:auto;font-family:inherit}
svg text{font-size:12px;fill:#1f2933}
svg .ax{fill:#7b8794;font-size:11px}
svg .lbl{font-size:12px}
svg .in{fill:#fff;font-size:11px}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;font-size:12px;margin:6px 0}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;vertical-align:-1px;margin-right:5px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{padding:4px 8px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#f0f4f8;position:sticky;top:0;font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.sortable th{cursor:pointer}
table.sortable th[data-dir=asc]::after{content:" \25B2";font-size:9px}
table.sortable th[data-dir=desc]::after{content:" \25BC";font-size:9px}
td.name{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;overflow-wrap:anywhere;min-width:220px}
td.nw{white-space:nowrap}
tr.crit td:first-child{box-shadow:inset 4px 0 0 #dd5a1e}
tr.crit td.name{font-weight:600}
tr.miss{background:#fff4e5}
.badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;font-weight:600;color:#fff;white-space:nowrap}
.cp{background:#dd5a1e}
.na{color:#9aa5b1}
.kind-algorithm{background:#4e79a7}.kind-fusion{background:#59a14f}.kind-precision{background:#b07aa1}
.kind-parallel{background:#f28e2b}.kind-runtime{background:#e15759}.kind-other{background:#7b8794}
.scroll{max-height:720px;overflow:auto;border:1px solid #e4e7eb;border-radius:6px}
.note{color:#3e4c59;max-width:360px}
footer{color:#7b8794;font-size:12px;text-align:center}
)CSS";

const char* kScript = R"JS(
document.querySelectorAll('table.sortable').forEach(function(t){
  var hs=t.tHead.rows[0].cells;
  Array.prototype.forEach.call(hs,function(th,i){
    th.title='click to sort';
    th.addEventListener('click',function(){
      var asc=th.getAttribute('data-dir')!=='asc',num=th.classList.contains('n');
      Array.prototype.forEach.call(hs,function(h){h.removeAttribute('data-dir');});
      th.setAttribute('data-dir',asc?'asc':'desc');
      var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
      function key(r){var c=r.cells[i],v=c.getAttribute('data-v');return v===null?c.textContent:v;}
      rows.sort(function(x,y){
        var a=key(x),c=key(y);
        if(num){if(a===''&&c==='')return 0;if(a==='')return 1;if(c==='')return -1;a=+a;c=+c;return asc?a-c:c-a;}
        return asc?a.localeCompare(c):c.localeCompare(a);
      });
      rows.forEach(function(r){b.appendChild(r);});
    });
  });
});
)JS";

// A numeric data-v attribute for sorting ("" when null).
std::string dv(const opt& v) { return v ? " data-v=\"" + printf_str("%.9g", *v) + "\"" : " data-v=\"\""; }

// Ticks at 1, 2 or 5 times a power of ten, about `n` of them up to `max`.
double tick_step(double max, int n) {
  if (max <= 0) return 1;
  double raw = max / n, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

// Vertical grid lines and labels for an x axis from x0 (value 0) to x0 + width (value max).
void axis(Page& p, double x0, double width, double max, double y_top, double y_bottom, const char* unit) {
  double step = tick_step(max, 6);
  for (int i = 0; i * step <= max * 1.0001; ++i) {
    double v = i * step, x = x0 + width * v / max;
    p << "<line x1=\"" << coord(x) << "\" y1=\"" << coord(y_top) << "\" x2=\"" << coord(x) << "\" y2=\""
      << coord(y_bottom) << "\" stroke=\"#e4e7eb\"/>";
    p << "<text class=\"ax\" x=\"" << coord(x) << "\" y=\"" << coord(y_bottom + 14) << "\" text-anchor=\"middle\">"
      << num3(v) << (i == 0 ? std::string(" ") + unit : std::string()) << "</text>";
  }
}

std::string svg_open(double height, const std::string& label) {
  return "<svg viewBox=\"0 0 " + coord(kW) + " " + coord(height) + "\" role=\"img\" aria-label=\"" + esc(label) + "\">";
}

std::string rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra = "") {
  return "<rect x=\"" + coord(x) + "\" y=\"" + coord(y) + "\" width=\"" + coord(std::max(w, 0.0)) + "\" height=\"" +
         coord(h) + "\" fill=\"" + fill + "\"" + extra + ">";
}

double nz(const opt& v) { return v ? std::max(*v, 0.0) : 0.0; }

// -- header and headline numbers

const Measured* headline_measurement(const Analysis& a) {
  for (const Measured& m : a.measured)
    if (m.runtime == "bricklab" && m.ms) return &m;
  for (const Measured& m : a.measured)
    if (m.ms) return &m;
  return nullptr;
}

void card(Page& p, const std::string& cls, const std::string& key, const std::string& value, const std::string& sub) {
  p << "<div class=\"card " << cls << "\"><div class=\"k\">" << key << "</div><div class=\"v\">" << value
    << "</div><div class=\"s\">" << sub << "</div></div>";
}

void header(Page& p, const Analysis& a) {
  p << "<header><h1>Lower-bound analysis: " << esc(a.model) << "</h1>";
  if (!a.path.empty()) p << "<div class=\"sub\">" << esc(a.path) << "</div>";
  p << "<div class=\"meta\">";
  auto item = [&](const std::string& k, const std::string& v) { p << "<span><b>" << k << "</b>" << v << "</span>"; };
  item("batch", a.batch ? num3(*a.batch) : "n/a");
  item("backend", a.backend.empty() ? "n/a" : esc(a.backend));
  item("threads", a.threads ? num3(*a.threads) : "n/a");
  if (a.has_machine) {
    std::string machine = esc(a.cpu.empty() ? std::string("unknown") : a.cpu);
    if (!a.device.empty()) machine += " (" + esc(a.device) + ")";
    item("machine", machine);
    std::string peaks;
    for (const auto& [dtype, g] : a.peaks) peaks += (peaks.empty() ? "" : " &middot; ") + esc(dtype) + " " + num3(g);
    item("peak GFLOP/s", peaks.empty() ? "n/a" : peaks);
    item("bandwidth", a.bandwidth_gbs ? num3(*a.bandwidth_gbs) + " GB/s" : "n/a");
  } else {
    item("machine", "<span class=\"na\">not measured</span>");
  }
  item("fingerprint", a.fingerprint.empty() ? "n/a" : "<code>" + esc(a.fingerprint) + "</code>");
  size_t crit = 0;
  for (const Layer& l : a.layers) crit += l.critical;
  item("layers", std::to_string(a.layers.size()) + " (" + std::to_string(crit) + " on the critical path, " +
                     std::to_string(a.missing.size()) + " missing)");
  p << "</div><div class=\"cards\">";
  const Measured* m = headline_measurement(a);
  if (m) {
    std::string sub = "measured";
    if (m->p10_ms && m->p90_ms) sub += ", p10&ndash;p90 " + num3(*m->p10_ms) + "&ndash;" + num3(*m->p90_ms) + " ms";
    card(p, "", esc(m->runtime) + " measured", ms(m->ms), sub);
  } else {
    card(p, "", "measured", "n/a", "no measurement in the analysis");
  }
  card(p, "", "sequential bound", ms(a.seq_ms), "sum of the fastest variants");
  card(p, "", "parallel bound", ms(a.par_ms), "critical path of the fastest variants");
  card(p, "", "roofline bound", ms(a.roof_par_ms ? a.roof_par_ms : a.roof_seq_ms),
       a.roof_par_ms ? "parallel; sequential " + ms(a.roof_seq_ms) : std::string("sequential"));
  if (m && a.seq_ms && *a.seq_ms > 0) {
    double gap = (*m->ms / *a.seq_ms - 1) * 100;
    std::string sub = gap >= 0 ? "above the sequential bound" : "below the sequential bound (the bound is not tight)";
    if (a.par_ms && *a.par_ms > 0) sub += "; " + pct((*m->ms / *a.par_ms - 1) * 100) + " vs the parallel bound";
    card(p, gap >= 0 ? "gap" : "good", "gap to the bound", (gap >= 0 ? "+" : "") + pct(gap), sub);
  }
  p << "</div></header>";
}

void missing_box(Page& p, const Analysis& a) {
  if (a.missing.empty()) return;
  p << "<div class=\"warn\" id=\"missing\"><h2>&#9888; " << std::to_string(a.missing.size())
    << (a.missing.size() == 1 ? " layer has" : " layers have")
    << " no benchmark</h2><div>The bounds leave these layers out, so they are optimistic by the time these layers "
       "take. Benchmark them (<code>bricklab bricks run</code>) and re-run the analysis.</div><ul>";
  const size_t cap = 60;
  for (size_t i = 0; i < a.missing.size() && i < cap; ++i) p << "<li>" << esc(a.missing[i]) << "</li>";
  if (a.missing.size() > cap) p << "<li>&hellip; and " << std::to_string(a.missing.size() - cap) << " more</li>";
  p << "</ul></div>";
}

// -- bounds vs measured

void bounds_chart(Page& p, const Analysis& a) {
  struct Row {
    std::string label, colour;
    double v;
    opt lo, hi;
  };
  std::vector<Row> rows;
  auto add = [&](const std::string& label, const opt& v, const char* colour) {
    if (v) rows.push_back({label, colour, std::max(*v, 0.0), std::nullopt, std::nullopt});
  };
  add("Roofline, parallel", a.roof_par_ms, "#9ae6b4");
  add("Roofline, sequential", a.roof_seq_ms, "#68d391");
  add("Parallel bound", a.par_ms, "#38a169");
  add("Sequential bound", a.seq_ms, "#276749");
  add("Default variants (sum)", a.default_seq_ms, kDefaultColour);
  const char* measured_colours[] = {"#2b6cb0", "#c05621", "#6b46c1", "#b83280"};
  for (size_t i = 0; i < a.measured.size(); ++i)
    if (a.measured[i].ms)
      rows.push_back({"Measured: " + esc(a.measured[i].runtime), measured_colours[std::min<size_t>(i, 3)],
                      std::max(*a.measured[i].ms, 0.0), a.measured[i].p10_ms, a.measured[i].p90_ms});
  p << "<section id=\"bounds\"><h2>Bounds vs measured latency</h2><div class=\"sub\">Green: lower bounds "
       "(roofline from FLOPs and bytes at the machine's peaks; the sequential and parallel bounds from the fastest "
       "benchmarked variant of every layer). Grey: what the default variants add up to. Whiskers: p10&ndash;p90 of "
       "the measurements. The dashed line is the sequential bound.</div>";
  if (rows.empty()) {
    p << "<p class=\"na\">No bounds or measurements in the analysis.</p></section>";
    return;
  }
  double max = 0;
  for (const Row& r : rows) max = std::max({max, r.v, r.hi ? *r.hi : 0.0});
  if (max <= 0) max = 1;
  max *= 1.08;
  const double x0 = 190, bw = kW - x0 - 80, rh = 30, top = 10;
  double h = top + rows.size() * rh + 26;
  p << svg_open(h, "bounds vs measured latency");
  axis(p, x0, bw, max, top - 4, top + rows.size() * rh, "ms");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    double y = top + i * rh, w = bw * r.v / max;
    p << "<text x=\"" << coord(x0 - 10) << "\" y=\"" << coord(y + rh / 2 + 4) << "\" text-anchor=\"end\">" << r.label
      << "</text>";
    p << rect(x0, y + 5, w, rh - 10, r.colour, " rx=\"2\"") << "<title>" << r.label << ": " << num3(r.v)
      << " ms</title></rect>";
    double label_x = x0 + w;
    if (r.lo && r.hi) {
      double xl = x0 + bw * std::max(*r.lo, 0.0) / max, xh = x0 + bw * std::max(*r.hi, 0.0) / max, ym = y + rh / 2;
      p << "<path d=\"M" << coord(xl) << " " << coord(ym) << "H" << coord(xh) << "M" << coord(xl) << " "
        << coord(ym - 6) << "V" << coord(ym + 6) << "M" << coord(xh) << " " << coord(ym - 6) << "V" << coord(ym + 6)
        << "\" stroke=\"#1f2933\" stroke-width=\"1.3\" fill=\"none\"/>";
      label_x = std::max(label_x, xh);
    }
    p << "<text class=\"lbl\" x=\"" << coord(label_x + 6) << "\" y=\"" << coord(y + rh / 2 + 4)
      << "\" font-weight=\"600\">" << num3(r.v) << " ms</text>";
  }
  if (a.seq_ms) {
    double x = x0 + bw * std::max(*a.seq_ms, 0.0) / max;
    p << "<line x1=\"" << coord(x) << "\" y1=\"" << coord(top - 4) << "\" x2=\"" << coord(x) << "\" y2=\""
      << coord(top + rows.size() * rh) << "\" stroke=\"#276749\" stroke-dasharray=\"4 3\"/>";
  }
  p << "</svg></section>";
}

// -- time by operator type

struct OpTotals {
  std::string op;
  size_t layers = 0;
  double def = 0, fast = 0, roof = 0;
};

void op_chart(Page& p, const Analysis& a) {
  std::map<std::string, OpTotals> by_op;
  for (const Layer& l : a.layers) {
    OpTotals& t = by_op[l.op];
    t.op = l.op;
    ++t.layers;
    t.def += nz(l.default_ms);
    t.fast += nz(l.fastest_ms);
    t.roof += nz(l.roofline_ms);
  }
  std::vector<OpTotals> ops;
  for (auto& kv : by_op) ops.push_back(kv.second);
  std::sort(ops.begin(), ops.end(), [](const OpTotals& x, const OpTotals& y) {
    double kx = std::max(x.def, x.fast), ky = std::max(y.def, y.fast);
    return kx != ky ? kx > ky : x.op < y.op;
  });
  // The 10 heaviest types by name, the rest as one "other" segment.
  const size_t shown = 10;
  std::vector<OpTotals> segs(ops.begin(), ops.begin() + std::min(shown, ops.size()));
  if (ops.size() > shown) {
    OpTotals other;
    other.op = "other (" + std::to_string(ops.size() - shown) + " types)";
    for (size_t i = shown; i < ops.size(); ++i) {
      other.layers += ops[i].layers;
      other.def += ops[i].def;
      other.fast += ops[i].fast;
      other.roof += ops[i].roof;
    }
    segs.push_back(other);
  }
  const OpColours op_colour(a.layers);
  auto colour = [&](size_t i) { return i < shown ? op_colour(segs[i].op) : std::string(kOther); };
  OpTotals total;
  for (const OpTotals& t : segs) {
    total.def += t.def;
    total.fast += t.fast;
    total.roof += t.roof;
    total.layers += t.layers;
  }
  p << "<section id=\"ops\"><h2>Time by operator type</h2><div class=\"sub\">Sum over the layers of each type: "
       "with the default variants, with the fastest benchmarked variants, and at the roofline.</div>";
  double max = std::max({total.def, total.fast, total.roof});
  if (ops.empty() || max <= 0) {
    p << "<p class=\"na\">No layer times in the analysis.</p></section>";
    return;
  }
  max *= 1.04;
  struct Series {
    const char* label;
    double OpTotals::*field;
  };
  const Series series[] = {{"Default variants", &OpTotals::def},
                           {"Fastest variants", &OpTotals::fast},
                           {"Roofline", &OpTotals::roof}};
  const double x0 = 150, bw = kW - x0 - 80, rh = 46, top = 8;
  p << svg_open(top + 3 * rh + 24, "time by operator type");
  axis(p, x0, bw, max, top - 4, top + 3 * rh, "ms");
  for (int s = 0; s < 3; ++s) {
    double y = top + s * rh, x = x0, sum = 0;
    p << "<text x=\"" << coord(x0 - 10) << "\" y=\"" << coord(y + rh / 2 + 4) << "\" text-anchor=\"end\">"
      << series[s].label << "</text>";
    for (size_t i = 0; i < segs.size(); ++i) {
      double v = segs[i].*series[s].field, w = bw * v / max;
      if (v <= 0) continue;
      p << rect(x, y + 7, w, rh - 14, colour(i), " stroke=\"#fff\" stroke-width=\"0.8\"") << "<title>"
        << esc(segs[i].op) << ": " << num3(v) << " ms (" << pct(100 * v / (total.*series[s].field))
        << ")</title></rect>";
      std::string label = shorten(segs[i].op, 18);
      if (w > 7.0 * label.size() + 8)
        p << "<text class=\"in\" x=\"" << coord(x + w / 2) << "\" y=\"" << coord(y + rh / 2 + 4)
          << "\" text-anchor=\"middle\">" << esc(label) << "</text>";
      x += w;
      sum += v;
    }
    p << "<text class=\"lbl\" x=\"" << coord(x + 6) << "\" y=\"" << coord(y + rh / 2 + 4) << "\" font-weight=\"600\">"
      << num3(sum) << " ms</text>";
  }
  p << "</svg>";
  // Legend with the numbers.
  auto share = [](double v, double t) { return t > 0 ? pct(100 * v / t) : std::string("n/a"); };
  p << "<table><thead><tr><th>operator</th><th class=\"n\">layers</th><th class=\"n\">default ms</th><th "
       "class=\"n\">%</th><th class=\"n\">fastest ms</th><th class=\"n\">%</th><th class=\"n\">roofline ms</th><th "
       "class=\"n\">%</th></tr></thead><tbody>";
  for (size_t i = 0; i < segs.size(); ++i) {
    const OpTotals& t = segs[i];
    p << "<tr><td><span class=\"sw\" style=\"background:" << colour(i) << "\"></span>" << esc(t.op)
      << "</td><td class=\"n\">" << std::to_string(t.layers) << "</td><td class=\"n\">" << num3(t.def)
      << "</td><td class=\"n\">" << share(t.def, total.def) << "</td><td class=\"n\">" << num3(t.fast)
      << "</td><td class=\"n\">" << share(t.fast, total.fast) << "</td><td class=\"n\">" << num3(t.roof)
      << "</td><td class=\"n\">" << share(t.roof, total.roof) << "</td></tr>";
  }
  p << "<tr><td><b>total</b></td><td class=\"n\">" << std::to_string(total.layers) << "</td><td class=\"n\"><b>"
    << num3(total.def) << "</b></td><td></td><td class=\"n\"><b>" << num3(total.fast)
    << "</b></td><td></td><td class=\"n\"><b>" << num3(total.roof) << "</b></td><td></td></tr></tbody></table></section>";
}

// -- top layers

void layer_chart(Page& p, const Analysis& a) {
  const OpColours op_colour(a.layers);
  const size_t top_n = 25;
  std::vector<const Layer*> ls;
  for (const Layer& l : a.layers)
    if (nz(l.default_ms) > 0 || nz(l.fastest_ms) > 0 || nz(l.roofline_ms) > 0) ls.push_back(&l);
  std::stable_sort(ls.begin(), ls.end(), [](const Layer* x, const Layer* y) {
    return std::max(nz(x->default_ms), nz(x->fastest_ms)) > std::max(nz(y->default_ms), nz(y->fastest_ms));
  });
  size_t n = std::min(top_n, ls.size());
  p << "<section id=\"top-layers\"><h2>Top " << std::to_string(n) << " layers by time</h2><div class=\"sub\">"
    << (ls.size() > n ? "Of " + std::to_string(ls.size()) + " timed layers. " : std::string())
    << "Each layer: its default variant, its fastest benchmarked variant and its roofline time; the thin mark "
       "left of the bars is the operator colour. Labels: default / fastest / roofline.</div>";
  p << "<div class=\"legend\"><span><span class=\"sw\" style=\"background:" << kDefaultColour
    << "\"></span>default variant</span><span><span class=\"sw\" style=\"background:" << kFastestColour
    << "\"></span>fastest variant</span><span><span class=\"sw\" style=\"background:" << kRooflineColour
    << "\"></span>roofline</span><span style=\"color:" << kCriticalColour << "\">&#9679; on the critical path</span></div>";
  if (n == 0) {
    p << "<p class=\"na\">No layer times in the analysis.</p></section>";
    return;
  }
  double max = 0;
  for (size_t i = 0; i < n; ++i)
    max = std::max({max, nz(ls[i]->default_ms), nz(ls[i]->fastest_ms), nz(ls[i]->roofline_ms)});
  max *= 1.08;
  const double x0 = 330, bw = kW - x0 - 150, rh = 30, top = 6;
  p << svg_open(top + n * rh + 24, "top layers by time");
  axis(p, x0, bw, max, top, top + n * rh, "ms");
  for (size_t i = 0; i < n; ++i) {
    const Layer& l = *ls[i];
    double y = top + i * rh;
    p << "<text x=\"" << coord(x0 - 10) << "\" y=\"" << coord(y + rh / 2 + 4) << "\" text-anchor=\"end\""
      << (l.critical ? " font-weight=\"600\" style=\"fill:#b7410e\"" : "") << "><title>" << esc(l.name) << " ("
      << esc(l.op) << ")</title>" << (l.critical ? "&#9679; " : "") << esc(shorten(l.name, 42)) << "</text>";
    p << "<rect x=\"" << coord(x0 - 6) << "\" y=\"" << coord(y + 6) << "\" width=\"3\" height=\"" << coord(rh - 12)
      << "\" fill=\"" << op_colour(l.op) << "\"><title>" << esc(l.op) << "</title></rect>";
    const std::pair<const opt*, const char*> bars[] = {
        {&l.default_ms, kDefaultColour}, {&l.fastest_ms, kFastestColour}, {&l.roofline_ms, kRooflineColour}};
    const char* names[] = {"default", "fastest", "roofline"};
    for (int b = 0; b < 3; ++b) {
      double by = y + 4 + b * 7.5;
      p << rect(x0, by, bw * nz(*bars[b].first) / max, 6.5, bars[b].second) << "<title>" << names[b] << ": "
        << ms(*bars[b].first) << "</title></rect>";
    }
    std::string label = ms_bare(l.default_ms) + " / " + ms_bare(l.fastest_ms) + " / " + ms_bare(l.roofline_ms) + " ms";
    double right = bw * std::max({nz(l.default_ms), nz(l.fastest_ms), nz(l.roofline_ms)}) / max;
    p << "<text class=\"ax\" x=\"" << coord(x0 + right + 6) << "\" y=\"" << coord(y + rh / 2 + 4) << "\">" << label
      << "</text>";
  }
  p << "</svg></section>";
}

// -- the parallel schedule

// What a schedule box runs: a fused group by its whole label ("Conv+BatchNormalization+Relu"),
// not by the one layer that carries the group's time; a layer alone by its operator.
const Group* group_of(const Analysis& a, const Layer& l) {
  if (l.group < 0) return nullptr;
  for (const Group& g : a.groups)
    if (g.id == l.group) return &g;
  return nullptr;
}
std::string step_label(const Analysis& a, const Layer& l) {
  const Group* g = group_of(a, l);
  return g && !g->label.empty() ? g->label : l.op;
}
// Short forms for box labels only (titles and tables keep the ONNX names).
std::string short_ops(std::string label) {
  static const std::pair<const char*, const char*> kShort[] = {
      {"BatchNormalization", "BN"}, {"LayerNormalization", "LayerNorm"}, {"InstanceNormalization", "InstanceNorm"},
      {"GlobalAveragePool", "GlobalAvgPool"}};
  for (const auto& [from, to] : kShort)
    for (size_t at = label.find(from); at != std::string::npos; at = label.find(from, at + std::strlen(to)))
      label.replace(at, std::strlen(from), to);
  return label;
}
std::string step_members(const Analysis& a, const Layer& l) {
  const Group* g = group_of(a, l);
  if (!g) return l.name;
  std::string out;
  for (const std::string& n : g->layers) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void timeline(Page& p, const Analysis& a) {
  struct Item {
    const Layer* l;
    double s, f;
  };
  std::vector<Item> items;
  for (const Layer& l : a.layers)
    if (l.start_ms && l.finish_ms && *l.finish_ms > *l.start_ms) items.push_back({&l, *l.start_ms, *l.finish_ms});
  p << "<section id=\"timeline\"><h2>Parallel schedule and critical path</h2><div class=\"sub\">Each layer from its "
       "earliest start to its finish with the fastest variants, independent branches in separate lanes. "
       "<span style=\"color:"
    << kCriticalColour
    << ";font-weight:600\">Orange: the critical path</span>; its end is the parallel bound. Free layers (0 ms) are "
       "not drawn.</div>";
  if (items.empty()) {
    p << "<p class=\"na\">The analysis has no schedule (start_ms / finish_ms).</p></section>";
    return;
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.s < y.s; });
  // Interval partitioning: the first lane free at the start, critical layers preferably in lane 0.
  const size_t max_lanes = 16;
  std::vector<double> lane_end;
  std::vector<size_t> lane(items.size());
  double end = 0;
  for (const Item& it : items) end = std::max(end, it.f);
  const double eps = 1e-9 * std::max(end, 1.0);
  for (size_t i = 0; i < items.size(); ++i) {
    size_t chosen = max_lanes;
    if (items[i].l->critical && !lane_end.empty() && lane_end[0] <= items[i].s + eps) chosen = 0;
    for (size_t k = items[i].l->critical ? 0 : 1; chosen == max_lanes && k < lane_end.size(); ++k)
      if (lane_end[k] <= items[i].s + eps) chosen = k;
    if (chosen == max_lanes) {
      if (lane_end.size() < max_lanes) {
        chosen = lane_end.size();
        lane_end.push_back(0);
      } else {
        chosen = max_lanes - 1;  // overflow: overlap in the last lane
      }
    }
    lane[i] = chosen;
    lane_end[chosen] = std::max(lane_end[chosen], items[i].f);
  }
  const double x0 = 60, bw = kW - x0 - 20, lh = 26, top = 6;
  double max = end * 1.01;
  double h = top + lane_end.size() * lh + 24;
  p << svg_open(h, "parallel schedule");
  axis(p, x0, bw, max, top, top + lane_end.size() * lh, "ms");
  for (size_t k = 0; k < lane_end.size(); ++k)
    p << "<text class=\"ax\" x=\"" << coord(x0 - 8) << "\" y=\"" << coord(top + k * lh + lh / 2 + 4)
      << "\" text-anchor=\"end\">lane " << std::to_string(k + 1) << "</text>";
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    double x = x0 + bw * it.s / max, w = std::max(bw * (it.f - it.s) / max, 2.0), y = top + lane[i] * lh + 3;
    bool c = it.l->critical;
    // Outlines only where a box is wide enough for them not to swamp the fill.
    std::string outline = w > 6 ? std::string(" stroke=\"") + (c ? "#8a2f0a" : "#fff") + "\" stroke-width=\"0.8\"" : "";
    p << rect(x, y, w, lh - 6, c ? kCriticalColour : "#7f93a8", outline + " rx=\"1.5\"")
      << "<title>" << esc(step_label(a, *it.l)) << ": " << esc(step_members(a, *it.l)) << ", " << num3(it.s) << "&ndash;"
      << num3(it.f) << " ms" << (c ? ", critical path" : "") << "</title></rect>";
    std::string label = shorten(short_ops(step_label(a, *it.l)), 18);
    if (w > 6.5 * label.size() + 6)
      p << "<text class=\"in\" x=\"" << coord(x + w / 2) << "\" y=\"" << coord(y + (lh - 6) / 2 + 4)
        << "\" text-anchor=\"middle\"" << ">" << esc(label) << "</text>";
  }
  p << "</svg>";
  if (!a.critical_path.empty()) {
    p << "<div class=\"sub\" style=\"margin-top:6px\"><b>Critical path</b> (" << std::to_string(a.critical_path.size())
      << " layers): ";
    const size_t cap = 40;
    for (size_t i = 0; i < a.critical_path.size() && i < cap; ++i)
      p << (i ? " &rarr; " : "") << "<code>" << esc(a.critical_path[i]) << "</code>";
    if (a.critical_path.size() > cap) p << " &rarr; &hellip; (" << std::to_string(a.critical_path.size() - cap) << " more)";
    p << "</div>";
  }
  p << "</section>";
}

// -- advice

// The time above the parallel bound in parts that add up (differences of consecutive bounds).
void gap_table(Page& p, const Analysis& a) {
  if (a.gap.empty()) return;
  double total = 0, total_pct = 0;
  for (const GapPart& part : a.gap) {  // negative parts count too: they are part of the sum
    total += part.ms.value_or(0);
    total_pct += part.pct.value_or(0);
  }
  p << "<h3 id=\"gap\">Where the time above the parallel bound goes</h3><div class=\"sub\">From the "
    << esc(a.gap_baseline) << " latency" << (a.gap_baseline_ms ? " (" + ms(a.gap_baseline_ms) + ")" : std::string())
    << " down to the parallel bound" << (a.gap_bound_ms ? " (" + ms(a.gap_bound_ms) + ")" : std::string())
    << ", step by step: each part is the difference of two bounds, so the parts add up to the total and their "
       "percentages (of the same latency) to its percentage. A negative part means the later bound is above "
       "the earlier one: e.g. layers benchmarked alone can be slower than inside the warm model.</div>"
       "<table><thead><tr><th>part</th><th>what</th><th class=\"n\">ms</th><th class=\"n\">%</th></tr></thead><tbody>";
  for (const GapPart& part : a.gap)
    p << "<tr><td>" << esc(part.kind) << "</td><td>" << esc(part.what) << "</td><td class=\"n\">" << ms(part.ms)
      << "</td><td class=\"n\">" << (part.pct ? pct(*part.pct) : std::string("n/a")) << "</td></tr>";
  p << "<tr><td><b>total</b></td><td>down to the parallel bound</td><td class=\"n\"><b>" << ms(opt(total))
    << "</b></td><td class=\"n\"><b>" << pct(total_pct) << "</b></td></tr></tbody></table>";
}

void advice_table(Page& p, const Analysis& a) {
  p << "<section id=\"advice\"><h2>Advice</h2><div class=\"sub\">What each optimisation should save (predicted "
       "from the benchmarks) and what it saved when applied (realised). Bars: light = predicted, dark = "
       "realised. Each row is one action taken alone; its percentage is of "
    << (a.gap_baseline.empty() ? std::string("bricklab's measured latency")
                               : "the " + esc(a.gap_baseline) + " latency" +
                                     (a.gap_baseline_ms ? " (" + ms(a.gap_baseline_ms) + ")" : std::string()))
    << ", the same for every row. The fusion row is the saving over an unfused plan (the default plan is fused "
       "already, so it is not part of the measured time), and other runtimes' rows are comparisons, not savings: "
       "those rows do not add to the others. The accounting below splits the time above the bound into parts "
       "that do add up.</div>";
  if (a.advice.empty()) {
    p << "<p class=\"na\">No advice in the analysis.</p></section>";
    return;
  }
  double max = 0;
  for (const Advice& ad : a.advice) max = std::max({max, nz(ad.predicted_ms), nz(ad.realised_ms)});
  if (max <= 0) max = 1;
  p << "<table class=\"sortable\"><thead><tr><th>kind</th><th>advice</th><th>runtime</th><th "
       "class=\"n\">predicted</th><th class=\"n\">realised</th><th>predicted vs realised</th><th>note</th></tr>"
       "</thead><tbody>";
  static const std::set<std::string> kinds = {"algorithm", "fusion", "precision", "parallel", "runtime"};
  for (const Advice& ad : a.advice) {
    std::string kind = ad.kind.empty() ? "other" : ad.kind;
    std::string cls = kinds.count(kind) ? kind : "other";
    p << "<tr><td data-v=\"" << esc(kind) << "\"><span class=\"badge kind-" << cls << "\">" << esc(kind)
      << "</span></td><td>" << esc(ad.title) << "</td><td>" << (ad.runtime.empty() ? "" : esc(ad.runtime))
      << "</td><td class=\"n\"" << dv(ad.predicted_ms) << ">" << ms(ad.predicted_ms)
      << (ad.predicted_pct ? "<br><span class=\"sub\">" + pct(*ad.predicted_pct) + "</span>" : std::string())
      << "</td>";
    bool realised = ad.applied || ad.realised_ms;
    if (realised && ad.realised_ms) {
      p << "<td class=\"n\"" << dv(ad.realised_ms) << ">" << ms(ad.realised_ms)
        << (ad.realised_pct ? "<br><span class=\"sub\">" + pct(*ad.realised_pct) + "</span>" : std::string()) << "</td>";
    } else {
      p << "<td class=\"n na\" data-v=\"\">" << (ad.applied ? "applied, not measured" : "not applied") << "</td>";
    }
    const double w = 150;
    p << "<td><svg viewBox=\"0 0 " << coord(w + 2) << " 26\" style=\"width:" << coord(w + 2)
      << "px\" role=\"img\" aria-label=\"predicted vs realised\">"
      << rect(0, 3, w * nz(ad.predicted_ms) / max, 9, "#a3bffa") << "<title>predicted " << ms(ad.predicted_ms)
      << "</title></rect>";
    if (ad.realised_ms)
      p << rect(0, 14, w * nz(ad.realised_ms) / max, 9, "#3c366b") << "<title>realised " << ms(ad.realised_ms)
        << "</title></rect>";
    else
      p << "<line x1=\"0\" y1=\"18.5\" x2=\"" << coord(w) << "\" y2=\"18.5\" stroke=\"#cbd2d9\" stroke-dasharray=\"3 3\"/>";
    p << "</svg></td><td class=\"note\">" << esc(ad.note) << "</td></tr>";
  }
  p << "</tbody></table>";
  gap_table(p, a);
  p << "</section>";
}

// -- fused groups

void groups_table(Page& p, const Analysis& a) {
  if (a.groups.empty()) return;
  p << "<section id=\"groups\"><h2>Fused groups</h2><div class=\"sub\">Layers the backend can run as one kernel: "
       "benchmarked fused vs the sum of the layers alone.</div><table class=\"sortable\"><thead><tr><th "
       "class=\"n\">group</th><th>fusion</th><th>layers</th><th class=\"n\">fused ms</th><th class=\"n\">unfused "
       "ms</th><th class=\"n\">saving</th></tr></thead><tbody>";
  for (const Group& g : a.groups) {
    opt saving;
    if (g.fused_ms && g.unfused_ms) saving = *g.unfused_ms - *g.fused_ms;
    std::string names;
    for (size_t i = 0; i < g.layers.size(); ++i) names += (i ? ", " : "") + esc_name(g.layers[i]);
    p << "<tr><td class=\"n\" data-v=\"" << std::to_string(g.id) << "\">" << std::to_string(g.id) << "</td><td>"
      << esc(g.label) << "</td><td class=\"name\">" << names << "</td><td class=\"n\"" << dv(g.fused_ms) << ">"
      << ms_bare(g.fused_ms) << "</td><td class=\"n\"" << dv(g.unfused_ms) << ">" << ms_bare(g.unfused_ms)
      << "</td><td class=\"n\"" << dv(saving) << ">"
      << (saving ? num3(*saving) + " ms" +
                       (*g.unfused_ms > 0 ? " (" + pct(100 * *saving / *g.unfused_ms) + ")" : std::string())
                 : std::string("n/a"))
      << "</td></tr>";
  }
  p << "</tbody></table></section>";
}

// -- all layers

void layer_table(Page& p, const Analysis& a) {
  const OpColours op_colour(a.layers);
  std::map<long, std::string> group_label;
  for (const Group& g : a.groups) group_label[g.id] = g.label;
  p << "<section id=\"layers\"><h2>All layers</h2><div class=\"sub\">In execution order; click a heading to sort. "
       "<span class=\"badge cp\">CP</span> marks the critical path; missing layers are shaded. Hover a default time "
       "for every benchmarked variant.</div><div class=\"scroll\"><table class=\"sortable\"><thead><tr><th "
       "class=\"n\">#</th><th>layer</th><th>op</th><th>default</th><th class=\"n\">ms</th><th>fastest</th><th "
       "class=\"n\">ms</th><th class=\"n\">roofline</th><th>limit</th><th "
       "class=\"n\">FLOPs</th><th class=\"n\">bytes</th><th class=\"n\">group</th></tr></thead><tbody>";
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const Layer& l = a.layers[i];
    std::string cls = std::string(l.critical ? "crit" : "") + (l.missing ? (l.critical ? " miss" : "miss") : "");
    p << "<tr" << (cls.empty() ? std::string() : " class=\"" + cls + "\"") << "><td class=\"n\" data-v=\""
      << std::to_string(i) << "\">" << std::to_string(i) << "</td><td class=\"name\">" << esc_name(l.name)
      << (l.critical ? " <span class=\"badge cp\">CP</span>" : "")
      << (l.missing ? " <span class=\"badge\" style=\"background:#de911d\">missing</span>" : "") << "</td><td class=\"nw\">"
      << "<span class=\"sw\" style=\"background:" << op_colour(l.op) << "\"></span>" << esc(l.op) << "</td>";
    std::string variants;
    for (const Variant& v : l.variants)
      variants += (variants.empty() ? "" : "; ") + esc(v.name) + " " + ms_bare(v.ms) + (v.is_default ? " (default)" : "");
    p << "<td class=\"nw\">" << esc(l.default_variant) << "</td><td class=\"n\"" << dv(l.default_ms)
      << (variants.empty() ? std::string() : " title=\"" + variants + "\"") << ">"
      << (l.default_ms ? num3(*l.default_ms) : std::string("<span class=\"na\">n/a</span>")) << "</td><td class=\"nw\">"
      << esc(l.fastest_variant) << "</td><td class=\"n\"" << dv(l.fastest_ms) << ">"
      << (l.fastest_ms ? num3(*l.fastest_ms) : std::string("<span class=\"na\">n/a</span>")) << "</td><td class=\"n\""
      << dv(l.roofline_ms) << ">" << ms_bare(l.roofline_ms) << "</td><td>" << esc(l.roofline_limit)
      << "</td><td class=\"n\"" << dv(l.flops) << ">" << (l.flops ? si(l.flops, "") : std::string("n/a"))
      << "</td><td class=\"n\"" << dv(l.bytes) << ">" << si(l.bytes, "B") << "</td>";
    if (l.group >= 0) {
      auto it = group_label.find(l.group);
      p << "<td class=\"n\" data-v=\"" << std::to_string(l.group) << "\""
        << (it != group_label.end() ? " title=\"" + esc(it->second) + "\"" : std::string()) << ">"
        << std::to_string(l.group) << "</td>";
    } else {
      p << "<td class=\"n\" data-v=\"\"></td>";
    }
    p << "</tr>";
  }
  p << "</tbody></table></div></section>";
}

}  // namespace

std::string render_report_html(const std::string& analysis_json) {
  Analysis a = parse(analysis_json);
  Page p;
  p.html.reserve(64 * 1024 + a.layers.size() * 900);
  p << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       "<title>"
    << esc(a.model) << " &middot; bricklab lower-bound report</title><style>" << kCss << "</style></head><body><main>\n";
  header(p, a);
  missing_box(p, a);
  bounds_chart(p, a);
  p << "\n";
  op_chart(p, a);
  p << "\n";
  layer_chart(p, a);
  p << "\n";
  timeline(p, a);
  p << "\n";
  advice_table(p, a);
  p << "\n";
  groups_table(p, a);
  layer_table(p, a);
  p << "\n<footer>bricklab lower-bound report &middot; schema bricklab.lowerbound/1 &middot; one self-contained "
       "page, no external resources</footer></main><script>"
    << kScript << "</script></body></html>\n";
  return std::move(p.html);
}

}  // namespace bricklab::lowerbound
