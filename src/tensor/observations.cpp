// Observation checks and the solvers' per-mode index lists (counting sorts, never a dense
// tensor), plus option checks shared by the solvers.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "bricklab/core/threads.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/tensor/internal.hpp"

namespace bricklab::tensor {

using internal::ObservationIndex;

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

std::string index_text(const ObservationView& obs, size_t w) {
  const size_t n = obs.shape.size();
  std::string s = "(";
  for (size_t k = 0; k < n; ++k) s += (k ? ", " : "") + std::to_string(obs.indices[w * n + k]);
  return s + ")";
}

void validate_shape_and_ranges(const ObservationView& obs) {
  const size_t n = obs.shape.size();
  if (n < 2) throw InvalidArgument("tensor recovery: the shape needs at least 2 dimensions, got " + shape_text(obs.shape));
  for (size_t k = 0; k < n; ++k)
    if (obs.shape[k] < 1 || obs.shape[k] > std::numeric_limits<int32_t>::max())
      throw InvalidArgument("tensor recovery: dimension " + std::to_string(k) + " of shape " + shape_text(obs.shape) +
                            " must be in [1, 2^31 - 1]");
  if (obs.count == 0) throw InvalidArgument("tensor recovery: no observations (the index list is empty)");
  if (obs.count > std::numeric_limits<uint32_t>::max())
    throw InvalidArgument("tensor recovery: at most 2^32 - 1 observations are supported, got " + std::to_string(obs.count));
  if (!obs.indices) throw InvalidArgument("tensor recovery: no index array");
  for (size_t w = 0; w < obs.count; ++w)
    for (size_t k = 0; k < n; ++k) {
      const int64_t i = obs.indices[w * n + k];
      if (i < 0 || i >= obs.shape[k])
        throw InvalidArgument("tensor recovery: observation " + std::to_string(w) + " has index " + index_text(obs, w) +
                              ", out of range along mode " + std::to_string(k) + " (size " +
                              std::to_string(obs.shape[k]) + ")");
    }
}

void validate_labels(const ObservationView& obs, int num_levels) {
  if (obs.levels) {
    if (num_levels < 2 || num_levels > 65535)
      throw InvalidArgument("tensor recovery: the number of levels K must be in [2, 65535], got " + std::to_string(num_levels));
    for (size_t w = 0; w < obs.count; ++w) {
      const int32_t l = obs.levels[w];
      if (l < 1 || l > num_levels)
        throw InvalidArgument("tensor recovery: observation " + std::to_string(w) + " at " + index_text(obs, w) +
                              " has level " + std::to_string(l) + ", outside 1.." + std::to_string(num_levels));
    }
  } else if (obs.values) {
    for (size_t w = 0; w < obs.count; ++w)
      if (!std::isfinite(obs.values[w]))
        throw InvalidArgument("tensor recovery: observation " + std::to_string(w) + " at " + index_text(obs, w) +
                              " has a non-finite value");
  } else {
    throw InvalidArgument("tensor recovery: observations need levels (or values for the least-squares loss)");
  }
}

// Stable counting sort of `order` by the index along `mode`.
std::vector<uint32_t> sort_by_mode(const ObservationView& obs, const std::vector<uint32_t>& order, int mode,
                                   std::vector<int64_t>* row_begin = nullptr) {
  const size_t n = obs.shape.size();
  const int64_t dim = obs.shape[size_t(mode)];
  std::vector<int64_t> start(size_t(dim) + 1, 0);
  for (size_t w = 0; w < obs.count; ++w) start[size_t(obs.indices[w * n + size_t(mode)]) + 1]++;
  for (int64_t i = 0; i < dim; ++i) start[size_t(i) + 1] += start[size_t(i)];
  if (row_begin) *row_begin = start;
  std::vector<uint32_t> out(obs.count);
  for (uint32_t w : order) out[size_t(start[size_t(obs.indices[size_t(w) * n + size_t(mode)])]++)] = w;
  return out;
}

}  // namespace

std::vector<uint32_t> internal::lexicographic_order(const ObservationView& obs) {
  validate_shape_and_ranges(obs);
  const size_t n = obs.shape.size();
  std::vector<uint32_t> order(obs.count);
  for (size_t w = 0; w < obs.count; ++w) order[w] = uint32_t(w);
  for (int k = int(n) - 1; k >= 0; --k) order = sort_by_mode(obs, order, k);
  for (size_t j = 1; j < obs.count; ++j) {
    const int64_t* a = obs.indices + size_t(order[j - 1]) * n;
    const int64_t* b = obs.indices + size_t(order[j]) * n;
    if (std::equal(a, a + n, b)) {
      const size_t first = std::min(order[j - 1], order[j]), second = std::max(order[j - 1], order[j]);
      throw InvalidArgument("tensor recovery: duplicate index " + index_text(obs, first) + " (observations " +
                            std::to_string(first) + " and " + std::to_string(second) + ")");
    }
  }
  return order;
}

void validate_observations(const ObservationView& obs, int num_levels) {
  (void)internal::lexicographic_order(obs);
  validate_labels(obs, num_levels);
}

void validate_boundaries(const std::vector<double>& w) {
  for (size_t l = 0; l < w.size(); ++l) {
    if (!std::isfinite(w[l]))
      throw InvalidArgument("tensor recovery: boundary w_" + std::to_string(l + 1) + " is not finite");
    if (l > 0 && !(w[l] > w[l - 1]))
      throw InvalidArgument("tensor recovery: boundaries must be strictly increasing, but w_" + std::to_string(l + 1) +
                            " = " + std::to_string(w[l]) + " <= w_" + std::to_string(l) + " = " + std::to_string(w[l - 1]));
  }
}

size_t ObservationIndex::bytes() const {
  size_t b = 0;
  for (const auto& m : modes)
    b += m.row_begin.size() * sizeof(int64_t) + m.others.size() * sizeof(int32_t) + m.levels.size() * sizeof(uint16_t) +
         m.values.size() * sizeof(double);
  return b;
}

ObservationIndex internal::build_index(const ObservationView& obs, int num_levels, int threads, bool with_modes) {
  ObservationIndex idx;
  const std::vector<uint32_t> order = lexicographic_order(obs);
  validate_labels(obs, num_levels);
  const size_t n = obs.shape.size();
  idx.shape = obs.shape;
  idx.count = obs.count;
  idx.num_levels = obs.levels ? num_levels : 0;
  if (obs.levels) {
    idx.level_counts.assign(size_t(num_levels), 0);
    for (size_t w = 0; w < obs.count; ++w) idx.level_counts[size_t(obs.levels[w] - 1)]++;
  }
  if (!with_modes) return idx;
  const int nt = resolve_threads(threads);
  idx.modes.resize(n);
  for (size_t mode = 0; mode < n; ++mode) {
    internal::ModeLists& ml = idx.modes[mode];
    ml.mode = int(mode);
    // Stable sort by this mode of the lexicographic order: within a row the observations stay
    // sorted by the other modes.
    const std::vector<uint32_t> perm = sort_by_mode(obs, order, int(mode), &ml.row_begin);
    const size_t m1 = n - 1;
    ml.others.resize(obs.count * m1);
    if (obs.levels) ml.levels.resize(obs.count);
    else ml.values.resize(obs.count);
    const int64_t count = int64_t(obs.count);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t j = 0; j < count; ++j) {
      const size_t w = perm[size_t(j)];
      int32_t* out = ml.others.data() + size_t(j) * m1;
      for (size_t k = 0, o = 0; k < n; ++k)
        if (k != mode) out[o++] = int32_t(obs.indices[w * n + k]);
      if (obs.levels) ml.levels[size_t(j)] = uint16_t(obs.levels[w]);
      else ml.values[size_t(j)] = obs.values[w];
    }
  }
  return idx;
}

int internal::resolve_threads(int threads) {
  return bricklab::resolve_threads(threads, "tensor recovery: threads");
}

double internal::now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void internal::validate_options(const RecoverOptions& o, bool quantized) {
  auto bad = [](const std::string& what) { throw InvalidArgument("tensor recovery: " + what); };
  if (o.rank <= 0) bad("rank must be >= 1, got " + std::to_string(o.rank));
  if (!std::isfinite(o.alpha) || o.alpha <= 0) bad("alpha must be finite and > 0, got " + std::to_string(o.alpha));
  if (quantized && (!std::isfinite(o.sigma) || o.sigma <= 0)) bad("sigma must be finite and > 0, got " + std::to_string(o.sigma));
  if (o.max_iter < 0) bad("max_iter must be >= 0, got " + std::to_string(o.max_iter));
  if (!std::isfinite(o.tol) || o.tol < 0) bad("tol must be finite and >= 0");
  if (!std::isfinite(o.grad_tol) || o.grad_tol < 0) bad("grad_tol must be finite and >= 0");
  if (!std::isfinite(o.min_gap) || o.min_gap < 0) bad("min_gap must be finite and >= 0");
  if (!std::isfinite(o.init_scale) || o.init_scale < 0) bad("init_scale must be finite and >= 0");
  if (o.threads < 0) bad("threads must be >= 0 (0 = all cores)");
  if (o.n_init < 1) bad("n_init must be >= 1, got " + std::to_string(o.n_init));
  if (o.init_iter < 0) bad("init_iter must be >= 0, got " + std::to_string(o.init_iter));
  if (quantized) validate_boundaries(o.boundaries);
  if (o.num_levels < 0 || o.num_levels == 1) bad("num_levels must be 0 (infer) or >= 2, got " + std::to_string(o.num_levels));
  if (quantized && !o.boundaries.empty() && o.num_levels != 0 && o.num_levels != int(o.boundaries.size()) + 1)
    bad("num_levels = " + std::to_string(o.num_levels) + " does not match " + std::to_string(o.boundaries.size()) +
        " boundaries (K = boundaries + 1)");
}

int internal::resolve_num_levels(const ObservationView& obs, const RecoverOptions& o) {
  if (!o.boundaries.empty()) return int(o.boundaries.size()) + 1;
  if (o.num_levels > 0) return o.num_levels;
  int32_t k = 0;
  for (size_t w = 0; w < obs.count && obs.levels; ++w) {
    if (obs.levels[w] < 1)
      throw InvalidArgument("tensor recovery: observation " + std::to_string(w) + " has level " +
                            std::to_string(obs.levels[w]) + "; levels are 1..K");
    k = std::max(k, obs.levels[w]);
  }
  if (k < 2)
    throw InvalidArgument("tensor recovery: cannot infer the number of levels: every observation has level " +
                          std::to_string(k) + " (give num_levels or boundaries)");
  return int(k);
}

}  // namespace bricklab::tensor
