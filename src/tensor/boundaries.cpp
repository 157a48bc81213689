// The quantization rule as a block of T-APGD: boundary initialisation from the empirical level
// frequencies, the ordered-with-gap projection (weighted pool-adjacent-violators), and one
// monotone projected-gradient step with backtracking. Also the plain objective over stored x.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "bricklab/core/error.hpp"
#include "bricklab/tensor/internal.hpp"

namespace bricklab::tensor {

namespace internal {

ScaledBounds::ScaledBounds(const std::vector<double>& w, double sigma) {
  const size_t k = w.size() + 1;
  lower.resize(k);
  upper.resize(k);
  const double inf = std::numeric_limits<double>::infinity();
  for (size_t l = 0; l < k; ++l) {
    lower[l] = l == 0 ? -inf : w[l - 1] / sigma;
    upper[l] = l + 1 == k ? inf : w[l] / sigma;
  }
}

QuantizedLoss ScaledBounds::loss(Loss kind, double sigma) const {
  QuantizedLoss q;
  q.loss = kind;
  q.lower = lower.data();
  q.upper = upper.data();
  q.inv_sigma = 1.0 / sigma;
  return q;
}

double noise_quantile(Loss loss, double p) {
  p = std::min(std::max(p, 1e-300), 1.0 - 1e-16);
  if (loss == Loss::logistic) return std::log(p) - std::log1p(-p);
  // Standard normal: bracketed Newton on log Phi(t) = log p (log space keeps the tails exact).
  const double target = std::log(p);
  double lo = -40, hi = 9, t = 0;
  for (int it = 0; it < 200; ++it) {
    const double f = log_normal_cdf(t) - target;
    if (f > 0) hi = t;
    else lo = t;
    // d/dt log Phi(t) = phi(t)/Phi(t)
    const double hazard = std::exp(-0.5 * t * t - 0.91893853320467274 - log_normal_cdf(t));
    double next = t - f / hazard;
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (std::fabs(next - t) < 1e-14 * (1 + std::fabs(t))) return next;
    t = next;
  }
  return t;
}

std::vector<double> initial_boundaries(const std::vector<int64_t>& level_counts, Loss loss, double sigma,
                                       double x_spread, double min_gap) {
  const size_t k = level_counts.size();
  int64_t total = 0;
  for (int64_t c : level_counts) total += c;
  // Spread of x + noise in units of the standard noise distribution.
  double scale;
  if (loss == Loss::logistic) {
    const double x_in_logistic = x_spread * std::sqrt(3.0) / M_PI;  // logistic scale with that std dev
    scale = std::sqrt(sigma * sigma + x_in_logistic * x_in_logistic);
  } else {
    scale = std::sqrt(sigma * sigma + x_spread * x_spread);
  }
  std::vector<double> w(k - 1);
  int64_t cum = 0;
  for (size_t l = 0; l + 1 < k; ++l) {
    cum += level_counts[l];
    // Keep the empirical CDF away from 0 and 1 (empty outer levels).
    const double p = (double(cum) + 0.5) / (double(total) + 1.0);
    w[l] = scale * noise_quantile(loss, p);
  }
  return project_ordered(w, std::vector<double>(w.size(), 1.0), min_gap);
}

int resolve_threads(int threads);

double objective_u16(Loss loss, double sigma, const std::vector<double>& w, const uint16_t* levels, const double* x,
                     size_t count, int threads, double* grad_x, std::vector<double>* grad_w) {
  const ScaledBounds sb(w, sigma);
  const QuantizedLoss q = sb.loss(loss, sigma);
  const int nt = std::min(resolve_threads(threads), int(1 + count / 20000));
  const size_t km1 = w.size();
  if (grad_w) grad_w->assign(km1, 0.0);
  // Per-thread partial sums over a static partition, added in thread order: the result does
  // not depend on scheduling, so objective comparisons are reproducible.
  std::vector<double> partial(static_cast<size_t>(nt), 0.0);
  std::vector<std::vector<double>> partial_w(static_cast<size_t>(nt));
  const int64_t n = int64_t(count);
  if (!grad_w) {
    // Value (and x gradient) only: vectorised batches over fixed chunks.
    constexpr int64_t kChunk = 4096;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(size_t(chunks), 0.0);
#pragma omp parallel num_threads(nt)
    {
      std::vector<double> scratch(static_cast<size_t>(kChunk));
#pragma omp for schedule(static)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
        part[size_t(c)] = quantized_batch(q, levels + b, x + b, grad_x ? grad_x + b : nullptr, scratch.data(), size_t(e - b));
      }
    }
    double total = 0;
    for (double v : part) total += v;
    return total;
  }
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    std::vector<double> gw(km1, 0.0);
    double local = 0;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      const int l = levels[j];
      const LevelTerms t = q.terms<true>(l, x[j]);
      local += t.nll;
      if (grad_x) grad_x[j] = t.dxs * q.inv_sigma;
      if (l >= 2) gw[size_t(l - 2)] += t.du * q.inv_sigma;           // lower bound is w_{l-1}
      if (l <= int(km1)) gw[size_t(l - 1)] += t.dv * q.inv_sigma;    // upper bound is w_l
    }
    partial[size_t(tid)] = local;
    partial_w[size_t(tid)] = std::move(gw);
  }
  double total = 0;
  for (int t = 0; t < nt; ++t) {
    total += partial[size_t(t)];
    for (size_t l = 0; l < km1; ++l) (*grad_w)[l] += partial_w[size_t(t)][l];
  }
  return total;
}

BoundaryStepResult boundary_step(Loss loss, double sigma, double min_gap, std::vector<double>& w, double& scale,
                                 const std::vector<int64_t>& level_counts, const uint16_t* levels, const double* x,
                                 size_t count, int threads) {
  BoundaryStepResult res;
  std::vector<double> grad;
  const double f0 = objective_u16(loss, sigma, w, levels, x, count, threads, nullptr, &grad);
  res.objective = f0;
  double gn = 0;
  for (double g : grad) gn += g * g;
  res.grad_norm = std::sqrt(gn);
  if (res.grad_norm == 0) return res;
  // Diagonal metric: curvature bound times the observations that touch each boundary.
  const double c = curvature_bound(loss, sigma);
  const size_t km1 = w.size();
  std::vector<double> d(km1);
  for (size_t l = 0; l < km1; ++l) d[l] = c * double(level_counts[l] + level_counts[l + 1]) + 1e-12 * c;
  scale = std::min(std::max(scale, 1e-6), 1e6);
  const double scale_at_entry = scale;
  for (int trial = 0; trial < 50; ++trial) {
    ++res.trials;
    std::vector<double> target(km1), weight(km1);
    for (size_t l = 0; l < km1; ++l) {
      weight[l] = scale * d[l];
      target[l] = w[l] - grad[l] / weight[l];
    }
    const std::vector<double> cand = project_ordered(target, weight, min_gap);
    double model = f0;
    for (size_t l = 0; l < km1; ++l) {
      const double step = cand[l] - w[l];
      model += grad[l] * step + 0.5 * weight[l] * step * step;
    }
    const double f1 = objective_u16(loss, sigma, cand, levels, x, count, threads);
    if (f1 <= model && f1 <= f0) {
      w = cand;
      res.objective = f1;
      res.moved = true;
      scale = std::max(scale * 0.5, 1e-6);  // try a longer step next time
      return res;
    }
    scale *= 2;
  }
  scale = scale_at_entry;  // no acceptable step (converged): w unchanged, keep the step state
  return res;
}

}  // namespace internal

std::vector<double> project_ordered(const std::vector<double>& w, const std::vector<double>& weight, double min_gap) {
  const size_t k = w.size();
  if (weight.size() != k) throw InvalidArgument("project_ordered: weights and values differ in length");
  for (size_t l = 0; l < k; ++l)
    if (!std::isfinite(w[l]) || !(weight[l] > 0) || !std::isfinite(weight[l]))
      throw InvalidArgument("project_ordered: values must be finite and weights finite and > 0");
  if (!(min_gap >= 0) || !std::isfinite(min_gap)) throw InvalidArgument("project_ordered: min_gap must be finite and >= 0");
  // Isotonic regression of y_l = w_l - l * gap (weighted), then add the gaps back.
  struct Block {
    double mean, weight;
    size_t len;
  };
  std::vector<Block> blocks;
  for (size_t l = 0; l < k; ++l) {
    blocks.push_back({w[l] - double(l) * min_gap, weight[l], 1});
    while (blocks.size() > 1 && blocks[blocks.size() - 2].mean > blocks.back().mean) {
      Block b = blocks.back();
      blocks.pop_back();
      Block& a = blocks.back();
      const double tw = a.weight + b.weight;
      a.mean = (a.mean * a.weight + b.mean * b.weight) / tw;
      a.weight = tw;
      a.len += b.len;
    }
  }
  std::vector<double> out;
  out.reserve(k);
  for (const Block& b : blocks)
    for (size_t j = 0; j < b.len; ++j) out.push_back(b.mean + double(out.size()) * min_gap);
  return out;
}

double quantized_objective(Loss loss, double sigma, const std::vector<double>& boundaries, const int32_t* levels,
                           const double* x, size_t count, std::vector<double>* grad_x,
                           std::vector<double>* grad_boundaries, int threads) {
  if (loss == Loss::squared) throw InvalidArgument("quantized_objective: the squared loss has no levels");
  if (!std::isfinite(sigma) || sigma <= 0) throw InvalidArgument("quantized_objective: sigma must be finite and > 0");
  if (boundaries.empty()) throw InvalidArgument("quantized_objective: need at least one boundary (K >= 2)");
  validate_boundaries(boundaries);
  const int k = int(boundaries.size()) + 1;
  std::vector<uint16_t> lv(count);
  for (size_t j = 0; j < count; ++j) {
    if (levels[j] < 1 || levels[j] > k)
      throw InvalidArgument("quantized_objective: level " + std::to_string(levels[j]) + " of entry " + std::to_string(j) +
                            " is outside 1.." + std::to_string(k));
    if (!std::isfinite(x[j])) throw InvalidArgument("quantized_objective: x[" + std::to_string(j) + "] is not finite");
    lv[j] = uint16_t(levels[j]);
  }
  if (grad_x) grad_x->assign(count, 0.0);
  return internal::objective_u16(loss, sigma, boundaries, lv.data(), x, count, threads, grad_x ? grad_x->data() : nullptr,
                                 grad_boundaries);
}

}  // namespace bricklab::tensor
