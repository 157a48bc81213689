// The brick benchmark runner: warm-up, then repetitions until the 95% confidence interval of
// the median is within a relative tolerance or a time budget runs out; median, p10, p90, CV.
// Options for threads, thread pinning and cold weights (caches flushed before each repetition).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bricklab/core/machine_load.hpp"
#include "bricklab/engine/backend.hpp"

namespace bricklab::bricks {

struct RunnerOptions {
  int threads = 1;             // engine threads (0 = all cores)
  bool pin = false;            // pin the engine's threads to cores
  bool cold_weights = false;   // evict caches before every repetition
  // Bricks only: evict the brick's own weights from the caches (clflush of their lines) before
  // every repetition. In a model run a layer's weights were last touched a whole pass earlier;
  // timed alone in a loop they would stay in cache. Inputs stay hot, as in the model.
  bool evict_weights = true;
  // Bricks only, off by default: also evict the memory the brick writes (its outputs), buffer by
  // buffer, when a buffer holds at least this many bytes; -1: the size of a core's private (L2)
  // cache, 0: never. In a model run a layer writes its output into arena memory that the rest of
  // the pass may have pushed out of the shared cache; timed alone in a loop, a brick writes into
  // lines still holding its previous repetition's output. Measured (docs/bricks.md): it helps
  // small networks at batch 1 and over-predicts mobile networks at batch 8 by up to 40%.
  int64_t evict_outputs_bytes = 0;
  int warmup = 3;              // untimed runs first (where a backend must compute a brick's
                               // context, that run counts as one)
  int min_reps = 7;            // the order-statistic CI needs a few samples
  int max_reps = 1000;
  double tolerance = 0.02;     // relative half-width of the median's 95% CI
  // Suite benchmarks (bricks::benchmark): `tolerance` is the target for each model's predicted
  // latency, not for each brick. A brick with share s of a model's (estimated) time may have a
  // relative CI of tolerance / sqrt(s) (at most brick_tolerance_cap): if the bricks' errors are
  // independent, the model's predicted CI is then within tolerance. False: every brick to
  // `tolerance` itself.
  bool per_model_tolerance = true;
  double brick_tolerance_cap = 0.25;
  double budget_s = 10.0;      // per measurement (warm-up excluded), then stop unconverged
  bool fusion = true;
  // Time with the thread's CPU clock instead of the wall clock (threads = 1 only): on a machine
  // shared with other jobs, what the model costs rather than how long it waited for a core.
  bool cpu_clock = false;
  std::string backend = "cpu";  // "cpu" (oneDNN) or "cuda"
  // Per-node variant by node name (CompileOptions::variants), for variant benchmarks.
  std::map<std::string, std::string> variants;
  int branch_workers = 1;  // CompileOptions::branch_workers (lower bound: the parallel advice applied)
  // A measurement taken while the machine was busy (core/machine_load.hpp: CPU pressure, steal,
  // other runnable tasks) is taken again, up to `busy_retries` times, each after waiting up to
  // `busy_wait_s` for the machine to quiet down; one that stays busy is marked noisy.
  int busy_retries = 2;
  double busy_wait_s = 5.0;
};

// A measurement is noisy when the machine was busy during it, or when it did not converge and
// its p10-p90 spread is above kNoisySpread of the median.
inline constexpr double kNoisySpread = 0.5;

struct Measurement {
  double median_ms = 0, p10_ms = 0, p90_ms = 0, mean_ms = 0, cv = 0;
  double ci_low_ms = 0, ci_high_ms = 0;
  double ci_rel = 0;     // (ci_high - ci_low) / 2 / median
  int reps = 0;
  bool converged = false;
  double wall_s = 0;     // total time spent, compile + warm-up + repetitions
  std::vector<double> samples_ms;
  MachineLoad load;      // how busy the machine was during the (last) attempt
  int attempts = 1;      // 1 + the re-measurements a busy machine caused
  bool noisy = false;    // see is_noisy
};
bool is_noisy(const Measurement& m);

// Fills median, p10, p90, mean, CV and reps of `m` from m.samples_ms.
void summarise(Measurement& m);
// 95% CI of the median from order statistics of sorted samples (distribution-free).
void median_ci(const std::vector<double>& sorted, double& low, double& high);
// Repeats `sample` (returns one time in ms) under the stopping rule; `before` runs untimed
// before each repetition (cache eviction).
Measurement measure(const std::function<double()>& sample, const RunnerOptions& options,
                    const std::function<void()>& before = nullptr);

// Evicts the CPU caches (writes and reads a buffer of a few times the last-level cache).
void flush_caches();
// The size of one core's private data cache below the shared one (L2 on current x86), from the
// C library or sysfs; 1 MiB when neither knows.
size_t private_cache_bytes();
// RunnerOptions::evict_outputs_bytes resolved: -1 gives private_cache_bytes(); 0 when outputs
// are not evicted (or cold_weights flushes everything anyway).
int64_t output_eviction_threshold(const RunnerOptions& options);
// What the brick runner evicts before each repetition: the weights of the steps that run (with
// evict_weights) and the buffers they write of at least output_eviction_threshold() bytes.
std::vector<std::pair<const void*, size_t>> eviction_ranges(const Executable& exe, const RunnerOptions& options);
// Evicts the cache lines of the given memory ranges (clflush; no-op on non-x86 hosts).
void evict_lines(const std::vector<std::pair<const void*, size_t>>& ranges);
// Pins the OpenMP threads of the engine to cores 0..threads-1.
void pin_threads(int threads);


// Compile options matching the runner options (the same settings for bricks and models).
CompileOptions compile_options(const RunnerOptions& options);

// Result of timing one brick in isolation: its own steps (boundary reorders excluded) and
// the boundary reorders it did, each as a measured reorder brick.
struct BrickTiming {
  Measurement steps;
  std::map<std::string, Measurement> reorders;  // reorder key -> time
  std::map<std::string, double> reorder_bytes;
};
// `own`: names of the brick's nodes; other nodes of the graph are its context, compiled for
// the layouts they hand the brick but not run (their outputs get stand-in values). Empty: every
// node is the brick's. A brick output's conversion to plain layout (done only because the brick
// ends there) whose key is in `known_reorders` (measured already with another brick) is left
// out too: neither run nor reported.
BrickTiming time_brick(const Graph& brick, const RunnerOptions& options, const std::set<std::string>& own = {},
                       const std::set<std::string>& known_reorders = {});
// Whole-run wall time (Executable::run) of a graph: for models end to end and runtime bricks.
Measurement time_whole(const Graph& graph, const RunnerOptions& options);

// What makes results comparable: machine, library, settings. Results from different
// fingerprints never mix.
struct Fingerprint {
  std::string cpu_model, isa, onednn, backend = "cpu", bricklab_version;
  int cores = 0, threads = 1;
  bool pinned = false, cold_weights = false, evict_weights = true, fusion = true, cpu_clock = false;
  int64_t evict_outputs_bytes = 0;  // resolved threshold; 0: outputs not evicted
  std::string label;  // $BRICKLAB_FINGERPRINT_LABEL: keeps experiments apart on one machine
  std::string json() const;
  std::string id() const;  // short hash of json()
};
Fingerprint system_fingerprint(const RunnerOptions& options);

}  // namespace bricklab::bricks
