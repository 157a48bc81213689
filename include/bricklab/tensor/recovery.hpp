// Tensor recovery from noisy, multi-level quantized, partially observed measurements.
//
//   recover_cp     T-APGD: alternating (proximal) gradient over the CP factor matrices of a
//                  rank-r tensor of order N >= 2, with the constraint |X| <= alpha and, when the
//                  boundaries are unknown, the boundaries as one more block.
//   recover_tsvd   projected gradient descent over 3-way tensors of tubal rank r (t-SVD).
//   baselines      unquantized CP (least squares on level values), 1-bit (K = 2) and quantized
//                  matrix recovery of the mode-1 unfolding, on the same observations.
//
// Observations are in coordinate form (an index list plus a level per entry) and are never
// densified: the CP solver costs O(|Omega| N r) per iteration and O(|Omega| N) memory. The
// design and the experiments are in docs/tensor-recovery.md. All functions throw
// bricklab::InvalidArgument on bad input (NaN, out-of-range index or level, duplicate index,
// rank <= 0, non-increasing boundaries, no observations, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bricklab/tensor/likelihood.hpp"

namespace bricklab::tensor {

// Observations borrowed from the caller (nothing is copied until the solver builds its
// per-mode index lists). indices: count x N row-major; exactly one of levels / values is set.
struct ObservationView {
  std::vector<int64_t> shape;        // tensor dimensions; order N = shape.size() >= 2
  const int64_t* indices = nullptr;  // count * N entries, 0-based
  size_t count = 0;
  const int32_t* levels = nullptr;   // quantized losses: levels in 1..K
  const double* values = nullptr;    // squared loss: real values
};

// How each factor block takes its step (see docs/tensor-recovery.md, "T-APGD").
enum class StepRule {
  newton,        // per factor row (a convex subproblem): variable metric sum_w l''(x_w) h_w h_w^T,
                 // exact ball prox, Armijo backtracking along the step (monotone per row)
  curvature,     // majoriser per factor row: metric c * G_i, G_i = sum of Khatri-Rao row outer
                 // products, c = curvature_bound (a matrix "Lipschitz" step; exact ball prox)
  lipschitz,     // scalar per row: 1 / (c * bound on lambda_max(G_i)), then clip the row norm
  backtracking,  // scalar per row, halved until the quadratic upper bound holds (Armijo-type)
};

// What a progress callback sees after each completed iteration (CP method).
struct IterationInfo {
  int iteration = 0;
  double objective = 0;
  const std::vector<std::vector<double>>* factors = nullptr;  // the factors after this iteration
  const std::vector<double>* boundaries = nullptr;
};

struct RecoverOptions {
  int rank = 0;
  Loss loss = Loss::probit;
  double sigma = 1.0;                // noise scale (probit: std dev; logistic: scale)
  double alpha = 1.0;                // |X| <= alpha
  std::vector<double> boundaries;    // w_1 < ... < w_{K-1}; empty: estimate them
  int num_levels = 0;                // K when boundaries are estimated (0: the largest level seen)
  double min_gap = 0;                // boundary estimation: minimum gap (0: sigma / 100)
  int max_iter = 200;
  double tol = 1e-6;                 // stop when (F_prev - F) <= tol * |F| over an iteration
  double grad_tol = 0;               // stop when the KKT residual per observation <= grad_tol
  StepRule step = StepRule::newton;
  bool extrapolate = true;           // Nesterov extrapolation with restart on increase
  uint64_t seed = 0;                 // random initial factors
  int threads = 0;                   // 0: all cores (OpenMP default)
  std::vector<std::vector<double>> init;  // optional initial factors (n_k x rank, row-major)
  double init_scale = 0;             // typical |X| of the random start (0: alpha / 4)
  int n_init = 3;                    // starts (CP): each runs init_iter iterations, the lowest
  int init_iter = 10;                //   objective is continued (guards against local minima)
  bool spectral_init = true;         // the first start is spectral (leading subspaces of the
                                     //   zero-filled data, no densification); the others random
  bool verbose = false;              // one line per iteration on stderr
  // Called after every iteration (CP); return true to stop. Its own time is not counted in
  // iteration_seconds. Not called during the n_init short starts (so with n_init > 1 the first
  // call is for iteration init_iter + 1).
  std::function<bool(const IterationInfo&)> callback;
};

// Result of a recovery. method: "cp", "tsvd" or "unfold".
//   cp:     factors[k] is n_k x rank (row-major); X = sum_j a_j(1) o ... o a_j(N).
//   unfold: factors = {U (n_1 x r), V (prod(n_2..n_N) x r)}; X_(1) = U V^T (C-order columns).
//   tsvd:   factors = {A (n1 x r x n3), B (r x n2 x n3)}; X = A * B (t-product); `dense` holds X.
struct Recovery {
  std::string method;
  std::vector<int64_t> shape;
  int rank = 0;
  std::vector<std::vector<double>> factors;
  std::vector<double> dense;             // tsvd only (C order)
  std::vector<double> boundaries;        // used or estimated, K - 1 values
  std::vector<double> objective;         // F after each iteration; [0] is the initial point
  std::vector<double> kkt_residual;      // per iteration (cp): projected-gradient norm / |Omega|
  std::vector<double> iteration_seconds; // wall time of each iteration
  int iterations = 0;
  std::string stop_reason;               // "tolerance", "gradient", "max_iter", "stalled"
  int restarts = 0;                      // extrapolation restarts
  int rejected_steps = 0;                // block steps undone because F would have increased
  double setup_seconds = 0;              // validation + per-mode index lists
  double solve_seconds = 0;
  size_t index_bytes = 0;                // memory of the solver's observation structures
};

Recovery recover_cp(const ObservationView& obs, const RecoverOptions& options);
Recovery recover_tsvd(const ObservationView& obs, const RecoverOptions& options);

// Baselines on the same observations (levels in obs.levels, boundaries in options).
// Least squares on level values: each level is replaced by its bin's representative value
// (level_values) and fitted with the squared loss (alternating least squares on the factors).
Recovery recover_least_squares(const ObservationView& obs, const RecoverOptions& options);
// 1-bit: levels merged into "<= threshold_level" and "> threshold_level", boundary
// w_{threshold_level}; 0 picks the level that splits the observations closest to half.
Recovery recover_one_bit(const ObservationView& obs, const RecoverOptions& options, int threshold_level = 0);
// Quantized matrix recovery (rank r) of the mode-1 unfolding n_1 x prod(n_2..n_N).
Recovery recover_unfolding(const ObservationView& obs, const RecoverOptions& options);

// Representative value of each of the K bins (for the least-squares baseline): the midpoint of
// interior bins; the outer bins extend by half the mean interior gap (or sigma when K = 2);
// all clipped to [-alpha, alpha].
std::vector<double> level_values(const std::vector<double>& boundaries, double sigma, double alpha);

// Entries of the estimate at count indices (count x N row-major), and the dense estimate
// (C order). Both validate the indices.
std::vector<double> recovery_entries(const Recovery& r, const int64_t* indices, size_t count, int threads = 0);
std::vector<double> recovery_dense(const Recovery& r, int threads = 0);

// Objective F = sum of per-observation losses at the given estimate entries x (count values),
// and its boundary gradient; exposed for tests and the bindings.
double quantized_objective(Loss loss, double sigma, const std::vector<double>& boundaries, const int32_t* levels,
                           const double* x, size_t count, std::vector<double>* grad_x = nullptr,
                           std::vector<double>* grad_boundaries = nullptr, int threads = 0);

// F at given CP factors and its gradient with respect to every factor (the sparse MTTKRPs) and
// to the boundaries, computed by the solver's own kernels (exposed for finite-difference tests).
struct CpGradient {
  double objective = 0;
  std::vector<std::vector<double>> factor_grads;  // n_k x rank each
  std::vector<double> boundary_grad;              // K - 1 (quantized losses)
};
CpGradient cp_objective_gradient(const ObservationView& obs, const RecoverOptions& options,
                                 const std::vector<std::vector<double>>& factors);

// Check an observation set (shape, indices in range, levels in 1..num_levels or finite values,
// no duplicates); throws InvalidArgument naming the first offending observation.
void validate_observations(const ObservationView& obs, int num_levels);
// Check boundaries: finite and strictly increasing.
void validate_boundaries(const std::vector<double>& boundaries);

// Projection of w onto {w_{l+1} - w_l >= min_gap} in the weighted norm sum_l weight_l (.)^2
// (pool-adjacent-violators on w_l - l * min_gap). Exposed for tests.
std::vector<double> project_ordered(const std::vector<double>& w, const std::vector<double>& weight, double min_gap);

const char* step_rule_name(StepRule rule);

}  // namespace bricklab::tensor
