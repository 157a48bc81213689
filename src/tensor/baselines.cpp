// Baselines on the same observations (least squares on level values, 1-bit, quantized matrix
// recovery of the mode-1 unfolding) and evaluation of any Recovery (entries, dense).
#include <omp.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "bricklab/core/error.hpp"
#include "bricklab/tensor/internal.hpp"

namespace bricklab::tensor {

std::vector<double> level_values(const std::vector<double>& w, double sigma, double alpha) {
  validate_boundaries(w);
  if (w.empty()) throw InvalidArgument("level_values: need at least one boundary (K >= 2)");
  const size_t k = w.size() + 1;
  const double half_gap = w.size() >= 2 ? 0.5 * (w.back() - w.front()) / double(w.size() - 1) : sigma;
  std::vector<double> v(k);
  for (size_t l = 0; l < k; ++l) {
    if (l == 0) v[l] = w.front() - half_gap;
    else if (l + 1 == k) v[l] = w.back() + half_gap;
    else v[l] = 0.5 * (w[l - 1] + w[l]);
    v[l] = std::min(alpha, std::max(-alpha, v[l]));
  }
  return v;
}

Recovery recover_least_squares(const ObservationView& obs, const RecoverOptions& options) {
  internal::validate_options(options, true);
  if (!obs.levels) throw InvalidArgument("least-squares baseline: needs levels");
  const int k = internal::resolve_num_levels(obs, options);
  validate_observations(obs, k);
  // Level values: the bins' representative values when the boundaries are known, else the
  // level numbers themselves (e.g. star ratings).
  std::vector<double> lv(static_cast<size_t>(k));
  if (!options.boundaries.empty()) lv = level_values(options.boundaries, options.sigma, options.alpha);
  else
    for (int l = 0; l < k; ++l) lv[size_t(l)] = double(l + 1);
  std::vector<double> values(obs.count);
  for (size_t w = 0; w < obs.count; ++w) values[w] = lv[size_t(obs.levels[w] - 1)];
  ObservationView view = obs;
  view.levels = nullptr;
  view.values = values.data();
  RecoverOptions o = options;
  o.loss = Loss::squared;
  o.boundaries.clear();
  Recovery r = recover_cp(view, o);
  r.boundaries = options.boundaries;
  return r;
}

Recovery recover_one_bit(const ObservationView& obs, const RecoverOptions& options, int threshold_level) {
  internal::validate_options(options, true);
  if (!obs.levels) throw InvalidArgument("1-bit baseline: needs levels");
  const int k = internal::resolve_num_levels(obs, options);
  validate_observations(obs, k);
  std::vector<int64_t> counts(size_t(k), 0);
  for (size_t w = 0; w < obs.count; ++w) counts[size_t(obs.levels[w] - 1)]++;
  if (threshold_level == 0) {
    // The split closest to half of the observations.
    int64_t cum = 0, best_gap = std::numeric_limits<int64_t>::max();
    for (int t = 1; t < k; ++t) {
      cum += counts[size_t(t - 1)];
      const int64_t gap = std::llabs(2 * cum - int64_t(obs.count));
      if (gap < best_gap) best_gap = gap, threshold_level = t;
    }
  }
  if (threshold_level < 1 || threshold_level >= k)
    throw InvalidArgument("1-bit baseline: threshold_level must be in 1.." + std::to_string(k - 1) + ", got " +
                          std::to_string(threshold_level));
  std::vector<int32_t> bits(obs.count);
  for (size_t w = 0; w < obs.count; ++w) bits[w] = obs.levels[w] <= threshold_level ? 1 : 2;
  ObservationView view = obs;
  view.levels = bits.data();
  RecoverOptions o = options;
  o.num_levels = 2;
  if (!options.boundaries.empty()) o.boundaries = {options.boundaries[size_t(threshold_level - 1)]};
  return recover_cp(view, o);
}

Recovery recover_unfolding(const ObservationView& obs, const RecoverOptions& options) {
  if (obs.shape.size() < 2) throw InvalidArgument("unfolding baseline: the shape needs at least 2 dimensions");
  double cols = 1;
  for (size_t k = 1; k < obs.shape.size(); ++k) cols *= double(std::max<int64_t>(obs.shape[k], 1));
  if (cols > double(std::numeric_limits<int32_t>::max()))
    throw InvalidArgument("unfolding baseline: the mode-1 unfolding has more than 2^31 - 1 columns");
  const size_t n = obs.shape.size();
  // Range checks first (on the original indices), then map to (row, column) pairs.
  internal::lexicographic_order(obs);
  std::vector<int64_t> pairs(obs.count * 2);
  for (size_t w = 0; w < obs.count; ++w) {
    const int64_t* ix = obs.indices + w * n;
    int64_t col = 0;
    for (size_t k = 1; k < n; ++k) col = col * obs.shape[k] + ix[k];
    pairs[2 * w] = ix[0];
    pairs[2 * w + 1] = col;
  }
  ObservationView view = obs;
  view.shape = {obs.shape[0], int64_t(cols)};
  view.indices = pairs.data();
  Recovery r = recover_cp(view, options);
  r.method = "unfold";
  r.shape = obs.shape;
  return r;
}

namespace {

void check_indices(const Recovery& r, const int64_t* indices, size_t count) {
  const size_t n = r.shape.size();
  if (count > 0 && !indices) throw InvalidArgument("recovery entries: no index array");
  for (size_t w = 0; w < count; ++w)
    for (size_t k = 0; k < n; ++k) {
      const int64_t i = indices[w * n + k];
      if (i < 0 || i >= r.shape[k])
        throw InvalidArgument("recovery entries: index " + std::to_string(i) + " of entry " + std::to_string(w) +
                              " is out of range along mode " + std::to_string(k) + " (size " + std::to_string(r.shape[k]) + ")");
    }
}

void check_recovery(const Recovery& r) {
  if (r.method == "cp") {
    if (r.factors.size() != r.shape.size()) throw InvalidArgument("recovery: cp needs one factor per mode");
    for (size_t k = 0; k < r.shape.size(); ++k)
      if (r.factors[k].size() != size_t(r.shape[k]) * size_t(r.rank)) throw InvalidArgument("recovery: factor size mismatch");
  } else if (r.method == "unfold") {
    double cols = 1;
    for (size_t k = 1; k < r.shape.size(); ++k) cols *= double(r.shape[k]);
    if (r.factors.size() != 2 || r.factors[0].size() != size_t(r.shape[0]) * size_t(r.rank) ||
        double(r.factors[1].size()) != cols * r.rank)
      throw InvalidArgument("recovery: unfold factor size mismatch");
  } else if (r.method == "tsvd") {
    double total = 1;
    for (int64_t d : r.shape) total *= double(d);
    if (double(r.dense.size()) != total) throw InvalidArgument("recovery: tsvd dense estimate size mismatch");
  } else {
    throw InvalidArgument("recovery: unknown method '" + r.method + "'");
  }
}

}  // namespace

std::vector<double> recovery_entries(const Recovery& r, const int64_t* indices, size_t count, int threads) {
  check_recovery(r);
  check_indices(r, indices, count);
  const int nt = std::min(internal::resolve_threads(threads), int(1 + count / 20000));
  const size_t n = r.shape.size();
  const size_t rank = size_t(r.rank);
  std::vector<double> out(count);
  const int64_t cnt = int64_t(count);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t w = 0; w < cnt; ++w) {
    const int64_t* ix = indices + size_t(w) * n;
    double x = 0;
    if (r.method == "cp") {
      for (size_t j = 0; j < rank; ++j) {
        double p = 1;
        for (size_t k = 0; k < n; ++k) p *= r.factors[k][size_t(ix[k]) * rank + j];
        x += p;
      }
    } else if (r.method == "unfold") {
      int64_t col = 0;
      for (size_t k = 1; k < n; ++k) col = col * r.shape[k] + ix[k];
      for (size_t j = 0; j < rank; ++j) x += r.factors[0][size_t(ix[0]) * rank + j] * r.factors[1][size_t(col) * rank + j];
    } else {
      int64_t lin = 0;
      for (size_t k = 0; k < n; ++k) lin = lin * r.shape[k] + ix[k];
      x = r.dense[size_t(lin)];
    }
    out[size_t(w)] = x;
  }
  return out;
}

std::vector<double> recovery_dense(const Recovery& r, int threads) {
  check_recovery(r);
  if (r.method == "tsvd") return r.dense;
  double total = 1;
  for (int64_t d : r.shape) total *= double(d);
  if (total > 4e9) throw InvalidArgument("recovery dense: the tensor has more than 4e9 entries; use entries()");
  const int nt = std::min(internal::resolve_threads(threads), int(1 + total / 65536));
  using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int64_t n1 = r.shape[0];
  const int64_t rest = int64_t(total) / std::max<int64_t>(n1, 1);
  const int rank = r.rank;
  // Columns of the mode-1 unfolding (C order): V = Khatri-Rao of the factors of modes 2..N.
  RowMat v(rest, rank);
  if (r.method == "unfold") {
    v = Eigen::Map<const RowMat>(r.factors[1].data(), rest, rank);
  } else {
    const size_t n = r.shape.size();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < rest; ++c) {
      int64_t rem = c;
      Eigen::RowVectorXd p = Eigen::RowVectorXd::Ones(rank);
      for (size_t k = n - 1; k >= 1; --k) {
        const int64_t i = rem % r.shape[k];
        rem /= r.shape[k];
        p.array() *= Eigen::Map<const Eigen::RowVectorXd>(r.factors[k].data() + size_t(i) * size_t(rank), rank).array();
      }
      v.row(c) = p;
    }
  }
  const Eigen::Map<const RowMat> u(r.factors[0].data(), n1, rank);
  std::vector<double> out(static_cast<size_t>(total));
  Eigen::Map<RowMat> x(out.data(), n1, rest);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n1; ++i) x.row(i).noalias() = u.row(i) * v.transpose();
  return out;
}

}  // namespace bricklab::tensor
