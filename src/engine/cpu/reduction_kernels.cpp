// Plain C++ kernels for reductions oneDNN has no primitive for, or not for the element type:
// the Reduce* family over any axes, ArgMax / ArgMin, CumSum, InstanceNormalization and LpPool.
// Attribute defaults and window arithmetic come from the operator table (NodeAttrs), never from
// fallbacks written here. Accumulation is in double (float inputs) or the integer type.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bricklab/ops/registry.hpp"
#include "cpu_internal.hpp"

namespace bricklab::cpu {

namespace {





std::vector<int64_t> constant_ints(PlanBuilder& b, const Node& n, int value, const char* what) {
  if (!b.is_constant(value)) unsupported(b, n, std::string(what) + " computed at run time is not supported");
  return val(b, value).data->as_int64();
}

// The input viewed as [outer, reduced, inner] around one axis.
struct AxisView {
  int64_t outer = 1, len = 1, inner = 1;
};
AxisView around(const Shape& s, int64_t axis) {
  AxisView v;
  for (size_t d = 0; d < s.size(); ++d) (int64_t(d) < axis ? v.outer : int64_t(d) > axis ? v.inner : v.len) *= s[d];
  return v;
}

// ---- Reduce* ---------------------------------------------------------------------------------

enum class Reduce { sum, mean, max, min, prod, l1, l2, sum_square, log_sum, log_sum_exp };

// The reduction is a template parameter: the inner loop carries no per-element dispatch.
template <Reduce kind>
void lower_reduce_plain(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& yv = val(b, n.outputs.at(0));
  const NodeAttrs attrs(b.graph, n);
  const int64_t rank = int64_t(xv.shape.size());
  // Axes: an input from opset 13 (ReduceSum) / 18 (the others), else an attribute.
  std::vector<int64_t> axes;
  if (n.inputs.size() > 1 && n.inputs[1] >= 0) axes = constant_ints(b, n, n.inputs[1], "Reduce axes");
  else if (attrs.has("axes")) axes = attrs.ints("axes");
  const bool noop = attrs.has("noop_with_empty_axes") && attrs.integer("noop_with_empty_axes") != 0;
  std::vector<bool> reduced(size_t(rank), axes.empty() && !noop);
  for (int64_t a : axes) {
    const int64_t d = checked_axis(b, n, a, rank);
    if (reduced[size_t(d)]) throw ShapeError(b.where(n), "axis " + std::to_string(a) + " is given twice");
    reduced[size_t(d)] = true;
  }
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  const auto st = row_strides(xv.shape);
  // Kept dims (output order) and reduced dims, with their input strides.
  std::vector<int64_t> kept_dims, kept_st, red_dims, red_st;
  for (int64_t d = 0; d < rank; ++d) {
    (reduced[size_t(d)] ? red_dims : kept_dims).push_back(xv.shape[size_t(d)]);
    (reduced[size_t(d)] ? red_st : kept_st).push_back(st[size_t(d)]);
  }
  int64_t outputs = 1, count = 1;
  for (auto d : kept_dims) outputs *= d;
  for (auto d : red_dims) count *= d;
  if (outputs != yv.numel()) throw ShapeError(b.where(n), "output " + shape_str(yv.shape) + " does not match the reduction");
  // Over an empty set ONNX defines the identities: 0 (sums, norms), 1 (product), -inf (max,
  // log-sum, log-sum-exp), +inf (min), or the type's limits for integers; the mean it leaves
  // undefined (the operator table refuses it before lowering).
  if constexpr (kind == Reduce::mean)
    if (count == 0) throw ShapeError(b.where(n), "ReduceMean over an empty set of values is undefined in ONNX");
  dispatch_type<true, false>(b, n, xv.dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>;
    constexpr bool float_only = kind == Reduce::mean || kind == Reduce::l2 || kind == Reduce::log_sum || kind == Reduce::log_sum_exp;
    if constexpr (!std::is_floating_point_v<T> && float_only) {
      unsupported(b, n, n.op + " of " + dtype_name(xv.dtype) + " is not supported");
    } else {
    add_fn(b, n, "reduce", {x}, {y})->fn = [=](Runtime& rt) {
      const T* xp = rt.data<T>(x);
      T* yp = rt.data<T>(y);
#pragma omp parallel if (outputs * count > 32768)
      {
      std::vector<int64_t> idx(red_dims.size(), 0);  // one odometer per thread
#pragma omp for schedule(static)
      for (int64_t o = 0; o < outputs; ++o) {
        int64_t base = 0, rem = o;
        for (size_t d = kept_dims.size(); d-- > 0;) {
          base += (rem % kept_dims[d]) * kept_st[d];
          rem /= kept_dims[d];
        }
        // Max over log-sum-exp: subtract the maximum first so exp cannot overflow.
        double shift = 0;
        if constexpr (std::is_floating_point_v<T>) {
          if constexpr (kind == Reduce::log_sum_exp) {
            shift = -INFINITY;
            for (int64_t r = 0; r < count; ++r) {
              int64_t off = base, q = r;
              for (size_t d = red_dims.size(); d-- > 0;) {
                off += (q % red_dims[d]) * red_st[d];
                q /= red_dims[d];
              }
              shift = std::max(shift, double(xp[off]));
            }
            if (!std::isfinite(shift)) shift = 0;
          }
        }
        constexpr bool has_inf = std::numeric_limits<T>::has_infinity;
        Acc acc = kind == Reduce::prod ? Acc(1)
                : kind == Reduce::max  ? Acc(has_inf ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest())
                : kind == Reduce::min  ? Acc(has_inf ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max())
                                       : Acc(0);
        bool nan = false;
        std::fill(idx.begin(), idx.end(), 0);
        int64_t off = base;
        for (int64_t r = 0; r < count; ++r) {
          const Acc v = Acc(xp[off]);
          if constexpr (std::is_floating_point_v<T>) nan = nan || std::isnan(double(xp[off]));
          if constexpr (kind == Reduce::sum || kind == Reduce::mean || kind == Reduce::log_sum) acc += v;
          else if constexpr (kind == Reduce::max) acc = std::max(acc, v);
          else if constexpr (kind == Reduce::min) acc = std::min(acc, v);
          else if constexpr (kind == Reduce::prod) acc *= v;
          else if constexpr (kind == Reduce::l1) acc += std::is_signed_v<Acc> && v < Acc(0) ? Acc(-v) : v;
          else if constexpr (kind == Reduce::l2 || kind == Reduce::sum_square) acc += v * v;
          else acc += std::exp(double(v) - shift);  // log_sum_exp (floats only)
          for (size_t d = red_dims.size(); d-- > 0;) {  // next reduced element
            off += red_st[d];
            if (++idx[d] < red_dims[d]) break;
            off -= idx[d] * red_st[d];
            idx[d] = 0;
          }
        }
        double out = double(acc);
        if constexpr (std::is_floating_point_v<T>) {
          if constexpr (kind == Reduce::mean) out = count ? out / double(count) : NAN;
          else if constexpr (kind == Reduce::l2) out = std::sqrt(out);
          else if constexpr (kind == Reduce::log_sum) out = std::log(out);
          else if constexpr (kind == Reduce::log_sum_exp) out = std::log(out) + shift;
          if (nan && (kind == Reduce::max || kind == Reduce::min)) out = NAN;
          yp[o] = T(out);
        } else {
          yp[o] = T(acc);
        }
      }
      }
    };
    }
  });
}

template <Reduce kind>
void lower_reduce_node(PlanBuilder& b, int index) {
  using alg = dnnl::algorithm;
  if constexpr (kind == Reduce::sum || kind == Reduce::mean || kind == Reduce::max || kind == Reduce::min) {
    constexpr alg a = kind == Reduce::sum    ? alg::reduction_sum
                      : kind == Reduce::mean ? alg::reduction_mean
                      : kind == Reduce::max  ? alg::reduction_max
                                             : alg::reduction_min;
    if (lower_reduce_dnnl(b, index, a)) return;
  }
  lower_reduce_plain<kind>(b, index);
}

// ---- ArgMax / ArgMin -------------------------------------------------------------------------

template <bool is_max>
void lower_arg_reduce(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& yv = val(b, n.outputs.at(0));
  const NodeAttrs attrs(b.graph, n);
  const int64_t axis = checked_axis(b, n, attrs.integer("axis"), int64_t(xv.shape.size()));
  const bool last = attrs.integer("select_last_index") != 0;
  const AxisView v = around(xv.shape, axis);
  if (v.len == 0) throw ShapeError(b.where(n), "reduces an empty axis");
  if (yv.dtype != DType::int64) throw ShapeError(b.where(n), "output must be int64");
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  dispatch_type<true, false>(b, n, xv.dtype, [&](auto tag) {
    using T = decltype(tag);
    add_fn(b, n, "argreduce", {x}, {y})->fn = [=](Runtime& rt) {
      const T* xp = rt.data<T>(x);
      int64_t* yp = rt.data<int64_t>(y);
#pragma omp parallel for schedule(static) if (v.outer * v.inner * v.len > 32768)
      for (int64_t oi = 0; oi < v.outer * v.inner; ++oi) {
        const int64_t o = oi / v.inner, i = oi % v.inner;
        const T* p = xp + o * v.len * v.inner + i;
        int64_t best = 0;
        T bv = p[0];
        for (int64_t k = 1; k < v.len; ++k) {
          const T c = p[k * v.inner];
          const bool better = is_max ? (last ? c >= bv : c > bv) : (last ? c <= bv : c < bv);
          if (better) {
            bv = c;
            best = k;
          }
        }
        yp[oi] = best;
      }
    };
  });
}

// ---- CumSum ----------------------------------------------------------------------------------

void lower_cumsum(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const NodeAttrs attrs(b.graph, n);
  const auto axis_values = constant_ints(b, n, n.inputs.at(1), "CumSum axis");
  if (axis_values.size() != 1) throw ShapeError(b.where(n), "axis must be a scalar");
  const int64_t axis = checked_axis(b, n, axis_values[0], int64_t(xv.shape.size()));
  const bool exclusive = attrs.integer("exclusive") != 0, reverse = attrs.integer("reverse") != 0;
  const AxisView v = around(xv.shape, axis);
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  dispatch_type<true, false>(b, n, xv.dtype, [&](auto tag) {
    using T = decltype(tag);
    add_fn(b, n, "cumsum", {x}, {y})->fn = [=](Runtime& rt) {
      const T* xp = rt.data<T>(x);
      T* yp = rt.data<T>(y);
#pragma omp parallel for schedule(static) if (v.outer * v.inner * v.len > 32768)
      for (int64_t oi = 0; oi < v.outer * v.inner; ++oi) {
        const int64_t o = oi / v.inner, i = oi % v.inner;
        const int64_t base = o * v.len * v.inner + i;
        T acc = T(0);
        for (int64_t s = 0; s < v.len; ++s) {
          const int64_t k = reverse ? v.len - 1 - s : s;
          const T cur = xp[base + k * v.inner];
          if (!exclusive) acc = T(acc + cur);
          yp[base + k * v.inner] = acc;
          if (exclusive) acc = T(acc + cur);
        }
      }
    };
  });
}

// ---- InstanceNormalization -------------------------------------------------------------------

void lower_instance_norm(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& sv = val(b, n.inputs.at(1));
  const Value& bv = val(b, n.inputs.at(2));
  if (xv.dtype != DType::float32) unsupported(b, n, "only float32 InstanceNormalization is supported");
  if (xv.shape.size() < 3) throw ShapeError(b.where(n), "input must have rank >= 3 (N, C, D1, ...), has " + shape_str(xv.shape));
  const int64_t channels = xv.shape[1];
  for (const Value* p : {&sv, &bv})
    if (p->shape != Shape{channels})
      throw ShapeError(b.where(n), "'" + p->name + "' has shape " + shape_str(p->shape) + ", must be [" + std::to_string(channels) + "]");
  const NodeAttrs attrs(b.graph, n);
  const double eps = attrs.real("epsilon");
  const int64_t planes = xv.shape[0] * channels, size = xv.numel() / std::max<int64_t>(planes, 1);
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int s = b.plain(b.slot_of(n.inputs[1]));
  const int bias = b.plain(b.slot_of(n.inputs[2]));
  const int y = output_slot(b, n.outputs[0]);
  add_fn(b, n, "instancenorm", {x, s, bias}, {y})->fn = [=](Runtime& rt) {
    const float* xp = rt.data<float>(x);
    const float* sp = rt.data<float>(s);
    const float* bp = rt.data<float>(bias);
    float* yp = rt.data<float>(y);
#pragma omp parallel for schedule(static) if (planes * size > 32768)
    for (int64_t p = 0; p < planes; ++p) {
      const float* in = xp + p * size;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < size; ++i) mean += in[i];
      mean /= double(size);
      for (int64_t i = 0; i < size; ++i) var += (in[i] - mean) * (in[i] - mean);
      var /= double(size);
      const int64_t c = p % channels;
      const float scale = float(sp[c] / std::sqrt(var + eps)), shift = float(bp[c] - mean * sp[c] / std::sqrt(var + eps));
      float* out = yp + p * size;
      for (int64_t i = 0; i < size; ++i) out[i] = in[i] * scale + shift;
    }
  };
}

// ---- LpPool ----------------------------------------------------------------------------------

void lower_lp_pool(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& yv = val(b, n.outputs.at(0));
  if (xv.dtype != DType::float32) unsupported(b, n, "only float32 LpPool is supported");
  const size_t rank = xv.shape.size();
  if (rank < 3 || yv.shape.size() != rank) throw ShapeError(b.where(n), "input must have rank >= 3 (N, C, D1, ...)");
  const NodeAttrs attrs(b.graph, n);  // kernel, strides, dilations, pads (auto_pad resolved) from the table
  if (attrs.has("auto_pad")) unsupported(b, n, "auto_pad '" + attrs.text("auto_pad") + "' is not supported");
  const size_t sp = rank - 2;
  const auto kernel = attrs.ints("kernel_shape"), strides = attrs.ints("strides"), dil = attrs.ints("dilations"),
             pads = attrs.ints("pads");
  const double p = double(attrs.integer("p"));
  if (kernel.size() != sp || strides.size() != sp || dil.size() != sp || pads.size() != 2 * sp)
    throw ShapeError(b.where(n), "kernel_shape, strides, dilations and pads must cover the " + std::to_string(sp) + " spatial dims");
  if (p <= 0) throw ShapeError(b.where(n), "p must be positive, is " + std::to_string(int64_t(p)));
  const Shape in = xv.shape, out = yv.shape;
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  const auto in_st = row_strides(in);
  const int64_t planes = in[0] * in[1], out_per_plane = shape_numel(Shape(out.begin() + 2, out.end()));
  const int64_t in_per_plane = shape_numel(Shape(in.begin() + 2, in.end()));
  int64_t window = 1;
  for (auto k : kernel) window *= k;
  add_fn(b, n, "lppool", {x}, {y})->fn = [=](Runtime& rt) {
    const float* xp = rt.data<float>(x);
    float* yp = rt.data<float>(y);
#pragma omp parallel if (planes * out_per_plane * window > 32768)
    {
    std::vector<int64_t> o(sp);  // output coordinates, one per thread
#pragma omp for schedule(static)
    for (int64_t q = 0; q < planes * out_per_plane; ++q) {
      const int64_t plane = q / out_per_plane;
      int64_t rem = q % out_per_plane;
      for (size_t d = sp; d-- > 0;) {
        o[d] = rem % out[2 + d];
        rem /= out[2 + d];
      }
      double acc = 0;
      for (int64_t w = 0; w < window; ++w) {
        int64_t wr = w, off = 0;
        bool inside = true;
        for (size_t d = sp; d-- > 0;) {
          const int64_t k = wr % kernel[d];
          wr /= kernel[d];
          const int64_t i = o[d] * strides[d] - pads[d] + k * dil[d];
          if (i < 0 || i >= in[2 + d]) {
            inside = false;
            break;
          }
          off += i * in_st[2 + d];
        }
        if (inside) acc += std::pow(std::fabs(double(xp[plane * in_per_plane + off])), p);
      }
      yp[q] = float(std::pow(acc, 1.0 / p));
    }
    }
  };
}

}  // namespace

void lower_softmax_plain(PlanBuilder& b, const Node& n, bool log, int64_t outer, int64_t len, int64_t inner) {
  const Value& xv = val(b, n.inputs.at(0));
  if (xv.dtype != DType::float64) unsupported(b, n, n.op + " of " + dtype_name(xv.dtype) + " is not supported on the CPU backend");
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  add_fn(b, n, "softmax", {x}, {y})->fn = [=](Runtime& rt) {
    const double* xp = rt.data<double>(x);
    double* yp = rt.data<double>(y);
#pragma omp parallel for schedule(static) if (outer * len * inner > 32768)
    for (int64_t oi = 0; oi < outer * inner; ++oi) {
      const int64_t o = oi / inner, i = oi % inner;
      const double* in = xp + o * len * inner + i;
      double* out = yp + o * len * inner + i;
      double mx = -INFINITY, sum = 0;
      for (int64_t k = 0; k < len; ++k) mx = std::max(mx, in[k * inner]);
      for (int64_t k = 0; k < len; ++k) sum += std::exp(in[k * inner] - mx);
      const double lse = std::log(sum);
      for (int64_t k = 0; k < len; ++k) out[k * inner] = log ? in[k * inner] - mx - lse : std::exp(in[k * inner] - mx) / sum;
    }
  };
}

void register_reduction_lowerings(CpuLowerings& t) {
  t.add({"ReduceSum"}, lower_reduce_node<Reduce::sum>);
  t.add({"ReduceMean"}, lower_reduce_node<Reduce::mean>);
  t.add({"ReduceMax"}, lower_reduce_node<Reduce::max>);
  t.add({"ReduceMin"}, lower_reduce_node<Reduce::min>);
  t.add({"ReduceProd"}, lower_reduce_node<Reduce::prod>);
  t.add({"ReduceL1"}, lower_reduce_node<Reduce::l1>);
  t.add({"ReduceL2"}, lower_reduce_node<Reduce::l2>);
  t.add({"ReduceSumSquare"}, lower_reduce_node<Reduce::sum_square>);
  t.add({"ReduceLogSum"}, lower_reduce_node<Reduce::log_sum>);
  t.add({"ReduceLogSumExp"}, lower_reduce_node<Reduce::log_sum_exp>);
  t.add({"ArgMax"}, lower_arg_reduce<true>);
  t.add({"ArgMin"}, lower_arg_reduce<false>);
  t.add({"CumSum"}, lower_cumsum);
  t.add({"InstanceNormalization"}, lower_instance_norm);
  t.add({"LpPool"}, lower_lp_pool);
}

}  // namespace bricklab::cpu
