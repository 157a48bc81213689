// `bricklab lowerbound`, `bricklab report` and `bricklab roofline`: Benanza's analysis on the
// command line (see include/bricklab/lowerbound/lowerbound.hpp). Options are the bricks
// commands' (cli_args.hpp).
#include <algorithm>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bricklab/bricks/database.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/graph/onnx_import.hpp"
#include "bricklab/lowerbound/lowerbound.hpp"
#include "bricklab/lowerbound/report.hpp"
#include "cli_args.hpp"

namespace {

namespace bb = bricklab::bricks;
namespace lb = bricklab::lowerbound;

std::string ms_or_dash(double ms) { return ms < 0 ? "-" : fmt::format("{:.3f}", ms); }

lb::Analysis run_analysis(const BricksArgs& a) {
  const bricklab::Graph g = bricklab::load_onnx(a.models.at(0), a.decompose.load);
  auto db = bb::open_database(a.db, true);
  lb::Options o;
  o.runner = a.runner;
  o.measure_model = a.measure;
  o.apply_advice = a.apply;
  return lb::analyze(g, *db, o, progress_bar(a, "variants"));
}

void print_analysis(const lb::Analysis& an) {
  std::cout << fmt::format("{} (batch {}, {} backend, {} threads, fingerprint {})\n", an.path.empty() ? an.model : an.path, an.batch,
                           an.backend, an.threads, an.fingerprint);
  if (an.machine) {
    std::string peaks;
    for (const auto& [k, v] : an.machine->peak_gflops) peaks += fmt::format("{} {:.0f} GFLOP/s, ", k, v);
    std::cout << fmt::format("machine: peak {}bandwidth {:.1f} GB/s\n", peaks, an.machine->bandwidth_gbs);
  }
  const auto& b = an.bounds;
  std::cout << fmt::format("\n{:<40} {:>10}\n", "bound", "ms");
  std::cout << fmt::format("{:<40} {:>10.3f}\n", "roofline, critical path", b.roofline_parallel_ms);
  std::cout << fmt::format("{:<40} {:>10.3f}\n", "roofline, sum", b.roofline_sequential_ms);
  std::cout << fmt::format("{:<40} {:>10.3f}\n", "parallel (critical path, fastest variants)", b.parallel_ms);
  std::cout << fmt::format("{:<40} {:>10.3f}\n", "sequential (sum of fastest variants)", b.sequential_ms);
  std::cout << fmt::format("{:<40} {:>10.3f}\n", "sequential, float32 variants only", b.sequential_f32_ms);
  std::cout << fmt::format("{:<40} {:>10.3f}\n", "default variants (sum of steps)", b.default_sequential_ms);
  for (const auto& m : an.measured)
    std::cout << fmt::format("{:<40} {:>10.3f}   (p10 {:.3f}, p90 {:.3f})\n", "measured: " + m.runtime, m.ms, m.p10_ms, m.p90_ms);
  std::cout << fmt::format("\nadvice: each row alone, % of the {} latency ({:.3f} ms); the fusion row is the saving over an\n"
                           "unfused plan (already in the default plan), the other runtimes' rows are comparisons\n",
                           an.gap_baseline, an.gap_baseline_ms);
  std::cout << fmt::format("{:<10} {:<12} {:>16} {:>18}  {}\n", "advice", "runtime", "predicted ms (%)", "realised ms (%)", "note");
  for (const auto& ad : an.advice) {
    const std::string realised = ad.realised_ms ? fmt::format("{:.3f} ({:.1f}%)", *ad.realised_ms, *ad.realised_pct) : "not applied";
    std::cout << fmt::format("{:<10} {:<12} {:>16} {:>18}  {}\n", ad.kind, ad.runtime,
                             fmt::format("{:.3f} ({:.1f}%)", ad.predicted_ms, ad.predicted_pct), realised, ad.note);
  }
  if (!an.gap.empty()) {
    std::cout << fmt::format("\nwhere the {:.3f} ms above the parallel bound go (parts that add up, % of the {} latency)\n",
                             an.gap_baseline_ms - an.bounds.parallel_ms, an.gap_baseline);
    double total = 0, total_pct = 0;
    for (const auto& part : an.gap) {
      std::cout << fmt::format("  {:<10} {:>10.3f} ms {:>6.1f}%  {}\n", part.kind, part.ms, part.pct, part.what);
      total += part.ms;
      total_pct += part.pct;
    }
    std::cout << fmt::format("  {:<10} {:>10.3f} ms {:>6.1f}%  {}\n", "total", total, total_pct, "down to the parallel bound");
  }
  std::vector<const lb::Layer*> top;
  for (const auto& l : an.layers)
    if (!l.free) top.push_back(&l);
  std::sort(top.begin(), top.end(), [](const lb::Layer* x, const lb::Layer* y) { return x->default_ms > y->default_ms; });
  if (top.size() > 15) top.resize(15);
  std::cout << fmt::format("\n{:<36} {:<14} {:>10} {:>16} {:>10} {:>8}\n", "slowest layers", "op", "default ms", "fastest (variant)",
                           "roofline", "critical");
  for (const lb::Layer* l : top) {
    std::string name = l->name.size() > 36 ? "~" + l->name.substr(l->name.size() - 35) : l->name;
    std::cout << fmt::format("{:<36} {:<14} {:>10} {:>16} {:>10.4f} {:>8}\n", name, l->op, ms_or_dash(l->default_ms),
                             ms_or_dash(l->fastest_ms) + " (" + l->fastest_variant + ")", l->roofline_ms, l->critical ? "yes" : "");
  }
  if (!an.missing.empty()) {
    std::cout << an.missing.size() << " layer(s) without a measurement:\n";
    for (const auto& m : an.missing) std::cout << "  " << m << "\n";
  }
}

int cmd_lowerbound(const BricksArgs& a) {
  const lb::Analysis an = run_analysis(a);
  if (a.json) std::cout << an.json() << "\n";
  else print_analysis(an);
  return an.complete() ? 0 : 1;
}

int cmd_report(const BricksArgs& a) {
  const lb::Analysis an = run_analysis(a);
  const std::string js = an.json();
  const std::string html = lb::render_report_html(js);
  std::ofstream f(a.output, std::ios::binary);
  if (!f) throw bricklab::FileError({a.output, "", ""}, "cannot write the report");
  f << html;
  if (!f) throw bricklab::FileError({a.output, "", ""}, "cannot write the report");
  if (a.json) std::cout << js << "\n";
  else std::cout << "wrote " << a.output << " (" << html.size() / 1024 << " KiB)\n";
  return an.complete() ? 0 : 1;
}

int cmd_roofline(const BricksArgs& a) {
  auto db = bb::open_database(a.db, true);
  const lb::Machine m = lb::machine_roofline(*db, a.runner, true);
  if (a.json) {
    nlohmann::json j = {{"db", db->location()}, {"fingerprint", bb::system_fingerprint(a.runner).id()}, {"peak_gflops", m.peak_gflops},
                        {"bandwidth_gbs", m.bandwidth_gbs}, {"description", m.description}};
    std::cout << j.dump(1) << "\n";
  } else {
    for (const auto& [k, v] : m.peak_gflops) std::cout << fmt::format("peak {:<6} {:10.1f} GFLOP/s\n", k, v);
    std::cout << fmt::format("bandwidth   {:10.1f} GB/s\n{}\n", m.bandwidth_gbs, m.description);
  }
  return 0;
}

}  // namespace

int cmd_lowerbound_family(const std::string& command, const std::vector<std::string>& args) {
  const BricksArgs a = parse_bricks_args(command, args);
  if (command == "lowerbound") return cmd_lowerbound(a);
  if (command == "report") return cmd_report(a);
  return cmd_roofline(a);
}
