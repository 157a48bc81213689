// Vectorised per-observation losses: the hot loop of every solver pass.
//
// The scalar kernels in likelihood.hpp branch on the tail region, which blocks vectorisation.
// Here the common case is written branch-free: the interval [u, v] is mirrored so that its
// centre is <= 0 (P(u, v) = P(-v, -u)), then P = (erfc(-b/sqrt2) - erfc(-a/sqrt2))/2 with both
// terms accurate relative to P. GCC vectorises the loop with `omp simd` and calls glibc's
// libmvec (SIMD erfc/exp/log/expm1, <= 4 ulp); the function is cloned for AVX2+FMA and for the
// baseline ISA and picked at load time. Entries the branch-free form cannot handle accurately
// (far tail, where erfc underflows; very narrow intervals around 0) are recomputed afterwards
// with the scalar kernel, so the results match likelihood.hpp to rounding.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bricklab/tensor/internal.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define BRICKLAB_TENSOR_SIMD 1
// Declare the libm functions as pure with SIMD variants (what glibc's math-vector.h does under
// -ffast-math), so that the loops below vectorise without changing the rest of the build.
extern "C" {
double erfc(double) noexcept __attribute__((simd("notinbranch"), const));
double exp(double) noexcept __attribute__((simd("notinbranch"), const));
double log(double) noexcept __attribute__((simd("notinbranch"), const));
double expm1(double) noexcept __attribute__((simd("notinbranch"), const));
}
#define BRICKLAB_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define BRICKLAB_NO_SPLIT_LOOPS __attribute__((optimize("no-split-loops")))
#else
#define BRICKLAB_CLONES
#define BRICKLAB_NO_SPLIT_LOOPS
#endif

namespace bricklab::tensor::internal {

namespace {

constexpr double kInvSqrt2 = detail::kInvSqrt2;
constexpr double kInvSqrt2Pi = detail::kInvSqrt2Pi;

// nll[j] and (kGrad) d[j] = d nll/dx for the probit loss, branch-free form.
BRICKLAB_CLONES
void probit_grad_simd(const double* lower, const double* upper, double inv_sigma, const uint16_t* lev, const double* x,
                      double* d, double* nll, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) {
    const double xs = x[j] * inv_sigma;
    const int l = lev[j] - 1;
    const double u = lower[l] - xs, v = upper[l] - xs;
    const bool flip = u + v > 0;
    const double a = flip ? -v : u, b = flip ? -u : v;
    const double p = 0.5 * (erfc(-b * kInvSqrt2) - erfc(-a * kInvSqrt2));
    nll[j] = -log(p);
    const double g = (exp(-0.5 * b * b) - exp(-0.5 * a * a)) * kInvSqrt2Pi / p;
    d[j] = (flip ? -g : g) * inv_sigma;
  }
}

// nll, d nll/dx and d2 = d^2 nll/dx^2 = ((b phi(b) - a phi(a))/P + (d nll/ds)^2) / sigma^2
// (invariant under the mirror).
BRICKLAB_CLONES
void probit_hess_simd(const double* lower, const double* upper, double inv_sigma, const uint16_t* lev, const double* x,
                      double* d, double* d2, double* nll, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) {
    const double xs = x[j] * inv_sigma;
    const int l = lev[j] - 1;
    const double u = lower[l] - xs, v = upper[l] - xs;
    const bool flip = u + v > 0;
    const double a = flip ? -v : u, b = flip ? -u : v;
    const double p = 0.5 * (erfc(-b * kInvSqrt2) - erfc(-a * kInvSqrt2));
    nll[j] = -log(p);
    const double pa = exp(-0.5 * a * a) * kInvSqrt2Pi, pb = exp(-0.5 * b * b) * kInvSqrt2Pi;
    const double g = (pb - pa) / p;
    const double apa = (a > -1e300 ? a : 0.0) * pa;  // a = -inf: a phi(a) -> 0 (select, then multiply)
    d[j] = (flip ? -g : g) * inv_sigma;
    d2[j] = ((b * pb - apa) / p + g * g) * inv_sigma * inv_sigma;
  }
}

BRICKLAB_CLONES
void probit_value_simd(const double* lower, const double* upper, double inv_sigma, const uint16_t* lev, const double* x,
                       double* nll, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) {
    const double xs = x[j] * inv_sigma;
    const int l = lev[j] - 1;
    const double u = lower[l] - xs, v = upper[l] - xs;
    const bool flip = u + v > 0;
    const double a = flip ? -v : u, b = flip ? -u : v;
    nll[j] = -log(0.5 * (erfc(-b * kInvSqrt2) - erfc(-a * kInvSqrt2)));
  }
}

BRICKLAB_CLONES
void logistic_grad_simd(const double* lower, const double* upper, double inv_sigma, const uint16_t* lev, const double* x,
                        double* d, double* nll, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) {
    const double xs = x[j] * inv_sigma;
    const int l = lev[j] - 1;
    const double u = lower[l] - xs, v = upper[l] - xs;
    const double au = exp(-std::fabs(u)), av = exp(-std::fabs(v));
    const double gap = -expm1(u - v);
    nll[j] = (u > 0 ? u : 0.0) + (v < 0 ? -v : 0.0) + log((1.0 + au) * (1.0 + av) / gap);
    const double fu = u >= 0 ? 1.0 / (1.0 + au) : au / (1.0 + au);
    const double fmv = v <= 0 ? 1.0 / (1.0 + av) : av / (1.0 + av);
    d[j] = (fmv - fu) * inv_sigma;
  }
}

BRICKLAB_CLONES
void logistic_hess_simd(const double* lower, const double* upper, double inv_sigma, const uint16_t* lev,
                        const double* x, double* d, double* d2, double* nll, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) {
    const double xs = x[j] * inv_sigma;
    const int l = lev[j] - 1;
    const double u = lower[l] - xs, v = upper[l] - xs;
    const double au = exp(-std::fabs(u)), av = exp(-std::fabs(v));
    const double gap = -expm1(u - v);
    nll[j] = (u > 0 ? u : 0.0) + (v < 0 ? -v : 0.0) + log((1.0 + au) * (1.0 + av) / gap);
    const double fu = u >= 0 ? 1.0 / (1.0 + au) : au / (1.0 + au);
    const double fmv = v <= 0 ? 1.0 / (1.0 + av) : av / (1.0 + av);
    d[j] = (fmv - fu) * inv_sigma;
    // logistic density at u and v: e^-|t| / (1 + e^-|t|)^2
    d2[j] = (au / ((1.0 + au) * (1.0 + au)) + av / ((1.0 + av) * (1.0 + av))) * inv_sigma * inv_sigma;
  }
}

BRICKLAB_CLONES
void logistic_value_simd(const double* lower, const double* upper, double inv_sigma, const uint16_t* lev,
                         const double* x, double* nll, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) {
    const double xs = x[j] * inv_sigma;
    const int l = lev[j] - 1;
    const double u = lower[l] - xs, v = upper[l] - xs;
    const double au = exp(-std::fabs(u)), av = exp(-std::fabs(v));
    const double gap = -expm1(u - v);
    nll[j] = (u > 0 ? u : 0.0) + (v < 0 ? -v : 0.0) + log((1.0 + au) * (1.0 + av) / gap);
  }
}

// Entries where the branch-free probit form is not accurate: the mirrored upper bound in the far
// tail (erfc underflows), or a narrow interval straddling 0 (P < 1e-6: the erfc difference would
// lose digits; the scalar kernel uses an erf sum there).
inline bool probit_needs_scalar(double u, double v) {
  const bool flip = u + v > 0;
  const double a = flip ? -v : u, b = flip ? -u : v;
  if (b <= detail::kDeepTail) return true;
  return a < 0 && b > 0 && (b - a) < 2.6e-6;
}

// Second derivative in x from the scalar terms (fix-up path): probit
// ((v phi(v) - u phi(u))/P + D^2)/sigma^2 with phi(v)/P = -dv, phi(u)/P = du, D = dxs.
inline double probit_second(const LevelTerms& t, double u, double v, double inv_sigma) {
  const double vv = std::isinf(v) ? 0.0 : v * (-t.dv);
  const double uu = std::isinf(u) ? 0.0 : u * t.du;
  return std::max(0.0, vv - uu + t.dxs * t.dxs) * inv_sigma * inv_sigma;
}

}  // namespace

double quantized_batch(const QuantizedLoss& q, const uint16_t* lev, const double* x, double* d, double* nll, size_t count,
                       double* d2) {
  const int64_t m = int64_t(count);
  if (q.loss == Loss::probit) {
    if (d2) probit_hess_simd(q.lower, q.upper, q.inv_sigma, lev, x, d, d2, nll, m);
    else if (d) probit_grad_simd(q.lower, q.upper, q.inv_sigma, lev, x, d, nll, m);
    else probit_value_simd(q.lower, q.upper, q.inv_sigma, lev, x, nll, m);
    // Both cases that need the scalar kernel have P < 1e-6 (nll > 13.8) or give inf/NaN, so a
    // cheap test on the result finds the candidates.
    for (int64_t j = 0; j < m; ++j) {
      if (nll[j] <= 13.8) continue;
      const double xs = x[j] * q.inv_sigma;
      const double u = q.lower[lev[j] - 1] - xs, v = q.upper[lev[j] - 1] - xs;
      if (!probit_needs_scalar(u, v)) continue;
      const LevelTerms t = detail::probit<true>(u, v);
      nll[j] = t.nll;
      if (d) d[j] = t.dxs * q.inv_sigma;
      if (d2) d2[j] = probit_second(t, u, v, q.inv_sigma);
    }
  } else {
    if (d2) logistic_hess_simd(q.lower, q.upper, q.inv_sigma, lev, x, d, d2, nll, m);
    else if (d) logistic_grad_simd(q.lower, q.upper, q.inv_sigma, lev, x, d, nll, m);
    else logistic_value_simd(q.lower, q.upper, q.inv_sigma, lev, x, nll, m);
  }
  double s = 0;
  for (int64_t j = 0; j < m; ++j) s += nll[j];
  return s;
}

BRICKLAB_CLONES
void khatri_rao_block(const double* const* factors, int n_other, const int32_t* idx, int64_t m, int r, int64_t ld,
                      const double* p, int64_t* offsets, double* ht, double* x) {
  // Row offsets of the other factors' rows, per mode: offsets[t * ld + j].
  for (int t = 0; t < n_other; ++t) {
    int64_t* off = offsets + t * ld;
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) off[j] = int64_t(idx[j * n_other + t]) * r;
  }
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) x[j] = 0;
  for (int k = 0; k < r; ++k) {
    double* hk = ht + k * ld;
    const double* f0 = factors[0] + k;
    const int64_t* o0 = offsets;
    if (n_other == 1) {
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) hk[j] = f0[o0[j]];
    } else {
      const double* f1 = factors[1] + k;
      const int64_t* o1 = offsets + ld;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) hk[j] = f0[o0[j]] * f1[o1[j]];
      for (int t = 2; t < n_other; ++t) {
        const double* ft = factors[t] + k;
        const int64_t* ot = offsets + t * ld;
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) hk[j] *= ft[ot[j]];
      }
    }
    const double pk = p[k];
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) x[j] += hk[j] * pk;
  }
}

BRICKLAB_CLONES
void block_dot(const double* ht, int64_t m, int r, int64_t ld, const double* p, double* x) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) x[j] = 0;
  for (int k = 0; k < r; ++k) {
    const double* hk = ht + k * ld;
    const double pk = p[k];
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) x[j] += hk[j] * pk;
  }
}

// g += H^T d, (when gram is not null) the lower triangle of gram += H^T diag(c) H (c null:
// unweighted), two rows of the Gram matrix per sweep, and (when hsq is not null) *hsq += |H|_F^2.
// GCC's -O3 loop splitting turns the Gram sweep below into a scalar loop (1.5x slower per solver
// iteration, measured); the Release build uses -O3, so it is switched off for this function.
BRICKLAB_CLONES BRICKLAB_NO_SPLIT_LOOPS
void block_accumulate(const double* ht, const double* d, const double* c, int64_t m, int r, int64_t ld, double* g,
                      double* gram, double* wbuf, double* hsq) {
  for (int k = 0; k < r; ++k) {
    const double* hk = ht + k * ld;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < m; ++j) s += hk[j] * d[j];
    g[k] += s;
    if (hsq) {
      double q = 0;
#pragma omp simd reduction(+ : q)
      for (int64_t j = 0; j < m; ++j) q += hk[j] * hk[j];
      *hsq += q;
    }
  }
  if (!gram) return;
  for (int a = 0; a < r; ++a) {
    const double* ha = ht + a * ld;
    if (c) {  // weighted: use c * h_a as the left factor
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) wbuf[j] = c[j] * ha[j];
      ha = wbuf;
    }
    int b = 0;
    for (; b + 1 <= a; b += 2) {
      const double* hb0 = ht + b * ld;
      const double* hb1 = hb0 + ld;
      double s0 = 0, s1 = 0;
#pragma omp simd reduction(+ : s0, s1)
      for (int64_t j = 0; j < m; ++j) {
        s0 += ha[j] * hb0[j];
        s1 += ha[j] * hb1[j];
      }
      gram[a * r + b] += s0;
      gram[a * r + b + 1] += s1;
    }
    for (; b <= a; ++b) {
      const double* hb = ht + b * ld;
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < m; ++j) s += ha[j] * hb[j];
      gram[a * r + b] += s;
    }
  }
}

}  // namespace bricklab::tensor::internal
