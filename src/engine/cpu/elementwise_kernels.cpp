// Plain C++ elementwise kernels with numpy broadcasting, for everything oneDNN's eltwise and
// binary primitives do not take (other element types, variadic Sum/Mean/Max/Min, three inputs,
// functions oneDNN lacks). The function is chosen once at plan time from the operator entry's
// EltFn and the element type, and compiled into a typed loop; the output is walked in segments
// along its innermost (collapsed) dimension, so each operand is read with stride 1 or 0 and the
// loops vectorise; segments are split across threads.
#include <omp.h>

#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>

#include "bricklab/ops/registry.hpp"
#include "cpu_internal.hpp"

namespace bricklab::cpu {
namespace {



// ---- broadcasting ----------------------------------------------------------------------------

// The output's shape with adjacent dimensions merged wherever every operand allows it, and each
// operand's element strides over those dimensions (0 along a broadcast dimension).
template <size_t K>
struct Broadcast {
  std::vector<int64_t> dims;
  std::vector<std::array<int64_t, K>> strides;  // per dim
  int64_t total = 0;
};

template <size_t K>
Broadcast<K> plan_broadcast(const Shape& out, const std::array<Shape, K>& in) {
  const size_t rank = out.size();
  std::vector<std::array<int64_t, K>> st(rank);
  for (size_t k = 0; k < K; ++k) {
    const Shape& s = in[k];
    if (s.size() > rank) throw ShapeError("cannot broadcast " + shape_str(s) + " to " + shape_str(out));
    int64_t stride = 1;
    for (size_t i = s.size(); i-- > 0;) {
      const size_t d = rank - s.size() + i;
      if (s[i] != out[d] && s[i] != 1) throw ShapeError("cannot broadcast " + shape_str(s) + " to " + shape_str(out));
      st[d][k] = s[i] == 1 ? 0 : stride;
      stride *= s[i];
    }
    for (size_t d = 0; d + s.size() < rank; ++d) st[d][k] = 0;
  }
  Broadcast<K> p;
  p.total = shape_numel(out);
  for (size_t d = 0; d < rank; ++d) {
    if (out[d] == 1) continue;  // contributes nothing to any offset
    if (!p.dims.empty()) {
      bool merge = true;
      for (size_t k = 0; k < K; ++k) merge = merge && p.strides.back()[k] == st[d][k] * out[d];
      if (merge) {
        p.dims.back() *= out[d];
        p.strides.back() = st[d];
        continue;
      }
    }
    p.dims.push_back(out[d]);
    p.strides.push_back(st[d]);
  }
  if (p.dims.empty()) {
    p.dims.push_back(1);
    p.strides.push_back({});
  }
  return p;
}

// Calls seg(out_offset, in_offsets, inner_strides, length) for the segments of output elements
// [begin, end), in order.
template <size_t K, typename Seg>
void for_segments(const Broadcast<K>& p, int64_t begin, int64_t end, Seg&& seg) {
  const size_t r = p.dims.size();
  const int64_t inner = p.dims[r - 1];
  std::array<int64_t, K> inner_st = p.strides[r - 1];
  std::vector<int64_t> idx(r, 0);
  int64_t rem = begin / inner;
  std::array<int64_t, K> off{};
  for (size_t d = r - 1; d-- > 0;) {
    idx[d] = rem % p.dims[d];
    rem /= p.dims[d];
    for (size_t k = 0; k < K; ++k) off[k] += idx[d] * p.strides[d][k];
  }
  int64_t col = begin % inner;
  int64_t at = begin;
  while (at < end) {
    const int64_t len = std::min(inner - col, end - at);
    std::array<int64_t, K> o = off;
    for (size_t k = 0; k < K; ++k) o[k] += col * inner_st[k];
    seg(at, o, inner_st, len);
    at += len;
    col = 0;
    for (size_t d = r - 1; d-- > 0;) {  // next row: odometer over the outer dims
      ++idx[d];
      for (size_t k = 0; k < K; ++k) off[k] += p.strides[d][k];
      if (idx[d] < p.dims[d]) break;
      for (size_t k = 0; k < K; ++k) off[k] -= idx[d] * p.strides[d][k];
      idx[d] = 0;
    }
  }
}

// Runs fn(begin, end) over [0, total) in chunks shared among the threads.
template <typename Fn>
void parallel_ranges(int64_t total, Fn&& fn) {
  constexpr int64_t grain = 32768;
  const int64_t chunks = (total + grain - 1) / grain;
  if (chunks <= 1) {
    if (total > 0) fn(int64_t(0), total);
    return;
  }
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), int(chunks)));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = (chunks + nt - 1) / nt;
    const int64_t b = std::min(total, int64_t(t) * per * grain), e = std::min(total, int64_t(t + 1) * per * grain);
    if (b < e) fn(b, e);
  }
}

// ---- typed loops -----------------------------------------------------------------------------

template <typename Y, typename X, typename F>
void unary_loop(Y* y, const X* x, int64_t sx, int64_t n, F f) {
  if (sx == 1)
    for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
  else
    std::fill(y, y + n, f(*x));
}

template <typename Y, typename A, typename C, typename F>
void binary_loop(Y* y, const A* a, int64_t sa, const C* c, int64_t sc, int64_t n, F f) {
  if (sa == 1 && sc == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], c[i]);
  } else if (sa == 1) {
    const C cv = *c;
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], cv);
  } else if (sc == 1) {
    const A av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, c[i]);
  } else {
    std::fill(y, y + n, f(*a, *c));
  }
}

// A step computing y = f(x) over a broadcast of one operand.
template <typename Y, typename X, typename F>
std::function<void(Runtime&)> unary_step(int x, int y, const Shape& xs, const Shape& ys, F f) {
  const Broadcast<1> p = plan_broadcast<1>(ys, {xs});
  return [=](Runtime& rt) {
    const X* xp = rt.data<X>(x);
    Y* yp = rt.data<Y>(y);
    parallel_ranges(p.total, [&](int64_t b, int64_t e) {
      for_segments<1>(p, b, e, [&](int64_t o, const std::array<int64_t, 1>& in, const std::array<int64_t, 1>& st, int64_t len) {
        unary_loop(yp + o, xp + in[0], st[0], len, f);
      });
    });
  };
}

// A step computing y = f(a, c) with numpy broadcasting. `accumulate`: a is y itself (the running
// result of a variadic fold, already the output's shape).
template <typename Y, typename A, typename C, typename F>
std::function<void(Runtime&)> binary_step(int a, int c, int y, const Shape& as, const Shape& cs, const Shape& ys, F f) {
  const Broadcast<2> p = plan_broadcast<2>(ys, {as, cs});
  return [=](Runtime& rt) {
    const A* ap = rt.data<A>(a);
    const C* cp = rt.data<C>(c);
    Y* yp = rt.data<Y>(y);
    parallel_ranges(p.total, [&](int64_t b, int64_t e) {
      for_segments<2>(p, b, e, [&](int64_t o, const std::array<int64_t, 2>& in, const std::array<int64_t, 2>& st, int64_t len) {
        binary_loop(yp + o, ap + in[0], st[0], cp + in[1], st[1], len, f);
      });
    });
  };
}

}  // namespace

// ---- float16 -------------------------------------------------------------------------------

// Round to nearest even, as IEEE conversions (and ONNX Runtime) do.
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0));  // inf / NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to above the largest half: inf
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t e = abs >> 23, m = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 14 + (112 - e) ... the subnormal's scale
    uint32_t r = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = (abs - 0x38000000u) >> 13;  // rebias exponent
  const uint32_t rest = abs & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) ++r;
  return uint16_t(sign | r);
}

namespace {

// ---- the functions -----------------------------------------------------------------------------

// Attribute values an elementwise function needs, read once from the table's normalised view.
struct Params {
  double alpha = 0, beta = 0, gamma = 0, lo = -INFINITY, hi = INFINITY, bias = 0, lambd = 0;
  bool fmod = false, left = true, detect_pos = true, detect_neg = true;
};

template <typename T>
constexpr bool is_fp = std::is_floating_point_v<T>;


// Float-only unary functions (computed in the element type): calls use(f) with the function as
// a lambda, so that each gets its own vectorisable loop. False when f is not one of them.
template <typename T, typename Use>
bool with_float_unary(EltFn f, const Params& p, Use&& use) {
  const T alpha = T(p.alpha), beta = T(p.beta), gamma = T(p.gamma), lo = T(p.lo), hi = T(p.hi), bias = T(p.bias),
          lambd = T(p.lambd);
  switch (f) {
    case EltFn::reciprocal: use([](T x) { return T(1) / x; }); return true;
    case EltFn::sqrt: use([](T x) { return std::sqrt(x); }); return true;
    case EltFn::exp: use([](T x) { return std::exp(x); }); return true;
    case EltFn::log: use([](T x) { return std::log(x); }); return true;
    case EltFn::floor: use([](T x) { return std::floor(x); }); return true;
    case EltFn::ceil: use([](T x) { return std::ceil(x); }); return true;
    case EltFn::round: use([](T x) { return std::nearbyint(x); }); return true;
    case EltFn::erf: use([](T x) { return std::erf(x); }); return true;
    case EltFn::sin: use([](T x) { return std::sin(x); }); return true;
    case EltFn::cos: use([](T x) { return std::cos(x); }); return true;
    case EltFn::tan: use([](T x) { return std::tan(x); }); return true;
    case EltFn::asin: use([](T x) { return std::asin(x); }); return true;
    case EltFn::acos: use([](T x) { return std::acos(x); }); return true;
    case EltFn::atan: use([](T x) { return std::atan(x); }); return true;
    case EltFn::sinh: use([](T x) { return std::sinh(x); }); return true;
    case EltFn::cosh: use([](T x) { return std::cosh(x); }); return true;
    case EltFn::asinh: use([](T x) { return std::asinh(x); }); return true;
    case EltFn::acosh: use([](T x) { return std::acosh(x); }); return true;
    case EltFn::atanh: use([](T x) { return std::atanh(x); }); return true;
    case EltFn::leaky_relu: use([alpha](T x) { return x >= T(0) ? x : alpha * x; }); return true;
    case EltFn::elu: use([alpha](T x) { return x >= T(0) ? x : alpha * (std::exp(x) - T(1)); }); return true;
    case EltFn::selu: use([alpha, gamma](T x) { return x > T(0) ? gamma * x : gamma * alpha * (std::exp(x) - T(1)); }); return true;
    case EltFn::celu:
      use([alpha](T x) { return std::max(T(0), x) + std::min(T(0), alpha * (std::exp(x / alpha) - T(1))); });
      return true;
    case EltFn::thresholded_relu: use([alpha](T x) { return x > alpha ? x : T(0); }); return true;
    case EltFn::shrink: use([bias, lambd](T x) { return x < -lambd ? x + bias : x > lambd ? x - bias : T(0); }); return true;
    case EltFn::clip: use([lo, hi](T x) { return std::min(std::max(x, lo), hi); }); return true;
    case EltFn::sigmoid: use([](T x) { return T(1) / (T(1) + std::exp(-x)); }); return true;
    case EltFn::hard_sigmoid: use([alpha, beta](T x) { return std::min(std::max(alpha * x + beta, T(0)), T(1)); }); return true;
    case EltFn::hard_swish: use([](T x) { return x * std::min(std::max(x * T(1.0 / 6) + T(0.5), T(0)), T(1)); }); return true;
    case EltFn::tanh: use([](T x) { return std::tanh(x); }); return true;
    // log(1 + e^x) without overflow for large x.
    case EltFn::softplus: use([](T x) { return x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }); return true;
    case EltFn::softsign: use([](T x) { return x / (T(1) + std::fabs(x)); }); return true;
    default: return false;
  }
}

// y = f(x) for the node's input value `x_value`, read from slot x into slot y.
void lower_unary(PlanBuilder& b, const Node& n, EltFn f, const Params& p, int x_value, int x, int y) {
  const Value& xv = val(b, x_value);
  const Value& yv = val(b, n.outputs[0]);
  const Shape xs = xv.shape, ys = yv.shape;
  FunctionStep* step = add_fn(b, n, "elementwise", {x}, {y});
  if (f == EltFn::cast) {
    // Every pair of the supported types; float16 through float32.
    auto from_half = [&](auto to) {
      using Y = decltype(to);
      step->fn = unary_step<Y, uint16_t>(x, y, xs, ys, [](uint16_t h) { return Y(half_to_float(h)); });
    };
    if (xv.dtype == DType::float16 && yv.dtype == DType::float16) {
      step->fn = unary_step<uint16_t, uint16_t>(x, y, xs, ys, [](uint16_t h) { return h; });
    } else if (xv.dtype == DType::float16) {
      dispatch_type<true, true>(b, n, yv.dtype, [&](auto to) {
        using Y = decltype(to);
        if constexpr (std::is_same_v<Y, bool>)
          step->fn = unary_step<bool, uint16_t>(x, y, xs, ys, [](uint16_t h) { return half_to_float(h) != 0.f; });
        else
          from_half(to);
      });
    } else if (yv.dtype == DType::float16) {
      dispatch_type<true, true>(b, n, xv.dtype, [&](auto from) {
        using X = decltype(from);
        step->fn = unary_step<uint16_t, X>(x, y, xs, ys, [](X v) { return float_to_half(float(v)); });
      });
    } else {
      dispatch_type<true, true>(b, n, xv.dtype, [&](auto from) {
        using X = decltype(from);
        dispatch_type<true, true>(b, n, yv.dtype, [&](auto to) {
          using Y = decltype(to);
          if constexpr (std::is_same_v<Y, bool>)
            step->fn = unary_step<bool, X>(x, y, xs, ys, [](X v) { return v != X(0); });
          else if constexpr (is_fp<X> && !is_fp<Y>)  // float to integer: truncation, saturated to avoid UB
            step->fn = unary_step<Y, X>(x, y, xs, ys, [](X v) {
              if (std::isnan(v)) return Y(0);
              const double d = std::trunc(double(v));
              if (d <= double(std::numeric_limits<Y>::lowest())) return std::numeric_limits<Y>::lowest();
              if (d >= double(std::numeric_limits<Y>::max())) return std::numeric_limits<Y>::max();
              return Y(d);
            });
          else
            step->fn = unary_step<Y, X>(x, y, xs, ys, [](X v) { return Y(v); });
        });
      });
    }
    return;
  }
  if (f == EltFn::identity) {
    const size_t bytes = size_t(yv.nbytes());
    step->fn = [=](Runtime& rt) { std::memcpy(rt.ptr(y), rt.ptr(x), bytes); };
    return;
  }
  if (f == EltFn::logical_not) {
    if (xv.dtype != DType::boolean) unsupported(b, n, "Not takes bool, not " + dtype_name(xv.dtype));
    step->fn = unary_step<bool, bool>(x, y, xs, ys, [](bool v) { return !v; });
    return;
  }
  if (f == EltFn::is_nan || f == EltFn::is_inf) {
    const bool pos = p.detect_pos, neg = p.detect_neg;
    dispatch_type<false, false>(b, n, xv.dtype, [&](auto tag) {
      using T = decltype(tag);
      if (f == EltFn::is_nan)
        step->fn = unary_step<bool, T>(x, y, xs, ys, [](T v) { return std::isnan(v); });
      else
        step->fn = unary_step<bool, T>(x, y, xs, ys, [pos, neg](T v) { return std::isinf(v) && ((v > 0 && pos) || (v < 0 && neg)); });
    });
    return;
  }
  if (f == EltFn::abs || f == EltFn::neg || f == EltFn::sign || f == EltFn::relu) {
    // Defined for integers too.
    dispatch_type<true, false>(b, n, xv.dtype, [&](auto tag) {
      using T = decltype(tag);
      if (f == EltFn::abs) {
        if constexpr (std::is_unsigned_v<T>) step->fn = unary_step<T, T>(x, y, xs, ys, [](T v) { return v; });
        else step->fn = unary_step<T, T>(x, y, xs, ys, [](T v) { return v < T(0) ? T(-v) : v; });
      } else if (f == EltFn::neg) {
        step->fn = unary_step<T, T>(x, y, xs, ys, [](T v) { return T(-v); });
      } else if (f == EltFn::sign) {
        step->fn = unary_step<T, T>(x, y, xs, ys, [](T v) { return T((T(0) < v) - (v < T(0))); });
      } else {
        step->fn = unary_step<T, T>(x, y, xs, ys, [](T v) { return v > T(0) ? v : T(0); });
      }
    });
    return;
  }
  dispatch_type<false, false>(b, n, xv.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!with_float_unary<T>(f, p, [&](auto fn) { step->fn = unary_step<T, T>(x, y, xs, ys, fn); }))
      unsupported(b, n, "operator '" + n.op + "' has no CPU kernel for " + dtype_name(xv.dtype));
  });
}

// Binary arithmetic in the element type T (integers: C++ semantics as ONNX Runtime, division
// truncating, by zero refused at run time).
template <typename T>
void arithmetic(PlanBuilder& b, const Node& n, EltFn f, const Params& p, FunctionStep* step, int a, int c, int y, const Shape& as,
                const Shape& cs, const Shape& ys) {
  switch (f) {
    case EltFn::add: step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return T(u + v); }); return;
    case EltFn::sub: step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return T(u - v); }); return;
    case EltFn::mul: step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return T(u * v); }); return;
    case EltFn::max: step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) {
        if constexpr (is_fp<T>) if (std::isnan(u) || std::isnan(v)) return std::numeric_limits<T>::quiet_NaN();
        return u < v ? v : u;
      });
      return;
    case EltFn::min: step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) {
        if constexpr (is_fp<T>) if (std::isnan(u) || std::isnan(v)) return std::numeric_limits<T>::quiet_NaN();
        return v < u ? v : u;
      });
      return;
    case EltFn::div:
      if constexpr (is_fp<T>) {
        step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return u / v; });
      } else {
        const std::string name = n.name;
        step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [name](T u, T v) {
          if (v == T(0)) throw InvalidArgument("node '" + name + "' (Div): integer division by zero");
          return T(u / v);
        });
      }
      return;
    case EltFn::mod:
      if constexpr (is_fp<T>) {
        if (!p.fmod) unsupported(b, n, "Mod of floats needs fmod=1 (ONNX defines fmod=0 for integers only)");
        step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return std::fmod(u, v); });
      } else {
        const std::string name = n.name;
        const bool fm = p.fmod;
        step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [name, fm](T u, T v) {
          if (v == T(0)) throw InvalidArgument("node '" + name + "' (Mod): integer modulo by zero");
          T r = T(u % v);
          if constexpr (std::is_signed_v<T>)
            if (!fm && r != 0 && ((r < 0) != (v < 0))) r = T(r + v);  // sign of the divisor, as Python
          return r;
        });
      }
      return;
    case EltFn::pow:  // the exponent may have another element type
      dispatch_type<true, false>(b, n, val(b, n.inputs.at(1)).dtype, [&](auto etag) {
        using E = decltype(etag);
        if constexpr (std::is_same_v<T, float> && std::is_same_v<E, float>)
          step->fn = binary_step<T, T, E>(a, c, y, as, cs, ys, [](float u, float v) { return std::pow(u, v); });
        else
          step->fn = binary_step<T, T, E>(a, c, y, as, cs, ys, [](T u, E v) { return T(std::pow(double(u), double(v))); });
      });
      return;
    case EltFn::prelu:
      if constexpr (is_fp<T> || std::is_signed_v<T>)
        step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [](T u, T s) { return u < T(0) ? T(s * u) : u; });
      else
        unsupported(b, n, "PRelu of " + dtype_name(val(b, n.inputs[0]).dtype) + " is not defined");
      return;
    case EltFn::bit_shift:
      if constexpr (std::is_unsigned_v<T> && !std::is_same_v<T, bool>) {
        const bool left = p.left;
        step->fn = binary_step<T, T, T>(a, c, y, as, cs, ys, [left](T u, T v) {
          if (v >= T(sizeof(T) * 8)) return T(0);
          return left ? T(u << v) : T(u >> v);
        });
      } else {
        unsupported(b, n, "BitShift is defined for unsigned integers only");
      }
      return;
    default: unsupported(b, n, "operator '" + n.op + "' has no CPU kernel");
  }
}

template <typename T>
void comparison(PlanBuilder& b, const Node& n, EltFn f, FunctionStep* step, int a, int c, int y, const Shape& as, const Shape& cs,
                const Shape& ys) {
  switch (f) {
    case EltFn::equal: step->fn = binary_step<bool, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return u == v; }); return;
    case EltFn::less: step->fn = binary_step<bool, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return u < v; }); return;
    case EltFn::greater: step->fn = binary_step<bool, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return u > v; }); return;
    case EltFn::less_equal: step->fn = binary_step<bool, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return u <= v; }); return;
    case EltFn::greater_equal: step->fn = binary_step<bool, T, T>(a, c, y, as, cs, ys, [](T u, T v) { return u >= v; }); return;
    default: unsupported(b, n, "operator '" + n.op + "' is not a comparison");
  }
}

bool is_comparison(EltFn f) {
  return f == EltFn::equal || f == EltFn::less || f == EltFn::greater || f == EltFn::less_equal || f == EltFn::greater_equal;
}
bool is_logical(EltFn f) { return f == EltFn::logical_and || f == EltFn::logical_or || f == EltFn::logical_xor; }

void binary_into(PlanBuilder& b, const Node& n, EltFn f, const Params& p, FunctionStep* step, int a, int c, int y, const Shape& as,
                 const Shape& cs);

// The kernel y = a f c (a and c broadcast to the output).
std::function<void(Runtime&)> binary_kernel(PlanBuilder& b, const Node& n, EltFn f, const Params& p, int a, int c, int y,
                                            const Shape& as, const Shape& cs) {
  FunctionStep local;
  binary_into(b, n, f, p, &local, a, c, y, as, cs);
  return std::move(local.fn);
}

void binary_into(PlanBuilder& b, const Node& n, EltFn f, const Params& p, FunctionStep* step, int a, int c, int y, const Shape& as,
                 const Shape& cs) {
  const Shape ys = val(b, n.outputs[0]).shape;
  const DType t = val(b, n.inputs[0]).dtype;
  if (is_logical(f)) {
    if (t != DType::boolean) unsupported(b, n, n.op + " takes bool, not " + dtype_name(t));
    if (f == EltFn::logical_and) step->fn = binary_step<bool, bool, bool>(a, c, y, as, cs, ys, [](bool u, bool v) { return u && v; });
    else if (f == EltFn::logical_or) step->fn = binary_step<bool, bool, bool>(a, c, y, as, cs, ys, [](bool u, bool v) { return u || v; });
    else step->fn = binary_step<bool, bool, bool>(a, c, y, as, cs, ys, [](bool u, bool v) { return u != v; });
    return;
  }
  if (is_comparison(f)) {
    auto compare = [&](auto tag) { comparison<decltype(tag)>(b, n, f, step, a, c, y, as, cs, ys); };
    if (f == EltFn::equal) dispatch_type<true, true>(b, n, t, compare);
    else dispatch_type<true, false>(b, n, t, compare);
    return;
  }
  dispatch_type<true, false>(b, n, t, [&](auto tag) { arithmetic<decltype(tag)>(b, n, f, p, step, a, c, y, as, cs, ys); });
}

Params params_of(PlanBuilder& b, const Node& n, EltFn f) {
  const NodeAttrs attrs(b.graph, n);
  Params p;
  auto real = [&](const char* key, double fallback) { return attrs.has(key) ? attrs.real(key) : fallback; };
  p.alpha = real("alpha", 0);
  p.beta = real("beta", 0);
  p.gamma = real("gamma", 0);
  p.bias = real("bias", 0);
  p.lambd = real("lambd", 0);
  p.fmod = attrs.has("fmod") && attrs.integer("fmod") != 0;
  if (f == EltFn::bit_shift) {
    const std::string dir = attrs.has("direction") ? attrs.text("direction") : "";
    if (dir != "LEFT" && dir != "RIGHT") unsupported(b, n, "BitShift needs direction LEFT or RIGHT, not '" + dir + "'");
    p.left = dir == "LEFT";
  }
  if (f == EltFn::is_inf) {
    p.detect_pos = attrs.integer("detect_positive") != 0;
    p.detect_neg = attrs.integer("detect_negative") != 0;
  }
  if (f == EltFn::clip) {
    if (n.opset < 11) {
      p.lo = real("min", -INFINITY);
      p.hi = real("max", INFINITY);
    } else {
      for (size_t i = 1; i <= 2 && i < n.inputs.size(); ++i) {
        const int v = n.inputs[i];
        if (v < 0) continue;
        if (!b.is_constant(v)) unsupported(b, n, "Clip bounds computed at run time are not supported");
        if (val(b, v).numel() != 1) throw ShapeError(b.where(n), "Clip bounds must be scalars");
        (i == 1 ? p.lo : p.hi) = val(b, v).data->as_double().at(0);
      }
    }
  }
  return p;
}

}  // namespace

void lower_elementwise(PlanBuilder& b, const Node& n) {
  const OpDef* def = OpRegistry::instance().of(n);
  const EltFn f = def ? def->elementwise : EltFn::none;
  if (f == EltFn::none) unsupported(b, n, "operator '" + n.op + "' is not elementwise");
  const Value& yv = val(b, n.outputs.at(0));
  std::vector<int> values;
  for (int v : n.inputs)
    if (v >= 0) values.push_back(v);
  if (values.empty()) throw ShapeError(b.where(n), "has no inputs");
  const Params p = params_of(b, n, f);
  const int y = b.new_slot(yv.name, yv.dtype, yv.shape, plain_md(yv.dtype, yv.shape));
  auto src = [&](int v) { return b.plain(b.slot_of(v)); };
  if (is_unary(f)) {
    lower_unary(b, n, f, p, values[0], src(values[0]), y);
    b.bind(n.outputs[0], y);
    return;
  }
  if (f == EltFn::where) {
    if (values.size() != 3) throw ShapeError(b.where(n), "Where takes 3 inputs");
    if (val(b, values[0]).dtype != DType::boolean) unsupported(b, n, "Where's condition must be bool");
    const int cond = src(values[0]), x1 = src(values[1]), x2 = src(values[2]);
    const Broadcast<3> plan = plan_broadcast<3>(yv.shape, {val(b, values[0]).shape, val(b, values[1]).shape, val(b, values[2]).shape});
    FunctionStep* step = add_fn(b, n, "elementwise", {cond, x1, x2}, {y});
    const size_t es = size_t(dtype_size(yv.dtype));
    auto typed = [&](auto tag) {
      using T = decltype(tag);
      step->fn = [=](Runtime& rt) {
        const bool* cp = rt.data<bool>(cond);
        const T* ap = rt.data<T>(x1);
        const T* bp = rt.data<T>(x2);
        T* yp = rt.data<T>(y);
        parallel_ranges(plan.total, [&](int64_t lo, int64_t hi) {
          for_segments<3>(plan, lo, hi, [&](int64_t o, const std::array<int64_t, 3>& in, const std::array<int64_t, 3>& st, int64_t len) {
            for (int64_t i = 0; i < len; ++i) yp[o + i] = cp[in[0] + i * st[0]] ? ap[in[1] + i * st[1]] : bp[in[2] + i * st[2]];
          });
        });
      };
    };
    switch (es) {  // Where moves elements: only their size matters
      case 1: typed(uint8_t{}); break;
      case 2: typed(uint16_t{}); break;
      case 4: typed(uint32_t{}); break;
      case 8: typed(uint64_t{}); break;
      default: unsupported(b, n, "element type " + dtype_name(yv.dtype) + " is not supported for Where");
    }
    b.bind(n.outputs[0], y);
    return;
  }
  for (int v : values)
    if (val(b, v).dtype != val(b, values[0]).dtype && f != EltFn::pow)
      throw ShapeError(b.where(n), "inputs have different element types (" + dtype_name(val(b, values[0]).dtype) + ", " +
                                       dtype_name(val(b, v).dtype) + ")");
  if (values.size() == 1) {  // a variadic op of one input: a copy (broadcast to the output)
    lower_unary(b, n, EltFn::identity, p, values[0], src(values[0]), y);
    b.bind(n.outputs[0], y);
    return;
  }
  if (values.size() > 2 && !def->variadic) throw ShapeError(b.where(n), "takes 2 inputs, has " + std::to_string(values.size()));
  // Fold pairwise: y = x0 f x1, then y = y f xk. Mean folds a sum, then scales.
  // All in one step (one entry in a profile).
  const EltFn pair = f == EltFn::mean ? EltFn::add : f;
  std::vector<int> reads;
  for (int v : values) reads.push_back(src(v));
  std::vector<std::function<void(Runtime&)>> passes;
  passes.push_back(binary_kernel(b, n, pair, p, reads[0], reads[1], y, val(b, values[0]).shape, val(b, values[1]).shape));
  for (size_t k = 2; k < values.size(); ++k)
    passes.push_back(binary_kernel(b, n, pair, p, y, reads[k], y, yv.shape, val(b, values[k]).shape));
  if (f == EltFn::mean) {
    const double count = double(values.size());
    dispatch_type<false, false>(b, n, yv.dtype, [&](auto tag) {
      using T = decltype(tag);
      passes.push_back(unary_step<T, T>(y, y, yv.shape, yv.shape, [count](T v) { return T(v / T(count)); }));
    });
  }
  FunctionStep* step = add_fn(b, n, "elementwise", reads, {y});
  if (passes.size() == 1) {
    step->fn = std::move(passes[0]);
  } else {
    step->fn = [passes](Runtime& rt) {
      for (const auto& pass : passes) pass(rt);
    };
  }
  b.bind(n.outputs[0], y);
}

}  // namespace bricklab::cpu
