// Lower-bound analysis (see lowerbound.hpp): variant benchmarks, machine roofline, bounds,
// advice, and each advice applied in the engine and measured.
#include "bricklab/lowerbound/lowerbound.hpp"
#include "bricklab/ops/registry.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "bricklab/bricks/decompose.hpp"
#include "bricklab/core/error.hpp"

namespace bricklab::lowerbound {

namespace bb = bricklab::bricks;

namespace {

constexpr const char* kPrefix = "lb1|";
// A 3x3 convolution run as Winograd F(4x4, 3x3) needs 36 multiplications per 16 outputs instead
// of 144: the roofline of a layer that has a Winograd variant counts 1/4 of its direct FLOPs, so
// it stays below what that variant can reach.
constexpr double kWinogradReduction = 4.0;

// Variant benchmarks are stored under the fingerprint of the engine's default plan (fusion on);
// whether a measurement was fused or not is part of its key.
bb::RunnerOptions base_runner(const Options& o) {
  bb::RunnerOptions r = o.runner;
  r.fusion = true;
  r.variants.clear();
  return r;
}

double elapsed_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Anchor of a fused unit: the node whose variants the whole step takes.
int anchor_of(const Graph& g, const std::vector<int>& nodes) {
  for (int n : nodes)
    if (const OpDef* def = OpRegistry::instance().of(g.nodes[size_t(n)]); def && def->variant_anchor) return n;
  return -1;
}

bool is_reduced_precision(const Variant& v) { return v.precision != Precision::fp32; }
bool is_winograd(const Variant& v) { return v.algorithm.find("winograd") != std::string::npos; }

// Both decompositions of a set of models: single operators (every variant of each) and the
// engine's fused steps (every variant of the step's anchor).
struct Decompositions {
  bb::Decomposition op, fused;
};
Decompositions decompose_all(const std::vector<std::shared_ptr<const Graph>>& graphs, const Options& o) {
  Decompositions d;
  bb::DecomposeOptions dop;
  dop.granularity.kind = bb::Granularity::Kind::op;
  dop.compile = bb::compile_options(base_runner(o));
  dop.backend = base_runner(o).backend;  // group layers as the analysed backend fuses them
  d.op = bb::decompose_graphs(graphs, dop);
  bb::DecomposeOptions dfu = dop;
  dfu.granularity.kind = bb::Granularity::Kind::fused;
  d.fused = bb::decompose_graphs(graphs, dfu);
  return d;
}

// Nodes the engine runs as steps (views and aliases have none: they are free).
std::set<int> stepped_nodes(const bb::ModelBricks& fused) {
  std::set<int> out;
  for (const auto& use : fused.uses) out.insert(use.nodes.begin(), use.nodes.end());
  return out;
}

std::string op_key(const std::string& variant, const std::string& brick_key) { return kPrefix + std::string("op|") + variant + "|" + brick_key; }
std::string fused_key(const std::string& variant, const std::string& brick_key) {
  return kPrefix + std::string("fused|") + variant + "|" + brick_key;
}

struct Job {
  std::string key, label;
  const bb::Decomposition* d = nullptr;
  const bb::Brick* brick = nullptr;
  bool fusion = false;
  std::string node, variant;  // variant for `node` (empty: default plan)
};

// A node's variants, asked of the backend once: each call probes the backend (oneDNN builds a
// primitive per candidate), and an analysis needs them for jobs, peaks, layers and groups.
class VariantCache {
 public:
  explicit VariantCache(const Backend& backend) : backend_(backend) {}
  const std::vector<Variant>& of(const Graph& g, int node) {
    auto key = std::make_pair(&g, node);
    auto it = cache_.find(key);
    if (it == cache_.end()) it = cache_.emplace(key, backend_.variants(g, node)).first;
    return it->second;
  }

 private:
  const Backend& backend_;
  std::map<std::pair<const Graph*, int>, std::vector<Variant>> cache_;
};

std::vector<Job> variant_jobs(const Decompositions& d, VariantCache& variants) {
  std::vector<Job> jobs;
  // Views have no step in the engine's plan: nothing to time. Both decompositions list the
  // models in the same order.
  std::vector<std::set<int>> stepped;
  for (const auto& fm : d.fused.models) stepped.push_back(stepped_nodes(fm));
  for (const auto& b : d.op.bricks) {
    const Graph& g = *d.op.models[size_t(b.model)].graph;
    const int n = b.nodes.at(0);
    if (!stepped.at(size_t(b.model)).count(n)) continue;
    for (const auto& v : variants.of(g, n))
      jobs.push_back({op_key(v.name, b.key), b.label + " [" + v.name + "]", &d.op, &b, false, g.nodes[size_t(n)].name, v.name});
  }
  for (const auto& b : d.fused.bricks) {
    if (b.nodes.size() < 2) continue;
    const Graph& g = *d.fused.models[size_t(b.model)].graph;
    const int anchor = anchor_of(g, b.nodes);
    if (anchor < 0) {
      jobs.push_back({fused_key("default", b.key), b.label + " [fused]", &d.fused, &b, true, "", "default"});
      continue;
    }
    for (const auto& v : variants.of(g, anchor))
      jobs.push_back({fused_key(v.name, b.key), b.label + " [fused, " + v.name + "]", &d.fused, &b, true,
                      g.nodes[size_t(anchor)].name, v.name});
  }
  return jobs;
}

BenchmarkSummary run_jobs(const std::vector<Job>& jobs, bb::Database& db, const Options& o, const Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const bb::Fingerprint fp = bb::system_fingerprint(base_runner(o));
  const std::string fid = fp.id();
  db.register_fingerprint(fp);
  const auto have = db.all(fid);
  BenchmarkSummary s;
  s.measurements = int(jobs.size());
  int done = 0;
  for (const auto& j : jobs) done += int(have.count(j.key));
  s.already = done;
  if (progress) progress(done, s.measurements, 0.0, "");
  for (const auto& j : jobs) {
    if (have.count(j.key)) continue;
    if (db.find(j.key, fid)) {  // another process measured it meanwhile
      s.already++;
      if (progress) progress(++done, s.measurements, elapsed_since(t0), j.label);
      continue;
    }
    bb::RunnerOptions r = base_runner(o);
    r.fusion = j.fusion;
    if (!j.node.empty()) r.variants[j.node] = j.variant;
    std::set<std::string> own;
    const Graph g = bb::timing_graph(*j.d, *j.brick, own);
    const bb::BrickTiming t = bb::time_brick(g, r, own);
    db.insert(bb::to_stored(j.key, fid, t.steps));
    s.measured++;
    if (progress) progress(++done, s.measurements, elapsed_since(t0), j.label);
  }
  s.wall_s = elapsed_since(t0);
  return s;
}

// ---- machine roofline ---------------------------------------------------------------------

constexpr int64_t kGemm = 2048;
const std::vector<int64_t> kStreamFloats = {int64_t(1) << 16, int64_t(1) << 20, int64_t(1) << 22, int64_t(1) << 26};

Graph one_node_graph(const std::string& op, const std::vector<Shape>& input_shapes, bool second_is_weight, const Shape& out) {
  Graph g;
  g.name = "roofline_" + op;
  g.opset = 13;
  g.ir_version = 8;
  Node n;
  n.name = "probe";
  n.op = op;
  n.opset = 13;
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    Value v;
    v.name = "in" + std::to_string(i);
    v.dtype = DType::float32;
    v.shape = input_shapes[i];
    v.kind = (i == 1 && second_is_weight) ? ValueKind::weight : ValueKind::input;
    if (v.kind == ValueKind::weight) v.data = TensorData::make_absent(v.dtype, v.shape);  // stripped: random values
    g.values.push_back(v);
    if (v.kind == ValueKind::input) g.inputs.push_back(int(i));
    n.inputs.push_back(int(i));
  }
  if (second_is_weight) g.weights_stripped = true;
  Value y;
  y.name = "out";
  y.dtype = DType::float32;
  y.shape = out;
  y.is_graph_output = true;
  g.values.push_back(y);
  n.outputs.push_back(int(g.values.size()) - 1);
  g.outputs.push_back(int(g.values.size()) - 1);
  g.nodes.push_back(n);
  g.rebuild_links();
  return g;
}

std::string gemm_key(const std::string& variant) {
  return kPrefix + std::string("machine|gemm|") + variant + "|" + std::to_string(kGemm) + "x" + std::to_string(kGemm) + "x" +
         std::to_string(kGemm);
}
std::string stream_key(int64_t floats) { return kPrefix + std::string("machine|stream|f32|") + std::to_string(floats); }

}  // namespace

Machine machine_roofline(bb::Database& db, const bb::RunnerOptions& runner, bool measure_if_missing) {
  bb::RunnerOptions r = runner;
  r.fusion = true;
  r.variants.clear();
  const bb::Fingerprint fp = bb::system_fingerprint(r);
  const std::string fid = fp.id();
  const Backend& backend = get_backend(r.backend);
  Machine m;
  const Graph gemm = one_node_graph("MatMul", {{kGemm, kGemm}, {kGemm, kGemm}}, true, {kGemm, kGemm});
  const double flops = 2.0 * double(kGemm) * double(kGemm) * double(kGemm);
  bool registered = false;
  auto lookup = [&](const std::string& key, const std::function<bb::Measurement()>& measure, double bytes) -> double {
    // A peak is what the machine can do: the 10th percentile of the repetitions, not the median
    // (a transient load on a shared machine must not lower the roofline for good).
    if (auto row = db.find(key, fid)) return row->p10_ms;
    if (!measure_if_missing) return -1;
    if (!registered) db.register_fingerprint(fp), registered = true;
    const bb::Measurement t = measure();
    db.insert(bb::to_stored(key, fid, t, bytes));
    return t.p10_ms;
  };
  for (const auto& v : backend.variants(gemm, 0)) {
    const double ms = lookup(gemm_key(v.name), [&] {
      bb::RunnerOptions rv = r;
      rv.variants["probe"] = v.name;
      return bb::time_brick(gemm, rv).steps;
    }, 0);
    if (ms > 0) m.peak_gflops[v.name] = flops / (ms * 1e-3) / 1e9;
    if (ms > 0 && is_reduced_precision(v)) m.reduced_precision_peaks.insert(v.name);
  }
  for (int64_t n : kStreamFloats) {
    const Graph relu = one_node_graph("Relu", {{n}}, false, {n});
    const double bytes = 2.0 * double(n) * 4.0;  // read once + written once
    const double ms = lookup(stream_key(n), [&] { return bb::time_brick(relu, r).steps; }, bytes);
    if (ms > 0) m.bandwidth_gbs = std::max(m.bandwidth_gbs, bytes / (ms * 1e-3) / 1e9);
  }
  m.description = "peak compute: " + std::to_string(kGemm) + "^3 MatMul through the " + r.backend +
                  " backend per variant; bandwidth: the fastest Relu stream (bytes read + written) over working sets of " +
                  "256 KiB to 256 MiB (a cache-level bound, so the roofline stays a lower bound for layers that run from cache)";
  return m;
}

BenchmarkSummary benchmark_variants(const std::vector<const Graph*>& models, bb::Database& db, const Options& o,
                                    const Progress& progress) {
  std::vector<std::shared_ptr<const Graph>> graphs;
  for (const Graph* g : models) graphs.push_back(std::shared_ptr<const Graph>(g, [](const Graph*) {}));
  const Decompositions d = decompose_all(graphs, o);
  VariantCache variants(get_backend(o.runner.backend));
  return run_jobs(variant_jobs(d, variants), db, o, progress);
}

std::string model_id(const Graph& g) {
  std::vector<int> all(g.nodes.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = int(i);
  return bb::key_id(bb::group_key(g, all));
}

std::string peer_key(const Graph& g, const std::string& runtime) { return kPrefix + std::string("peer|") + runtime + "|" + model_id(g); }

namespace {

struct Plan {
  std::map<std::string, std::string> variants;
  bool fusion = true;
  int workers = 1;  // concurrent branch workers
  std::string tag() const {
    std::string t = fusion ? "fused" : "unfused";
    if (workers > 1) t += ";workers=" + std::to_string(workers);
    for (const auto& [n, v] : variants) t += ";" + n + "=" + v;
    return bb::key_id(t);
  }
};

double rel_l2(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  double num = 0, den = 0;
  for (const auto& [name, ta] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.numel() != ta.numel()) return INFINITY;
    const float* x = ta.data_as<float>();
    const float* y = it->second.data_as<float>();
    for (int64_t i = 0; i < ta.numel(); ++i) {
      num += double(x[i] - y[i]) * double(x[i] - y[i]);
      den += double(x[i]) * double(x[i]);
    }
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f ms", ms);
  return buf;
}

}  // namespace

Analysis analyze(const Graph& model, bb::Database& db, const Options& o, const Progress& progress) {
  Analysis a;
  // The file's stem names the model better than the exporter's graph name ("torch_jit", "main_graph").
  a.model = model.path.empty() ? model.name : std::filesystem::path(model.path).stem().string();
  a.path = model.path;
  a.backend = o.runner.backend;
  const bb::RunnerOptions base = base_runner(o);
  const bb::Fingerprint fp = bb::system_fingerprint(base);
  a.fingerprint = fp.id();
  a.cpu_model = fp.cpu_model;
  a.threads = fp.threads;
  a.batch = model.inputs.empty() || model.values[size_t(model.inputs[0])].shape.empty() ? 1 : model.values[size_t(model.inputs[0])].shape[0];
  const Backend& backend = get_backend(o.runner.backend);

  a.machine = machine_roofline(db, base, true);
  auto shared = std::shared_ptr<const Graph>(&model, [](const Graph*) {});
  const Decompositions d = decompose_all({shared}, o);
  VariantCache variants(backend);
  run_jobs(variant_jobs(d, variants), db, o, progress);
  const auto results = db.all(a.fingerprint);
  auto stored_ms = [&](const std::string& key) {
    auto it = results.find(key);
    return it == results.end() ? -1.0 : it->second.median_ms;
  };

  const bb::ModelBricks& mop = d.op.models.at(0);
  const bb::ModelBricks& mfu = d.fused.models.at(0);
  const std::set<int> stepped = stepped_nodes(mfu);
  const Graph& g = model;
  double peak_f32 = 0, peak_any = 0;
  for (const auto& [name, gf] : a.machine->peak_gflops) {
    peak_any = std::max(peak_any, gf);
    if (!a.machine->reduced_precision_peaks.count(name)) peak_f32 = std::max(peak_f32, gf);
  }
  double bw = a.machine->bandwidth_gbs;
  {
    // The probes (a 2048^3 GEMM, a Relu stream) need not reach the best rate the machine can: a
    // layer that runs at a higher clock or from a nearer cache can beat them. The roofline uses
    // the highest rate any benchmarked variant reached when that is higher, so that it stays a
    // bound for every layer. Rates above 4x the probe's are taken for broken measurements and
    // ignored.
    double seen_f32 = 0, seen_any = 0, seen_bw = 0;
    for (const auto& use : mop.uses) {
      const int n = use.nodes.at(0);
      if (!stepped.count(n)) continue;
      const Node& node = g.nodes[size_t(n)];
      const auto& vars = variants.of(g, n);
      bool winograd = false;
      for (const auto& v : vars) winograd = winograd || is_winograd(v);
      const double flops = winograd ? node.cost.flops / kWinogradReduction : node.cost.flops;
      for (const auto& v : vars) {
        const double ms = stored_ms(op_key(v.name, use.key));
        if (ms <= 0) continue;
        const double gflops = flops / (ms * 1e-3) / 1e9, gbs = node.cost.bytes() / (ms * 1e-3) / 1e9;
        if (is_reduced_precision(v)) seen_any = std::max(seen_any, gflops);
        else seen_f32 = std::max(seen_f32, gflops);
        seen_bw = std::max(seen_bw, gbs);
      }
    }
    std::string note;
    auto raise = [&](double& peak, double seen, const char* what, const char* unit) {
      if (seen > peak && (peak <= 0 || seen <= 4 * peak)) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "; %s raised from the probe's %.1f to %.1f %s, reached by a benchmarked layer", what, peak, seen, unit);
        note += buf;
        peak = seen;
      }
    };
    raise(peak_f32, seen_f32, "float32 peak", "GFLOP/s");
    peak_any = std::max(peak_any, peak_f32);
    raise(peak_any, seen_any, "reduced-precision peak", "GFLOP/s");
    raise(bw, seen_bw, "bandwidth", "GB/s");
    a.machine->roofline_peak_gflops = {{"float32", peak_f32}, {"reduced", peak_any}};
    a.machine->roofline_bandwidth_gbs = bw;
    a.machine->description += note;
  }
  auto roofline = [&](double flops, double bytes, bool reduced, std::string* limit) {
    const double peak = reduced ? peak_any : peak_f32;
    const double tc = peak > 0 ? flops / (peak * 1e9) * 1e3 : 0;
    const double tm = bw > 0 ? bytes / (bw * 1e9) * 1e3 : 0;
    if (limit) *limit = tc >= tm ? "compute" : "memory";
    return std::max(tc, tm);
  };

  // Layers: every node, its op-level variants.
  std::vector<int> layer_of(g.nodes.size(), -1);
  for (const auto& use : mop.uses) {
    const int n = use.nodes.at(0);
    Layer l;
    l.node = n;
    l.name = g.nodes[size_t(n)].name;
    l.op = g.nodes[size_t(n)].op;
    l.flops = g.nodes[size_t(n)].cost.flops;
    l.bytes = g.nodes[size_t(n)].cost.bytes();
    l.free = !stepped.count(n);
    if (l.free) {
      l.default_variant = l.fastest_variant = l.fastest_f32_variant = "view";
      l.default_ms = l.fastest_ms = l.fastest_f32_ms = 0;
    } else {
      bool reduced_available = false, winograd = false;
      for (const auto& v : variants.of(g, n)) {
        VariantTime vt{v.name, stored_ms(op_key(v.name, use.key)), v.is_default, is_reduced_precision(v)};
        reduced_available = reduced_available || is_reduced_precision(v);
        winograd = winograd || is_winograd(v);
        if (vt.ms < 0) l.missing = true;
        l.variants.push_back(vt);
      }
      for (const auto& vt : l.variants) {
        if (vt.ms < 0) continue;
        if (vt.is_default && l.default_variant.empty()) l.default_variant = vt.name, l.default_ms = vt.ms;
        if (l.fastest_ms < 0 || vt.ms < l.fastest_ms) l.fastest_variant = vt.name, l.fastest_ms = vt.ms;
        if (!vt.reduced_precision && (l.fastest_f32_ms < 0 || vt.ms < l.fastest_f32_ms))
          l.fastest_f32_variant = vt.name, l.fastest_f32_ms = vt.ms;
      }
      l.roofline_ms = roofline(winograd ? l.flops / kWinogradReduction : l.flops, l.bytes, reduced_available, &l.roofline_limit);
      if (l.missing) a.missing.push_back(l.name);
    }
    layer_of[size_t(n)] = int(a.layers.size());
    a.layers.push_back(std::move(l));
  }

  // Fused groups: the engine's multi-node steps.
  for (const auto& use : mfu.uses) {
    if (use.nodes.size() < 2) continue;
    Group gr;
    for (int n : use.nodes) {
      gr.layers.push_back(layer_of[size_t(n)]);
      gr.label += (gr.label.empty() ? "" : "+") + g.nodes[size_t(n)].op;
    }
    const int anchor = anchor_of(g, use.nodes);
    gr.anchor = anchor >= 0 ? g.nodes[size_t(anchor)].name : "";
    const std::vector<Variant> vars = anchor >= 0 ? variants.of(g, anchor) : std::vector<Variant>{{"default", "", true, Precision::fp32, "", ""}};
    bool reduced_available = false, winograd = false;
    for (const auto& v : vars) {
      VariantTime vt{v.name, stored_ms(fused_key(v.name, use.key)), v.is_default, is_reduced_precision(v)};
      reduced_available = reduced_available || is_reduced_precision(v);
      winograd = winograd || is_winograd(v);
      if (vt.ms < 0) gr.missing = true;
      else {
        if (vt.is_default && gr.fused_default_ms < 0) gr.fused_default_ms = vt.ms;
        if (gr.fused_best_ms < 0 || vt.ms < gr.fused_best_ms) gr.fused_best_ms = vt.ms, gr.fused_best_variant = v.name;
        if (!is_reduced_precision(v) && (gr.fused_best_f32_ms < 0 || vt.ms < gr.fused_best_f32_ms))
          gr.fused_best_f32_ms = vt.ms, gr.fused_best_f32_variant = v.name;
      }
      gr.variants.push_back(vt);
    }
    gr.unfused_default_ms = gr.unfused_best_ms = 0;
    double flops = 0, bytes = 0;
    std::set<int> inside(use.nodes.begin(), use.nodes.end());
    for (int li : gr.layers) {
      const Layer& l = a.layers[size_t(li)];
      if (l.default_ms < 0 || l.fastest_ms < 0) gr.missing = true;
      gr.unfused_default_ms += std::max(0.0, l.default_ms);
      gr.unfused_best_ms += std::max(0.0, l.fastest_ms);
      flops += winograd && l.node == anchor ? l.flops / kWinogradReduction : l.flops;
      bytes += l.bytes;
    }
    // Intermediates made and used only inside the step never reach memory: take them out twice
    // (written by the producer, read by the consumer).
    for (int n : use.nodes)
      for (int out : g.nodes[size_t(n)].outputs) {
        if (out < 0) continue;
        const Value& v = g.values[size_t(out)];
        bool internal = !v.is_graph_output && !v.consumers.empty();
        for (int c : v.consumers) internal = internal && inside.count(c);
        if (internal) bytes -= 2 * v.nbytes();
      }
    gr.roofline_ms = roofline(flops, std::max(0.0, bytes), reduced_available, nullptr);
    if (gr.missing) a.missing.push_back(gr.label + " (fused)");
    for (int li : gr.layers) a.layers[size_t(li)].group = int(a.groups.size());
    a.groups.push_back(std::move(gr));
  }

  // Bounds: per step the fastest way (a group: fused or unfused, whichever is faster), the
  // step's time put on its last node; the critical path over the node DAG.
  std::vector<double> best(g.nodes.size(), 0.0), roof(g.nodes.size(), 0.0);
  for (const auto& l : a.layers) {
    if (l.group >= 0 || l.free) continue;
    a.bounds.sequential_f32_ms += std::max(0.0, l.fastest_f32_ms);
    best[size_t(l.node)] = std::max(0.0, l.fastest_ms);
    roof[size_t(l.node)] = l.roofline_ms;
    a.bounds.default_sequential_ms += std::max(0.0, l.default_ms);
  }
  for (const auto& gr : a.groups) {
    const int last = a.layers[size_t(gr.layers.back())].node;
    double b = gr.unfused_best_ms;
    if (gr.fused_best_ms >= 0) b = std::min(b, gr.fused_best_ms);
    best[size_t(last)] += b;
    double unfused_f32 = 0;
    for (int li : gr.layers) unfused_f32 += std::max(0.0, a.layers[size_t(li)].fastest_f32_ms);
    a.bounds.sequential_f32_ms += gr.fused_best_f32_ms >= 0 ? std::min(unfused_f32, gr.fused_best_f32_ms) : unfused_f32;
    roof[size_t(last)] += gr.roofline_ms;
    a.bounds.default_sequential_ms += gr.fused_default_ms >= 0 ? gr.fused_default_ms : gr.unfused_default_ms;
  }
  for (size_t i = 0; i < best.size(); ++i) {
    a.bounds.sequential_ms += best[i];
    a.bounds.roofline_sequential_ms += roof[i];
  }
  const CriticalPath cp = g.critical_path(best);
  a.bounds.parallel_ms = cp.length;
  a.bounds.roofline_parallel_ms = g.critical_path(roof).length;
  for (int n : cp.nodes) {
    a.critical_path.push_back(g.nodes[size_t(n)].name);
    if (layer_of[size_t(n)] >= 0) a.layers[size_t(layer_of[size_t(n)])].critical = true;
  }
  {  // earliest schedule with the bound's times
    std::vector<double> finish(g.nodes.size(), 0.0);
    for (int i : g.topological_order()) {
      double start = 0;
      for (int p : g.producers(i)) start = std::max(start, finish[size_t(p)]);
      finish[size_t(i)] = start + best[size_t(i)];
      if (layer_of[size_t(i)] >= 0) {
        Layer& l = a.layers[size_t(layer_of[size_t(i)])];
        l.start_ms = start;
        l.finish_ms = finish[size_t(i)];
      }
    }
  }

  // Measurements of the whole model in the engine: stored, so that a report re-renders without
  // re-measuring. Plans: default, unfused, fastest float32 variants, fastest overall.
  const std::string mid = model_id(g);
  auto measure_plan = [&](const Plan& plan, const std::string& what) -> std::optional<bb::Measurement> {
    const std::string key = kPrefix + std::string("model|") + plan.tag() + "|" + mid;
    if (auto row = db.find(key, a.fingerprint)) {
      bb::Measurement m;
      m.median_ms = row->median_ms, m.p10_ms = row->p10_ms, m.p90_ms = row->p90_ms;
      return m;
    }
    if (!o.measure_model) return std::nullopt;
    if (progress) progress(0, 0, 0, "model: " + what);
    bb::RunnerOptions r = base;
    r.fusion = plan.fusion;
    r.variants = plan.variants;
    r.branch_workers = plan.workers;
    const bb::Measurement m = bb::time_whole(g, r);
    db.insert(bb::to_stored(key, a.fingerprint, m));
    return m;
  };
  const Plan default_plan;
  const auto measured = measure_plan(default_plan, "default plan");
  if (measured) a.measured.push_back({"bricklab", measured->median_ms, measured->p10_ms, measured->p90_ms});
  for (const std::string peer : {"onnxruntime", "openvino", "pytorch"})
    if (auto row = db.find(peer_key(g, peer), a.fingerprint)) a.measured.push_back({peer, row->median_ms, row->p10_ms, row->p90_ms});
  const double reference = measured ? measured->median_ms : a.bounds.default_sequential_ms;
  auto pct = [&](double ms) { return reference > 0 ? 100.0 * ms / reference : 0.0; };

  // Variant choices per step (a layer alone, or a fused group through its anchor): the fastest
  // float32 variant and the fastest overall.
  Plan f32_plan, any_plan;
  double alg_gain = 0, prec_gain = 0;
  int alg_changes = 0, prec_changes = 0, layout_changes = 0;
  auto choose = [&](const std::string& node, const std::string& def, double def_ms, const std::string& f32, double f32_ms,
                    const std::string& best, double best_ms) {
    if (f32 != def) {
      f32_plan.variants[node] = any_plan.variants[node] = f32;
      alg_gain += def_ms - f32_ms;
      alg_changes++;
      layout_changes += f32 == "nhwc" || f32 == "nchw";
    }
    if (best_ms < f32_ms) {
      any_plan.variants[node] = best;
      prec_gain += f32_ms - best_ms;
      prec_changes++;
    }
  };
  for (const auto& l : a.layers)
    if (l.group < 0 && !l.free && l.variants.size() >= 2 && !l.missing)
      choose(l.name, l.default_variant, l.default_ms, l.fastest_f32_variant, l.fastest_f32_ms, l.fastest_variant, l.fastest_ms);
  double fusion_gain = 0;
  for (const auto& gr : a.groups) {
    if (gr.missing) continue;
    fusion_gain += gr.unfused_default_ms - gr.fused_default_ms;
    if (gr.anchor.empty() || gr.variants.size() < 2) continue;
    std::string def;
    for (const auto& v : gr.variants)
      if (v.is_default && def.empty()) def = v.name;
    choose(gr.anchor, def, gr.fused_default_ms, gr.fused_best_f32_variant, gr.fused_best_f32_ms, gr.fused_best_variant, gr.fused_best_ms);
  }

  const bool apply = o.apply_advice && measured.has_value();
  // Where a plan's time goes (median of a few profiled runs): compute steps vs layout reorders.
  // Used to explain a realised saving that differs from its prediction.
  struct PlanProfile {
    double compute_ms = 0, reorder_ms = 0;
    int reorders = 0;
  };
  std::map<std::string, PlanProfile> profiles;
  auto profile_plan = [&](const Plan& plan) {
    auto it = profiles.find(plan.tag());
    if (it != profiles.end()) return it->second;
    bb::RunnerOptions r = base;
    r.fusion = plan.fusion;
    r.variants = plan.variants;
    r.branch_workers = plan.workers;
    auto exe = backend.compile(g, bb::compile_options(r));
    const auto inputs = random_inputs(g, 0);
    std::map<std::string, std::vector<double>> per_step;
    std::map<std::string, bool> is_reorder;
    for (int i = 0; i < 9; ++i) {
      const auto steps = exe->run_profiled(inputs);
      if (i < 2) continue;  // warm-up
      std::map<std::string, int> seen;
      for (const auto& st : steps) {
        const std::string id = st.name + "#" + std::to_string(seen[st.name]++);
        per_step[id].push_back(st.ms);
        is_reorder[id] = st.kind == "reorder";
      }
    }
    PlanProfile pp;
    for (auto& [id, v] : per_step) {
      std::sort(v.begin(), v.end());
      const double med = v[v.size() / 2];
      if (is_reorder[id]) pp.reorder_ms += med, pp.reorders++;
      else pp.compute_ms += med;
    }
    profiles[plan.tag()] = pp;
    return pp;
  };
  // "realised - predicted" and its parts: from = the plan without the advice, to = with it.
  auto explain = [&](const Advice& ad, const Plan& from, const Plan& to) {
    const PlanProfile a0 = profile_plan(from), a1 = profile_plan(to);
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  ". Where it went, in profiled runs of both plans: compute steps %+.3f ms, layout reorders %+.3f ms "
                  "(%d -> %d reorders), against %.3f ms predicted from the layers benchmarked alone",
                  a0.compute_ms - a1.compute_ms, a0.reorder_ms - a1.reorder_ms, a0.reorders, a1.reorders, ad.predicted_ms);
    return std::string(buf);
  };
  {
    Advice ad;
    ad.kind = "algorithm";
    ad.title = "Run each layer with its fastest float32 algorithm / memory format instead of the library heuristic's";
    ad.predicted_ms = alg_gain;
    ad.note = std::to_string(alg_changes) + " step(s) change variant";
    if (layout_changes)
      ad.note += " (" + std::to_string(layout_changes) + " to a plain or channels-last layout, whose conversions at the layer's edges the per-layer benchmark does not count)";
    if (apply && alg_changes) {
      const auto t = measure_plan(f32_plan, "fastest float32 variants");
      ad.realised_ms = measured->median_ms - t->median_ms;
      ad.applied = true;
      ad.note += explain(ad, default_plan, f32_plan);
    } else if (!alg_changes) {
      ad.note = "the heuristic already picks the fastest float32 variant of every layer";
    }
    a.advice.push_back(ad);
  }
  {
    Advice ad;
    ad.kind = "fusion";
    ad.title = "Fuse layers into one step (conv+bn+activation, residual sums, matmul+bias, concat+bn)";
    ad.predicted_ms = fusion_gain;
    ad.note = std::to_string(a.groups.size()) + " fused step(s) in the engine's plan; realised = unfused plan minus fused plan";
    if (apply && !a.groups.empty()) {
      Plan unfused;
      unfused.fusion = false;
      const auto t = measure_plan(unfused, "unfused plan");
      ad.realised_ms = t->median_ms - measured->median_ms;
      ad.applied = true;
      ad.note += explain(ad, unfused, default_plan);
    }
    a.advice.push_back(ad);
  }
  {
    Advice ad;
    ad.kind = "precision";
    ad.title = "Run layers in reduced precision where it is faster (bf16 on CPU, Tensor Cores on GPU)";
    ad.predicted_ms = prec_gain;
    ad.note = std::to_string(prec_changes) + " step(s) faster in reduced precision";
    if (apply && prec_changes) {
      // Accuracy first: the reduced-precision plan's outputs against the float32 plan's.
      bb::RunnerOptions r32 = base, rlo = base;
      r32.variants = f32_plan.variants;
      rlo.variants = any_plan.variants;
      const auto inputs = random_inputs(g, 0);
      const auto y32 = backend.compile(g, bb::compile_options(r32))->run(inputs);
      const auto ylo = backend.compile(g, bb::compile_options(rlo))->run(inputs);
      const double err = rel_l2(y32, ylo);
      char buf[160];
      std::snprintf(buf, sizeof buf, "; output relative L2 error %.2e against float32 (tolerance %.0e)", err, o.precision_tolerance);
      ad.note += buf;
      if (err <= o.precision_tolerance) {
        const auto t32 = measure_plan(f32_plan, "fastest float32 variants");
        const auto tlo = measure_plan(any_plan, "fastest variants, reduced precision");
        ad.realised_ms = t32->median_ms - tlo->median_ms;
        ad.applied = true;
        ad.note += explain(ad, f32_plan, any_plan);
      } else {
        ad.note += ": not applied, accuracy does not allow it";
      }
    } else if (!prec_changes) {
      ad.note = "no layer is faster in reduced precision on this backend";
    }
    a.advice.push_back(ad);
  }
  {
    Advice ad;
    ad.kind = "parallel";
    ad.title = "Run independent branches concurrently";
    ad.predicted_ms = a.bounds.sequential_ms - a.bounds.parallel_ms;
    ad.note = "sequential bound minus critical path (the bound assumes each branch keeps its full speed)";
    if (apply && ad.predicted_ms > 0.01 * a.bounds.sequential_ms && a.threads >= 2 && o.runner.backend == "cpu") {
      Plan branches;
      branches.workers = a.threads;
      const auto t = measure_plan(branches, "independent branches concurrently");
      ad.realised_ms = measured->median_ms - t->median_ms;
      ad.applied = true;
      ad.note += "; applied as " + std::to_string(a.threads) + " branch workers of 1 thread each (the cores are shared: a step no longer has all of them, which costs where branches do not overlap)" +
                 explain(ad, default_plan, branches);
    } else if (ad.predicted_ms <= 0.01 * a.bounds.sequential_ms) {
      ad.note += "; the layer DAG has no branches worth running concurrently";
    } else {
      ad.note += "; not applied (needs a CPU run with at least 2 threads)";
    }
    a.advice.push_back(ad);
  }
  for (const auto& m : a.measured) {
    Advice ad;
    ad.kind = "runtime";
    ad.runtime = m.runtime;
    if (m.runtime == "bricklab") {
      // Only what the steps' own times do not explain: the variant choice is the algorithm and
      // precision rows' (so that no saving is counted twice).
      ad.title = "Runtime overhead of bricklab (measured minus the sum of its default steps)";
      ad.predicted_ms = m.ms - a.bounds.default_sequential_ms;
      ad.note = "layout reorders between steps and per-run overhead (" + fmt_ms(a.bounds.default_sequential_ms) +
                " is the sum of the default variants' steps)";
      if (ad.predicted_ms < 0)
        ad.note += "; negative: the steps run faster inside the model than benchmarked alone (warm caches, tiny layers)";
    } else {
      ad.title = "Runtime inefficiency of " + m.runtime + " (measured minus the sequential bound)";
      ad.predicted_ms = m.ms - a.bounds.sequential_ms;
      ad.note = "measured " + fmt_ms(m.ms) + " with the same thread count; a comparison, not a saving in bricklab";
    }
    a.advice.push_back(ad);
  }
  // The accounting: parts that add up to the baseline minus the parallel bound.
  a.gap_baseline = measured ? "bricklab measured" : "sum of the default steps";
  a.gap_baseline_ms = reference;
  if (measured)
    a.gap.push_back({"runtime", "reorders between steps and per-run overhead", measured->median_ms - a.bounds.default_sequential_ms});
  a.gap.push_back({"algorithm", "fastest float32 algorithm / memory format per step",
                   a.bounds.default_sequential_ms - a.bounds.sequential_f32_ms});
  a.gap.push_back({"precision", "reduced precision where it is faster", a.bounds.sequential_f32_ms - a.bounds.sequential_ms});
  a.gap.push_back({"parallel", "independent branches concurrently", a.bounds.sequential_ms - a.bounds.parallel_ms});
  for (auto& part : a.gap) part.pct = pct(part.ms);
  for (auto& ad : a.advice) {
    ad.predicted_pct = pct(ad.predicted_ms);
    if (ad.realised_ms) ad.realised_pct = pct(*ad.realised_ms);
  }
  return a;
}

std::string Analysis::json() const {
  using Json = nlohmann::json;
  auto num = [](double v) { return v < 0 ? Json(nullptr) : Json(v); };
  Json j;
  j["schema"] = "bricklab.lowerbound/1";
  j["model"] = model;
  j["path"] = path;
  j["batch"] = batch;
  j["backend"] = backend;
  j["threads"] = threads;
  j["fingerprint"] = fingerprint;
  if (machine) {
    Json mj;
    mj["peak_gflops"] = machine->peak_gflops;
    mj["bandwidth_gbs"] = machine->bandwidth_gbs;
    mj["device"] = backend;
    mj["cpu"] = cpu_model;
    mj["description"] = machine->description;
    mj["roofline_peak_gflops"] = machine->roofline_peak_gflops;
    mj["roofline_bandwidth_gbs"] = machine->roofline_bandwidth_gbs;
    j["machine"] = mj;
  } else {
    j["machine"] = nullptr;
  }
  j["bounds"] = {{"sequential_ms", bounds.sequential_ms},
                 {"parallel_ms", bounds.parallel_ms},
                 {"roofline_sequential_ms", bounds.roofline_sequential_ms},
                 {"roofline_parallel_ms", bounds.roofline_parallel_ms},
                 {"default_sequential_ms", bounds.default_sequential_ms},
                 {"sequential_f32_ms", bounds.sequential_f32_ms}};
  j["gap"] = {{"baseline", gap_baseline}, {"baseline_ms", gap_baseline_ms}, {"bound_ms", bounds.parallel_ms},
              {"parts", Json::array()}};
  for (const auto& part : gap)
    j["gap"]["parts"].push_back({{"kind", part.kind}, {"what", part.what}, {"ms", part.ms}, {"pct", part.pct}});
  j["measured"] = Json::array();
  for (const auto& m : measured) j["measured"].push_back({{"runtime", m.runtime}, {"ms", m.ms}, {"p10_ms", m.p10_ms}, {"p90_ms", m.p90_ms}});
  j["layers"] = Json::array();
  for (const auto& l : layers) {
    Json lj = {{"name", l.name},
               {"op", l.op},
               {"flops", l.flops},
               {"bytes", l.bytes},
               {"roofline_ms", l.roofline_ms},
               {"roofline_limit", l.free ? Json(nullptr) : Json(l.roofline_limit)},
               {"default_variant", l.default_variant},
               {"default_ms", num(l.default_ms)},
               {"fastest_variant", l.fastest_variant},
               {"fastest_ms", num(l.fastest_ms)},
               {"fastest_f32_variant", l.fastest_f32_variant},
               {"fastest_f32_ms", num(l.fastest_f32_ms)},
               {"group", l.group},
               {"critical", l.critical},
               {"start_ms", l.start_ms},
               {"finish_ms", l.finish_ms},
               {"free", l.free},
               {"missing", l.missing}};
    lj["variants"] = Json::array();
    for (const auto& v : l.variants) lj["variants"].push_back({{"name", v.name}, {"ms", num(v.ms)}, {"default", v.is_default}});
    j["layers"].push_back(lj);
  }
  j["groups"] = Json::array();
  for (size_t i = 0; i < groups.size(); ++i) {
    const Group& gr = groups[i];
    Json gj = {{"id", int(i)},
               {"label", gr.label},
               {"anchor", gr.anchor},
               {"fused_ms", num(gr.fused_default_ms)},
               {"unfused_ms", num(gr.unfused_default_ms)},
               {"fused_best_ms", num(gr.fused_best_ms)},
               {"fused_best_variant", gr.fused_best_variant},
               {"unfused_best_ms", num(gr.unfused_best_ms)},
               {"roofline_ms", gr.roofline_ms},
               {"missing", gr.missing}};
    gj["layers"] = Json::array();
    for (int li : gr.layers) gj["layers"].push_back(layers[size_t(li)].name);
    gj["variants"] = Json::array();
    for (const auto& v : gr.variants) gj["variants"].push_back({{"name", v.name}, {"ms", num(v.ms)}, {"default", v.is_default}});
    j["groups"].push_back(gj);
  }
  j["critical_path"] = critical_path;
  j["advice"] = Json::array();
  for (const auto& ad : advice)
    j["advice"].push_back({{"kind", ad.kind},
                           {"title", ad.title},
                           {"runtime", ad.runtime},
                           {"predicted_ms", ad.predicted_ms},
                           {"predicted_pct", ad.predicted_pct},
                           {"realised_ms", ad.realised_ms ? Json(*ad.realised_ms) : Json(nullptr)},
                           {"realised_pct", ad.realised_pct ? Json(*ad.realised_pct) : Json(nullptr)},
                           {"applied", ad.applied},
                           {"note", ad.note}});
  j["missing"] = missing;
  return j.dump(1);
}

}  // namespace bricklab::lowerbound
