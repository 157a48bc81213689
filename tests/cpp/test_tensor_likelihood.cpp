// The quantized likelihood (include/bricklab/tensor/likelihood.hpp): values and derivatives
// against independent long-double references and finite differences, in the body and in both
// far tails; the curvature bounds used for majorisation; the vectorised batch kernel against the
// scalar one; the summed objective's gradients against finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "bricklab/core/error.hpp"
#include "bricklab/tensor/internal.hpp"
#include "bricklab/tensor/likelihood.hpp"
#include "bricklab/tensor/recovery.hpp"

using namespace bricklab::tensor;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
using ld = long double;

ld phi_l(ld t) { return expl(-0.5L * t * t) / sqrtl(2.0L * 3.14159265358979323846264338327950288L); }
ld cdf_l(ld t) { return 0.5L * erfcl(-t / sqrtl(2.0L)); }

// -log(Phi(v) - Phi(u)) and its bound derivatives in long double, mirrored so that the two CDF
// values are both small (no cancellation against 1).
struct RefTerms {
  ld nll, du, dv;
};
RefTerms probit_ref(ld u, ld v) {
  bool flip = u + v > 0;
  if (flip) {
    const ld a = -v, b = -u;
    u = a;
    v = b;
  }
  const ld p = cdf_l(v) - (std::isinf(double(u)) ? 0.0L : cdf_l(u));
  RefTerms r;
  r.nll = -logl(p);
  const ld ru = std::isinf(double(u)) ? 0.0L : phi_l(u) / p;
  const ld rv = std::isinf(double(v)) ? 0.0L : phi_l(v) / p;
  // d nll/du = phi(u)/P, d nll/dv = -phi(v)/P; mirroring swaps and negates them.
  if (flip) {
    r.du = rv;
    r.dv = -ru;
  } else {
    r.du = ru;
    r.dv = -rv;
  }
  return r;
}

ld logistic_cdf_l(ld t) { return 1.0L / (1.0L + expl(-t)); }
ld logistic_pdf_l(ld t) {
  const ld e = expl(-fabsl(t));
  return e / ((1 + e) * (1 + e));
}
RefTerms logistic_ref(ld u, ld v) {
  bool flip = u + v > 0;
  if (flip) {
    const ld a = -v, b = -u;
    u = a;
    v = b;
  }
  const ld p = logistic_cdf_l(v) - logistic_cdf_l(u);
  RefTerms r;
  r.nll = -logl(p);
  const ld ru = std::isinf(double(u)) ? 0.0L : logistic_pdf_l(u) / p;
  const ld rv = std::isinf(double(v)) ? 0.0L : logistic_pdf_l(v) / p;
  if (flip) {
    r.du = rv;
    r.dv = -ru;
  } else {
    r.du = ru;
    r.dv = -rv;
  }
  return r;
}

bool close(double got, ld want, double rel, double abs_tol) {
  return std::fabs(double(got - want)) <= abs_tol + rel * std::fabs(double(want));
}

// Pairs (u, v), u < v, covering the body, both far tails, one-sided levels and narrow bins.
std::vector<std::pair<double, double>> bound_grid() {
  std::vector<std::pair<double, double>> g;
  const double lows[] = {-130, -60, -35, -29, -12, -5, -1.3, -0.2, 0.0, 0.4, 2.5, 7, 20, 31, 80, 125};
  const double widths[] = {1e-3, 0.05, 0.7, 3, 15};
  for (double u : lows) {
    for (double w : widths) g.push_back({u, u + w});
    g.push_back({u, kInf});
    g.push_back({-kInf, u});
  }
  return g;
}

}  // namespace

TEST_CASE("probit terms match a long-double reference in the body and both far tails", "[tensor]") {
  for (auto [u, v] : bound_grid()) {
    const LevelTerms t = probit_terms(u, v);
    const RefTerms r = probit_ref(u, v);
    INFO("u = " << u << ", v = " << v);
    REQUIRE(std::isfinite(t.nll));
    CHECK(close(t.nll, r.nll, 1e-12, 1e-15));
    CHECK(close(t.du, r.du, 1e-10, 1e-14));
    CHECK(close(t.dv, r.dv, 1e-10, 1e-14));
    CHECK(close(t.dxs, -(r.du + r.dv), 1e-9, 1e-12 * (1 + std::fabs(double(r.du)))));
  }
}

TEST_CASE("logistic terms match a long-double reference", "[tensor]") {
  for (auto [u, v] : bound_grid()) {
    const LevelTerms t = logistic_terms(u, v);
    const RefTerms r = logistic_ref(u, v);
    INFO("u = " << u << ", v = " << v);
    REQUIRE(std::isfinite(t.nll));
    CHECK(close(t.nll, r.nll, 1e-12, 1e-15));
    CHECK(close(t.du, r.du, 1e-10, 1e-14));
    CHECK(close(t.dv, r.dv, 1e-10, 1e-14));
  }
}

TEST_CASE("likelihood derivatives agree with central finite differences", "[tensor]") {
  for (Loss loss : {Loss::probit, Loss::logistic}) {
    auto terms = [&](double u, double v) { return loss == Loss::probit ? probit_terms(u, v) : logistic_terms(u, v); };
    for (auto [u, v] : bound_grid()) {
      if (std::fabs(u) > 50 || std::fabs(v) > 50) continue;  // FD truncation grows with |bound|
      const double h = 1e-6;
      const LevelTerms t = terms(u, v);
      const double fd_x = (terms(u - h, v - h).nll - terms(u + h, v + h).nll) / (2 * h);  // x/sigma moves both bounds down
      INFO(loss_name(loss) << " u = " << u << ", v = " << v);
      CHECK(close(t.dxs, fd_x, 1e-5, 1e-7));
      if (std::isfinite(u) && v - u > 1e-2) CHECK(close(t.du, (terms(u + h, v).nll - terms(u - h, v).nll) / (2 * h), 1e-5, 1e-7));
      if (std::isfinite(v) && v - u > 1e-2) CHECK(close(t.dv, (terms(u, v + h).nll - terms(u, v - h).nll) / (2 * h), 1e-5, 1e-7));
    }
  }
}

TEST_CASE("curvature bounds hold everywhere and are attained", "[tensor]") {
  // d^2 nll / d(x/sigma)^2 from finite differences of the analytic first derivative.
  for (Loss loss : {Loss::probit, Loss::logistic}) {
    auto terms = [&](double u, double v) { return loss == Loss::probit ? probit_terms(u, v) : logistic_terms(u, v); };
    const double bound = curvature_bound(loss, 1.0);
    double sup = 0;
    for (double u = -9; u <= 9; u += 0.25)
      for (double w : {1e-3, 0.1, 0.5, 1.0, 2.0, 4.0, kInf}) {
        const double v = u + w, h = 1e-5;
        const double second = (terms(u - h, v - h).dxs - terms(u + h, v + h).dxs) / (2 * h);
        INFO(loss_name(loss) << " u = " << u << " width " << w);
        CHECK(second <= bound * (1 + 1e-5));
        CHECK(second >= -1e-6);  // the negative log-likelihood is convex in x
        sup = std::max(sup, second);
      }
    CHECK(sup >= 0.95 * bound);  // the bound is tight (narrow bins)
  }
  CHECK(curvature_bound(Loss::probit, 0.5) == Approx(4.0));
  CHECK(curvature_bound(Loss::logistic, 2.0) == Approx(0.125));
  CHECK(curvature_bound(Loss::squared, 3.0) == 1.0);
}

TEST_CASE("log_normal_cdf and erfcx against long double and the asymptotic series", "[tensor]") {
  for (double t = -140; t <= 38; t += 0.37) {
    INFO("t = " << t);
    const ld want = t > 0 ? log1pl(-cdf_l(-t)) : logl(cdf_l(t));  // log1p keeps the upper tail exact
    // For t > 0 the value is -Phi(-t), whose relative error is the conditioning of erfc at
    // t/sqrt(2) (about t^2 ulp from rounding the argument); below 0 it is a log, well conditioned.
    CHECK(close(log_normal_cdf(t), want, t > 0 ? 1e-15 * (50 + t * t) : 1e-13, 1e-300));
  }
  for (double t : {-200.0, -1e3, -1e5, -1e8}) {
    const long double tl = t;
    const long double series = -0.5L * tl * tl - logl(-tl) - 0.5L * logl(2 * 3.14159265358979323846L) +
                               log1pl(-1 / (tl * tl) + 3 / (tl * tl * tl * tl) - 15 / powl(tl, 6));
    INFO("t = " << t);
    CHECK(close(log_normal_cdf(t), series, 1e-14, 0));
  }
  CHECK(log_normal_cdf(kInf) == 0.0);
  CHECK(log_normal_cdf(-kInf) == -kInf);
  CHECK(log_normal_cdf(40) == Approx(-0.0).margin(1e-300));
  for (double y = -5; y <= 100; y += 0.61) {
    INFO("y = " << y);
    CHECK(close(erfcx(y), expl((ld)y * y) * erfcl(y), 2e-13, 0));
  }
}

TEST_CASE("vectorised batch kernel matches the scalar kernel, far tails included", "[tensor]") {
  const std::vector<double> w = {-1.0, -0.3, 0.2, 0.9};
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0, 1);
  for (Loss loss : {Loss::probit, Loss::logistic}) {
    for (double sigma : {1.0, 0.2, 0.01}) {  // sigma = 0.01 pushes many bounds past the far-tail cut
      const internal::ScaledBounds sb(w, sigma);
      const QuantizedLoss q = sb.loss(loss, sigma);
      const size_t m = 3001;
      std::vector<double> x(m), d(m), nll(m);
      std::vector<uint16_t> lev(m);
      for (size_t j = 0; j < m; ++j) {
        x[j] = 1.5 * normal(rng);
        lev[j] = uint16_t(1 + rng() % 5);
      }
      x[0] = 0.2;  // exactly on a boundary
      x[1] = -0.3 + 1e-9;
      const double total = internal::quantized_batch(q, lev.data(), x.data(), d.data(), nll.data(), m);
      std::vector<double> nll2(m);
      const double total_value = internal::quantized_batch(q, lev.data(), x.data(), nullptr, nll2.data(), m);
      double ref_total = 0;
      for (size_t j = 0; j < m; ++j) {
        double dref;
        const double ref = q.value_grad(lev[j], x[j], dref);
        ref_total += ref;
        INFO(loss_name(loss) << " sigma " << sigma << " x = " << x[j] << " level " << lev[j]);
        REQUIRE(std::isfinite(nll[j]));
        CHECK(close(nll[j], ref, 1e-12, 1e-14));
        CHECK(close(nll2[j], ref, 1e-12, 1e-14));
        CHECK(close(d[j], dref, 1e-10, 1e-12 / sigma));
      }
      CHECK(total == Approx(ref_total).epsilon(1e-12));
      CHECK(total_value == Approx(ref_total).epsilon(1e-12));
    }
  }
}

TEST_CASE("summed objective: gradients in x and in the boundaries match finite differences", "[tensor]") {
  const std::vector<double> w = {-0.8, -0.1, 0.35, 1.1};
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0, 0.7);
  const size_t m = 60;
  std::vector<double> x(m);
  std::vector<int32_t> lev(m);
  for (size_t j = 0; j < m; ++j) {
    x[j] = normal(rng);
    lev[j] = int32_t(1 + rng() % 5);
  }
  for (Loss loss : {Loss::probit, Loss::logistic}) {
    const double sigma = 0.4;
    std::vector<double> gx, gw;
    const double f = quantized_objective(loss, sigma, w, lev.data(), x.data(), m, &gx, &gw);
    REQUIRE(gx.size() == m);
    REQUIRE(gw.size() == w.size());
    const double h = 1e-6;
    for (size_t j = 0; j < m; j += 7) {
      std::vector<double> xp = x, xm = x;
      xp[j] += h;
      xm[j] -= h;
      const double fd = (quantized_objective(loss, sigma, w, lev.data(), xp.data(), m) -
                         quantized_objective(loss, sigma, w, lev.data(), xm.data(), m)) / (2 * h);
      CHECK(gx[j] == Approx(fd).epsilon(1e-6).margin(1e-8));
    }
    for (size_t l = 0; l < w.size(); ++l) {
      std::vector<double> wp = w, wm = w;
      wp[l] += h;
      wm[l] -= h;
      const double fd = (quantized_objective(loss, sigma, wp, lev.data(), x.data(), m) -
                         quantized_objective(loss, sigma, wm, lev.data(), x.data(), m)) / (2 * h);
      CHECK(gw[l] == Approx(fd).epsilon(1e-6).margin(1e-8));
    }
    // Direct sum of the scalar terms.
    double direct = 0;
    const internal::ScaledBounds sb(w, sigma);
    for (size_t j = 0; j < m; ++j) direct += sb.loss(loss, sigma).value(lev[j], x[j]);
    CHECK(f == Approx(direct).epsilon(1e-13));
  }
}

TEST_CASE("likelihood entry points reject bad arguments", "[tensor]") {
  using bricklab::InvalidArgument;
  CHECK_THROWS_AS(probit_terms(1.0, 1.0), InvalidArgument);
  CHECK_THROWS_AS(logistic_terms(2.0, 1.0), InvalidArgument);
  CHECK_THROWS_AS(probit_terms(std::nan(""), 1.0), InvalidArgument);
  const std::vector<double> x = {0.1, 0.2};
  const std::vector<int32_t> lev = {1, 3};
  CHECK_THROWS_AS(quantized_objective(Loss::probit, 1.0, {0.0}, lev.data(), x.data(), 2), InvalidArgument);   // level 3 > K
  CHECK_THROWS_AS(quantized_objective(Loss::probit, 0.0, {0.0, 1.0}, lev.data(), x.data(), 2), InvalidArgument);  // sigma
  CHECK_THROWS_AS(quantized_objective(Loss::probit, 1.0, {1.0, 0.0}, lev.data(), x.data(), 2), InvalidArgument);  // order
  const std::vector<double> xnan = {0.1, std::nan("")};
  CHECK_THROWS_AS(quantized_objective(Loss::probit, 1.0, {0.0, 1.0}, lev.data(), xnan.data(), 2), InvalidArgument);
}
