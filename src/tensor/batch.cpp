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
#else
#define BRICKLAB_CLONES
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

}  // namespace

double quantized_batch(const QuantizedLoss& q, const uint16_t* lev, const double* x, double* d, double* nll, size_t count) {
  const int64_t m = int64_t(count);
  if (q.loss == Loss::probit) {
    if (d) probit_grad_simd(q.lower, q.upper, q.inv_sigma, lev, x, d, nll, m);
    else probit_value_simd(q.lower, q.upper, q.inv_sigma, lev, x, nll, m);
    // Both cases that need the scalar kernel have P < 1e-6 (nll > 13.8) or give inf/NaN, so a
    // cheap test on the result finds the candidates.
    for (int64_t j = 0; j < m; ++j) {
      if (nll[j] <= 13.8) continue;
      const double xs = x[j] * q.inv_sigma;
      const double u = q.lower[lev[j] - 1] - xs, v = q.upper[lev[j] - 1] - xs;
      if (!probit_needs_scalar(u, v)) continue;
      if (d) nll[j] = q.value_grad(lev[j], x[j], d[j]);
      else nll[j] = q.value(lev[j], x[j]);
    }
  } else {
    if (d) logistic_grad_simd(q.lower, q.upper, q.inv_sigma, lev, x, d, nll, m);
    else logistic_value_simd(q.lower, q.upper, q.inv_sigma, lev, x, nll, m);
  }
  double s = 0;
  for (int64_t j = 0; j < m; ++j) s += nll[j];
  return s;
}

// Four observations per sweep over the lower triangle keep the accumulator traffic low; only
// the lower triangle (b <= a) is accumulated, the caller mirrors it.
BRICKLAB_CLONES
void gram_accumulate(const double* h, int64_t m, int r, double* gram) {
  int64_t j = 0;
  for (; j + 4 <= m; j += 4) {
    const double* h0 = h + j * r;
    const double* h1 = h0 + r;
    const double* h2 = h1 + r;
    const double* h3 = h2 + r;
    for (int a = 0; a < r; ++a) {
      const double a0 = h0[a], a1 = h1[a], a2 = h2[a], a3 = h3[a];
      double* ga = gram + a * r;
#pragma omp simd
      for (int b = 0; b <= a; ++b) ga[b] += a0 * h0[b] + a1 * h1[b] + a2 * h2[b] + a3 * h3[b];
    }
  }
  for (; j < m; ++j) {
    const double* hj = h + j * r;
    for (int a = 0; a < r; ++a) {
      const double ha = hj[a];
      double* ga = gram + a * r;
      for (int b = 0; b <= a; ++b) ga[b] += ha * hj[b];
    }
  }
}

BRICKLAB_CLONES
void khatri_rao_rows(const double* const* factors, int n_other, const int32_t* idx, int64_t m, int r, const double* p,
                     double* h, double* x) {
  for (int64_t j = 0; j < m; ++j) {
    const int32_t* ix = idx + j * n_other;
    double* hj = h + j * r;
    const double* r0 = factors[0] + size_t(ix[0]) * size_t(r);
    if (n_other == 1) {
#pragma omp simd
      for (int k = 0; k < r; ++k) hj[k] = r0[k];
    } else {
      const double* r1 = factors[1] + size_t(ix[1]) * size_t(r);
#pragma omp simd
      for (int k = 0; k < r; ++k) hj[k] = r0[k] * r1[k];
      for (int t = 2; t < n_other; ++t) {
        const double* rt = factors[t] + size_t(ix[t]) * size_t(r);
#pragma omp simd
        for (int k = 0; k < r; ++k) hj[k] *= rt[k];
      }
    }
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < r; ++k) s += hj[k] * p[k];
    x[j] = s;
  }
}

BRICKLAB_CLONES
void rows_dot(const double* h, int64_t m, int r, const double* p, double* x) {
  for (int64_t j = 0; j < m; ++j) {
    const double* hj = h + j * r;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < r; ++k) s += hj[k] * p[k];
    x[j] = s;
  }
}

BRICKLAB_CLONES
void gradient_accumulate(const double* h, const double* d, int64_t m, int r, double* g) {
  for (int64_t j = 0; j < m; ++j) {
    const double* hj = h + j * r;
    const double dj = d[j];
#pragma omp simd
    for (int k = 0; k < r; ++k) g[k] += dj * hj[k];
  }
}

}  // namespace bricklab::tensor::internal
