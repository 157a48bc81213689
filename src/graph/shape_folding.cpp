// Constant folding of small shape computations; see shape_folding.hpp.
#include "shape_folding.hpp"

#include "bricklab/ops/lowering.hpp"
#include "bricklab/ops/registry.hpp"

#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

namespace bricklab::detail {
namespace {

// Folded tensors stay small: shape vectors, scalars, scales.
constexpr int64_t kMaxFoldElements = 4096;

struct Small {
  int dtype = onnx::TensorProto::INT64;
  std::vector<int64_t> shape;
  std::vector<int64_t> ints;    // for integer and bool types
  std::vector<double> floats;   // for floating types
  bool is_float() const {
    return dtype == onnx::TensorProto::FLOAT || dtype == onnx::TensorProto::DOUBLE || dtype == onnx::TensorProto::FLOAT16;
  }
  size_t size() const { return is_float() ? floats.size() : ints.size(); }
  double f(size_t k) const { return is_float() ? floats[k] : double(ints[k]); }
  int64_t i(size_t k) const { return is_float() ? int64_t(floats[k]) : ints[k]; }
};

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (auto d : s) {
    if (d < 0 || (d > 0 && n > kMaxFoldElements)) return -1;
    n *= d;
  }
  return n;
}

std::optional<Small> from_tensor(const onnx::TensorProto& t) {
  Small s;
  s.dtype = t.data_type();
  s.shape.assign(t.dims().begin(), t.dims().end());
  const int64_t n = numel(s.shape);
  if (n < 0 || n > kMaxFoldElements || !t.has_raw_data()) return std::nullopt;
  const std::string& raw = t.raw_data();
  auto read = [&](auto tag) {
    using T = decltype(tag);
    if (raw.size() != size_t(n) * sizeof(T)) return false;
    for (int64_t k = 0; k < n; ++k) {
      T v;
      std::memcpy(&v, raw.data() + k * sizeof(T), sizeof(T));
      if constexpr (std::is_floating_point_v<T>) s.floats.push_back(double(v));
      else s.ints.push_back(int64_t(v));
    }
    return true;
  };
  bool ok = false;
  switch (s.dtype) {
    case onnx::TensorProto::INT64: ok = read(int64_t{}); break;
    case onnx::TensorProto::INT32: ok = read(int32_t{}); break;
    case onnx::TensorProto::BOOL:
    case onnx::TensorProto::UINT8: ok = read(uint8_t{}); break;
    case onnx::TensorProto::FLOAT: ok = read(float{}); break;
    case onnx::TensorProto::DOUBLE: ok = read(double{}); break;
    default: return std::nullopt;
  }
  return ok ? std::optional<Small>(s) : std::nullopt;
}

onnx::TensorProto to_tensor(const Small& s, const std::string& name) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(s.dtype);
  for (auto d : s.shape) t.add_dims(d);
  std::string raw;
  for (size_t k = 0; k < s.size(); ++k) {
    switch (s.dtype) {
      case onnx::TensorProto::INT64: { int64_t v = s.i(k); raw.append(reinterpret_cast<char*>(&v), 8); break; }
      case onnx::TensorProto::INT32: { int32_t v = int32_t(s.i(k)); raw.append(reinterpret_cast<char*>(&v), 4); break; }
      case onnx::TensorProto::BOOL:
      case onnx::TensorProto::UINT8: { uint8_t v = uint8_t(s.i(k)); raw.append(reinterpret_cast<char*>(&v), 1); break; }
      case onnx::TensorProto::FLOAT: { float v = float(s.f(k)); raw.append(reinterpret_cast<char*>(&v), 4); break; }
      case onnx::TensorProto::DOUBLE: { double v = s.f(k); raw.append(reinterpret_cast<char*>(&v), 8); break; }
    }
  }
  t.set_raw_data(raw);
  return t;
}

Small make_ints(std::vector<int64_t> values, std::vector<int64_t> shape, int dtype = onnx::TensorProto::INT64) {
  Small s;
  s.dtype = dtype;
  s.shape = std::move(shape);
  s.ints = std::move(values);
  return s;
}

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t attr_i(const onnx::NodeProto& n, const char* name, int64_t fallback) {
  auto* a = find_attr(n, name);
  return a ? a->i() : fallback;
}
std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const char* name) {
  auto* a = find_attr(n, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

// numpy broadcasting of two shapes; nullopt when incompatible.
std::optional<std::vector<int64_t>> broadcast_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank);
  for (size_t k = 0; k < rank; ++k) {
    const int64_t da = k < rank - a.size() ? 1 : a[k - (rank - a.size())];
    const int64_t db = k < rank - b.size() ? 1 : b[k - (rank - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[k] = da == 1 ? db : da;
  }
  return out;
}

// Flat index into `in` (right-aligned, broadcast dims of size 1) for each flat index of `out`.
std::vector<size_t> broadcast_index(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  const int64_t total = numel(out);
  std::vector<size_t> map(static_cast<size_t>(std::max<int64_t>(total, 0)));
  const size_t rank = out.size(), offset = rank - in.size();
  std::vector<int64_t> in_strides(in.size(), 1);
  for (size_t d = in.size(); d-- > 1;) in_strides[d - 1] = in_strides[d] * in[d];
  std::vector<int64_t> index(rank, 0);
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t src = 0;
    for (size_t d = offset; d < rank; ++d)
      if (in[d - offset] != 1) src += index[d] * in_strides[d - offset];
    map[size_t(flat)] = size_t(src);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < out[d]) break;
      index[d] = 0;
    }
  }
  return map;
}

// Elementwise binary op with numpy broadcasting.
std::optional<Small> binary(const Small& a, const Small& b, const std::function<std::optional<double>(double, double)>& fn,
                            bool float_math, int out_dtype) {
  auto shape = broadcast_shape(a.shape, b.shape);
  if (!shape || numel(*shape) < 0) return std::nullopt;
  const auto ia = broadcast_index(a.shape, *shape), ib = broadcast_index(b.shape, *shape);
  Small out;
  out.dtype = out_dtype;
  out.shape = *shape;
  for (size_t k = 0; k < ia.size(); ++k) {
    auto r = fn(float_math ? a.f(ia[k]) : double(a.i(ia[k])), float_math ? b.f(ib[k]) : double(b.i(ib[k])));
    if (!r) return std::nullopt;
    if (out.is_float()) out.floats.push_back(*r);
    else {
      if (!(std::fabs(*r) < 9.0e18)) return std::nullopt;
      out.ints.push_back(int64_t(*r));
    }
  }
  return out;
}

std::vector<int64_t> strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d) st[size_t(d)] = st[size_t(d) + 1] * shape[size_t(d) + 1];
  return st;
}

// out[i0, i1, ...] = x[picks[0][i0], picks[1][i1], ...]
Small gather_grid(const Small& x, const std::vector<std::vector<int64_t>>& picks) {
  Small out = x;
  out.ints.clear();
  out.floats.clear();
  out.shape.clear();
  for (const auto& p : picks) out.shape.push_back(int64_t(p.size()));
  const auto st = strides(x.shape);
  const int64_t total = numel(out.shape);
  const size_t rank = picks.size();
  std::vector<size_t> index(rank, 0);
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t src = 0;
    for (size_t d = 0; d < rank; ++d) src += picks[d][index[d]] * st[d];
    if (x.is_float()) out.floats.push_back(x.floats[size_t(src)]);
    else out.ints.push_back(x.ints[size_t(src)]);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < picks[d].size()) break;
      index[d] = 0;
    }
  }
  return out;
}

class Folder {
 public:
  Folder(onnx::ModelProto& model, int opset) : model_(model), opset_(opset) {}

  int run() {
    auto* g = model_.mutable_graph();
    for (const auto& t : g->initializer())
      if (auto s = from_tensor(t)) constants_[t.name()] = *s;
    collect_shapes();
    int folded = 0;
    google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
    for (const auto& n : g->node()) {
      std::optional<Small> result;
      if (n.output_size() == 1 && !n.output(0).empty()) {
        try {
          result = evaluate(n);
        } catch (const std::exception&) {
          result.reset();  // leave it to shape inference to report
        }
      }
      if (result && numel(result->shape) == int64_t(result->size())) {
        constants_[n.output(0)] = *result;
        *g->add_initializer() = to_tensor(*result, n.output(0));
        ++folded;
      } else {
        *kept.Add() = n;
      }
    }
    g->mutable_node()->Swap(&kept);
    return folded;
  }

 private:
  onnx::ModelProto& model_;
  int opset_;
  std::unordered_map<std::string, Small> constants_;
  std::unordered_map<std::string, std::vector<int64_t>> shapes_;

  void collect_shapes() {
    auto take = [this](const onnx::ValueInfoProto& v) {
      if (!v.type().has_tensor_type() || !v.type().tensor_type().has_shape()) return;
      std::vector<int64_t> s;
      for (const auto& d : v.type().tensor_type().shape().dim()) {
        if (!d.has_dim_value()) return;
        s.push_back(d.dim_value());
      }
      shapes_[v.name()] = s;
    };
    const auto& g = model_.graph();
    for (const auto& v : g.input()) take(v);
    for (const auto& v : g.value_info()) take(v);
    for (const auto& v : g.output()) take(v);
    for (const auto& t : g.initializer()) shapes_[t.name()] = std::vector<int64_t>(t.dims().begin(), t.dims().end());
  }

  const Small* constant(const onnx::NodeProto& n, int k) const {
    if (k >= n.input_size() || n.input(k).empty()) return nullptr;
    auto it = constants_.find(n.input(k));
    return it == constants_.end() ? nullptr : &it->second;
  }

  bool all_inputs_constant(const onnx::NodeProto& n) const {
    for (int k = 0; k < n.input_size(); ++k)
      if (!n.input(k).empty() && !constant(n, k)) return false;
    return n.input_size() > 0;
  }

  // ---- one folding rule per operator-table entry ----------------------------------------------
  // Each rule computes a node's output from constant inputs (or known shapes), or returns nullopt
  // when it cannot (the node then stays, and shape inference handles it).

  std::optional<Small> fold_shape(const onnx::NodeProto& n) {
    auto it = shapes_.find(n.input(0));
    if (it == shapes_.end()) return std::nullopt;
    const auto& s = it->second;
    const int64_t rank = int64_t(s.size());
    int64_t start = attr_i(n, "start", 0), end = attr_i(n, "end", rank);
    start = std::clamp<int64_t>(start < 0 ? start + rank : start, 0, rank);
    end = std::clamp<int64_t>(end < 0 ? end + rank : end, 0, rank);
    std::vector<int64_t> dims(s.begin() + start, s.begin() + std::max(start, end));
    return make_ints(dims, {int64_t(dims.size())});
  }

  std::optional<Small> fold_size(const onnx::NodeProto& n) {
    auto it = shapes_.find(n.input(0));
    if (it == shapes_.end()) return std::nullopt;
    int64_t count = 1;
    for (auto d : it->second) count *= d;
    return make_ints({count}, {});
  }

  std::optional<Small> fold_constant(const onnx::NodeProto& n) {
    if (n.attribute_size() != 1) return std::nullopt;
    const auto& a = n.attribute(0);
    if (a.name() == "value" && a.has_t()) return from_tensor(a.t());
    if (a.name() == "value_int") return make_ints({a.i()}, {});
    if (a.name() == "value_ints") return make_ints({a.ints().begin(), a.ints().end()}, {int64_t(a.ints_size())});
    if (a.name() == "value_float" || a.name() == "value_floats") {
      Small s;
      s.dtype = onnx::TensorProto::FLOAT;
      if (a.name() == "value_float") s.floats = {double(a.f())};
      else {
        s.floats.assign(a.floats().begin(), a.floats().end());
        s.shape = {int64_t(a.floats_size())};
      }
      return s;
    }
    return std::nullopt;
  }

  std::optional<Small> fold_identity(const onnx::NodeProto& n) { return *constant(n, 0); }

  std::optional<Small> fold_cast(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    Small out = x;
    out.dtype = int(attr_i(n, "to", 0));
    out.ints.clear();
    out.floats.clear();
    for (size_t k = 0; k < x.size(); ++k) {
      if (out.is_float()) out.floats.push_back(x.f(k));
      else if (out.dtype == onnx::TensorProto::INT64 || out.dtype == onnx::TensorProto::INT32) out.ints.push_back(x.i(k));
      else if (out.dtype == onnx::TensorProto::BOOL) out.ints.push_back(x.f(k) != 0);
      else return std::nullopt;
    }
    return out;
  }

  std::optional<Small> fold_gather(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    const Small* idx = constant(n, 1);
    if (x.shape.size() != 1 || attr_i(n, "axis", 0) != 0 || !idx) return std::nullopt;
    Small out = x;
    out.shape = idx->shape;
    out.ints.clear();
    out.floats.clear();
    const int64_t dim = x.shape[0];
    for (size_t k = 0; k < idx->size(); ++k) {
      int64_t i = idx->i(k);
      if (i < 0) i += dim;
      if (i < 0 || i >= dim) return std::nullopt;
      if (x.is_float()) out.floats.push_back(x.floats[size_t(i)]);
      else out.ints.push_back(x.ints[size_t(i)]);
    }
    return out;
  }

  // Squeeze / Unsqueeze axes: an input from opset 13, an attribute before.
  std::vector<int64_t> squeeze_axes(const onnx::NodeProto& n) const {
    if (opset_ < 13) return attr_ints(n, "axes");
    const Small* a = constant(n, 1);
    return a ? a->ints : std::vector<int64_t>{};
  }

  std::optional<Small> fold_unsqueeze(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    const std::vector<int64_t> axes = squeeze_axes(n);
    Small out = x;
    const int64_t rank = int64_t(x.shape.size() + axes.size());
    std::vector<int64_t> norm;
    for (auto a : axes) norm.push_back(a < 0 ? a + rank : a);
    std::sort(norm.begin(), norm.end());
    for (auto a : norm) {
      if (a < 0 || a > int64_t(out.shape.size())) return std::nullopt;
      out.shape.insert(out.shape.begin() + a, 1);
    }
    return out;
  }

  std::optional<Small> fold_squeeze(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    const std::vector<int64_t> axes = squeeze_axes(n);
    Small out = x;
    std::vector<int64_t> shape;
    const int64_t rank = int64_t(x.shape.size());
    for (int64_t d = 0; d < rank; ++d) {
      bool drop = axes.empty() ? x.shape[size_t(d)] == 1
                               : std::any_of(axes.begin(), axes.end(), [&](int64_t a) { return (a < 0 ? a + rank : a) == d; });
      if (!drop) shape.push_back(x.shape[size_t(d)]);
    }
    out.shape = shape;
    return out;
  }

  std::optional<Small> fold_concat(const onnx::NodeProto& n) {
    for (const auto& a : n.attribute())  // 1-D parts: axis 0 or -1; anything else is left to validation
      if (a.name() == "axis" && (a.type() != onnx::AttributeProto::INT || (a.i() != 0 && a.i() != -1))) return std::nullopt;
    const Small& x = *constant(n, 0);
    Small out = x;
    out.ints.clear();
    out.floats.clear();
    for (int k = 0; k < n.input_size(); ++k) {
      const Small* part = constant(n, k);
      if (!part || part->shape.size() != 1 || part->is_float() != x.is_float()) return std::nullopt;
      out.ints.insert(out.ints.end(), part->ints.begin(), part->ints.end());
      out.floats.insert(out.floats.end(), part->floats.begin(), part->floats.end());
    }
    out.shape = {int64_t(out.size())};
    return out;
  }

  // General ONNX Slice (any rank, negative steps) on a small constant.
  std::optional<Small> fold_slice(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    const int64_t rank = int64_t(x.shape.size());
    std::vector<int64_t> starts, ends, axes, steps;
    if (opset_ < 10) {
      starts = attr_ints(n, "starts");
      ends = attr_ints(n, "ends");
      axes = attr_ints(n, "axes");
    } else {
      const Small *s = constant(n, 1), *e = constant(n, 2), *ax = constant(n, 3), *st = constant(n, 4);
      if (!s || !e || (n.input_size() > 3 && !n.input(3).empty() && !ax) || (n.input_size() > 4 && !n.input(4).empty() && !st))
        return std::nullopt;
      starts = s->ints;
      ends = e->ints;
      if (ax) axes = ax->ints;
      if (st) steps = st->ints;
    }
    if (axes.empty())
      for (int64_t k = 0; k < int64_t(starts.size()); ++k) axes.push_back(k);
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (starts.size() != ends.size() || axes.size() != starts.size() || steps.size() != starts.size()) return std::nullopt;
    std::vector<std::vector<int64_t>> picks(static_cast<size_t>(rank));
    for (int64_t d = 0; d < rank; ++d)
      for (int64_t k = 0; k < x.shape[size_t(d)]; ++k) picks[size_t(d)].push_back(k);
    for (size_t k = 0; k < axes.size(); ++k) {
      int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
      if (axis < 0 || axis >= rank || steps[k] == 0) return std::nullopt;
      const int64_t dim = x.shape[size_t(axis)];
      int64_t start = starts[k], end = ends[k], step = steps[k];
      if (start < 0) start += dim;
      if (end < 0) end += dim;
      if (step > 0) {
        start = std::clamp<int64_t>(start, 0, dim);
        end = std::clamp<int64_t>(end, 0, dim);
      } else {
        start = std::clamp<int64_t>(start, 0, dim - 1);
        end = std::clamp<int64_t>(end, -1, dim - 1);
      }
      std::vector<int64_t> idx;
      for (int64_t i = start; step > 0 ? i < end : i > end; i += step) idx.push_back(i);
      picks[size_t(axis)] = idx;
    }
    return gather_grid(x, picks);
  }

  std::optional<Small> fold_transpose(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    const int64_t rank = int64_t(x.shape.size());
    std::vector<int64_t> perm = attr_ints(n, "perm");
    if (perm.empty())
      for (int64_t d = rank - 1; d >= 0; --d) perm.push_back(d);
    if (int64_t(perm.size()) != rank) return std::nullopt;
    Small out = x;
    out.ints.clear();
    out.floats.clear();
    out.shape.clear();
    for (auto p : perm) {
      if (p < 0 || p >= rank) return std::nullopt;
      out.shape.push_back(x.shape[size_t(p)]);
    }
    const auto in_strides = strides(x.shape);
    const int64_t total = numel(out.shape);
    std::vector<int64_t> index(static_cast<size_t>(rank), 0);
    for (int64_t flat = 0; flat < total; ++flat) {
      int64_t src = 0;
      for (int64_t d = 0; d < rank; ++d) src += index[size_t(d)] * in_strides[size_t(perm[size_t(d)])];
      if (x.is_float()) out.floats.push_back(x.floats[size_t(src)]);
      else out.ints.push_back(x.ints[size_t(src)]);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++index[size_t(d)] < out.shape[size_t(d)]) break;
        index[size_t(d)] = 0;
      }
    }
    return out;
  }

  std::optional<Small> fold_reshape(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    const Small* shape = constant(n, 1);
    if (!shape) return std::nullopt;
    std::vector<int64_t> dims;
    int64_t known = 1, infer_at = -1;
    for (size_t k = 0; k < shape->size(); ++k) {
      int64_t d = shape->i(k);
      if (d == 0 && k < x.shape.size() && !attr_i(n, "allowzero", 0)) d = x.shape[k];
      if (d == -1) {
        if (infer_at >= 0) return std::nullopt;
        infer_at = int64_t(k);
      } else {
        if (d < 0) return std::nullopt;
        known *= d;
      }
      dims.push_back(d);
    }
    const int64_t total = int64_t(x.size());
    if (infer_at >= 0) {
      if (known == 0 || total % known) return std::nullopt;
      dims[size_t(infer_at)] = total / known;
    } else if (known != total) {
      return std::nullopt;
    }
    Small out = x;
    out.shape = dims;
    return out;
  }

  std::optional<Small> fold_constant_of_shape(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    std::vector<int64_t> dims = x.ints;
    if (x.is_float() || numel(dims) < 0 || numel(dims) > kMaxFoldElements) return std::nullopt;
    Small out;
    out.dtype = onnx::TensorProto::FLOAT;
    double fill = 0;
    if (auto* a = find_attr(n, "value"); a && a->has_t()) {
      auto v = from_tensor(a->t());
      if (!v || v->size() != 1) return std::nullopt;
      out.dtype = v->dtype;
      fill = v->f(0);
    }
    out.shape = dims;
    for (int64_t k = 0; k < numel(dims); ++k) {
      if (out.is_float()) out.floats.push_back(fill);
      else out.ints.push_back(int64_t(fill));
    }
    return out;
  }

  std::optional<Small> fold_range(const onnx::NodeProto& n) {
    const Small *s = constant(n, 0), *l = constant(n, 1), *d = constant(n, 2);
    if (!s || !l || !d || s->size() != 1 || l->size() != 1 || d->size() != 1 || d->f(0) == 0) return std::nullopt;
    const double count = std::max(0.0, std::ceil((l->f(0) - s->f(0)) / d->f(0)));
    if (count > kMaxFoldElements) return std::nullopt;
    Small out;
    out.dtype = s->dtype;
    out.shape = {int64_t(count)};
    for (int64_t k = 0; k < int64_t(count); ++k) {
      if (out.is_float()) out.floats.push_back(s->f(0) + double(k) * d->f(0));
      else out.ints.push_back(s->i(0) + k * d->i(0));
    }
    return out;
  }

  // The product of a 1-D integer vector (a shape's element count).
  std::optional<Small> fold_reduce_prod(const onnx::NodeProto& n) {
    const Small& x = *constant(n, 0);
    if (x.shape.size() != 1 || x.is_float()) return std::nullopt;
    int64_t p = 1;
    for (auto v : x.ints) p *= v;
    return make_ints({p}, attr_i(n, "keepdims", 1) ? std::vector<int64_t>{1} : std::vector<int64_t>{});
  }

  // Elementwise operators fold by what their table entry says they compute (EltFn).
  std::optional<Small> fold_elementwise(const onnx::NodeProto& n, EltFn fn) {
    const Small& x = *constant(n, 0);
    if (fn == EltFn::floor || fn == EltFn::ceil || fn == EltFn::neg || fn == EltFn::abs || fn == EltFn::sqrt) {
      Small out = x;
      for (size_t k = 0; k < x.size(); ++k) {
        double v = x.f(k);
        switch (fn) {
          case EltFn::floor: v = std::floor(v); break;
          case EltFn::ceil: v = std::ceil(v); break;
          case EltFn::neg: v = -v; break;
          case EltFn::abs: v = std::fabs(v); break;
          default: v = std::sqrt(v); break;
        }
        if (x.is_float()) out.floats[k] = v;
        else out.ints[k] = int64_t(v);
      }
      return out;
    }
    if (fn == EltFn::where) {
      if (n.input_size() != 3 || !constant(n, 1) || !constant(n, 2)) return std::nullopt;
      const Small &c = x, &a = *constant(n, 1), &b = *constant(n, 2);
      auto ab = broadcast_shape(a.shape, b.shape);
      auto shape = ab ? broadcast_shape(c.shape, *ab) : std::nullopt;
      if (!shape || numel(*shape) < 0 || a.is_float() != b.is_float()) return std::nullopt;
      const auto ic = broadcast_index(c.shape, *shape), ia = broadcast_index(a.shape, *shape), ib = broadcast_index(b.shape, *shape);
      Small out;
      out.dtype = a.dtype;
      out.shape = *shape;
      for (size_t k = 0; k < ic.size(); ++k) {
        const bool take_a = c.i(ic[k]) != 0;
        if (out.is_float()) out.floats.push_back(take_a ? a.f(ia[k]) : b.f(ib[k]));
        else out.ints.push_back(take_a ? a.i(ia[k]) : b.i(ib[k]));
      }
      return out;
    }
    const Small* y = constant(n, 1);
    if (!y || n.input_size() != 2) return std::nullopt;
    const bool fm = x.is_float() || y->is_float();
    using R = std::optional<double>;
    const int dt = x.dtype;
    const int bool_t = onnx::TensorProto::BOOL;
    switch (fn) {  // Sum / Max / Min of two inputs fold like Add / Max / Min
      case EltFn::add: return binary(x, *y, [](double a, double b) -> R { return a + b; }, fm, dt);
      case EltFn::sub: return binary(x, *y, [](double a, double b) -> R { return a - b; }, fm, dt);
      case EltFn::mul: return binary(x, *y, [](double a, double b) -> R { return a * b; }, fm, dt);
      case EltFn::div:
        return binary(x, *y, [fm](double a, double b) -> R {
          if (b == 0) return std::nullopt;
          return fm ? a / b : std::trunc(a / b);
        }, fm, dt);
      case EltFn::mod:
        return binary(x, *y, [fm, &n](double a, double b) -> R {
          if (b == 0) return std::nullopt;
          if (fm || attr_i(n, "fmod", 0)) return std::fmod(a, b);
          double r = std::fmod(a, b);  // integer Mod takes the divisor's sign, like Python's %
          return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
        }, fm, dt);
      case EltFn::max: return binary(x, *y, [](double a, double b) -> R { return std::max(a, b); }, fm, dt);
      case EltFn::min: return binary(x, *y, [](double a, double b) -> R { return std::min(a, b); }, fm, dt);
      case EltFn::equal: return binary(x, *y, [](double a, double b) -> R { return double(a == b); }, fm, bool_t);
      case EltFn::less: return binary(x, *y, [](double a, double b) -> R { return double(a < b); }, fm, bool_t);
      case EltFn::greater: return binary(x, *y, [](double a, double b) -> R { return double(a > b); }, fm, bool_t);
      case EltFn::less_equal: return binary(x, *y, [](double a, double b) -> R { return double(a <= b); }, fm, bool_t);
      case EltFn::greater_equal: return binary(x, *y, [](double a, double b) -> R { return double(a >= b); }, fm, bool_t);
      default: break;
    }
    return std::nullopt;
  }

  // A folding rule, and whether it needs every input constant (Shape and Size read only the
  // input's shape; Constant has no inputs).
  struct Rule {
    std::optional<Small> (Folder::*fn)(const onnx::NodeProto&) = nullptr;
    bool constant_inputs = true;
    explicit operator bool() const { return fn != nullptr; }
  };

  // The rules, registered per operator-table entry like a backend's lowerings.
  static const LoweringTable<Rule>& rules() {
    static const LoweringTable<Rule> table = [] {
      LoweringTable<Rule> t("shape folding");
      t.add({"Shape"}, {&Folder::fold_shape, false});
      t.add({"Size"}, {&Folder::fold_size, false});
      t.add({"Constant"}, {&Folder::fold_constant, false});
      t.add({"Identity"}, {&Folder::fold_identity});
      t.add({"Cast"}, {&Folder::fold_cast});
      t.add({"Gather"}, {&Folder::fold_gather});
      t.add({"Unsqueeze"}, {&Folder::fold_unsqueeze});
      t.add({"Squeeze"}, {&Folder::fold_squeeze});
      t.add({"Concat"}, {&Folder::fold_concat});
      t.add({"Slice"}, {&Folder::fold_slice});
      t.add({"Transpose"}, {&Folder::fold_transpose});
      t.add({"Reshape"}, {&Folder::fold_reshape});
      t.add({"ConstantOfShape"}, {&Folder::fold_constant_of_shape});
      t.add({"Range"}, {&Folder::fold_range});
      t.add({"ReduceProd"}, {&Folder::fold_reduce_prod});
      return t;
    }();
    return table;
  }

  std::optional<Small> evaluate(const onnx::NodeProto& n) {
    const OpDef* def = n.domain().empty() || n.domain() == "ai.onnx" ? OpRegistry::instance().find(n.op_type()) : nullptr;
    if (!def) return std::nullopt;
    const Rule rule = rules().find(*def);
    if (rule && !rule.constant_inputs) return (this->*rule.fn)(n);
    if (!all_inputs_constant(n)) return std::nullopt;
    if (rule) return (this->*rule.fn)(n);
    if (def->elementwise != EltFn::none) return fold_elementwise(n, def->elementwise);
    return std::nullopt;
  }
};

}  // namespace

int fold_shape_computations(onnx::ModelProto& model, int opset) { return Folder(model, opset).run(); }

}  // namespace bricklab::detail
