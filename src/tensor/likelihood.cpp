// Scalar likelihood entry points and helpers (the per-observation kernels are inline in
// likelihood.hpp so that the solvers' loops can inline them).
#include "bricklab/tensor/likelihood.hpp"

#include <cmath>

#include "bricklab/core/error.hpp"

namespace bricklab::tensor {

const char* loss_name(Loss loss) {
  switch (loss) {
    case Loss::probit: return "probit";
    case Loss::logistic: return "logistic";
    case Loss::squared: return "squared";
  }
  return "?";
}

double curvature_bound(Loss loss, double sigma) {
  switch (loss) {
    case Loss::probit: return 1.0 / (sigma * sigma);
    case Loss::logistic: return 0.5 / (sigma * sigma);
    case Loss::squared: return 1.0;
  }
  return 1.0;
}

static void check_bounds(const char* what, double u, double v) {
  if (std::isnan(u) || std::isnan(v) || !(u < v))
    throw InvalidArgument(std::string(what) + ": need lower < upper (got " + std::to_string(u) + ", " +
                          std::to_string(v) + ")");
}

LevelTerms probit_terms(double u, double v) {
  check_bounds("probit_terms", u, v);
  return detail::probit<true>(u, v);
}

LevelTerms logistic_terms(double u, double v) {
  check_bounds("logistic_terms", u, v);
  return detail::logistic<true>(u, v);
}

double log_normal_cdf(double t) {
  if (std::isnan(t)) return t;
  if (t > 0) return std::log1p(-0.5 * std::erfc(t * detail::kInvSqrt2));
  if (t > detail::kDeepTail) return std::log(0.5 * std::erfc(-t * detail::kInvSqrt2));
  if (t == -detail::kInf) return -detail::kInf;
  return std::log(0.5 * detail::erfcx_large(-t * detail::kInvSqrt2)) - 0.5 * t * t;
}

double erfcx(double y) {
  if (std::isnan(y)) return y;
  if (y >= 20) return detail::erfcx_large(y);
  if (y >= 0) {
    // exp(y^2) with y^2 split into an exactly representable head and a small tail, so that the
    // rounding of y^2 (up to 400) does not cost relative accuracy.
    const double hi = std::ldexp(std::nearbyint(std::ldexp(y, 20)), -20);
    const double lo = (y - hi) * (y + hi);
    return std::exp(hi * hi) * std::exp(lo) * std::erfc(y);
  }
  // erfcx(-y) = 2 exp(y^2) - erfcx(y)
  const double a = -y;
  const double hi = std::ldexp(std::nearbyint(std::ldexp(a, 20)), -20);
  const double lo = (a - hi) * (a + hi);
  return 2.0 * std::exp(hi * hi) * std::exp(lo) - erfcx(a);
}

}  // namespace bricklab::tensor
