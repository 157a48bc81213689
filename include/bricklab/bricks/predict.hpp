// Prediction: a model's latency constructed from its bricks' stored times. Sum (layers run one
// after another) and critical path (independent branches run in parallel), with the per-brick
// breakdown; bricks missing from the database are listed, never silently skipped.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "bricklab/bricks/database.hpp"
#include "bricklab/bricks/decompose.hpp"

namespace bricklab::bricks {

struct PredictedUse {
  std::string key, id, label;
  std::vector<std::string> nodes;
  double ms = 0;
  bool missing = false;
  bool noisy = false;  // its stored measurement is marked noisy (StoredResult::is_noisy)
};

struct Prediction {
  std::string model;
  std::string fingerprint;
  double sum_ms = 0;            // steps + reorders + runtime overhead
  double critical_path_ms = 0;  // longest path of step times + reorders on it + overhead
  double steps_ms = 0, reorders_ms = 0, overhead_ms = 0;
  // Half-width of the 95% CI of sum_ms from the stored bricks' CIs (a brick used m times
  // contributes m times its half-width; distinct bricks' errors taken as independent).
  double ci_ms = 0;
  int reorders_estimated = 0;   // reorders without a measured twin, priced by measured bytes/ms
  std::vector<PredictedUse> uses;
  std::vector<std::string> missing;  // brick keys not in the database
  // Brick keys whose stored measurements are marked noisy (taken on a busy machine, or never
  // settled). Their times are in the sums, but the prediction is not complete unless they were
  // accepted (`accept_noisy`: --accept-noisy, accept_noisy=True); --remeasure replaces them.
  std::vector<std::string> noisy;
  bool noisy_accepted = false;
  bool complete() const { return missing.empty() && (noisy.empty() || noisy_accepted); }
};

Prediction predict(const ModelBricks& model, Database& db, const std::string& fingerprint, bool accept_noisy = false);

// The relative CI each brick of `d` is measured to under `options` (see
// RunnerOptions::per_model_tolerance), by position in d.bricks; shares are estimated from the
// bricks' FLOPs and bytes before anything is measured.
std::vector<double> brick_tolerances(const Decomposition& d, const RunnerOptions& options);

// Benchmarks every brick (and runtime brick) of a decomposition not yet in `db` for `fp`, and
// re-measures the stored ones marked noisy; with `remeasure`, every one (the new results replace
// the stored ones of this fingerprint).
struct BenchmarkSummary {
  int bricks = 0, already = 0, measured = 0, reorders_stored = 0;
  int remeasured = 0;  // of `measured`: stored before, replaced (noisy, or --remeasure)
  int noisy = 0;       // of `measured`: still noisy after the runner's retries
  double wall_s = 0;
};
using Progress = std::function<void(int done, int total, double elapsed_s, const std::string& label)>;
// With `queue_suite` (PostgreSQL only), bricks are claimed from the shared work queue of that
// suite, so several machines started on the same suite measure disjoint bricks.
BenchmarkSummary benchmark(const Decomposition& d, Database& db, const RunnerOptions& options,
                           const Progress& progress = nullptr, const std::string& queue_suite = "", bool remeasure = false);

}  // namespace bricklab::bricks
