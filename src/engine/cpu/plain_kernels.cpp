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


// out[i] = in[base + offset(i)], offset from `strides` over `out_shape` (elements of `es` bytes).
// Output dims that are also contiguous in the input are merged first, and a run that is
// contiguous in the input is copied with one memcpy: a transpose that keeps the innermost
// dims (ShuffleNet's channel shuffle), a slice or split of outer dims copy whole rows.
void strided_copy(const char* in, char* out, const Shape& out_shape, const std::vector<int64_t>& strides, int64_t base, size_t es) {
  Shape dims;
  std::vector<int64_t> st;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    if (out_shape[d] == 1) continue;
    if (!dims.empty() && st.back() == strides[d] * out_shape[d]) {
      dims.back() *= out_shape[d];
      st.back() = strides[d];
      continue;
    }
    dims.push_back(out_shape[d]);
    st.push_back(strides[d]);
  }
  if (dims.empty()) {
    std::memcpy(out, in + base * int64_t(es), es);
    return;
  }
  if (st.back() == 1) {  // rows contiguous in the input: one memcpy per row
    const int64_t row = dims.back();
    const Shape outer(dims.begin(), dims.end() - 1);
    const std::vector<int64_t> outer_st(st.begin(), st.end() - 1);
    const size_t bytes = size_t(row) * es;
    if (outer.empty()) {
      std::memcpy(out, in + base * int64_t(es), bytes);
      return;
    }
    for_each_offset(outer, outer_st, base, [&](int64_t o, int64_t i) { std::memcpy(out + o * int64_t(bytes), in + i * int64_t(es), bytes); });
    return;
  }
  if (es == 4)
    for_each_offset(dims, st, base, [&](int64_t o, int64_t i) { std::memcpy(out + o * 4, in + i * 4, 4); });
  else
    for_each_offset(dims, st, base, [&](int64_t o, int64_t i) { std::memcpy(out + o * int64_t(es), in + i * int64_t(es), es); });
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
    const DType t = val(b, mask).dtype;  // bool from opset 10; the input's float type before
    if (t != DType::boolean && t != DType::float32 && t != DType::float64)
      unsupported(b, n, "a Dropout mask of " + dtype_name(t) + " is not supported");
    add_fn(b, n, "mask", {}, {m})->fn = [=](Runtime& rt) {
      if (t == DType::boolean) std::memset(rt.ptr(m), 1, size_t(count));
      else if (t == DType::float32) std::fill(rt.data<float>(m), rt.data<float>(m) + count, 1.f);
      else std::fill(rt.data<double>(m), rt.data<double>(m) + count, 1.0);
    };
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
    strided_copy(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, st, 0, es);
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
    strided_copy(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, st, base, es);
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
      strided_copy(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, in_st, base, es);
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

// A copy from input 0 to output 0: the plain source slot, a new output slot, the element size and
// both shapes.
struct CopyIo {
  int src, out;
  size_t es;
  Shape in_shape, shape;
};
CopyIo copy_io(PlanBuilder& b, const Node& n) {
  const Value& xv = val(b, n.inputs[0]);
  const int src = b.plain(b.slot_of(n.inputs[0]));
  return {src, output_slot(b, n.outputs[0]), size_t(dtype_size(xv.dtype)), xv.shape, val(b, n.outputs[0]).shape};
}

void lower_expand(PlanBuilder& b, const Node& n) {
  const CopyIo io = copy_io(b, n);
  const int src = io.src, out = io.out;
  const size_t es = io.es;
  const Shape shape = io.shape;
  const auto st = broadcast_strides(io.in_shape, shape);
  add_fn(b, n, "expand", {src}, {out})->fn = [=](Runtime& rt) {
    strided_copy(static_cast<const char*>(rt.ptr(src)), static_cast<char*>(rt.ptr(out)), shape, st, 0, es);
  };
}

void lower_tile(PlanBuilder& b, const Node& n) {
  const CopyIo io = copy_io(b, n);
  const int src = io.src, out = io.out;
  const size_t es = io.es;
  const Shape shape = io.shape, in_shape = io.in_shape;
  const auto in_st = row_strides(in_shape);
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
// `scales_input`: the input that holds the scales (Upsample's 1, Resize-10's 1, Resize-11+'s 2).
void lower_resize(PlanBuilder& b, const Node& n, int scales_input) {
  const Value& xv = val(b, n.inputs[0]);
  const Value& yv = val(b, n.outputs[0]);
  if (xv.dtype != DType::float32) unsupported(b, n, "only float32 Resize is supported");
  const std::string mode = n.attr_string("mode", "nearest");
  const std::string coord = n.attr_string("coordinate_transformation_mode", n.opset >= 11 ? "half_pixel" : "asymmetric");
  // Upsample and Resize-10 take the nearest element below (x / scale, floored), as ONNX Runtime.
  const std::string nearest_mode = n.attr_string("nearest_mode", n.opset >= 11 ? "round_prefer_floor" : "floor");
  if (mode != "nearest" && mode != "linear" && mode != "bilinear" && mode != "cubic" && mode != "bicubic")
    unsupported(b, n, "Resize mode '" + mode + "' is not supported");
  if (coord == "tf_crop_and_resize") unsupported(b, n, "tf_crop_and_resize is not supported");
  const size_t rank = xv.shape.size();
  // Scales as ONNX defines them: given scales, else output / input.
  std::vector<double> scales(rank);
  std::vector<double> given;
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
  if (mode == "cubic" || mode == "bicubic") {
    // Four taps per resized axis (Keys' cubic convolution with coefficient a), indices clamped to
    // the edge; exclude_outside drops the taps outside the input and renormalises the rest.
    const double A = n.attr_float("cubic_coeff_a", -0.75);
    const bool exclude = n.attr_int("exclude_outside", 0) != 0;
    struct Taps {
      int64_t count = 1;
      std::vector<int64_t> idx;  // count per output index
      std::vector<float> w;
    };
    std::vector<Taps> taps(rank);
    for (size_t d = 0; d < rank; ++d) {
      Taps& t = taps[d];
      if (shape[d] == in[d] && scales[d] == 1.0) {
        for (int64_t i = 0; i < shape[d]; ++i) {
          t.idx.push_back(i);
          t.w.push_back(1.f);
        }
        continue;
      }
      t.count = 4;
      for (int64_t i = 0; i < shape[d]; ++i) {
        const double c = source_coord(d, i);
        const double base = std::floor(c), f = c - base;
        const double dist[4] = {1 + f, f, 1 - f, 2 - f};
        double w[4], total = 0;
        for (int k = 0; k < 4; ++k) {
          const double x = dist[k];
          w[k] = x <= 1 ? ((A + 2) * x - (A + 3)) * x * x + 1 : ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
          const int64_t at = int64_t(base) - 1 + k;
          if (exclude && (at < 0 || at >= in[d])) w[k] = 0;
          total += w[k];
        }
        for (int k = 0; k < 4; ++k) {
          t.idx.push_back(std::clamp<int64_t>(int64_t(base) - 1 + k, 0, in[d] - 1));
          t.w.push_back(float(exclude && total != 0 ? w[k] / total : w[k]));
        }
      }
    }
    add_fn(b, n, "resize", {src}, {out})->fn = [=](Runtime& rt) {
      const float* x = rt.data<float>(src);
      float* y = rt.data<float>(out);
      const int64_t total = shape_numel(shape);
#pragma omp parallel for schedule(static) if (total > 4096)
      for (int64_t o = 0; o < total; ++o) {
        int64_t idx[8], rem = o, corners = 1;
        for (size_t d = rank; d-- > 0;) {
          idx[d] = rem % shape[d];
          rem /= shape[d];
          corners *= taps[d].count;
        }
        double acc = 0;
        for (int64_t m = 0; m < corners; ++m) {
          int64_t r = m, off = 0;
          double w = 1;
          for (size_t d = rank; d-- > 0;) {
            const Taps& t = taps[d];
            const int64_t k = r % t.count;
            r /= t.count;
            const size_t at = size_t(idx[d] * t.count + k);
            off += t.idx[at] * in_st[d];
            w *= t.w[at];
          }
          acc += w * double(x[off]);
        }
        y[o] = float(acc);
      }
    };
    return;
  }
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

// A value known at compile time (all dims are bound): `values` in order, or `fill` everywhere
// when `values` is empty, written in the output's element type.
void add_static(PlanBuilder& b, const Node& n, std::vector<int64_t> values, double fill) {
  const Value& yv = val(b, n.outputs[0]);
  const int out = output_slot(b, n.outputs[0]);
  const int64_t total = yv.numel();
  if (!values.empty() && int64_t(values.size()) != total) unsupported(b, n, "the static value does not fill the output");
  dispatch_type<true, true>(b, n, yv.dtype, [&](auto tag) {
    using T = decltype(tag);
    add_fn(b, n, "static", {}, {out})->fn = [=](Runtime& rt) {
      T* y = rt.data<T>(out);
      for (int64_t i = 0; i < total; ++i) y[i] = T(values.empty() ? fill : double(values[size_t(i)]));
    };
  });
}

// Shape-15's start and end are clamped to [0, rank] after negative ones count from the end.
void lower_shape(PlanBuilder& b, const Node& n) {
  const Shape& s = val(b, n.inputs[0]).shape;
  const int64_t rank = int64_t(s.size());
  const NodeAttrs attrs(b.graph, n);
  int64_t start = attrs.has("start") ? attrs.integer("start") : 0, end = attrs.has("end") ? attrs.integer("end") : rank;
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  add_static(b, n, std::vector<int64_t>(s.begin() + start, s.begin() + std::max(start, end)), 0);
}

void lower_size(PlanBuilder& b, const Node& n) { add_static(b, n, {val(b, n.inputs[0]).numel()}, 0); }

// ConstantOfShape: the one-element `value` tensor everywhere (0 when absent).
void lower_constant_of_shape(PlanBuilder& b, const Node& n) {
  double fill = 0;
  auto it = n.attrs.find("value");
  if (it != n.attrs.end())
    if (auto* t = std::get_if<TensorData>(&it->second)) fill = t->has_values() ? t->as_double().at(0) : 0.0;
  add_static(b, n, {}, fill);
}

}  // namespace

void register_plain_lowerings(CpuLowerings& t) {
  // Each lowering takes the node by index; these plain ones need only the node.
#define BRICKLAB_PLAIN(fn) [](PlanBuilder& b, int i) { fn(b, b.graph.nodes[size_t(i)]); }
  t.add({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}, BRICKLAB_PLAIN(lower_view));
  t.add({"Transpose"}, BRICKLAB_PLAIN(lower_transpose));
  t.add({"Slice"}, BRICKLAB_PLAIN(lower_slice));
  t.add({"Split"}, BRICKLAB_PLAIN(lower_split));
  t.add({"Gather"}, BRICKLAB_PLAIN(lower_gather));
  t.add({"Expand"}, BRICKLAB_PLAIN(lower_expand));
  t.add({"Tile"}, BRICKLAB_PLAIN(lower_tile));
  t.add({"Pad"}, BRICKLAB_PLAIN(lower_pad));
  t.add({"Upsample"}, [](PlanBuilder& b, int i) { lower_resize(b, b.graph.nodes[size_t(i)], 1); });
  t.add({"Resize"}, [](PlanBuilder& b, int i) {
    const Node& n = b.graph.nodes[size_t(i)];
    lower_resize(b, n, n.opset >= 11 ? 2 : 1);
  });
  t.add({"Shape"}, BRICKLAB_PLAIN(lower_shape));
  t.add({"Size"}, BRICKLAB_PLAIN(lower_size));
  t.add({"ConstantOfShape"}, BRICKLAB_PLAIN(lower_constant_of_shape));
  t.add({"Constant"}, [](PlanBuilder& b, int i) {
    const Node& n = b.graph.nodes[size_t(i)];
    b.bind(n.outputs[0], b.slot_of(n.outputs[0]));
  });
#undef BRICKLAB_PLAIN
}

void lower_concat_plain(PlanBuilder& b, int index) { lower_concat_plain(b, b.graph.nodes[size_t(index)]); }

}  // namespace bricklab::cpu
