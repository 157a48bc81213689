// Lower bounds (Benanza): for every unique layer of a model, benchmark each semantically
// equivalent way the backend can run it (algorithms, memory formats, precisions, fused vs
// unfused), keep every result in the bricks database, and bound the model's latency:
//   sequential = sum over layers of the fastest variant (fused groups: the better of fused and
//                unfused), parallel = critical path of the layer DAG with those times,
//   roofline   = per layer max(FLOPs / peak, bytes / bandwidth) from the machine's measured peaks.
// Then price each optimisation (algorithm choice, fusion, reduced precision, parallel branches,
// runtime overhead), apply it in bricklab's engine and measure the realised saving.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "bricklab/bricks/database.hpp"
#include "bricklab/bricks/runner.hpp"
#include "bricklab/graph/graph.hpp"

namespace bricklab::lowerbound {

struct Options {
  // Backend, threads, tolerance, budget... Fusion is set per measurement by the analysis.
  bricks::RunnerOptions runner;
  bool measure_model = true;  // time the whole model in bricklab's engine (default plan)
  bool apply_advice = true;   // compile the engine with each advice applied and time it
  // A reduced-precision plan is kept only when its outputs stay within this relative L2 error
  // of the float32 plan's.
  double precision_tolerance = 1e-2;
};

// The machine's roofline: peak compute per data type (a large GEMM through the backend) and
// memory bandwidth (a large streaming kernel, bytes read + written), stored in the database.
struct Machine {
  std::map<std::string, double> peak_gflops;  // "f32", "bf16" (CPU); "fp32", "tf32", "fp16" (GPU)
  std::set<std::string> reduced_precision_peaks;  // the peaks above measured below float32 (bf16, tf32, fp16)
  double bandwidth_gbs = 0;
  std::string description;                    // how they were measured
  // What an analysis used for its roofline: the probes' figures, or the highest rate a
  // benchmarked layer reached when that is higher ("float32", "reduced").
  std::map<std::string, double> roofline_peak_gflops;
  double roofline_bandwidth_gbs = 0;
};
// Reads the peaks from the database for the fingerprint; measures and stores them when absent.
Machine machine_roofline(bricks::Database& db, const bricks::RunnerOptions& options, bool measure_if_missing = true);

struct VariantTime {
  std::string name;
  double ms = -1;  // < 0: not measured (missing)
  bool is_default = false;
  bool reduced_precision = false;  // computes below float32 (the variant's Precision)
};

struct Layer {
  int node = -1;
  std::string name, op;
  double flops = 0, bytes = 0;
  double roofline_ms = 0;
  std::string roofline_limit;  // "compute" or "memory"
  std::vector<VariantTime> variants;
  std::string default_variant, fastest_variant, fastest_f32_variant;
  double default_ms = -1, fastest_ms = -1, fastest_f32_ms = -1;
  bool free = false;      // a view (Reshape, Flatten, ...): no step, no time
  bool missing = false;   // some variant has no measurement in the database
  int group = -1;         // index into Analysis::groups, -1 when not fused with neighbours
  bool critical = false;  // on the parallel bound's critical path
  double start_ms = 0, finish_ms = 0;  // earliest schedule with the bound's times
};

// A set of layers the engine runs as one step (conv+bn+relu, matmul+bias, ...).
struct Group {
  std::vector<int> layers;  // indices into Analysis::layers
  std::string label;
  std::string anchor;       // the node whose variant the group takes (Conv / MatMul / Gemm), or ""
  std::vector<VariantTime> variants;  // the fused step under each variant of the anchor
  double fused_default_ms = -1, fused_best_ms = -1, fused_best_f32_ms = -1;
  std::string fused_best_variant, fused_best_f32_variant;
  double unfused_default_ms = -1, unfused_best_ms = -1;
  double roofline_ms = 0;  // of the group as one step (intermediates never reach memory)
  bool missing = false;
};

struct Runtime {
  std::string runtime;  // "bricklab", "onnxruntime", "pytorch"
  double ms = 0, p10_ms = 0, p90_ms = 0;
};

struct Advice {
  std::string kind;   // algorithm, fusion, precision, parallel, runtime
  std::string title, runtime = "bricklab";
  double predicted_ms = 0, predicted_pct = 0;
  std::optional<double> realised_ms, realised_pct;
  bool applied = false;
  std::string note;
};

// The time above the parallel bound, split into parts that add up (each is the difference of
// two consecutive bounds): runtime overhead (measured minus the sum of the default steps),
// variant choice (default steps minus the float32 sequential bound), reduced precision (float32
// minus the sequential bound) and parallel branches (sequential minus parallel bound). The
// advice rows are actions and may overlap; this is the accounting.
struct GapPart {
  std::string kind;  // runtime, algorithm, precision, parallel
  std::string what;
  double ms = 0, pct = 0;  // pct: of the baseline
};

struct Bounds {
  double sequential_ms = 0, parallel_ms = 0;
  double roofline_sequential_ms = 0, roofline_parallel_ms = 0;
  double default_sequential_ms = 0;  // sum of the default variants in the engine's fused plan
  double sequential_f32_ms = 0;      // the sequential bound without reduced-precision variants
};

struct Analysis {
  std::string model, path, backend, fingerprint, cpu_model;
  int64_t batch = 1;
  int threads = 1;
  std::optional<Machine> machine;
  Bounds bounds;
  std::vector<Runtime> measured;
  std::vector<Layer> layers;  // one per node, in execution order
  std::vector<Group> groups;
  std::vector<std::string> critical_path;  // layer names
  std::vector<Advice> advice;
  // Baseline: bricklab's measured latency (the default steps' sum with --no-measure).
  std::string gap_baseline;
  double gap_baseline_ms = 0;
  std::vector<GapPart> gap;
  std::vector<std::string> missing;        // layers without a measurement
  bool complete() const { return missing.empty(); }
  // Schema "bricklab.lowerbound/1" (the input of render_report_html).
  std::string json() const;
};

// Progress of a long benchmark: done / total measurements, elapsed seconds, what runs now.
using Progress = std::function<void(int done, int total, double elapsed_s, const std::string& what)>;

struct BenchmarkSummary {
  int measurements = 0, already = 0, measured = 0;
  double wall_s = 0;
};

// Benchmarks every variant of every unique layer and fused group of the models that the
// database lacks for this fingerprint (what is there is never measured again).
BenchmarkSummary benchmark_variants(const std::vector<const Graph*>& models, bricks::Database& db, const Options& options,
                                    const Progress& progress = nullptr);

// The bounds and advice of one model from the database (benchmarking what is missing first),
// the model measured end to end, and each advice applied and measured.
Analysis analyze(const Graph& model, bricks::Database& db, const Options& options, const Progress& progress = nullptr);

// Key under which a peer runtime's whole-model latency is stored (ONNX Runtime, PyTorch are
// measured from Python: bricklab.lowerbound.measure_peers) so that analyze() can report them.
std::string peer_key(const Graph& model, const std::string& runtime);
// Stable structural id of a model (operators, attributes, shapes; not weights).
std::string model_id(const Graph& model);

}  // namespace bricklab::lowerbound
