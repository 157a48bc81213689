// Building blocks shared by the tensor-recovery solvers (CP, t-SVD, baselines). Not part of the
// stable API: the solver entry points are in recovery.hpp. Only std types, no Eigen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bricklab/tensor/recovery.hpp"

namespace bricklab::tensor::internal {

// Threads to use for an option value (0: OpenMP's default, i.e. all cores).
int resolve_threads(int threads);

// Observations grouped by their index along one mode ("rows" of that mode's factor), each group
// sorted lexicographically by the remaining modes so that the gathers of the other factors'
// rows walk memory mostly forward. Labels follow the same order.
struct ModeLists {
  int mode = 0;
  std::vector<int64_t> row_begin;   // n_mode + 1 offsets
  std::vector<int32_t> others;      // count x (N-1): indices along the other modes, in mode order
  std::vector<uint16_t> levels;     // quantized labels
  std::vector<double> values;       // squared-loss labels
};

struct ObservationIndex {
  std::vector<int64_t> shape;
  size_t count = 0;
  int num_levels = 0;                // K (quantized) or 0 (values)
  std::vector<int64_t> level_counts; // observations per level (index l - 1)
  std::vector<ModeLists> modes;      // one per mode (empty when only validation was asked)
  size_t bytes() const;
};

// Validates the observations (see validate_observations) and, when with_modes, builds one
// ModeLists per mode. Setup cost: N + (N-1) counting-sort passes, O(|Omega| N) time and memory.
ObservationIndex build_index(const ObservationView& obs, int num_levels, int threads, bool with_modes);

// Lexicographic order of the observations (stable LSD counting sort over the modes), after the
// range checks. Throws InvalidArgument on a duplicate index.
std::vector<uint32_t> lexicographic_order(const ObservationView& obs);

// Boundaries scaled for QuantizedLoss: lower[l-1] = w_{l-1}/sigma, upper[l-1] = w_l/sigma.
struct ScaledBounds {
  std::vector<double> lower, upper;
  ScaledBounds(const std::vector<double>& w, double sigma);
  QuantizedLoss loss(Loss kind, double sigma) const;
};

// Inverse CDF of the noise distribution (standard normal or standard logistic).
double noise_quantile(Loss loss, double p);

// Boundaries from the empirical level frequencies: w_l = s * quantile(P(Y <= l)) with s the
// spread of x + noise assumed at the start, then projected onto gaps >= min_gap.
std::vector<double> initial_boundaries(const std::vector<int64_t>& level_counts, Loss loss, double sigma,
                                       double x_spread, double min_gap);

// One projected-gradient step on the boundaries with x fixed (a block of T-APGD): diagonal
// metric c (n_l + n_{l+1}), weighted PAV projection onto ordered boundaries with gaps >= min_gap,
// and backtracking until the quadratic upper bound holds, so F never increases. Updates w and
// scale (the backtracking state); returns the new objective.
struct BoundaryStepResult {
  double objective = 0;
  double grad_norm = 0;
  int trials = 0;
  bool moved = false;
};
BoundaryStepResult boundary_step(Loss loss, double sigma, double min_gap, std::vector<double>& w, double& scale,
                                 const std::vector<int64_t>& level_counts, const uint16_t* levels, const double* x,
                                 size_t count, int threads);

// Loss of `count` observations at x (levels lev): nll[j] for each, d[j] = d nll/dx when d is
// not null, d2[j] = d^2 nll/dx^2 when d2 (and d) are not null; returns the sum. Vectorised over
// observations (see batch.cpp).
double quantized_batch(const QuantizedLoss& q, const uint16_t* lev, const double* x, double* d, double* nll, size_t count,
                       double* d2 = nullptr);

// Block kernels of the factor passes (vectorised, see batch.cpp). A block of m <= ld
// observations of one factor row is stored transposed: ht[k * ld + j].
// ht = Khatri-Rao rows (Hadamard products of the rows idx[j * n_other + t] of factors[t], each
// n_t x r, row-major) and x = H p; offsets: scratch of n_other * ld.
void khatri_rao_block(const double* const* factors, int n_other, const int32_t* idx, int64_t m, int r, int64_t ld,
                      const double* p, int64_t* offsets, double* ht, double* x);
// x = H p.
void block_dot(const double* ht, int64_t m, int r, int64_t ld, const double* p, double* x);
// g += H^T d; when gram is not null, the lower triangle of gram (r x r row-major) +=
// H^T diag(c) H (c null: H^T H); when hsq is not null, *hsq += |H|_F^2. wbuf: scratch of m.
void block_accumulate(const double* ht, const double* d, const double* c, int64_t m, int r, int64_t ld, double* g,
                      double* gram, double* wbuf, double* hsq);

// Sum of per-observation losses (and optionally the x gradient / boundary gradient) for levels
// stored as uint16 (the solvers' layout).
double objective_u16(Loss loss, double sigma, const std::vector<double>& w, const uint16_t* levels, const double* x,
                     size_t count, int threads, double* grad_x = nullptr, std::vector<double>* grad_w = nullptr);

// Options check shared by the solvers (rank, sigma, alpha, iterations, tolerances, boundaries).
void validate_options(const RecoverOptions& options, bool quantized);

// Number of levels for an observation set and options: boundaries.size() + 1, or num_levels, or
// the largest observed level.
int resolve_num_levels(const ObservationView& obs, const RecoverOptions& options);

// Spectral start (init.cpp): for each mode, an orthonormal basis (n_k x rank, row-major) of the
// leading subspace of Y_(k) Y_(k)^T with its diagonal removed, Y the zero-filled tensor of the
// observations' values (level_value[l - 1] for levels), by `iterations` subspace iterations over
// the mode's fibers; modes with fewer than rank rows are left empty. Returns false when it cannot
// (no fiber with two entries, overflow).
bool spectral_factors(const ObservationIndex& idx, const std::vector<double>& level_value, int rank, int iterations,
                      uint64_t seed, int threads, std::vector<std::vector<double>>& out);

// The CP solver on a built index (recover_cp and the baselines call this). w: the boundaries
// (initial values when estimate_w).
Recovery run_cp(const ObservationIndex& idx, const RecoverOptions& options, Loss loss, std::vector<double> w,
                bool estimate_w);

// Wall clock in seconds.
double now_seconds();

}  // namespace bricklab::tensor::internal
