// Plain C++ kernels for index-driven data movement: GatherElements, GatherND, ScatterElements,
// Trilu, DepthToSpace / SpaceToDepth, and Range. They copy elements by size (any element type);
// indices are checked at run time and an out-of-range one is an InvalidArgument naming the node.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "bricklab/ops/registry.hpp"
#include "cpu_internal.hpp"

namespace bricklab::cpu {
namespace {





// Index reader for int32 / int64 index tensors.
struct Indices {
  int slot = -1;
  bool i64 = true;
  int64_t at(const Runtime& rt, int64_t k) const { return i64 ? rt.data<int64_t>(slot)[k] : rt.data<int32_t>(slot)[k]; }
};

Indices indices_of(PlanBuilder& b, const Node& n, int value) {
  const DType t = val(b, value).dtype;
  if (t != DType::int64 && t != DType::int32) throw ShapeError(b.where(n), "indices must be int32 or int64, are " + dtype_name(t));
  return {b.slot_of(value), t == DType::int64};
}

// An index into a dimension of length `dim`, negative counting from the end; throws when outside.
inline int64_t wrap(int64_t i, int64_t dim, const std::string& node, const char* op) {
  if (i < 0) i += dim;
  if (i < 0 || i >= dim)
    throw InvalidArgument("node '" + node + "' (" + op + "): index " + std::to_string(i < 0 ? i - dim : i) + " out of range [" +
                          std::to_string(-dim) + ", " + std::to_string(dim) + ")");
  return i;
}

// How a scatter combines an update with the element already there (attribute `reduction`).
enum class Combine { none, add, mul, max, min };

Combine combine_of(PlanBuilder& b, const Node& n, const std::string& reduction) {
  if (reduction == "none") return Combine::none;
  if (reduction == "add") return Combine::add;
  if (reduction == "mul") return Combine::mul;
  if (reduction == "max") return Combine::max;
  if (reduction == "min") return Combine::min;
  throw ShapeError(b.where(n), "reduction must be none, add, mul, max or min, is '" + reduction + "'");
}

// dst[0..count) = dst combine src, in the element type; a plain copy for Combine::none.
using CombineFn = void (*)(char* dst, const char* src, int64_t count);

template <typename T, Combine c>
void combine_typed(char* dst, const char* src, int64_t count) {
  T* d = reinterpret_cast<T*>(dst);
  const T* s = reinterpret_cast<const T*>(src);
  for (int64_t i = 0; i < count; ++i) {
    if constexpr (c == Combine::add) d[i] = T(d[i] + s[i]);
    else if constexpr (c == Combine::mul) d[i] = T(d[i] * s[i]);
    else if constexpr (c == Combine::max) d[i] = std::max(d[i], s[i]);
    else d[i] = std::min(d[i], s[i]);
  }
}

template <typename T>
CombineFn combine_for(Combine c) {
  switch (c) {
    case Combine::add: return combine_typed<T, Combine::add>;
    case Combine::mul: return combine_typed<T, Combine::mul>;
    case Combine::max: return combine_typed<T, Combine::max>;
    default: return combine_typed<T, Combine::min>;
  }
}

// nullptr for Combine::none (the caller copies bytes).
CombineFn combine_fn(PlanBuilder& b, const Node& n, Combine c, DType t) {
  if (c == Combine::none) return nullptr;
  switch (t) {
    case DType::float32: return combine_for<float>(c);
    case DType::float64: return combine_for<double>(c);
    case DType::int32: return combine_for<int32_t>(c);
    case DType::int64: return combine_for<int64_t>(c);
    default: unsupported(b, n, "a scatter reduction of " + dtype_name(t) + " is not supported");
  }
}

// ---- ScatterND -------------------------------------------------------------------------------

// out = data; then out[indices[i]] (combine)= updates[i], in index order.
void lower_scatter_nd(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& dv = val(b, n.inputs.at(0));
  const Value& iv = val(b, n.inputs.at(1));
  const Value& uv = val(b, n.inputs.at(2));
  const CombineFn combine = combine_fn(b, n, combine_of(b, n, NodeAttrs(b.graph, n).text("reduction")), dv.dtype);
  if (iv.dtype != DType::int64 || iv.shape.empty()) throw ShapeError(b.where(n), "indices must be int64 of rank >= 1");
  const int64_t k = iv.shape.back();
  if (k < 1 || k > int64_t(dv.shape.size())) throw ShapeError(b.where(n), "index depth " + std::to_string(k) + " exceeds the data rank");
  int64_t slice = 1;
  for (size_t d = size_t(k); d < dv.shape.size(); ++d) slice *= dv.shape[d];
  const int64_t count = iv.numel() / k;
  if (uv.numel() != count * slice)
    throw ShapeError(b.where(n), "updates " + shape_str(uv.shape) + " do not match indices " + shape_str(iv.shape) + " and data " + shape_str(dv.shape));
  const auto st = row_strides(dv.shape);
  const Shape dshape = dv.shape;
  const size_t es = size_t(dtype_size(dv.dtype));
  const int data = b.plain(b.slot_of(n.inputs[0])), idx = b.slot_of(n.inputs[1]), upd = b.plain(b.slot_of(n.inputs[2]));
  const int out = output_slot(b, n.outputs[0]);
  const std::string name = n.name;
  add_fn(b, n, "scatter", {data, idx, upd}, {out})->fn = [=](Runtime& rt) {
    std::memcpy(rt.ptr(out), rt.ptr(data), size_t(shape_numel(dshape)) * es);
    const int64_t* ind = rt.data<int64_t>(idx);
    char* yp = static_cast<char*>(rt.ptr(out));
    const char* up = static_cast<const char*>(rt.ptr(upd));
    for (int64_t i = 0; i < count; ++i) {
      int64_t off = 0;
      for (int64_t d = 0; d < k; ++d) off += wrap(ind[i * k + d], dshape[size_t(d)], name, "ScatterND") * st[size_t(d)];
      if (combine) combine(yp + size_t(off) * es, up + size_t(i * slice) * es, slice);
      else std::memcpy(yp + size_t(off) * es, up + size_t(i * slice) * es, size_t(slice) * es);
    }
  };
}

// ---- GatherElements / ScatterElements ---------------------------------------------------------

// The data offset that element o of the indices tensor addresses: its own coordinates, except
// along `axis`, where the index it holds.
struct ElementAddress {
  Shape ishape, xshape;
  std::vector<int64_t> xst;
  int64_t axis = 0;
  std::string node;
  const char* op = "";
  int64_t operator()(const Runtime& rt, const Indices& idx, int64_t o) const {
    int64_t rem = o, off = 0;
    for (size_t d = ishape.size(); d-- > 0;) {
      const int64_t c = rem % ishape[d];
      rem /= ishape[d];
      if (int64_t(d) == axis) off += wrap(idx.at(rt, o), xshape[d], node, op) * xst[d];
      else if (c >= xshape[d]) throw InvalidArgument("node '" + node + "' (" + op + "): indices larger than the data");
      else off += c * xst[d];
    }
    return off;
  }
};

void lower_gather_elements(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& iv = val(b, n.inputs.at(1));
  const NodeAttrs attrs(b.graph, n);
  const int64_t rank = int64_t(xv.shape.size());
  const int64_t axis = checked_axis(b, n, attrs.integer("axis"), rank);
  if (int64_t(iv.shape.size()) != rank) throw ShapeError(b.where(n), "indices must have the data's rank " + std::to_string(rank));
  const Indices idx = indices_of(b, n, n.inputs[1]);
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  const ElementAddress address{iv.shape, xv.shape, row_strides(xv.shape), axis, n.name, "GatherElements"};
  const size_t es = size_t(dtype_size(xv.dtype));
  add_fn(b, n, "gather", {x, idx.slot}, {y})->fn = [=](Runtime& rt) {
    const char* xp = static_cast<const char*>(rt.ptr(x));
    char* yp = static_cast<char*>(rt.ptr(y));
    const int64_t total = shape_numel(address.ishape);
    for (int64_t o = 0; o < total; ++o) std::memcpy(yp + size_t(o) * es, xp + size_t(address(rt, idx, o)) * es, es);
  };
}

void lower_scatter_elements(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& iv = val(b, n.inputs.at(1));
  const Value& uv = val(b, n.inputs.at(2));
  const NodeAttrs attrs(b.graph, n);
  const CombineFn combine = combine_fn(b, n, combine_of(b, n, attrs.text("reduction")), xv.dtype);
  const int64_t rank = int64_t(xv.shape.size());
  const int64_t axis = checked_axis(b, n, attrs.integer("axis"), rank);
  if (iv.shape != uv.shape) throw ShapeError(b.where(n), "indices " + shape_str(iv.shape) + " and updates " + shape_str(uv.shape) + " differ");
  if (int64_t(iv.shape.size()) != rank) throw ShapeError(b.where(n), "indices must have the data's rank");
  const Indices idx = indices_of(b, n, n.inputs[1]);
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int u = b.plain(b.slot_of(n.inputs[2]));
  const int y = output_slot(b, n.outputs[0]);
  const ElementAddress address{iv.shape, xv.shape, row_strides(xv.shape), axis, n.name, "ScatterElements"};
  const size_t es = size_t(dtype_size(xv.dtype));
  const size_t bytes = size_t(xv.nbytes());
  add_fn(b, n, "scatter", {x, idx.slot, u}, {y})->fn = [=](Runtime& rt) {
    std::memcpy(rt.ptr(y), rt.ptr(x), bytes);
    const char* up = static_cast<const char*>(rt.ptr(u));
    char* yp = static_cast<char*>(rt.ptr(y));
    const int64_t total = shape_numel(address.ishape);
    for (int64_t o = 0; o < total; ++o) {
      const int64_t off = address(rt, idx, o);
      if (combine) combine(yp + size_t(off) * es, up + size_t(o) * es, 1);
      else std::memcpy(yp + size_t(off) * es, up + size_t(o) * es, es);
    }
  };
}

// ---- GatherND ----------------------------------------------------------------------------------

void lower_gather_nd(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& iv = val(b, n.inputs.at(1));
  const Value& yv = val(b, n.outputs.at(0));
  const NodeAttrs attrs(b.graph, n);
  const int64_t batch = attrs.integer("batch_dims");
  const int64_t r = int64_t(xv.shape.size()), q = int64_t(iv.shape.size());
  if (iv.dtype != DType::int64) throw ShapeError(b.where(n), "indices must be int64");
  if (q < 1 || batch < 0 || batch >= std::min(r, q)) throw ShapeError(b.where(n), "batch_dims " + std::to_string(batch) + " is out of range");
  const int64_t k = iv.shape.back();
  if (k < 1 || k > r - batch) throw ShapeError(b.where(n), "index depth " + std::to_string(k) + " exceeds the data rank minus batch_dims");
  for (int64_t d = 0; d < batch; ++d)
    if (xv.shape[size_t(d)] != iv.shape[size_t(d)]) throw ShapeError(b.where(n), "batch dimensions of data and indices differ");
  int64_t batches = 1, slice = 1;
  for (int64_t d = 0; d < batch; ++d) batches *= xv.shape[size_t(d)];
  for (int64_t d = batch + k; d < r; ++d) slice *= xv.shape[size_t(d)];
  const int64_t per_batch = iv.numel() / std::max<int64_t>(1, batches * k);  // index tuples per batch
  const auto xst = row_strides(xv.shape);
  const int64_t batch_stride = batch > 0 ? xst[size_t(batch - 1)] : 0;
  const Shape xshape = xv.shape;
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int ind = b.slot_of(n.inputs[1]);
  const int y = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  if (yv.numel() != batches * per_batch * slice) throw ShapeError(b.where(n), "output shape does not match the indices");
  const std::string name = n.name;
  add_fn(b, n, "gather", {x, ind}, {y})->fn = [=](Runtime& rt) {
    const char* xp = static_cast<const char*>(rt.ptr(x));
    char* yp = static_cast<char*>(rt.ptr(y));
    const int64_t* ip = rt.data<int64_t>(ind);
    for (int64_t bi = 0; bi < batches; ++bi)
      for (int64_t t = 0; t < per_batch; ++t) {
        const int64_t* tuple = ip + (bi * per_batch + t) * k;
        int64_t off = bi * batch_stride;
        for (int64_t d = 0; d < k; ++d) off += wrap(tuple[d], xshape[size_t(batch + d)], name, "GatherND") * xst[size_t(batch + d)];
        std::memcpy(yp + size_t((bi * per_batch + t) * slice) * es, xp + size_t(off) * es, size_t(slice) * es);
      }
  };
}

// ---- Trilu -----------------------------------------------------------------------------------

void lower_trilu(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const NodeAttrs attrs(b.graph, n);
  if (xv.shape.size() < 2) throw ShapeError(b.where(n), "input must have rank >= 2, has " + shape_str(xv.shape));
  int64_t diag = 0;
  if (n.inputs.size() > 1 && n.inputs[1] >= 0) {
    if (!b.is_constant(n.inputs[1])) unsupported(b, n, "Trilu's k computed at run time is not supported");
    const auto kv = val(b, n.inputs[1]).data->as_int64();
    if (kv.size() != 1) throw ShapeError(b.where(n), "k must be a scalar");
    diag = kv[0];
  }
  const bool upper = attrs.integer("upper") != 0;
  const int64_t rows = xv.shape[xv.shape.size() - 2], cols = xv.shape.back();
  const int64_t mats = xv.numel() / std::max<int64_t>(1, rows * cols);
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  add_fn(b, n, "trilu", {x}, {y})->fn = [=](Runtime& rt) {
    const char* xp = static_cast<const char*>(rt.ptr(x));
    char* yp = static_cast<char*>(rt.ptr(y));
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          const size_t at = size_t((m * rows + i) * cols + j) * es;
          const bool keep = upper ? j - i >= diag : j - i <= diag;
          if (keep) std::memcpy(yp + at, xp + at, es);
          else std::memset(yp + at, 0, es);
        }
  };
}

// ---- DepthToSpace / SpaceToDepth ---------------------------------------------------------------

// Both are a reshape to 6-d, a transpose and a reshape back: one strided gather.
template <bool to_space>
void lower_depth_space(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& xv = val(b, n.inputs.at(0));
  const Value& yv = val(b, n.outputs.at(0));
  const NodeAttrs attrs(b.graph, n);
  if (xv.shape.size() != 4) throw ShapeError(b.where(n), "input must be 4-d (N, C, H, W), is " + shape_str(xv.shape));
  const int64_t bs = attrs.integer("blocksize");
  if (bs < 1) throw ShapeError(b.where(n), "blocksize must be >= 1, is " + std::to_string(bs));
  const int64_t N = xv.shape[0], C = xv.shape[1], H = xv.shape[2], W = xv.shape[3];
  const bool crd = to_space && attrs.text("mode") == "CRD";
  if (to_space && attrs.text("mode") != "CRD" && attrs.text("mode") != "DCR")
    throw ShapeError(b.where(n), "mode must be DCR or CRD, is '" + attrs.text("mode") + "'");
  if (to_space ? C % (bs * bs) != 0 : (H % bs != 0 || W % bs != 0))
    throw ShapeError(b.where(n), "shape " + shape_str(xv.shape) + " is not divisible by the blocksize " + std::to_string(bs));
  // Output element (n, c', h', w') -> input offset.
  const Shape out = yv.shape;
  const int x = b.plain(b.slot_of(n.inputs[0]));
  const int y = output_slot(b, n.outputs[0]);
  const size_t es = size_t(dtype_size(xv.dtype));
  add_fn(b, n, to_space ? "depth_to_space" : "space_to_depth", {x}, {y})->fn = [=](Runtime& rt) {
    const char* xp = static_cast<const char*>(rt.ptr(x));
    char* yp = static_cast<char*>(rt.ptr(y));
    const int64_t Co = out[1], Ho = out[2], Wo = out[3];
#pragma omp parallel for schedule(static) if (N * Co * Ho > 256)
    for (int64_t row = 0; row < N * Co * Ho; ++row) {
      const int64_t nn = row / (Co * Ho), c = (row / Ho) % Co, h = row % Ho;
      for (int64_t w = 0; w < Wo; ++w) {
        int64_t ci, hi, wi;
        if (to_space) {
          const int64_t bh = h % bs, bw = w % bs;
          hi = h / bs;
          wi = w / bs;
          ci = crd ? c * bs * bs + bh * bs + bw : (bh * bs + bw) * Co + c;
        } else {
          const int64_t cin = c % C, blk = c / C;
          ci = cin;
          hi = h * bs + blk / bs;
          wi = w * bs + blk % bs;
        }
        std::memcpy(yp + size_t(((nn * Co + c) * Ho + h) * Wo + w) * es, xp + size_t(((nn * C + ci) * H + hi) * W + wi) * es, es);
      }
    }
  };
}

// ---- Range -----------------------------------------------------------------------------------

// Range with run-time scalars: the output length is fixed by the graph's shape (known at load),
// so a start/limit/delta giving another length is refused at run time.
void lower_range(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const Value& yv = val(b, n.outputs.at(0));
  if (n.inputs.size() != 3) throw ShapeError(b.where(n), "takes start, limit and delta");
  for (int v : n.inputs)
    if (v < 0 || val(b, v).numel() != 1) throw ShapeError(b.where(n), "start, limit and delta must be scalars");
  const int s0 = b.slot_of(n.inputs[0]), s1 = b.slot_of(n.inputs[1]), s2 = b.slot_of(n.inputs[2]);
  const int y = output_slot(b, n.outputs[0]);
  const int64_t len = yv.numel();
  const DType t = yv.dtype;
  const std::string name = n.name;
  auto typed = [&](auto tag) {
    using T = decltype(tag);
    add_fn(b, n, "range", {s0, s1, s2}, {y})->fn = [=](Runtime& rt) {
      const T start = rt.data<T>(s0)[0], limit = rt.data<T>(s1)[0], delta = rt.data<T>(s2)[0];
      if (delta == T(0)) throw InvalidArgument("node '" + name + "' (Range): delta is 0");
      const double want = std::max(0.0, std::ceil(double(limit - start) / double(delta)));
      if (int64_t(want) != len)
        throw InvalidArgument("node '" + name + "' (Range): the inputs give " + std::to_string(int64_t(want)) +
                              " elements, the graph's shape " + std::to_string(len));
      T* yp = rt.data<T>(y);
      for (int64_t i = 0; i < len; ++i) yp[i] = T(start + T(i) * delta);
    };
  };
  switch (t) {
    case DType::float32: typed(float{}); break;
    case DType::float64: typed(double{}); break;
    case DType::int32: typed(int32_t{}); break;
    case DType::int64: typed(int64_t{}); break;
    default: unsupported(b, n, "Range of " + dtype_name(t) + " is not supported");
  }
}

}  // namespace

void register_movement_lowerings(CpuLowerings& t) {
  t.add({"GatherElements"}, lower_gather_elements);
  t.add({"ScatterElements"}, lower_scatter_elements);
  t.add({"ScatterND"}, lower_scatter_nd);
  t.add({"GatherND"}, lower_gather_nd);
  t.add({"Trilu"}, lower_trilu);
  t.add({"DepthToSpace"}, lower_depth_space<true>);
  t.add({"SpaceToDepth"}, lower_depth_space<false>);
  t.add({"Range"}, lower_range);
}

}  // namespace bricklab::cpu
