// Quantized recovery of 3-way tensors with tubal rank r (t-SVD): projected gradient descent.
//
// X is kept dense (n1 x n2 x n3, C order, so the tubes X(i, j, :) are contiguous); the
// observations stay in coordinate form. One iteration: the gradient of F is l'(x_w) on the
// observed entries; Z = X - eta * grad; the projection onto tubal rank <= r is exact in the
// Fourier domain: FFT along mode 3, keep the top r singular triplets of every frontal slice,
// inverse FFT (||X||_F^2 = sum_k ||X_hat_k||_F^2 / n3). The bound |X| <= alpha is enforced by a
// few rounds of clipping and re-projecting, then a uniform rescale of any violation left
// (rescaling keeps the tubal rank exact). The step is accepted only if F does not increase,
// otherwise eta is halved (backtracking), so F never increases.
#include <omp.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <unsupported/Eigen/FFT>

#include "bricklab/core/error.hpp"
#include "bricklab/tensor/internal.hpp"

namespace bricklab::tensor {

namespace {

using CMat = Eigen::MatrixXcd;
using cd = std::complex<double>;

struct Projection {
  int64_t n1, n2, n3, bins;
  int rank, threads;
  std::vector<CMat> slices;  // Fourier slices 0..n3/2 (conjugate symmetry gives the rest)
  std::vector<CMat> u, v;    // truncated factors per slice: slice ~ u_k v_k^H (u_k scaled by S)

  Projection(int64_t a, int64_t b, int64_t c, int r, int t) : n1(a), n2(b), n3(c), bins(c / 2 + 1), rank(r), threads(t) {
    slices.assign(size_t(bins), CMat(n1, n2));
    u.resize(size_t(bins));
    v.resize(size_t(bins));
  }

  // X <- P_r(X) in place; keeps the per-slice factors.
  void project(std::vector<double>& x) {
    const int64_t tubes = n1 * n2;
#pragma omp parallel num_threads(threads)
    {
      Eigen::FFT<double> fft;
      fft.SetFlag(Eigen::FFT<double>::HalfSpectrum);
      std::vector<double> tube(static_cast<size_t>(n3));
      std::vector<cd> spec;
#pragma omp for schedule(static)
      for (int64_t q = 0; q < tubes; ++q) {
        std::copy(x.begin() + q * n3, x.begin() + (q + 1) * n3, tube.begin());
        fft.fwd(spec, tube);
        const int64_t i = q / n2, j = q % n2;
        for (int64_t k = 0; k < bins; ++k) slices[size_t(k)](i, j) = spec[size_t(k)];
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t k = 0; k < bins; ++k) {
        Eigen::BDCSVD<CMat> svd(slices[size_t(k)], Eigen::ComputeThinU | Eigen::ComputeThinV);
        const int keep = int(std::min<Eigen::Index>(rank, svd.singularValues().size()));
        u[size_t(k)] = svd.matrixU().leftCols(keep) * svd.singularValues().head(keep).asDiagonal();
        v[size_t(k)] = svd.matrixV().leftCols(keep);
        slices[size_t(k)].noalias() = u[size_t(k)] * v[size_t(k)].adjoint();
      }
#pragma omp for schedule(static)
      for (int64_t q = 0; q < tubes; ++q) {
        const int64_t i = q / n2, j = q % n2;
        spec.resize(size_t(bins));
        for (int64_t k = 0; k < bins; ++k) spec[size_t(k)] = slices[size_t(k)](i, j);
        // The DC bin (and the Nyquist bin for even n3) of a real signal is real.
        spec[0] = cd(spec[0].real(), 0);
        if (n3 % 2 == 0) spec[size_t(bins - 1)] = cd(spec[size_t(bins - 1)].real(), 0);
        fft.inv(tube, spec, n3);
        std::copy(tube.begin(), tube.end(), x.begin() + q * n3);
      }
    }
  }

  // Real factors A (n1 x r x n3) and B (r x n2 x n3) with X = A * B (t-product), from the last
  // projection.
  void factors(std::vector<double>& a, std::vector<double>& b) const {
    const int r = rank;
    a.assign(size_t(n1 * r * n3), 0.0);
    b.assign(size_t(r * n2 * n3), 0.0);
    Eigen::FFT<double> fft;
    fft.SetFlag(Eigen::FFT<double>::HalfSpectrum);
    std::vector<cd> spec(static_cast<size_t>(bins));
    std::vector<double> tube(static_cast<size_t>(n3));
    auto inv = [&](auto get, double* out) {
      for (int64_t k = 0; k < bins; ++k) spec[size_t(k)] = get(k);
      spec[0] = cd(spec[0].real(), 0);
      if (n3 % 2 == 0) spec[size_t(bins - 1)] = cd(spec[size_t(bins - 1)].real(), 0);
      fft.inv(tube, spec, n3);
      for (int64_t t = 0; t < n3; ++t) out[t] = tube[size_t(t)];
    };
    for (int64_t i = 0; i < n1; ++i)
      for (int s = 0; s < r; ++s)
        inv([&](int64_t k) { return s < u[size_t(k)].cols() ? u[size_t(k)](i, s) : cd(0); },
            a.data() + (i * r + s) * n3);
    for (int s = 0; s < r; ++s)
      for (int64_t j = 0; j < n2; ++j)
        inv([&](int64_t k) { return s < v[size_t(k)].cols() ? std::conj(v[size_t(k)](j, s)) : cd(0); },
            b.data() + (s * n2 + j) * n3);
  }
};

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace

Recovery recover_tsvd(const ObservationView& obs, const RecoverOptions& o) {
  const double t0 = internal::now_seconds();
  const bool quantized = o.loss != Loss::squared;
  internal::validate_options(o, quantized);
  if (obs.shape.size() != 3)
    throw InvalidArgument("tensor recovery (tsvd): the t-SVD method needs a 3-way tensor, got order " +
                          std::to_string(obs.shape.size()));
  if (quantized && !obs.levels) throw InvalidArgument("tensor recovery: the quantized losses need levels");
  if (!quantized && !obs.values) throw InvalidArgument("tensor recovery: the squared loss needs values");
  const int k_levels = quantized ? internal::resolve_num_levels(obs, o) : 0;
  const internal::ObservationIndex idx = internal::build_index(obs, k_levels, o.threads, false);
  const int64_t n1 = obs.shape[0], n2 = obs.shape[1], n3 = obs.shape[2];
  const double total = double(n1) * double(n2) * double(n3);
  if (total > 2e9) throw InvalidArgument("tensor recovery (tsvd): the dense estimate would have more than 2e9 entries");
  // Small tensors gain nothing from threads (and suffer from spin-waits on a busy machine).
  const int threads = std::min(internal::resolve_threads(o.threads), int(1 + total / 65536));
  const size_t m = obs.count;

  std::vector<int64_t> lin(m);
  std::vector<uint16_t> levels(quantized ? m : 0);
  std::vector<double> values(quantized ? 0 : m);
  for (size_t w = 0; w < m; ++w) {
    const int64_t* ix = obs.indices + w * 3;
    lin[w] = (ix[0] * n2 + ix[1]) * n3 + ix[2];
    if (quantized) levels[w] = uint16_t(obs.levels[w]);
    else values[w] = obs.values[w];
  }
  std::vector<double> w = o.boundaries;
  const bool estimate = quantized && w.empty();
  const double min_gap = o.min_gap > 0 ? o.min_gap : o.sigma / 100;
  if (estimate) {
    const double spread = o.init_scale > 0 ? o.init_scale : o.alpha / 4;
    w = internal::initial_boundaries(idx.level_counts, o.loss, o.sigma, spread, min_gap);
  }

  std::vector<double> xs(m), grad(m);
  auto objective = [&](const std::vector<double>& x, double* g) {
    for (size_t j = 0; j < m; ++j) xs[j] = x[size_t(lin[j])];
    if (quantized) return internal::objective_u16(o.loss, o.sigma, w, levels.data(), xs.data(), m, threads, g);
    double f = 0;
    for (size_t j = 0; j < m; ++j) {
      const double d = xs[j] - values[j];
      f += 0.5 * d * d;
      if (g) g[j] = d;
    }
    return f;
  };

  Recovery rec;
  rec.method = "tsvd";
  rec.shape = obs.shape;
  rec.rank = o.rank;
  rec.index_bytes = m * (sizeof(int64_t) + (quantized ? sizeof(uint16_t) : sizeof(double)) + 2 * sizeof(double));
  const double t1 = internal::now_seconds();
  rec.setup_seconds = t1 - t0;

  std::vector<double> x(size_t(total), 0.0), z;
  Projection proj(n1, n2, n3, o.rank, threads);
  double f = objective(x, nullptr);
  rec.objective.push_back(f);
  const double c = curvature_bound(o.loss, o.sigma);
  const double frac = double(m) / total;
  const double eta_max = 1.0 / (c * frac);  // a full step on the observed entries, rescaled by 1/p
  double eta = eta_max;
  double w_scale = 1.0;
  double iter_t0 = internal::now_seconds();
  for (int it = 1; it <= o.max_iter; ++it) {
    objective(x, grad.data());
    double gn = 0;
    for (double g : grad) gn += g * g;
    bool accepted = false;
    for (int trial = 0; trial < 40 && !accepted; ++trial) {
      z = x;
      for (size_t j = 0; j < m; ++j) z[size_t(lin[j])] -= eta * grad[j];
      proj.project(z);
      // |X| <= alpha: a few rounds of clipping and re-projecting (alternating projections between
      // the box and the tubal-rank set), then a uniform rescale of what violation is left, which
      // keeps the tubal rank exact.
      double mx = max_abs(z);
      for (int round = 0; round < 3 && mx > o.alpha; ++round) {
        for (double& v : z) v = std::min(o.alpha, std::max(-o.alpha, v));
        proj.project(z);
        mx = max_abs(z);
      }
      if (mx > o.alpha)
        for (double& v : z) v *= o.alpha / mx;
      const double fz = objective(z, nullptr);
      if (fz <= f) {
        x.swap(z);
        f = fz;
        accepted = true;
        eta = std::min(eta * 1.5, eta_max);
      } else {
        eta *= 0.5;
      }
    }
    if (estimate) {
      for (size_t j = 0; j < m; ++j) xs[j] = x[size_t(lin[j])];
      const internal::BoundaryStepResult bs =
          internal::boundary_step(o.loss, o.sigma, min_gap, w, w_scale, idx.level_counts, levels.data(), xs.data(), m, threads);
      if (bs.moved) {
        f = std::min(f, bs.objective);
        accepted = true;
      }
    }
    const double prev = rec.objective.back();
    rec.objective.push_back(f);
    rec.kkt_residual.push_back(std::sqrt(gn) / double(m));
    const double now = internal::now_seconds();
    rec.iteration_seconds.push_back(now - iter_t0);
    iter_t0 = now;
    if (o.verbose)
      std::fprintf(stderr, "[tensor.tsvd] iter %d  F = %.10g  eta = %.3g  %.3fs\n", it, f, eta, rec.iteration_seconds.back());
    if (!accepted) {
      rec.stop_reason = "stalled";
      break;
    }
    if (prev - f <= o.tol * std::max(std::fabs(f), 1e-300)) {
      rec.stop_reason = "tolerance";
      break;
    }
  }
  if (rec.stop_reason.empty()) rec.stop_reason = "max_iter";
  rec.iterations = int(rec.objective.size()) - 1;
  // Factors of the final estimate: one more projection (X already has tubal rank <= r, so this
  // only factors it).
  {
    std::vector<double> y = x;
    proj.project(y);
    std::vector<double> a, b;
    proj.factors(a, b);
    rec.factors = {std::move(a), std::move(b)};
  }
  rec.dense = std::move(x);
  rec.boundaries = w;
  rec.solve_seconds = internal::now_seconds() - t1;
  return rec;
}

}  // namespace bricklab::tensor
