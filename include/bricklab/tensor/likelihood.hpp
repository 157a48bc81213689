// Quantized-measurement likelihood for tensor recovery: the negative log-likelihood of one
// observation Y = Q(x + Z) and its derivatives, computed stably in every tail.
//
// Model: K levels with boundaries w_0 = -inf < w_1 < ... < w_{K-1} < w_K = +inf, and
// P(Y = l | x) = Phi((w_l - x)/sigma) - Phi((w_{l-1} - x)/sigma) with Phi the standard normal
// CDF (probit) or the standard logistic CDF (logistic). Everything below works in standardised
// bounds u = (w_{l-1} - x)/sigma < v = (w_l - x)/sigma (either may be infinite).
//
// Stability: no log of a difference that can underflow. Probit uses erf/erfc in the region where
// they are accurate relative to the probability, the symmetric form (mirror u,v -> -v,-u) in the
// upper tail, and log-CDF differences log Phi(v) + log(1 - exp(log Phi(u) - log Phi(v))) with an
// asymptotic erfcx in the far tail. Logistic uses an exact closed form in softplus/expm1 terms.
// These are inline because the solvers call them once per observation per pass.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace bricklab::tensor {

// The loss per observation: probit / logistic quantized likelihoods, or squared error on real
// values (the unquantized least-squares baseline).
enum class Loss { probit, logistic, squared };

const char* loss_name(Loss loss);

// Upper bound on d^2/dx^2 of the per-observation loss, for every level and x (used for
// majorisation / Lipschitz steps): probit 1/sigma^2 (one minus a truncated-normal variance),
// logistic 1/(2 sigma^2) (sum of two logistic densities), squared 1.
double curvature_bound(Loss loss, double sigma);

// Terms of -log P for one observation in standardised bounds u < v:
//   nll = -log P,  du = d nll/du,  dv = d nll/dv,  dxs = d nll/d(x/sigma) = -(du + dv)
// so that d nll/dx = dxs/sigma, d nll/dw_{l-1} = du/sigma, d nll/dw_l = dv/sigma. dxs is
// computed in a cancellation-free form rather than as -(du + dv).
struct LevelTerms {
  double nll = 0;
  double du = 0;
  double dv = 0;
  double dxs = 0;
};

// Scalar entry points (tests, bindings and the boundary update use these).
LevelTerms probit_terms(double u, double v);
LevelTerms logistic_terms(double u, double v);
// log Phi(t) for the standard normal, accurate for all t (erfcx asymptotics below t = -30).
double log_normal_cdf(double t);
// erfcx(y) = exp(y^2) erfc(y), accurate for all y (overflows to +inf only for y < -26.6).
double erfcx(double y);

namespace detail {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2 pi) = phi(0)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kInf = std::numeric_limits<double>::infinity();
// Below this standardised bound the normal CDF is computed through erfcx (erfc would underflow
// near -37.5); above it erfc/erf are accurate relative to the probability.
constexpr double kDeepTail = -30.0;

// erfcx(y) for y >= 20 by its asymptotic series; terms shrink by (2k+1)/(2y^2) <= 1/16.
inline double erfcx_large(double y) {
  const double inv2y2 = 0.5 / (y * y);
  double term = 1.0, sum = 1.0;
  for (int k = 1; k < 40; ++k) {
    term *= -(2.0 * k - 1.0) * inv2y2;
    sum += term;
    if (std::fabs(term) < 1e-17 * std::fabs(sum)) break;
  }
  return sum / (y * 1.77245385090551602730);  // sqrt(pi)
}

// log(1 - exp(d)) for d < 0 without cancellation.
inline double log1mexp(double d) {
  return d > -0.6931471805599453 ? std::log(-std::expm1(d)) : std::log1p(-std::exp(d));
}

// Probit for v <= 0 (lower half of the line; u < v, u may be -inf). kGrad = false skips the
// density terms (value-only passes).
template <bool kGrad>
inline LevelTerms probit_lower(double u, double v) {
  LevelTerms t;
  if (v > kDeepTail) {
    // Phi(v) >= 4.9e-198: erfc is accurate to a few ulps relative to it, and for the gaps that
    // occur (boundaries at least min_gap apart) the difference loses at most a few digits.
    const double cv = 0.5 * std::erfc(-v * kInvSqrt2);
    const double cu = u == -kInf ? 0.0 : 0.5 * std::erfc(-u * kInvSqrt2);
    const double p = cv - cu;
    t.nll = -std::log(p);
    if (kGrad) {
      const double phiv = kInvSqrt2Pi * std::exp(-0.5 * v * v);
      const double phiu = u == -kInf ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * u * u);
      t.du = phiu / p;
      t.dv = -phiv / p;
      t.dxs = (phiv - phiu) / p;
    }
    return t;
  }
  // Far tail: log Phi(t) = log(erfcx(-t/sqrt2)/2) - t^2/2. With ev = erfcx(-v/sqrt2):
  // phi(v)/Phi(v) = sqrt(2/pi)/ev, and Phi(u)/Phi(v) = exp(d), d = log(eu/ev) - (u-v)(u+v)/2.
  const double ev = erfcx_large(-v * kInvSqrt2);
  const double log_cv = std::log(0.5 * ev) - 0.5 * v * v;
  const double hazard_v = kSqrt2OverPi / ev;
  if (u == -kInf) {
    t.nll = -log_cv;
    t.dv = -hazard_v;
    t.dxs = hazard_v;
    return t;
  }
  const double eu = erfcx_large(-u * kInvSqrt2);
  const double half_diff_sq = 0.5 * (u - v) * (u + v);  // (u^2 - v^2)/2 > 0, no cancellation
  const double d = std::log(eu / ev) - half_diff_sq;
  const double one_minus = -std::expm1(d);               // 1 - Phi(u)/Phi(v)
  t.nll = -(log_cv + log1mexp(d));
  const double rv = hazard_v / one_minus;                // phi(v)/P
  const double ratio = std::exp(-half_diff_sq);          // phi(u)/phi(v)
  t.dv = -rv;
  t.du = rv * ratio;
  t.dxs = -rv * std::expm1(-half_diff_sq);               // rv * (1 - ratio) without cancellation
  return t;
}

template <bool kGrad>
inline LevelTerms probit(double u, double v) {
  if (v <= 0) return probit_lower<kGrad>(u, v);
  if (u >= 0) {
    // Upper half: P(u, v) = P(-v, -u); the bounds swap roles and change sign.
    const LevelTerms m = probit_lower<kGrad>(-v, -u);
    LevelTerms t;
    t.nll = m.nll;
    t.du = -m.dv;
    t.dv = -m.du;
    t.dxs = -m.dxs;
    return t;
  }
  // u < 0 < v: P = (erf(v/sqrt2) + erf(-u/sqrt2))/2, a sum of two non-negative terms.
  LevelTerms t;
  if (u == -kInf && v == kInf) return t;
  double logp;
  if (u == -kInf) logp = std::log1p(-0.5 * std::erfc(v * kInvSqrt2));
  else if (v == kInf) logp = std::log1p(-0.5 * std::erfc(-u * kInvSqrt2));
  else logp = std::log(0.5 * (std::erf(v * kInvSqrt2) + std::erf(-u * kInvSqrt2)));
  t.nll = -logp;
  if (kGrad) {
    const double inv_p = std::exp(-logp);
    const double phiu = u == -kInf ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * u * u);
    const double phiv = v == kInf ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * v * v);
    t.du = phiu * inv_p;
    t.dv = -phiv * inv_p;
    t.dxs = (phiv - phiu) * inv_p;
  }
  return t;
}

// Logistic: with F(t) = 1/(1+e^-t),
//   P = F(v) - F(u) = (1 - e^(u-v)) / ((1 + e^u)(1 + e^-v)),
//   nll = softplus(u) + softplus(-v) - log(-expm1(u - v)),
//   d nll/du = F(u) + 1/expm1(v-u),  d nll/dv = -(F(-v) + 1/expm1(v-u)),
//   d nll/d(x/sigma) = F(-v) - F(u) (the 1/expm1 terms cancel exactly).
template <bool kGrad>
inline LevelTerms logistic(double u, double v) {
  LevelTerms t;
  const double au = std::exp(-std::fabs(u));  // 0 for u = -inf
  const double av = std::exp(-std::fabs(v));
  const double gap = -std::expm1(u - v);      // 1 - e^(u-v), in (0, 1]
  t.nll = std::max(u, 0.0) + std::max(-v, 0.0) + std::log((1.0 + au) * (1.0 + av) / gap);
  if (kGrad) {
    const double fu = u >= 0 ? 1.0 / (1.0 + au) : au / (1.0 + au);   // F(u)
    const double fmv = v <= 0 ? 1.0 / (1.0 + av) : av / (1.0 + av);  // F(-v)
    const double inv_em1 = (1.0 - gap) / gap;                        // 1/expm1(v-u)
    t.du = fu + inv_em1;
    t.dv = -(fmv + inv_em1);
    t.dxs = fmv - fu;
  }
  return t;
}

}  // namespace detail

// Per-observation loss evaluator for the solvers. Boundaries are stored pre-scaled by 1/sigma
// as lower[l-1] = w_{l-1}/sigma and upper[l-1] = w_l/sigma for levels l = 1..K.
struct QuantizedLoss {
  Loss loss = Loss::probit;
  const double* lower = nullptr;
  const double* upper = nullptr;
  double inv_sigma = 1.0;

  template <bool kGrad>
  inline LevelTerms terms(int level, double x) const {
    const double xs = x * inv_sigma;
    const double u = lower[level - 1] - xs, v = upper[level - 1] - xs;
    return loss == Loss::probit ? detail::probit<kGrad>(u, v) : detail::logistic<kGrad>(u, v);
  }
  // nll and d nll/dx.
  inline double value_grad(int level, double x, double& dx) const {
    const LevelTerms t = terms<true>(level, x);
    dx = t.dxs * inv_sigma;
    return t.nll;
  }
  inline double value(int level, double x) const { return terms<false>(level, x).nll; }
};

}  // namespace bricklab::tensor
