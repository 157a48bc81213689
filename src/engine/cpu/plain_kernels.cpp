// Plain C++ kernels for operators that move data or that oneDNN has no primitive for (views,
// Transpose, Slice, Gather, Split, Pad, Expand, Tile, Resize, Erf, Cast, Where, comparisons,
// broadcasting fallbacks). They read and write plain row-major slots.
#include <omp.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <cstring>

#include "cpu_internal.hpp"

namespace bricklab::cpu {
namespace {

const Value& val(PlanBuilder& b, int v) { return b.graph.values[size_t(v)]; }

[[noreturn]] void unsupported(PlanBuilder& b, const Node& n, const std::string& why) { throw UnsupportedError(b.where(n), why); }

std::vector<int64_t> row_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// Strides of `in` read as if broadcast to `out` (0 on broadcast axes), right-aligned.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  if (in.size() > out.size()) throw ShapeError("cannot broadcast " + shape_str(in) + " to " + shape_str(out));
  std::vector<int64_t> st(out.size(), 0);
  const auto rs = row_strides(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 && out[off + i] != 1 ? 0 : rs[i];
  return st;
}

// Calls fn(out_flat, src_offset) for every output element, where src_offset follows `strides`.
template <typename Fn>
void for_each_offset(const Shape& out, const std::vector<int64_t>& strides, int64_t base, Fn&& fn) {
  const int64_t total = shape_numel(out);
  if (total <= 0) return;
  if (out.empty()) {
    fn(0, base);
    return;
  }
  const size_t rank = out.size();
  const int64_t inner = out.back();
  const int64_t outer = total / inner;
#pragma omp parallel for schedule(static) if (total > 65536)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, off = base;
    for (size_t d = rank - 1; d-- > 0;) {
      const int64_t idx = rem % out[d];
      rem /= out[d];
      off += idx * strides[d];
    }
    for (int64_t i = 0; i < inner; ++i) fn(o * inner + i, off + i * strides[rank - 1]);
  }
}

int output_slot(PlanBuilder& b, int value) {
  const Value& v = val(b, value);
  const int s = b.new_slot(v.name, v.dtype, v.shape, plain_md(v.dtype, v.shape));
  b.bind(value, s);
  return s;
}

// Copies element-size chunks: out[i] = in[offset(i)].
void gather_elements(const char* in, char* out, const Shape& out_shape, const std::vector<int64_t>& strides, int64_t base, size_t es) {
  if (es == 4)
    for_each_offset(out_shape, strides, base, [&](int64_t o, int64_t i) { std::memcpy(out + o * 4, in + i * 4, 4); });
  else
    for_each_offset(out_shape, strides, base, [&](int64_t o, int64_t i) { std::memcpy(out + o * es, in + i * es, es); });
}

std::vector<int64_t> ints_of(PlanBuilder& b, const Node& n, int value, const char* what) {
  if (value < 0) return {};
  if (!b.is_constant(value)) unsupported(b, n, std::string(what) + " computed at run time is not supported");
  return val(b, value).data->as_int64();
}

void lower_view(PlanBuilder& b, const Node& n) {
  const int src = b.plain(b.slot_of(n.inputs.at(0)));
  const Value& yv = val(b, n.outputs.at(0));
  if (val(b, n.inputs[0]).numel() != yv.numel()) unsupported(b, n, "view changes the element count");
  const int out = b.new_slot(yv.name, yv.dtype, yv.shape, plain_md(yv.dtype, yv.shape));
  b.slots[size_t(out)].alias_of = src;
  b.bind(n.outputs[0], out);
  for (size_t i = 1; i < n.outputs.size(); ++i) {  // Dropout's mask output: all true at inference
    const int mask = n.outputs[i];
    if (mask < 0) continue;
    if (val(b, mask).consumers.empty() && !val(b, mask).is_graph_output) continue;
    const int m = output_slot(b, mask);
    const int64_t count = val(b, mask).numel();
    add_fn(b, n, "mask", {}, {m})->fn = [=](Runtime& rt) { std::memset(rt.ptr(m), 1, size_t(count)); };
  }
}

void lower_transpose(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const Value& yv = val(b, n.outputs[0]);
  std::vector<int64_t> perm = n.attr_ints("perm");
  if (perm.empty())
    for (size_t d = xv.shape.size(); d-- > 0;) perm.push_back(int64_t(d));
  const auto in_st = row_strides(xv.shape);
  std::vector<int64_t> st;
  for (auto p : perm) st.push_back(in_st.at(size_t(p)));
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const int out = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  const Shape shape = yv.shape;
  add_fn(b, n, "transpose", {src}, {out})->fn = [=](Runtime& rt) {
    gather_elements(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, st, 0, es);
  };
}

void lower_slice(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const Value& yv = val(b, n.outputs[0]);
  const int64_t rank = int64_t(xv.shape.size());
  std::vector<int64_t> starts, ends, axes, steps;
  if (n.opset < 10) {
    starts = n.attr_ints("starts");
    ends = n.attr_ints("ends");
    axes = n.attr_ints("axes");
  } else {
    starts = ints_of(b, n, n.inputs.at(1), "Slice starts");
    ends = ints_of(b, n, n.inputs.at(2), "Slice ends");
    if (n.inputs.size() > 3) axes = ints_of(b, n, n.inputs[3], "Slice axes");
    if (n.inputs.size() > 4) steps = ints_of(b, n, n.inputs[4], "Slice steps");
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(int64_t(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  const auto in_st = row_strides(xv.shape);
  std::vector<int64_t> st = in_st;
  int64_t base = 0;
  for (size_t k = 0; k < axes.size(); ++k) {
    const int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
    const int64_t dim = xv.shape[size_t(axis)];
    int64_t start = starts[k], step = steps[k];
    if (step == 0) unsupported(b, n, "Slice step 0");
    if (start < 0) start += dim;
    start = step > 0 ? std::clamp<int64_t>(start, 0, dim) : std::clamp<int64_t>(start, 0, dim - 1);
    base += start * in_st[size_t(axis)];
    st[size_t(axis)] = in_st[size_t(axis)] * step;
  }
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const int out = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  const Shape shape = yv.shape;
  add_fn(b, n, "slice", {src}, {out})->fn = [=](Runtime& rt) {
    gather_elements(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, st, base, es);
  };
}

void lower_split(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const int64_t rank = int64_t(xv.shape.size());
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += rank;
  const auto in_st = row_strides(xv.shape);
  const int src = b.plain(b.slot_of(n.inputs[0]));
  int64_t offset = 0;
  const size_t es = size_t(dtype_size(xv.dtype));
  for (int o : n.outputs) {
    if (o < 0) continue;
    const Value& yv = val(b, o);
    const int out = output_slot(b, o);
    const int64_t base = offset * in_st[size_t(axis)];
    const Shape shape = yv.shape;
    add_fn(b, n, "split", {src}, {out})->fn = [=](Runtime& rt) {
      gather_elements(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, in_st, base, es);
    };
    offset += yv.shape[size_t(axis)];
  }
}

void lower_gather(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const Value& iv = val(b, n.inputs[1]);
  const Value& yv = val(b, n.outputs[0]);
  const int64_t rank = int64_t(xv.shape.size());
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += rank;
  if (iv.dtype != DType::int64 && iv.dtype != DType::int32) unsupported(b, n, "Gather indices must be int32 or int64");
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) (d < axis ? outer : d > axis ? inner : outer) *= d == axis ? 1 : xv.shape[size_t(d)];
  const int64_t dim = xv.shape[size_t(axis)];
  const int64_t count = iv.numel();
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const int idx = b.slot_of(n.inputs[1]);
  const int out = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  const bool i64 = iv.dtype == DType::int64;
  const std::string name = n.name;
  (void)yv;
  add_fn(b, n, "gather", {src, idx}, {out})->fn = [=](Runtime& rt) {
    const char* x = static_cast<const char*>(rt.ptr(src));
    char* y = static_cast<char*>(rt.ptr(out));
    for (int64_t k = 0; k < count; ++k) {
      int64_t i = i64 ? rt.data<int64_t>(idx)[k] : rt.data<int32_t>(idx)[k];
      if (i < 0) i += dim;
      if (i < 0 || i >= dim) throw InvalidArgument("node '" + name + "' (Gather): index " + std::to_string(i) + " out of range [0, " + std::to_string(dim) + ")");
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(y + size_t((o * count + k) * inner) * es, x + size_t((o * dim + i) * inner) * es, size_t(inner) * es);
    }
  };
}

void lower_expand_tile(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const Value& yv = val(b, n.outputs[0]);
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const int out = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  const Shape shape = yv.shape;
  if (n.op == "Expand") {
    const auto st = broadcast_strides(xv.shape, yv.shape);
    add_fn(b, n, "expand", {src}, {out})->fn = [=](Runtime& rt) {
      gather_elements(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, st, 0, es);
    };
    return;
  }
  const Shape in_shape = xv.shape;
  const auto in_st = row_strides(xv.shape);
  add_fn(b, n, "tile", {src}, {out})->fn = [=](Runtime& rt) {
    const char* x = static_cast<const char*>(rt.ptr(src));
    char* y = static_cast<char*>(rt.ptr(out));
    const int64_t total = shape_numel(shape);
    for (int64_t o = 0; o < total; ++o) {
      int64_t rem = o, off = 0;
      for (size_t d = shape.size(); d-- > 0;) {
        off += ((rem % shape[d]) % in_shape[d]) * in_st[d];
        rem /= shape[d];
      }
      std::memcpy(y + size_t(o) * es, x + size_t(off) * es, es);
    }
  };
}

void lower_pad(PlanBuilder& b, const Node& n) {
  const int self = b.graph.values[size_t(n.outputs.at(0))].producer;
  if (!pad_folded_into_pool(b, self).empty()) return;  // the AveragePool after it pads instead
  const Value& xv = val(b, n.inputs[0]);
  const Value& yv = val(b, n.outputs[0]);
  if (xv.dtype != DType::float32) unsupported(b, n, "only float32 Pad is supported");
  const std::vector<int64_t> pads = n.opset < 11 ? n.attr_ints("pads") : ints_of(b, n, n.inputs.at(1), "Pad pads");
  float value = float(n.attr_float("value", 0.0));
  if (n.opset >= 11 && n.inputs.size() > 2 && n.inputs[2] >= 0) {
    if (!b.is_constant(n.inputs[2])) unsupported(b, n, "Pad value computed at run time is not supported");
    value = float(val(b, n.inputs[2]).data->as_double().at(0));
  }
  const std::string mode = n.attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge") unsupported(b, n, "Pad mode '" + mode + "' is not supported");
  const size_t rank = xv.shape.size();
  if (pads.size() != 2 * rank) unsupported(b, n, "pads must have 2 x rank entries");
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) {
    // Nothing to pad (PyTorch exports AvgPool2d as a zero Pad + AveragePool): the output is the
    // input, in whatever layout it has, so the pooling after it needs no reorder.
    const int src = b.slot_of(n.inputs[0]);
    const int out = b.new_slot(yv.name, yv.dtype, yv.shape, b.slots[size_t(src)].md);
    b.slots[size_t(out)].alias_of = src;
    b.bind(n.outputs[0], out);
    return;
  }
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const int out = output_slot(b, n.outputs[0]);
  const Shape in = xv.shape, shape = yv.shape;
  const auto in_st = row_strides(in);
  add_fn(b, n, "pad", {src}, {out})->fn = [=](Runtime& rt) {
    const float* x = rt.data<float>(src);
    float* y = rt.data<float>(out);
    const int64_t total = shape_numel(shape);
#pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t o = 0; o < total; ++o) {
      int64_t rem = o, off = 0;
      bool outside = false;
      for (size_t d = rank; d-- > 0;) {
        int64_t i = rem % shape[d] - pads[d];
        rem /= shape[d];
        const int64_t len = in[d];
        if (i < 0 || i >= len) {
          if (mode == "constant") { outside = true; break; }
          if (mode == "edge") i = std::clamp<int64_t>(i, 0, len - 1);
          else {  // reflect
            const int64_t period = 2 * (len - 1);
            i = period > 0 ? std::abs(i) % period : 0;
            if (i >= len) i = period - i;
          }
        }
        off += i * in_st[d];
      }
      y[o] = outside ? value : x[off];
    }
  };
}

// Resize (opset 10+) / Upsample: nearest and linear over any axes, with ONNX's coordinate modes.
void lower_resize(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const Value& yv = val(b, n.outputs[0]);
  if (xv.dtype != DType::float32) unsupported(b, n, "only float32 Resize is supported");
  const std::string mode = n.attr_string("mode", "nearest");
  const std::string coord = n.attr_string("coordinate_transformation_mode", n.opset >= 11 ? "half_pixel" : "asymmetric");
  const std::string nearest_mode = n.attr_string("nearest_mode", "round_prefer_floor");
  if (mode != "nearest" && mode != "linear" && mode != "bilinear") unsupported(b, n, "Resize mode '" + mode + "' is not supported");
  if (coord == "tf_crop_and_resize") unsupported(b, n, "tf_crop_and_resize is not supported");
  const size_t rank = xv.shape.size();
  // Scales as ONNX defines them: given scales, else output / input.
  std::vector<double> scales(rank);
  std::vector<double> given;
  const int scales_input = n.op == "Upsample" ? 1 : (n.opset >= 11 ? 2 : 1);
  if (int(n.inputs.size()) > scales_input && n.inputs[size_t(scales_input)] >= 0 && b.is_constant(n.inputs[size_t(scales_input)]))
    given = val(b, n.inputs[size_t(scales_input)]).data->as_double();
  for (size_t d = 0; d < rank; ++d)
    scales[d] = given.size() == rank ? given[d] : double(yv.shape[d]) / double(xv.shape[d]);
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const int out = output_slot(b, n.outputs[0]);
  const Shape in = xv.shape, shape = yv.shape;
  if (rank > 8) unsupported(b, n, "Resize of rank > 8 is not supported");
  const auto in_st = row_strides(in);
  auto source_coord = [&](size_t d, int64_t o) {
    const double s = scales[d];
    const double len_in = double(in[d]), len_out = double(shape[d]);
    if (coord == "asymmetric") return double(o) / s;
    if (coord == "align_corners") return len_out > 1 ? double(o) * (len_in - 1) / (len_out - 1) : 0.0;
    if (coord == "pytorch_half_pixel") return len_out > 1 ? (double(o) + 0.5) / s - 0.5 : 0.0;
    return (double(o) + 0.5) / s - 0.5;  // half_pixel
  };
  // Per axis, per output index: the two source indices and the weight of the upper one, computed
  // once here (nearest: both indices equal, weight 0). Resizing is separable.
  struct Axis {
    std::vector<int64_t> lo, hi;
    std::vector<float> w;
    bool identity = true;
  };
  const bool linear = mode != "nearest";
  std::vector<Axis> axes(rank);
  for (size_t d = 0; d < rank; ++d) {
    Axis& a = axes[d];
    a.identity = shape[d] == in[d];
    a.lo.resize(size_t(shape[d]));
    a.hi.resize(size_t(shape[d]));
    a.w.assign(size_t(shape[d]), 0.f);
    for (int64_t i = 0; i < shape[d]; ++i) {
      if (a.identity) {
        a.lo[size_t(i)] = a.hi[size_t(i)] = i;
        continue;
      }
      const double c = source_coord(d, i);
      if (linear) {
        const double cc = std::clamp(c, 0.0, double(in[d] - 1));
        a.lo[size_t(i)] = int64_t(std::floor(cc));
        a.hi[size_t(i)] = std::min<int64_t>(a.lo[size_t(i)] + 1, in[d] - 1);
        a.w[size_t(i)] = a.hi[size_t(i)] == a.lo[size_t(i)] ? 0.f : float(cc - double(a.lo[size_t(i)]));
      } else {
        double r;
        if (nearest_mode == "floor") r = std::floor(c);
        else if (nearest_mode == "ceil") r = std::ceil(c);
        else if (nearest_mode == "round_prefer_ceil") r = std::floor(c + 0.5);
        else r = (c - std::floor(c) == 0.5) ? std::floor(c) : std::round(c);
        a.lo[size_t(i)] = a.hi[size_t(i)] = std::clamp<int64_t>(int64_t(r), 0, in[d] - 1);
      }
    }
  }
  // The usual case: only the last one or two axes change (images): rows of planes.
  bool planar = rank >= 2;
  for (size_t d = 0; d + 2 < rank; ++d) planar = planar && axes[d].identity;
  if (planar) {
    const int64_t planes = shape_numel(Shape(shape.begin(), shape.end() - 2));
    const int64_t ho = shape[rank - 2], wo = shape[rank - 1], hi_ = in[rank - 2], wi = in[rank - 1];
    const Axis ay = axes[rank - 2], ax = axes[rank - 1];
    add_fn(b, n, "resize", {src}, {out})->fn = [=](Runtime& rt) {
      const float* x = rt.data<float>(src);
      float* y = rt.data<float>(out);
#pragma omp parallel for schedule(static) if (planes * ho * wo > 16384)
      for (int64_t row = 0; row < planes * ho; ++row) {
        const int64_t p = row / ho, oy = row % ho;
        const float* r0 = x + (p * hi_ + ay.lo[size_t(oy)]) * wi;
        const float* r1 = x + (p * hi_ + ay.hi[size_t(oy)]) * wi;
        const float fy = ay.w[size_t(oy)];
        float* yr = y + row * wo;
        for (int64_t ox = 0; ox < wo; ++ox) {
          const int64_t x0 = ax.lo[size_t(ox)], x1 = ax.hi[size_t(ox)];
          const float fx = ax.w[size_t(ox)];
          const float top = r0[x0] + fx * (r0[x1] - r0[x0]);
          const float bottom = r1[x0] + fx * (r1[x1] - r1[x0]);
          yr[ox] = top + fy * (bottom - top);
        }
      }
    };
    return;
  }
  add_fn(b, n, "resize", {src}, {out})->fn = [=](Runtime& rt) {
    const float* x = rt.data<float>(src);
    float* y = rt.data<float>(out);
    const int64_t total = shape_numel(shape);
#pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t o = 0; o < total; ++o) {
      int64_t idx[8];
      int64_t rem = o;
      for (size_t d = rank; d-- > 0;) {
        idx[d] = rem % shape[d];
        rem /= shape[d];
      }
      // Sum over the 2^k corners of the interpolation cell.
      double acc = 0;
      const size_t corners = size_t(1) << rank;
      for (size_t m = 0; m < corners; ++m) {
        double w = 1;
        int64_t off = 0;
        bool skip = false;
        for (size_t d = 0; d < rank && !skip; ++d) {
          const Axis& a = axes[d];
          const size_t i = size_t(idx[d]);
          const bool up = (m >> d) & 1;
          if (up && a.hi[i] == a.lo[i]) { skip = true; break; }
          w *= up ? a.w[i] : (a.hi[i] == a.lo[i] ? 1.0 : 1.0 - a.w[i]);
          off += (up ? a.hi[i] : a.lo[i]) * in_st[d];
        }
        if (!skip) acc += w * double(x[off]);
      }
      y[o] = float(acc);
    }
  };
}

// Elementwise ops with numpy broadcasting, for what oneDNN does not cover.
void lower_elementwise(PlanBuilder& b, const Node& n) {
  const std::string& op_name = n.op;
  static const std::vector<std::string> known = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Sum", "Mean", "Erf", "Floor",
                                                 "Ceil", "Round", "Sign", "Sin", "Cos", "Selu", "Softsign", "Cast", "Where", "Equal",
                                                 "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
                                                 "Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Sqrt", "Exp", "Log", "Reciprocal",
                                                 "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Elu", "Softplus", "PRelu", "Identity"};
  if (std::find(known.begin(), known.end(), op_name) == known.end()) unsupported(b, n, "operator '" + op_name + "' has no CPU kernel yet");
  const Value& yv = val(b, n.outputs.at(0));
  std::vector<int> srcs;
  std::vector<std::vector<int64_t>> strides;
  std::vector<DType> types;
  for (int v : n.inputs) {
    if (v < 0) continue;
    srcs.push_back(b.plain(b.slot_of(v)));
    strides.push_back(broadcast_strides(val(b, v).shape, yv.shape));
    types.push_back(val(b, v).dtype);
  }
  const int out = output_slot(b, n.outputs[0]);
  const Shape shape = yv.shape;
  const std::string op = n.op;
  const DType out_t = yv.dtype;
  auto get = [](const Runtime& rt, int slot, DType t, int64_t i) -> double {
    switch (t) {
      case DType::float32: return rt.data<float>(slot)[i];
      case DType::int64: return double(rt.data<int64_t>(slot)[i]);
      case DType::int32: return rt.data<int32_t>(slot)[i];
      case DType::boolean:
      case DType::uint8: return rt.data<uint8_t>(slot)[i];
      case DType::float64: return rt.data<double>(slot)[i];
      default: return 0;
    }
  };
  for (DType t : types)
    if (t != DType::float32 && t != DType::int64 && t != DType::int32 && t != DType::boolean && t != DType::uint8 && t != DType::float64)
      unsupported(b, n, "element type " + dtype_name(t) + " is not supported");
  const float alpha = float(n.attr_float("alpha", op == "Selu" ? 1.67326319217681884765625 : 1.0));
  const float gamma = float(n.attr_float("gamma", 1.05070102214813232421875));
  double clip_lo = -INFINITY, clip_hi = INFINITY;
  if (op == "Clip") {
    if (n.opset < 11) {
      clip_lo = n.attr_float("min", -INFINITY);
      clip_hi = n.attr_float("max", INFINITY);
    } else {
      if (n.inputs.size() > 1 && n.inputs[1] >= 0) clip_lo = val(b, n.inputs[1]).data->as_double().at(0);
      if (n.inputs.size() > 2 && n.inputs[2] >= 0) clip_hi = val(b, n.inputs[2]).data->as_double().at(0);
      srcs.resize(1);
    }
  }
  const double hs_alpha = n.attr_float("alpha", 0.2), hs_beta = n.attr_float("beta", 0.5);
  const int64_t fmod_attr = n.attr_int("fmod", 0);
  // Fast path: float32 in and out, no broadcasting, a unary activation or a plain binary op. The
  // operator is resolved here, once, not per element.
  bool dense = out_t == DType::float32;
  for (size_t j = 0; j < srcs.size(); ++j) dense = dense && types[j] == DType::float32 && val(b, n.inputs[j]).shape == shape;
  if (dense && srcs.size() == 1) {
    const float fa = alpha, ha = float(hs_alpha), hb = float(hs_beta), lo = float(clip_lo), hi = float(clip_hi);
    std::function<void(const float*, float*, int64_t)> kernel;
    auto unary = [](auto f) {
      return [f](const float* x, float* y, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
        for (int64_t i = 0; i < count; ++i) y[i] = f(x[i]);
      };
    };
    if (op == "HardSigmoid") kernel = unary([ha, hb](float v) { return std::min(std::max(ha * v + hb, 0.f), 1.f); });
    else if (op == "HardSwish") kernel = unary([](float v) { return v * std::min(std::max(v * (1.f / 6) + 0.5f, 0.f), 1.f); });
    else if (op == "Relu") kernel = unary([](float v) { return std::max(v, 0.f); });
    else if (op == "Clip") kernel = unary([lo, hi](float v) { return std::min(std::max(v, lo), hi); });
    else if (op == "LeakyRelu") kernel = unary([fa](float v) { return v >= 0 ? v : fa * v; });
    else if (op == "Neg") kernel = unary([](float v) { return -v; });
    else if (op == "Abs") kernel = unary([](float v) { return std::fabs(v); });
    else if (op == "Identity" || op == "Cast") kernel = unary([](float v) { return v; });
    if (kernel) {
      const int64_t count = shape_numel(shape);
      const int x = srcs[0];
      add_fn(b, n, "elementwise", srcs, {out})->fn = [=](Runtime& rt) { kernel(rt.data<float>(x), rt.data<float>(out), count); };
      return;
    }
  }
  if (dense && srcs.size() == 2 && (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Max" || op == "Min")) {
    const int opc = op == "Add" ? 0 : op == "Sub" ? 1 : op == "Mul" ? 2 : op == "Div" ? 3 : op == "Max" ? 4 : 5;
    const int64_t count = shape_numel(shape);
    const int x0 = srcs[0], x1 = srcs[1];
    add_fn(b, n, "elementwise", srcs, {out})->fn = [=](Runtime& rt) {
      const float* a = rt.data<float>(x0);
      const float* c = rt.data<float>(x1);
      float* y = rt.data<float>(out);
      switch (opc) {
#define BRICKLAB_BINARY_LOOP(expr)                                  \
  _Pragma("omp parallel for schedule(static) if (count > 65536)") \
  for (int64_t i = 0; i < count; ++i) y[i] = (expr);              \
  break;
        case 0: BRICKLAB_BINARY_LOOP(a[i] + c[i])
        case 1: BRICKLAB_BINARY_LOOP(a[i] - c[i])
        case 2: BRICKLAB_BINARY_LOOP(a[i] * c[i])
        case 3: BRICKLAB_BINARY_LOOP(a[i] / c[i])
        case 4: BRICKLAB_BINARY_LOOP(std::max(a[i], c[i]))
        default: BRICKLAB_BINARY_LOOP(std::min(a[i], c[i]))
#undef BRICKLAB_BINARY_LOOP
      }
    };
    return;
  }
  add_fn(b, n, "elementwise", srcs, {out})->fn = [=](Runtime& rt) {
    const int64_t total = shape_numel(shape);
    const size_t k = srcs.size();
#pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t o = 0; o < total; ++o) {
      double a[3] = {0, 0, 0};
      for (size_t j = 0; j < k && j < 3; ++j) {
        int64_t rem = o, off = 0;
        for (size_t d = shape.size(); d-- > 0;) {
          off += (rem % shape[d]) * strides[j][d];
          rem /= shape[d];
        }
        a[j] = get(rt, srcs[j], types[j], off);
      }
      double r = 0;
      if (op == "Add" || op == "Sum" || op == "Mean") {
        r = 0;
        for (size_t j = 0; j < k; ++j) {
          int64_t rem = o, off = 0;
          for (size_t d = shape.size(); d-- > 0;) {
            off += (rem % shape[d]) * strides[j][d];
            rem /= shape[d];
          }
          r += get(rt, srcs[j], types[j], off);
        }
        if (op == "Mean") r /= double(k);
      } else if (op == "Sub") r = a[0] - a[1];
      else if (op == "Mul") r = a[0] * a[1];
      else if (op == "Div") r = out_t == DType::float32 || out_t == DType::float64 ? a[0] / a[1] : std::trunc(a[0] / a[1]);
      else if (op == "Pow") r = std::pow(a[0], a[1]);
      else if (op == "Max") r = std::max(a[0], a[1]);
      else if (op == "Min") r = std::min(a[0], a[1]);
      else if (op == "Mod") { r = std::fmod(a[0], a[1]); if (!fmod_attr && r != 0 && ((r < 0) != (a[1] < 0))) r += a[1]; }
      else if (op == "Erf") r = std::erf(a[0]);
      else if (op == "Floor") r = std::floor(a[0]);
      else if (op == "Ceil") r = std::ceil(a[0]);
      else if (op == "Round") r = std::nearbyint(a[0]);
      else if (op == "Sign") r = (a[0] > 0) - (a[0] < 0);
      else if (op == "Sin") r = std::sin(a[0]);
      else if (op == "Cos") r = std::cos(a[0]);
      else if (op == "Selu") r = a[0] > 0 ? gamma * a[0] : gamma * alpha * (std::exp(a[0]) - 1);
      else if (op == "Softsign") r = a[0] / (1 + std::fabs(a[0]));
      else if (op == "Cast" || op == "Identity") r = a[0];
      else if (op == "Where") r = a[0] != 0 ? a[1] : a[2];
      else if (op == "Equal") r = a[0] == a[1];
      else if (op == "Less") r = a[0] < a[1];
      else if (op == "Greater") r = a[0] > a[1];
      else if (op == "LessOrEqual") r = a[0] <= a[1];
      else if (op == "GreaterOrEqual") r = a[0] >= a[1];
      else if (op == "Not") r = a[0] == 0;
      else if (op == "And") r = (a[0] != 0) && (a[1] != 0);
      else if (op == "Or") r = (a[0] != 0) || (a[1] != 0);
      else if (op == "Xor") r = (a[0] != 0) != (a[1] != 0);
      else if (op == "Relu") r = std::max(a[0], 0.0);
      else if (op == "Sigmoid") r = 1 / (1 + std::exp(-a[0]));
      else if (op == "Tanh") r = std::tanh(a[0]);
      else if (op == "Abs") r = std::fabs(a[0]);
      else if (op == "Neg") r = -a[0];
      else if (op == "Sqrt") r = std::sqrt(a[0]);
      else if (op == "Exp") r = std::exp(a[0]);
      else if (op == "Log") r = std::log(a[0]);
      else if (op == "Reciprocal") r = 1 / a[0];
      else if (op == "LeakyRelu") r = a[0] >= 0 ? a[0] : alpha * a[0];
      else if (op == "PRelu") r = a[0] >= 0 ? a[0] : a[1] * a[0];
      else if (op == "Clip") r = std::min(std::max(a[0], clip_lo), clip_hi);
      else if (op == "HardSigmoid") r = std::clamp(hs_alpha * a[0] + hs_beta, 0.0, 1.0);
      else if (op == "HardSwish") r = a[0] * std::clamp(a[0] / 6 + 0.5, 0.0, 1.0);
      else if (op == "Elu") r = a[0] >= 0 ? a[0] : alpha * (std::exp(a[0]) - 1);
      else if (op == "Softplus") r = std::log1p(std::exp(a[0]));
      switch (out_t) {
        case DType::float32: rt.data<float>(out)[o] = float(r); break;
        case DType::float64: rt.data<double>(out)[o] = r; break;
        case DType::int64: rt.data<int64_t>(out)[o] = int64_t(r); break;
        case DType::int32: rt.data<int32_t>(out)[o] = int32_t(r); break;
        case DType::boolean:
        case DType::uint8: rt.data<uint8_t>(out)[o] = uint8_t(r != 0 && out_t == DType::boolean ? 1 : r); break;
        default: break;
      }
    }
  };
}

void lower_concat_plain(PlanBuilder& b, const Node& n) {
  const Value& yv = val(b, n.outputs[0]);
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += int64_t(yv.shape.size());
  const int out = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(yv.dtype));
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= yv.shape[size_t(d)];
  int64_t out_row = 1;
  for (size_t d = size_t(axis); d < yv.shape.size(); ++d) out_row *= yv.shape[d];
  std::vector<int> srcs;
  std::vector<int64_t> rows;
  for (int v : n.inputs) {
    if (v < 0) continue;
    srcs.push_back(b.plain(b.slot_of(v)));
    int64_t r = 1;
    for (size_t d = size_t(axis); d < val(b, v).shape.size(); ++d) r *= val(b, v).shape[d];
    rows.push_back(r);
  }
  add_fn(b, n, "concat", srcs, {out})->fn = [=](Runtime& rt) {
    char* y = static_cast<char*>(rt.ptr(out));
    for (int64_t o = 0; o < outer; ++o) {
      int64_t at = 0;
      for (size_t j = 0; j < srcs.size(); ++j) {
        std::memcpy(y + size_t(o * out_row + at) * es, static_cast<const char*>(rt.ptr(srcs[j])) + size_t(o * rows[j]) * es, size_t(rows[j]) * es);
        at += rows[j];
      }
    }
  };
}

// ScatterND (reduction none): out = data; out[indices[i]] = updates[i].
void lower_scatter_nd(PlanBuilder& b, const Node& n) {
  const Value& dv = val(b, n.inputs.at(0));
  const Value& iv = val(b, n.inputs.at(1));
  const Value& uv = val(b, n.inputs.at(2));
  if (n.attr_string("reduction", "none") != "none") unsupported(b, n, "ScatterND with a reduction is not supported");
  if (iv.dtype != DType::int64 || iv.shape.empty()) unsupported(b, n, "ScatterND indices must be int64");
  const int64_t k = iv.shape.back();
  if (k > int64_t(dv.shape.size())) unsupported(b, n, "ScatterND index depth exceeds the data rank");
  int64_t slice = 1;
  for (size_t d = size_t(k); d < dv.shape.size(); ++d) slice *= dv.shape[d];
  const int64_t count = iv.numel() / std::max<int64_t>(k, 1);
  const auto st = row_strides(dv.shape);
  const Shape dshape = dv.shape;
  const size_t es = size_t(dtype_size(dv.dtype));
  (void)uv;
  const int data = b.plain(b.slot_of(n.inputs[0])), idx = b.slot_of(n.inputs[1]), upd = b.plain(b.slot_of(n.inputs[2]));
  const int out = output_slot(b, n.outputs[0]);
  const std::string name = n.name;
  add_fn(b, n, "scatter", {data, idx, upd}, {out})->fn = [=](Runtime& rt) {
    std::memcpy(rt.ptr(out), rt.ptr(data), size_t(shape_numel(dshape)) * es);
    const int64_t* ind = rt.data<int64_t>(idx);
    for (int64_t i = 0; i < count; ++i) {
      int64_t off = 0;
      for (int64_t d = 0; d < k; ++d) {
        int64_t v = ind[i * k + d];
        if (v < 0) v += dshape[size_t(d)];
        if (v < 0 || v >= dshape[size_t(d)]) throw InvalidArgument("node '" + name + "' (ScatterND): index out of range");
        off += v * st[size_t(d)];
      }
      std::memcpy(static_cast<char*>(rt.ptr(out)) + size_t(off) * es, static_cast<const char*>(rt.ptr(upd)) + size_t(i * slice) * es,
                  size_t(slice) * es);
    }
  };
}

// Shape / Size / ConstantOfShape / Range produce values known at compile time (all dims are bound).
void lower_static(PlanBuilder& b, const Node& n) {
  const Value& yv = val(b, n.outputs[0]);
  std::vector<int64_t> values;
  if (n.op == "Shape") {
    const Shape& s = val(b, n.inputs[0]).shape;
    const int64_t rank = int64_t(s.size());
    int64_t start = n.attr_int("start", 0), end = n.attr_int("end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, 0, rank);
    values.assign(s.begin() + start, s.begin() + std::max(start, end));
  } else if (n.op == "Size") {
    values = {val(b, n.inputs[0]).numel()};
  }
  const int out = output_slot(b, n.outputs[0]);
  double fill = 0;
  if (n.op == "ConstantOfShape") {
    auto it = n.attrs.find("value");
    if (it != n.attrs.end())
      if (auto* t = std::get_if<TensorData>(&it->second)) fill = t->has_values() ? t->as_double().at(0) : 0.0;
  } else if (n.op != "Shape" && n.op != "Size") {
    unsupported(b, n, "operator '" + n.op + "' has no CPU kernel yet");
  }
  const DType t = yv.dtype;
  const int64_t total = yv.numel();
  add_fn(b, n, "static", {}, {out})->fn = [=](Runtime& rt) {
    for (int64_t i = 0; i < total; ++i) {
      const double v = values.empty() ? fill : double(values[size_t(i)]);
      switch (t) {
        case DType::float32: rt.data<float>(out)[i] = float(v); break;
        case DType::int64: rt.data<int64_t>(out)[i] = int64_t(v); break;
        case DType::int32: rt.data<int32_t>(out)[i] = int32_t(v); break;
        default: rt.data<uint8_t>(out)[i] = uint8_t(v); break;
      }
    }
  };
}

}  // namespace

void lower_plain(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const std::string& op = n.op;
  if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity" || op == "Dropout") return lower_view(b, n);
  if (op == "Transpose") return lower_transpose(b, n);
  if (op == "Slice") return lower_slice(b, n);
  if (op == "Split") return lower_split(b, n);
  if (op == "Gather") return lower_gather(b, n);
  if (op == "Expand" || op == "Tile") return lower_expand_tile(b, n);
  if (op == "Pad") return lower_pad(b, n);
  if (op == "Resize" || op == "Upsample") return lower_resize(b, n);
  if (op == "Concat") return lower_concat_plain(b, n);
  if (op == "ScatterND") return lower_scatter_nd(b, n);
  if (op == "Shape" || op == "Size" || op == "ConstantOfShape") return lower_static(b, n);
  if (op == "Constant") {
    b.bind(n.outputs[0], b.slot_of(n.outputs[0]));
    return;
  }
  return lower_elementwise(b, n);
}

}  // namespace bricklab::cpu
