// Spectral initialisation of the CP factors from the sparse observations, without densifying.
//
// For mode n, the leading r-dimensional subspace of Y_(n) Y_(n)^T, with Y the zero-filled tensor
// of the observations' values (level representative values), is a classical starting point for
// tensor completion. Y_(n) Y_(n)^T sums, over the mode-n fibers f (all indices fixed but the n-th),
// y_f y_f^T; its diagonal is dominated by the sampling (each y_{i,f}^2 is there with probability
// p, the off-diagonal products with p^2), so it is dropped. Subspace iteration applies the matrix
// fiber by fiber: W(i) += y_{i,f} (s_f - y_{i,f} V(i)), s_f = sum_{i' in f} y_{i',f} V(i').
#include <omp.h>

#include <climits>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <random>

#include "bricklab/tensor/internal.hpp"

namespace bricklab::tensor::internal {

namespace {

using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Stable LSD radix sort of positions by 64-bit keys using only as many 16-bit digits as needed.
std::vector<uint32_t> sort_by_key(const std::vector<uint64_t>& key, uint64_t max_key) {
  const size_t m = key.size();
  std::vector<uint32_t> order(m), tmp(m);
  for (size_t j = 0; j < m; ++j) order[j] = uint32_t(j);
  for (int shift = 0; shift < 64 && (max_key >> shift) != 0; shift += 16) {
    std::vector<size_t> count(65537, 0);
    for (size_t j = 0; j < m; ++j) count[((key[order[j]] >> shift) & 0xffff) + 1]++;
    for (size_t d = 0; d < 65536; ++d) count[d + 1] += count[d];
    for (size_t j = 0; j < m; ++j) tmp[count[(key[order[j]] >> shift) & 0xffff]++] = order[j];
    order.swap(tmp);
  }
  return order;
}

}  // namespace

bool spectral_factors(const ObservationIndex& idx, const std::vector<double>& level_value, int rank, int iterations,
                      uint64_t seed, int threads, std::vector<std::vector<double>>& out) {
  const size_t n_modes = idx.shape.size();
  out.assign(n_modes, {});
  for (size_t mode = 0; mode < n_modes; ++mode) {
    const ModeLists& ml = idx.modes[mode];
    const int64_t rows = idx.shape[mode];
    if (rows < rank) continue;  // no rank-dimensional subspace: the caller starts this mode at random
    const size_t m = idx.count, m1 = n_modes - 1;
    // Fiber key: the linear index over the other modes (give up when it does not fit in 64 bits).
    double span = 1;
    for (size_t k = 0; k < n_modes; ++k)
      if (k != mode) span *= double(idx.shape[k]);
    if (span > 1.8e19) return false;
    std::vector<uint64_t> key(m);
    std::vector<int32_t> row_of(m);
    std::vector<double> y(m);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = ml.row_begin[size_t(i)]; j < ml.row_begin[size_t(i) + 1]; ++j) {
        uint64_t kk = 0;
        for (size_t t = 0, k = 0; k < n_modes; ++k) {
          if (k == mode) continue;
          kk = kk * uint64_t(idx.shape[k]) + uint64_t(ml.others[size_t(j) * m1 + t]);
          ++t;
        }
        key[size_t(j)] = kk;
        row_of[size_t(j)] = int32_t(i);
        y[size_t(j)] = ml.levels.empty() ? ml.values[size_t(j)] : level_value[ml.levels[size_t(j)] - 1];
      }
    // Fibers with at least two entries (a lone entry only feeds the dropped diagonal); fiber_of
    // maps list positions to them (-1: lone).
    const std::vector<uint32_t> order = sort_by_key(key, uint64_t(span - 1));
    std::vector<size_t> fiber_begin;
    std::vector<int32_t> fiber_of(m, -1);
    for (size_t j = 0; j < m;) {
      size_t e = j + 1;
      while (e < m && key[order[e]] == key[order[j]]) ++e;
      if (e - j >= 2) {
        if (fiber_begin.size() >= size_t(INT32_MAX)) return false;
        for (size_t q = j; q < e; ++q) fiber_of[order[q]] = int32_t(fiber_begin.size());
        fiber_begin.push_back(j);
      }
      j = e;
    }
    const int64_t fibers = int64_t(fiber_begin.size());
    if (fibers == 0) return false;
    std::vector<size_t> fiber_end(static_cast<size_t>(fibers));
    for (int64_t f = 0; f < fibers; ++f) {
      size_t e = fiber_begin[size_t(f)] + 1;
      while (e < m && key[order[e]] == key[order[fiber_begin[size_t(f)]]]) ++e;
      fiber_end[size_t(f)] = e;
    }

    std::mt19937_64 rng(seed + 7919 * mode);
    std::normal_distribution<double> normal(0, 1);
    RowMat v(rows, rank);
    for (int64_t i = 0; i < rows; ++i)
      for (int c = 0; c < rank; ++c) v(i, c) = normal(rng);
    Eigen::HouseholderQR<RowMat> qr0(v);
    v = qr0.householderQ() * RowMat::Identity(rows, rank);
    RowMat fsum(fibers, rank), w(rows, rank);
    for (int it = 0; it < iterations; ++it) {
      // Two phases, each summing in a fixed order: the result does not depend on the threads.
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t f = 0; f < fibers; ++f) {
        fsum.row(f).setZero();
        for (size_t j = fiber_begin[size_t(f)]; j < fiber_end[size_t(f)]; ++j)
          fsum.row(f) += y[order[j]] * v.row(row_of[order[j]]);
      }
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < rows; ++i) {
        w.row(i).setZero();
        for (int64_t j = ml.row_begin[size_t(i)]; j < ml.row_begin[size_t(i) + 1]; ++j) {
          const int32_t f = fiber_of[size_t(j)];
          if (f < 0) continue;
          const double yj = y[size_t(j)];
          w.row(i) += yj * (fsum.row(f) - yj * v.row(i));
        }
      }
      if (!w.allFinite() || w.norm() == 0) return false;
      Eigen::HouseholderQR<RowMat> qr(w);
      v = qr.householderQ() * RowMat::Identity(rows, rank);
    }
    out[mode].assign(v.data(), v.data() + rows * rank);
  }
  return true;
}

}  // namespace bricklab::tensor::internal
