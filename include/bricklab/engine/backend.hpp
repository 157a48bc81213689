// The backend interface: the one way analysis code (bricks, lower bound) and users compile and
// run a graph, a subgraph or a single node on a device, enumerate a node's equivalent variants,
// and time them. Backends (CPU: oneDNN, GPU: cuda/) live behind it; no backend header leaks here.
#pragma once

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "bricklab/engine/tensor.hpp"
#include "bricklab/graph/graph.hpp"
#include "bricklab/ops/registry.hpp"

namespace bricklab {

struct CompileOptions {
  int threads = 0;      // 0: all cores
  bool fusion = true;   // master switch for the fusions below
  // Each fusion on its own (effective while `fusion` is on), so analyses can price each one:
  bool fuse_batchnorm = true;   // BatchNormalization folded into the preceding Conv
  bool fuse_activation = true;  // activation chains (incl. GELU / SiLU / HardSwish patterns) as post-ops
  bool fuse_residual = true;    // a residual Add accumulated by the Conv (sum post-op)
  bool fuse_bias = true;        // an Add of a constant after MatMul as the matmul's bias
  // Per-node variant by node name (see Backend::variants); unnamed nodes use the default.
  std::map<std::string, std::string> variants;
  uint64_t weight_seed = 0;  // seed of the random values used for stripped weights
  // Flush denormal floats to zero while running (as ONNX Runtime does): random or tiny weights
  // (e.g. ConvNeXt's 1e-6 layer scale) otherwise make arithmetic 10-100x slower.
  bool flush_denormals = true;
  // run_profiled times steps with the calling thread's CPU clock instead of the wall clock:
  // time the thread actually ran, not time spent preempted on a shared machine. Meaningful
  // with threads = 1 (work on other threads is not counted).
  bool profile_cpu_time = false;
  // A Conv reading a graph input may adopt the input's plain layout (when oneDNN has a JIT
  // kernel for it) instead of reordering. Bricks turn this off: in the model the same input
  // comes from an earlier step in a blocked layout, and the brick must run the model's kernel.
  bool adopt_input_layout = true;
  // Independent branches run concurrently: > 1 runs the plan's steps on this many workers as
  // soon as their inputs are ready, each step with max(1, threads / branch_workers) threads
  // (activation buffers are then not shared between steps). 1: one step after another.
  int branch_workers = 1;
  // Activation buffers are handed on to later steps once their value is dead. False: every
  // value keeps its own buffer (the brick runner, so the outputs of left-out steps stay intact).
  bool reuse_buffers = true;
  // Nodes whose results nobody will use (a brick's context, left out of every run; see
  // Executable::fill_skipped_outputs): their steps are still planned, so the values they hand on
  // have the model's layouts, but stripped weights read only by them get zeros instead of
  // stand-in values. A backend may ignore it.
  std::set<std::string> placeholder_nodes;
};

// The arithmetic precision a variant computes in (inputs and outputs stay float32).
enum class Precision { fp32, tf32, bf16, fp16 };
std::string precision_name(Precision p);

// One semantically equivalent way of running a node (algorithm, layout, precision, fusion).
// `name` is what CompileOptions::variants and the database use; the typed fields say what it
// is, so analyses never read meaning out of the name.
struct Variant {
  std::string name;         // e.g. "direct", "winograd", "bf16"
  std::string description;
  bool is_default = false;  // what the library's heuristic picks
  Precision precision = Precision::fp32;
  std::string algorithm;    // "auto", "direct", "winograd", "gemm", cuDNN's algorithm name, ...; empty: the only one
  std::string layout;       // activation layout it forces ("nhwc", "nchw"); empty: the backend's choice
};

struct TimingStats {
  int repeats = 0;
  double median_ms = 0, p10_ms = 0, p90_ms = 0, mean_ms = 0, min_ms = 0;
  std::vector<double> samples_ms;
};

// Time of one plan step (a node or a fused group of nodes) within a run.
struct StepTime {
  std::string name;              // the step's node names joined by '+'
  std::vector<std::string> nodes;
  std::string kind;              // e.g. "conv+relu", "reorder", "pool"
  double ms = 0;
};

// One step of a compiled plan, as data: what analyses (bricks, the lower bound) read instead of
// the text of describe().
struct PlanStep {
  enum class Kind { compute, reorder };
  Kind kind = Kind::compute;
  std::string label;               // the step's kind, e.g. "conv+BatchNormalization+Relu", "reorder"
  std::vector<std::string> nodes;  // graph nodes it computes (compute steps; fused groups have several)
  std::string layout = "plain";    // layout of the memory it writes ("plain" or the backend's tag)
  // Reorders: the graph value converted and why (the consumer's need: "conv", "plain", ...).
  std::string value, why;
  // What Executable::skip_steps accepts for this step: its node names, or for a reorder its id.
  std::vector<std::string> skip_ids() const { return kind == Kind::reorder ? std::vector<std::string>{value + "@" + why} : nodes; }
};

// A compiled model. It may be shared between threads: run and run_profiled calls take turns (the
// plan's buffers are the executable's own), so results match sequential calls; for parallel
// throughput compile one executable per thread.
class Executable {
 public:
  virtual ~Executable() = default;
  virtual const std::vector<std::string>& input_names() const = 0;
  virtual const std::vector<std::string>& output_names() const = 0;
  // Runs once. Inputs by name (float32, the graph's shapes); outputs as new host tensors.
  virtual std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) = 0;
  // Runs once, timing every step.
  virtual std::vector<StepTime> run_profiled(const std::map<std::string, Tensor>& inputs) = 0;
  // The plan: steps, fusions, layouts, variants; one line per step.
  virtual std::string describe() const = 0;
  // The same plan as data, in execution order.
  virtual std::vector<PlanStep> plan() const = 0;
  // True when some weights were absent (stripped) and random values stand in for them.
  virtual bool uses_random_weights() const = 0;
  // Host memory holding the weights (prepacked constants) of the steps that run (see
  // skip_steps) as (address, bytes), so that a benchmark can evict them from the CPU caches
  // between repetitions. Empty where weights do not live in host memory (GPU backends).
  virtual std::vector<std::pair<const void*, size_t>> weight_buffers() const { return {}; }
  // Host memory the steps that run (see skip_steps) write: their outputs and the intermediate
  // values between them, as (address, bytes), so that a benchmark can evict them from the CPU
  // caches between repetitions. Empty where they do not live in host memory (GPU backends).
  virtual std::vector<std::pair<const void*, size_t>> output_buffers() const { return {}; }
  // Later runs leave out the steps made only of `nodes`; their outputs keep the values of the
  // last run that computed them. Done only when that is safe (no remaining step writes memory a
  // left-out step's output is read from); returns whether the steps are left out. An empty set
  // restores full runs. The brick runner leaves a brick's context out (see below).
  virtual bool skip_steps(const std::set<std::string>& nodes) { return nodes.empty(); }
  // Writes stand-in values into the memory of every value that a left-out step produces and a
  // remaining step reads, in whatever layout the plan keeps it (padding included): float32 and
  // bfloat16 normal(0, 1) (a block of random_inputs-style values, repeated), other types zero.
  // The left-out steps then need never run: the brick runner compiles a brick with its context,
  // so that the brick's inputs have the layouts the model hands them, and fills them instead of
  // computing them. Returns false where the backend cannot (nothing is written).
  virtual bool fill_skipped_outputs(uint64_t seed) { (void)seed; return false; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual bool available() const = 0;
  // Compiles the whole graph.
  virtual std::unique_ptr<Executable> compile(const Graph& graph, const CompileOptions& options) const = 0;
  // The node's equivalent variants on this backend; the first default one is the heuristic's.
  virtual std::vector<Variant> variants(const Graph& graph, int node) const = 0;
  // True when the backend has a lowering for the operator-table entry (it may still refuse a
  // particular node, e.g. an element type, with an UnsupportedError that says why); false: the
  // operator is unsupported on this backend. `bricklab ops` lists this per backend.
  virtual bool lowers(const OpDef& op) const = 0;
};

// The names of the backends built into this library, in preference order ("cpu", "cuda").
std::vector<std::string> backend_names();

// "cpu" (oneDNN) or "cuda"; throws UnsupportedError when the backend is not built in. A built-in
// backend whose device is missing is still returned: available() is false and compile() throws
// UnsupportedError with the reason (cuda::unavailable_reason()).
const Backend& get_backend(const std::string& name);

// A graph holding only `nodes` (indices into `graph`): its inputs are the values those nodes read
// but do not produce, its outputs the values they produce that are used outside or are graph
// outputs. Compiling it runs the nodes through the same code path as the whole model.
Graph extract_subgraph(const Graph& graph, const std::vector<int>& nodes);

// Deterministic stand-ins for a stripped weight (a constant without values), shaped like a
// trained network's: normal(0, 1/sqrt(fan_in)) for rank >= 2 (approximated by a sum of four
// uniforms), normal(0, 0.05) for vectors, and uniform(0.5, 1.5) for normalisation scales and
// variances. A pure function of `seed`, the value's name and the element index, so every backend
// and every emitted brick gets the same numbers: a window, starting where seed and name say, of
// one fixed sequence of 1048573 such values (prime: the rows of a matrix never repeat).
std::vector<float> random_weight_values(const Graph& graph, int value, uint64_t seed);
// The same values written to `out` (numel floats).
void fill_weight_values(const Graph& graph, int value, uint64_t seed, float* out);

// Deterministic inputs for every graph input: float32/float64 normal(0, 1) (a counter-based
// generator, so a pure function of seed, name and index), integers and bool zero (valid indices
// for Gather and friends). Inputs named in `leave_zero` are all zero.
std::map<std::string, Tensor> random_inputs(const Graph& graph, uint64_t seed = 0,
                                            const std::set<std::string>& leave_zero = {});
// The float32 values random_inputs gives an input named `name`: `count` of them into `data`.
void fill_random_normal(float* data, int64_t count, uint64_t seed, const std::string& name);

// Warm-up runs, then `repeats` timed runs: median, p10, p90 of the wall time.
TimingStats time_runs(Executable& exe, const std::map<std::string, Tensor>& inputs, int warmup, int repeats);

}  // namespace bricklab
