// T-APGD for rank-r CP factors from quantized observations (docs/tensor-recovery.md).
//
// One iteration updates the factor matrices A_1..A_N in turn, then (when they are unknown) the
// boundaries. For factor n the objective separates over the rows of A_n: row i only meets the
// observations whose index along mode n is i, through x_w = <a_i, h_w> with h_w the Hadamard
// product of the other factors' rows (a Khatri-Rao row). The observations are stored grouped by
// row (ModeLists), so a row's gradient g_i = sum_w l'(x_w) h_w (the sparse MTTKRP) is summed by
// one thread without atomics, and the row is updated right away:
//   newton rule (default): minimise the row's quadratic model with the exact Hessian
//     sum_w l''(x_w) h_w h_w^T over the ball ||a_i|| <= alpha^(1/N), then Armijo backtracking
//     along the step (the row's subproblem is convex);
//   curvature rule: minimise the quadratic upper bound g^T d + 1/2 d^T (c G_i + rho I) d over the
//     ball (G_i = sum_w h_w h_w^T, c = curvature bound of the loss), exactly, via the secular
//     equation when the ball is active;
//   lipschitz rule: the same with the scalar c * lambda_max bound of G_i, then clipping the norm;
//   backtracking rule: scalar step per row, halved until the quadratic upper bound holds.
// Rows clipped to alpha^(1/N) give |X_w| <= prod_n ||a_{i_n}^(n)|| <= alpha (Hoelder), the
// projection that keeps |X| <= alpha.
//
// Monotonicity: without extrapolation the curvature/lipschitz steps minimise a majoriser, so F
// cannot increase; it is still checked, lazily: the next block's pass evaluates F at the new
// point anyway (its gradient needs the same per-observation terms), and a step that increased F
// is undone. The newton and backtracking rules evaluate F at the new rows (their line searches
// need it); with extrapolation an increase over a block triggers a restart (the block is redone
// from the unextrapolated point).
#include <omp.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "bricklab/core/error.hpp"
#include "bricklab/tensor/internal.hpp"

namespace bricklab::tensor {

namespace {

using internal::ModeLists;
using internal::ObservationIndex;
using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

// Per-observation labels of one mode's list.
// Per-observation labels of one mode's list. batch(pos, x, d, scratch, m): the loss of the m
// observations starting at list position pos, at x; d nll/dx into d when d is not null.
struct QuantizedLabels {
  QuantizedLoss q;
  const uint16_t* levels;
  double batch(size_t pos, const double* x, double* d, double* scratch, size_t m, double* d2 = nullptr) const {
    return internal::quantized_batch(q, levels + pos, x, d, scratch, m, d2);
  }
};

struct SquaredLabels {
  const double* values;
  double batch(size_t pos, const double* x, double* d, double*, size_t m, double* d2 = nullptr) const {
    double s = 0;
    for (size_t j = 0; j < m; ++j) {
      const double e = x[j] - values[pos + j];
      if (d) d[j] = e;
      if (d2) d2[j] = 1.0;
      s += 0.5 * e * e;
    }
    return s;
  }
};

// Neumaier-compensated sum of per-row totals, in row order (deterministic for any thread count).
double ordered_sum(const std::vector<double>& v) {
  double s = 0, c = 0;
  for (double x : v) {
    const double t = s + x;
    c += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
    s = t;
  }
  return s + c;
}

// argmin over ||a|| <= radius of g^T (a - p) + 1/2 (a - p)^T M (a - p), M symmetric positive
// definite. Inside the ball: a = p - M^{-1} g. Otherwise a(mu) = (M + mu I)^{-1} (M p - g) with
// ||a(mu)|| = radius, found by Newton on 1/radius - 1/||a(mu)|| (convex and decreasing in mu,
// so Newton from mu = 0 converges monotonically; More & Sorensen).
Vec metric_ball_step(const Mat& m, const Vec& p, const Vec& g, double radius) {
  const Vec b = m * p - g;
  Eigen::LLT<Mat> llt(m);
  if (llt.info() == Eigen::Success) {
    Vec a = llt.solve(b);
    if (a.allFinite() && a.norm() <= radius) return a;
  }
  Eigen::SelfAdjointEigenSolver<Mat> es(m);
  const Vec lam = es.eigenvalues();
  const Vec z = es.eigenvectors().transpose() * b;
  double mu = std::max(0.0, -lam.minCoeff() + 1e-12 * std::max(1.0, lam.cwiseAbs().maxCoeff()));
  for (int it = 0; it < 100; ++it) {
    double s = 0, s3 = 0;
    for (Eigen::Index j = 0; j < lam.size(); ++j) {
      const double den = lam[j] + mu, t = z[j] / den;
      s += t * t;
      s3 += t * t / den;
    }
    const double norm = std::sqrt(s);
    if (norm <= radius * (1 + 1e-12)) break;
    const double phi = 1.0 / radius - 1.0 / norm;  // > 0 left of the root
    const double dphi = -s3 / (s * norm);           // d/dmu (-1/||a||) = -(sum t^2/den)/||a||^3
    mu -= phi / dphi;
  }
  Vec a = es.eigenvectors() * (z.array() / (lam.array() + mu)).matrix();
  const double n = a.norm();
  if (n > radius) a *= radius / n;
  return a;
}

void clip_norm(Vec& a, double radius) {
  const double n = a.norm();
  if (n > radius) a *= radius / n;
}

struct PassSpec {
  int mode = 0;
  StepRule rule = StepRule::curvature;
  bool immediate = false;        // evaluate F at the new rows (else only at the point)
  bool per_row_accept = false;   // point == current rows: keep a row whose F would increase
  bool write_step = true;        // false: objective/x only
  double curvature = 1.0;
  double radius = 1.0;
  const double* point = nullptr; // n_mode x r: where the gradient is taken
  double* out = nullptr;         // n_mode x r: the new rows
  double* x_out = nullptr;       // optional: x at the point, in list order
  double* grad_out = nullptr;    // optional: the gradient rows at the point (then no step is taken)
  std::vector<double>* row_lipschitz = nullptr;  // backtracking state per row
};

struct PassResult {
  double f_point = 0;  // F at the point
  double f_new = 0;    // F at the new rows (immediate passes)
  double kkt_sq = 0;   // squared KKT residual at the point
};

// One pass over the rows of factor `mode`. Each row's observations are processed in blocks of
// kBlock (the Khatri-Rao rows of a block stay in L1): gather + x = H p, the loss and d loss/dx,
// g += H^T d, G += H^T H; then the row's step, and (immediate passes) F at the new row, for
// which the blocks are gathered again.
template <class Labels>
PassResult factor_pass(const ModeLists& ml, const Labels& labels, const std::vector<std::vector<double>>& factors, int r,
                       const PassSpec& spec, int threads) {
  constexpr int64_t kBlock = 256;
  const int n_modes = int(factors.size());
  const int mode = spec.mode;
  const int64_t rows = int64_t(ml.row_begin.size()) - 1;
  std::vector<const double*> other;
  for (int k = 0; k < n_modes; ++k)
    if (k != mode) other.push_back(factors[size_t(k)].data());
  const int n_other = n_modes - 1;
  std::vector<double> f_point(size_t(rows), 0.0), f_new(size_t(rows), 0.0), kkt(size_t(rows), 0.0);
  const double c = spec.curvature;
  const bool want_gram = spec.rule != StepRule::backtracking;
  const bool newton = spec.rule == StepRule::newton;

#pragma omp parallel num_threads(threads)
  {
    std::vector<double> hbuf(static_cast<size_t>(kBlock * r)), xbuf(static_cast<size_t>(kBlock)),
        dbuf(static_cast<size_t>(kBlock)), sbuf(static_cast<size_t>(kBlock)), cbuf(static_cast<size_t>(kBlock)),
        wbuf(static_cast<size_t>(kBlock));
    std::vector<int64_t> obuf(static_cast<size_t>(kBlock * n_other));
    auto gather = [&](int64_t s0, int64_t len, const double* q) {
      internal::khatri_rao_block(other.data(), n_other, ml.others.data() + size_t(s0) * size_t(n_other), len, r, kBlock,
                                 q, obuf.data(), hbuf.data(), xbuf.data());
    };
    RowMat gram(r, r);  // row-major: the kernels fill gram[a * r + b] for b <= a
    Mat metric(r, r);
    Vec g(r), a(r), cand(r);
    // F of the row [b, e) at the row vector q (value only, blocks gathered again).
    auto row_value = [&](int64_t b, int64_t e, const double* q) {
      double f = 0;
      for (int64_t s0 = b; s0 < e; s0 += kBlock) {
        const int64_t len = std::min(kBlock, e - s0);
        gather(s0, len, q);
        f += labels.batch(size_t(s0), xbuf.data(), nullptr, sbuf.data(), size_t(len));
      }
      return f;
    };
#pragma omp for schedule(dynamic, 8)
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t b = ml.row_begin[size_t(i)], e = ml.row_begin[size_t(i) + 1];
      const Eigen::Map<const Vec> p(spec.point + size_t(i) * size_t(r), r);
      if (e == b) {
        if (spec.grad_out) Eigen::Map<Vec>(spec.grad_out + size_t(i) * size_t(r), r).setZero();
        else if (spec.write_step) Eigen::Map<Vec>(spec.out + size_t(i) * size_t(r), r) = p;
        continue;
      }
      if (!spec.write_step) {  // objective (and x) only
        double f = 0;
        for (int64_t s0 = b; s0 < e; s0 += kBlock) {
          const int64_t len = std::min(kBlock, e - s0);
          gather(s0, len, p.data());
          if (spec.x_out) std::copy(xbuf.begin(), xbuf.begin() + len, spec.x_out + s0);
          f += labels.batch(size_t(s0), xbuf.data(), nullptr, sbuf.data(), size_t(len));
        }
        f_point[size_t(i)] = f;
        continue;
      }
      g.setZero();
      gram.setZero();
      double fp = 0, hsq = 0;
      for (int64_t s0 = b; s0 < e; s0 += kBlock) {
        const int64_t len = std::min(kBlock, e - s0);
        gather(s0, len, p.data());
        if (spec.x_out) std::copy(xbuf.begin(), xbuf.begin() + len, spec.x_out + s0);
        fp += labels.batch(size_t(s0), xbuf.data(), dbuf.data(), sbuf.data(), size_t(len),
                           newton && !spec.grad_out ? cbuf.data() : nullptr);
        internal::block_accumulate(hbuf.data(), dbuf.data(), newton ? cbuf.data() : nullptr, len, r, kBlock, g.data(),
                                   want_gram && !spec.grad_out ? gram.data() : nullptr, wbuf.data(),
                                   !want_gram || newton ? &hsq : nullptr);
      }
      f_point[size_t(i)] = fp;
      if (spec.grad_out) {
        Eigen::Map<Vec>(spec.grad_out + size_t(i) * size_t(r), r) = g;
        continue;
      }
      // KKT residual at the point: the gradient minus its outward radial part on the sphere.
      {
        const double pn2 = p.squaredNorm(), gp = g.dot(p);
        double res = g.squaredNorm();
        if (pn2 >= spec.radius * spec.radius * (1 - 1e-9) && gp < 0) res -= gp * gp / pn2;
        kkt[size_t(i)] = std::max(res, 0.0);
      }

      if (spec.rule == StepRule::backtracking) {
        // Scalar step, halved until F(a) <= F(p) + g.(a-p) + L/2 |a-p|^2.
        double& lip = (*spec.row_lipschitz)[size_t(i)];
        if (!(lip > 0)) lip = c * hsq / r + 1e-300;
        double lcur = std::max(0.5 * lip, 1e-300);
        double fa = fp;
        a = p;
        for (int trial = 0; trial < 60; ++trial) {
          cand = p - g / lcur;
          clip_norm(cand, spec.radius);
          const Vec step = cand - p;
          const double ft = row_value(b, e, cand.data());
          if (ft <= fp + g.dot(step) + 0.5 * lcur * step.squaredNorm()) {
            a = cand;
            fa = ft;
            lip = lcur;
            break;
          }
          lcur *= 2;
        }
        f_new[size_t(i)] = fa;
        Eigen::Map<Vec>(spec.out + size_t(i) * size_t(r), r) = a;
        continue;
      }

      gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();  // mirror the lower triangle
      if (newton) {
        // Newton step for the row's convex subproblem: the quadratic model with the exact
        // Hessian sum_w l''(x_w) h_w h_w^T (plus a small ridge relative to the curvature bound),
        // minimised over the ball. Accepted if it passes the Armijo test; otherwise (a flat or
        // badly modelled row, e.g. 1-bit data where most l'' are ~0) the row takes the
        // majoriser step instead (metric c G_i, G_i = sum_w h_w h_w^T), which cannot increase F.
        metric = gram;
        metric.diagonal().array() += 1e-6 * c * hsq / r + 1e-12 * c;
        const Vec target = metric_ball_step(metric, p, g, spec.radius);
        const double slope = g.dot(target - p);
        double fa = fp;
        a = p;
        bool done = false;
        if (slope < 0) {
          const double ft = row_value(b, e, target.data());
          if (ft <= fp + 1e-4 * slope) {
            a = target;
            fa = ft;
            done = true;
          }
        }
        if (!done) {
          gram.setZero();
          for (int64_t s0 = b; s0 < e; s0 += kBlock) {
            const int64_t len = std::min(kBlock, e - s0);
            gather(s0, len, p.data());
            internal::block_accumulate(hbuf.data(), dbuf.data(), nullptr, len, r, kBlock, cand.data(), gram.data(),
                                       wbuf.data(), nullptr);  // cand: scratch for the unused g sum
          }
          gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();
          metric = c * gram;
          metric.diagonal().array() += 1e-9 * c * gram.trace() / r + 1e-12 * c;
          const Vec mm = metric_ball_step(metric, p, g, spec.radius);
          const double fm = row_value(b, e, mm.data());
          if (fm <= fp) {
            a = mm;
            fa = fm;
          }
        }
        f_new[size_t(i)] = fa;
        Eigen::Map<Vec>(spec.out + size_t(i) * size_t(r), r) = a;
        continue;
      }
      const double trace = gram.trace();
      const double rho = 1e-9 * c * trace / r + 1e-12 * c;
      if (spec.rule == StepRule::curvature) {
        metric = c * gram;
        metric.diagonal().array() += rho;
        a = metric_ball_step(metric, p, g, spec.radius);
      } else {  // lipschitz: c times an upper bound of lambda_max(G): min(trace, max abs row sum)
        const double row_sum = gram.cwiseAbs().rowwise().sum().maxCoeff();
        const double lip = c * std::min(trace, row_sum) + rho;
        a = p - g / lip;
        clip_norm(a, spec.radius);
      }
      if (spec.immediate) {
        double fa = row_value(b, e, a.data());
        if (spec.per_row_accept && !(fa <= fp)) {
          a = p;  // rounding-level increase: keep the row
          fa = fp;
        }
        f_new[size_t(i)] = fa;
      }
      Eigen::Map<Vec>(spec.out + size_t(i) * size_t(r), r) = a;
    }
  }
  PassResult res;
  res.f_point = ordered_sum(f_point);
  res.f_new = ordered_sum(f_new);
  res.kkt_sq = ordered_sum(kkt);
  return res;
}

// Solver state: the factors, the boundaries and the step state. iterate() can be called again
// to continue (the multi-start initialisation runs several short iterate() calls).
class CpSolver {
 public:
  CpSolver(const ObservationIndex& idx, const RecoverOptions& o, Loss loss, bool estimate_w)
      : idx_(idx), o_(o), loss_(loss), estimate_w_(estimate_w) {
    // Tiny problems gain nothing from threads (and suffer from spin-waits on a busy machine).
    threads_ = std::min(internal::resolve_threads(o.threads), int(1 + idx.count / 20000));
    order_ = int(idx.shape.size());
    r_ = o.rank;
    radius_ = std::pow(o.alpha, 1.0 / order_);
    curvature_ = curvature_bound(loss, o.sigma);
    min_gap_ = o.min_gap > 0 ? o.min_gap : o.sigma / 100;
  }

  Recovery run(std::vector<double> w);

 private:
  PassResult pass(int mode, const double* point, double* out, bool immediate, bool per_row_accept, double* x_out = nullptr,
                  bool write_step = true) {
    PassSpec spec;
    spec.mode = mode;
    spec.rule = o_.step;
    spec.immediate = immediate;
    spec.per_row_accept = per_row_accept;
    spec.write_step = write_step;
    spec.curvature = curvature_;
    spec.radius = radius_;
    spec.point = point;
    spec.out = out;
    spec.x_out = x_out;
    spec.row_lipschitz = &row_lipschitz_[size_t(mode)];
    const ModeLists& ml = idx_.modes[size_t(mode)];
    if (loss_ == Loss::squared) return factor_pass(ml, SquaredLabels{ml.values.data()}, a_, r_, spec, threads_);
    const internal::ScaledBounds sb(w_, o_.sigma);
    return factor_pass(ml, QuantizedLabels{sb.loss(loss_, o_.sigma), ml.levels.data()}, a_, r_, spec, threads_);
  }
  // F at the current factors (value only), optionally x in mode-0 list order.
  double objective(double* x_out = nullptr) {
    return pass(0, a_[0].data(), nullptr, false, false, x_out, false).f_point;
  }
  void initialise(uint64_t seed, const std::vector<double>& w0, bool spectral);
  // Up to `iters` more iterations from the current state; rec.objective.back() is F there.
  void iterate(Recovery& rec, int iters, bool with_callback);

  const ObservationIndex& idx_;
  const RecoverOptions& o_;
  Loss loss_;
  bool estimate_w_;
  int threads_ = 1, order_ = 3, r_ = 1;
  double radius_ = 1, curvature_ = 1, min_gap_ = 0;
  std::vector<std::vector<double>> a_, a_prev_, row_lipschitz_;
  std::vector<double> w_;
  double w_scale_ = 1, momentum_t_ = 1;
};

void CpSolver::initialise(uint64_t seed, const std::vector<double>& w0, bool spectral) {
  const size_t n = size_t(order_);
  w_ = w0;
  w_scale_ = 1;
  momentum_t_ = 1;
  a_.assign(n, {});
  if (!o_.init.empty()) {
    if (o_.init.size() != n)
      throw InvalidArgument("tensor recovery: init has " + std::to_string(o_.init.size()) + " factors, the tensor has order " +
                            std::to_string(n));
    for (size_t k = 0; k < n; ++k) {
      if (o_.init[k].size() != size_t(idx_.shape[k]) * size_t(r_))
        throw InvalidArgument("tensor recovery: init factor " + std::to_string(k) + " must have " +
                              std::to_string(idx_.shape[k]) + " x " + std::to_string(r_) + " entries");
      for (double v : o_.init[k])
        if (!std::isfinite(v)) throw InvalidArgument("tensor recovery: init factor " + std::to_string(k) + " is not finite");
      a_[k] = o_.init[k];
    }
  } else {
    // Random start with |X| of about init_scale: entries N(0, s^2), s^(2N) r = init_scale^2.
    const double target = o_.init_scale > 0 ? o_.init_scale : o_.alpha / 4;
    const double s = std::pow(target / std::sqrt(double(r_)), 1.0 / double(order_));
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, s);
    for (size_t k = 0; k < n; ++k) {
      a_[k].resize(size_t(idx_.shape[k]) * size_t(r_));
      for (double& v : a_[k]) v = normal(rng);
    }
    if (spectral) {
      // Orthonormal bases scaled so that |X| is again about init_scale (rows of an n x r
      // orthonormal basis have norm about sqrt(r / n)).
      std::vector<std::vector<double>> basis;
      std::vector<double> lv;
      if (loss_ != Loss::squared) lv = level_values(w_, o_.sigma, o_.alpha);
      if (internal::spectral_factors(idx_, lv, r_, 10, seed, threads_, basis)) {
        for (size_t k = 0; k < n; ++k) {
          if (basis[k].empty()) continue;
          const double scale = std::sqrt(double(idx_.shape[k])) * s;
          for (size_t j = 0; j < basis[k].size(); ++j) a_[k][j] = basis[k][j] * scale;
        }
      }
    }
  }
  // Rows that meet no observation stay zero (nothing to learn about them); all rows in the ball.
  for (size_t k = 0; k < n; ++k) {
    const auto& rb = idx_.modes[k].row_begin;
    for (int64_t i = 0; i < idx_.shape[k]; ++i) {
      Eigen::Map<Vec> row(a_[k].data() + size_t(i) * size_t(r_), r_);
      if (rb[size_t(i) + 1] == rb[size_t(i)]) row.setZero();
      Vec tmp = row;
      clip_norm(tmp, radius_);
      row = tmp;
    }
  }
  a_prev_ = a_;
  row_lipschitz_.assign(n, {});
  for (size_t k = 0; k < n; ++k) row_lipschitz_[k].assign(size_t(idx_.shape[k]), 0.0);
}

Recovery CpSolver::run(std::vector<double> w0) {
  const double t_start = internal::now_seconds();
  Recovery base, best;
  base.method = "cp";
  base.shape = idx_.shape;
  base.rank = r_;
  base.index_bytes = idx_.bytes();
  // Multi-start: n_init starts (the first spectral unless disabled, the others random),
  // init_iter iterations each; continue the one with the lowest objective.
  const int starts = o_.init.empty() ? std::max(1, o_.n_init) : 1;
  const int short_iters = starts > 1 ? std::min(o_.init_iter, o_.max_iter) : 0;
  struct State {
    std::vector<std::vector<double>> a, a_prev, lip;
    std::vector<double> w;
    double w_scale, momentum;
  } kept;
  for (int c = 0; c < starts; ++c) {
    initialise(o_.seed + uint64_t(c) * 0x9E3779B97F4A7C15ull, w0, c == 0 && o_.spectral_init);
    Recovery rec = base;
    rec.objective.assign(1, objective());
    if (starts > 1) iterate(rec, short_iters, false);
    if (c == 0 || rec.objective.back() < best.objective.back()) {
      best = std::move(rec);
      kept = {a_, a_prev_, row_lipschitz_, w_, w_scale_, momentum_t_};
    }
  }
  if (starts > 1) {
    a_ = kept.a;
    a_prev_ = kept.a_prev;
    row_lipschitz_ = kept.lip;
    w_ = kept.w;
    w_scale_ = kept.w_scale;
    momentum_t_ = kept.momentum;
  }
  const bool converged = starts > 1 && !best.stop_reason.empty() && best.stop_reason != "max_iter";
  if (!converged) {
    best.stop_reason.clear();
    iterate(best, o_.max_iter - short_iters, true);
  }
  best.iterations = int(best.objective.size()) - 1;
  best.factors = a_;
  best.boundaries = w_;
  best.solve_seconds = internal::now_seconds() - t_start;
  return best;
}

void CpSolver::iterate(Recovery& rec, int iters, bool with_callback) {
  // Newton and backtracking evaluate F at the new rows anyway (line search); the majoriser rules
  // without extrapolation verify lazily.
  const bool lazy = !o_.extrapolate && (o_.step == StepRule::curvature || o_.step == StepRule::lipschitz);
  const size_t n = size_t(order_);
  std::vector<double> cand, point, xbuf;
  double f = rec.objective.back();

  // Lazy verification state: the last block step, not yet checked against F.
  struct Pending {
    bool active = false;
    int mode = 0;
    std::vector<double> old_rows;
    double f_before = 0;
  } pending;
  bool iteration_unrecorded = false;  // lazy: F after the last iteration is known at the next pass
  double kkt_sq = 0, iter_t0 = internal::now_seconds();
  bool stop = false;

  auto record_iteration = [&](double kkt) {
    const double prev = rec.objective.back();
    rec.objective.push_back(f);
    rec.kkt_residual.push_back(std::sqrt(kkt) / double(idx_.count));
    const double t = internal::now_seconds();
    rec.iteration_seconds.push_back(t - iter_t0);
    iter_t0 = t;
    if (o_.callback && with_callback) {
      IterationInfo info;
      info.iteration = int(rec.objective.size()) - 1;
      info.objective = f;
      info.factors = &a_;
      info.boundaries = &w_;
      const bool halt = o_.callback(info);
      iter_t0 = internal::now_seconds();  // the callback's time is not the solver's
      if (halt) {
        rec.stop_reason = "callback";
        return true;
      }
    }
    if (o_.verbose)
      std::fprintf(stderr, "[tensor.cp] iter %zu  F = %.10g  kkt = %.3g  %.3fs\n", rec.objective.size() - 1, f,
                   rec.kkt_residual.back(), rec.iteration_seconds.back());
    if (prev - f <= o_.tol * std::max(std::fabs(f), 1e-300)) {
      rec.stop_reason = prev == f ? "stalled" : "tolerance";
      return true;
    }
    if (o_.grad_tol > 0 && rec.kkt_residual.back() <= o_.grad_tol) {
      rec.stop_reason = "gradient";
      return true;
    }
    return false;
  };
  // Lazy mode: f_here is F at the current point; check the pending step against it.
  auto verify = [&](double f_here) -> bool {  // returns true if the pending step was undone
    if (!pending.active) {
      f = std::min(f, f_here);  // same point, different summation order
      return false;
    }
    pending.active = false;
    if (f_here > pending.f_before) {
      a_[size_t(pending.mode)] = pending.old_rows;
      f = pending.f_before;
      rec.rejected_steps++;
      return true;
    }
    f = f_here;
    return false;
  };

  for (int it = 1; it <= iters && !stop; ++it) {
    double omega = 0;
    if (o_.extrapolate) {
      const double t_next = 0.5 * (1 + std::sqrt(1 + 4 * momentum_t_ * momentum_t_));
      omega = std::min((momentum_t_ - 1) / t_next, 0.9);
      momentum_t_ = t_next;
    }
    bool restarted = false;
    int accepted = 0;
    for (size_t mode = 0; mode < n && !stop; ++mode) {
      std::vector<double>& am = a_[mode];
      cand.resize(am.size());
      if (lazy) {
        PassResult pr = pass(int(mode), am.data(), cand.data(), false, false);
        if (verify(pr.f_point)) pr = pass(int(mode), am.data(), cand.data(), false, false);
        if (iteration_unrecorded) {
          iteration_unrecorded = false;
          if (record_iteration(kkt_sq)) {
            stop = true;
            break;
          }
          kkt_sq = 0;
        }
        kkt_sq += pr.kkt_sq;
        pending.active = true;
        pending.mode = int(mode);
        pending.old_rows = am;
        pending.f_before = f;
        am.swap(cand);
        accepted++;
        continue;
      }
      // Immediate verification (extrapolation and/or backtracking).
      const bool extrapolated = omega > 0 && !restarted;
      if (extrapolated) {
        // Extrapolated rows, projected back onto the ball so that every point the line searches
        // and fallbacks can return is feasible.
        point.resize(am.size());
        const std::vector<double>& prev = a_prev_[mode];
        for (size_t j = 0; j < am.size(); ++j) point[j] = am[j] + omega * (am[j] - prev[j]);
        for (size_t row = 0; row * size_t(r_) < point.size(); ++row) {
          Eigen::Map<Vec> v(point.data() + row * size_t(r_), r_);
          const double nv = v.norm();
          if (nv > radius_) v *= radius_ / nv;
        }
      }
      PassResult pr = pass(int(mode), extrapolated ? point.data() : am.data(), cand.data(), true, !extrapolated);
      if (extrapolated && !(pr.f_new <= f)) {
        rec.restarts++;
        restarted = true;
        momentum_t_ = 1;
        pr = pass(int(mode), am.data(), cand.data(), true, true);
      }
      kkt_sq += pr.kkt_sq;
      if (pr.f_new <= f) {
        a_prev_[mode] = am;
        am.swap(cand);
        f = pr.f_new;
        accepted++;
      } else {
        rec.rejected_steps++;
      }
    }
    if (stop) break;
    if (estimate_w_) {
      xbuf.resize(idx_.count);
      double f_here = objective(xbuf.data());
      if (lazy && verify(f_here)) f_here = objective(xbuf.data());
      if (!lazy) f = std::min(f, f_here);
      const internal::BoundaryStepResult bs = internal::boundary_step(
          loss_, o_.sigma, min_gap_, w_, w_scale_, idx_.level_counts, idx_.modes[0].levels.data(), xbuf.data(),
          idx_.count, threads_);
      if (bs.moved) {
        f = std::min(f, bs.objective);
        accepted++;
      }
      kkt_sq += bs.grad_norm * bs.grad_norm;
    }
    if (lazy && !estimate_w_) {
      iteration_unrecorded = true;
    } else {
      if (record_iteration(kkt_sq)) stop = true;
      kkt_sq = 0;
      if (accepted == 0 && !stop) {
        rec.stop_reason = "stalled";
        stop = true;
      }
    }
  }
  if (pending.active || iteration_unrecorded) {
    verify(objective());
    if (iteration_unrecorded && !record_iteration(kkt_sq) && rec.stop_reason.empty()) rec.stop_reason = "max_iter";
  }
  if (rec.stop_reason.empty()) rec.stop_reason = "max_iter";
}

}  // namespace

namespace internal {
Recovery run_cp(const ObservationIndex& idx, const RecoverOptions& o, Loss loss, std::vector<double> w, bool estimate_w) {
  CpSolver solver(idx, o, loss, estimate_w);
  return solver.run(std::move(w));
}
}  // namespace internal

Recovery recover_cp(const ObservationView& obs, const RecoverOptions& options) {
  const double t0 = internal::now_seconds();
  const bool quantized = options.loss != Loss::squared;
  internal::validate_options(options, quantized);
  if (quantized && !obs.levels) throw InvalidArgument("tensor recovery: the quantized losses need levels");
  if (!quantized && !obs.values) throw InvalidArgument("tensor recovery: the squared loss needs values");
  const int k = quantized ? internal::resolve_num_levels(obs, options) : 0;
  const internal::ObservationIndex idx = internal::build_index(obs, k, options.threads, true);
  std::vector<double> w = options.boundaries;
  const bool estimate = quantized && w.empty();
  const double min_gap = options.min_gap > 0 ? options.min_gap : options.sigma / 100;
  if (estimate) {
    const double spread = options.init_scale > 0 ? options.init_scale : options.alpha / 4;
    w = internal::initial_boundaries(idx.level_counts, options.loss, options.sigma, spread, min_gap);
  }
  const double t1 = internal::now_seconds();
  Recovery rec = internal::run_cp(idx, options, options.loss, std::move(w), estimate);
  rec.setup_seconds = t1 - t0;
  return rec;
}

CpGradient cp_objective_gradient(const ObservationView& obs, const RecoverOptions& options,
                                 const std::vector<std::vector<double>>& factors) {
  const bool quantized = options.loss != Loss::squared;
  internal::validate_options(options, quantized);
  if (quantized && options.boundaries.empty())
    throw InvalidArgument("cp_objective_gradient: the boundaries must be given");
  if (quantized && !obs.levels) throw InvalidArgument("cp_objective_gradient: the quantized losses need levels");
  if (!quantized && !obs.values) throw InvalidArgument("cp_objective_gradient: the squared loss needs values");
  const int k = quantized ? int(options.boundaries.size()) + 1 : 0;
  const internal::ObservationIndex idx = internal::build_index(obs, k, options.threads, true);
  const size_t n = obs.shape.size();
  if (factors.size() != n) throw InvalidArgument("cp_objective_gradient: need one factor per mode");
  for (size_t m = 0; m < n; ++m) {
    if (factors[m].size() != size_t(obs.shape[m]) * size_t(options.rank))
      throw InvalidArgument("cp_objective_gradient: factor " + std::to_string(m) + " must be " +
                            std::to_string(obs.shape[m]) + " x " + std::to_string(options.rank));
    for (double v : factors[m])
      if (!std::isfinite(v)) throw InvalidArgument("cp_objective_gradient: factor " + std::to_string(m) + " is not finite");
  }
  const int threads = internal::resolve_threads(options.threads);
  const internal::ScaledBounds sb(options.boundaries, options.sigma);
  CpGradient out;
  out.factor_grads.resize(n);
  std::vector<double> x(obs.count);
  for (size_t m = 0; m < n; ++m) {
    const ModeLists& ml = idx.modes[m];
    PassSpec spec;
    spec.mode = int(m);
    spec.point = factors[m].data();
    out.factor_grads[m].assign(factors[m].size(), 0.0);
    spec.grad_out = out.factor_grads[m].data();
    if (m == 0) spec.x_out = x.data();
    const PassResult pr =
        quantized ? factor_pass(ml, QuantizedLabels{sb.loss(options.loss, options.sigma), ml.levels.data()}, factors,
                                options.rank, spec, threads)
                  : factor_pass(ml, SquaredLabels{ml.values.data()}, factors, options.rank, spec, threads);
    if (m == 0) out.objective = pr.f_point;
  }
  if (quantized)
    internal::objective_u16(options.loss, options.sigma, options.boundaries, idx.modes[0].levels.data(), x.data(),
                            obs.count, threads, nullptr, &out.boundary_grad);
  return out;
}

const char* step_rule_name(StepRule rule) {
  switch (rule) {
    case StepRule::newton: return "newton";
    case StepRule::curvature: return "curvature";
    case StepRule::lipschitz: return "lipschitz";
    case StepRule::backtracking: return "backtracking";
  }
  return "?";
}

}  // namespace bricklab::tensor
