// Shared helpers for the operator-table entries in src/ops/ (not a public header).
#pragma once

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <map>
#include <set>
#include <string>

#include "bricklab/core/error.hpp"
#include "bricklab/ops/registry.hpp"

namespace bricklab::ops {

inline const Value* input(const Graph& g, const Node& n, size_t i) {
  if (i >= n.inputs.size() || n.inputs[i] < 0) return nullptr;
  return &g.values[size_t(n.inputs[i])];
}

inline const Value& required_input(const Graph& g, const Node& n, size_t i) {
  const Value* v = input(g, n, i);
  if (!v) throw ShapeError({"", n.name, n.op}, "input " + std::to_string(i) + " is missing");
  return *v;
}

inline const Value& output(const Graph& g, const Node& n, size_t i = 0) {
  if (i >= n.outputs.size() || n.outputs[i] < 0) throw ShapeError({"", n.name, n.op}, "output " + std::to_string(i) + " is missing");
  return g.values[size_t(n.outputs[i])];
}

// Bytes of all distinct inputs / outputs.
inline double input_bytes(const Graph& g, const Node& n) {
  std::set<int> seen;
  double b = 0;
  for (int v : n.inputs)
    if (v >= 0 && seen.insert(v).second) b += g.values[size_t(v)].nbytes();
  return b;
}
inline double output_bytes(const Graph& g, const Node& n) {
  double b = 0;
  for (int v : n.outputs)
    if (v >= 0) b += g.values[size_t(v)].nbytes();
  return b;
}
inline double output_numel(const Graph& g, const Node& n) {
  double e = 0;
  for (int v : n.outputs)
    if (v >= 0) e += double(g.values[size_t(v)].numel());
  return e;
}

// Cost of reading every input and writing every output with `flops` arithmetic.
inline Cost streaming_cost(const Graph& g, const Node& n, double flops) {
  return Cost{flops, input_bytes(g, n), output_bytes(g, n)};
}

inline void require_rank(const Node& n, const Value& v, size_t min_rank, const char* what) {
  if (v.shape.size() < min_rank)
    throw ShapeError({"", n.name, n.op}, std::string(what) + " '" + v.name + "' has rank " + std::to_string(v.shape.size()) +
                                             ", needs at least " + std::to_string(min_rank));
}

// Attribute normalisation helpers (OpDef::normalise).
using Attrs = std::map<std::string, Attribute>;
inline void set_default(Attrs& a, const std::string& key, Attribute value) {
  if (!a.count(key)) a[key] = std::move(value);
}

// Windowed operators (Conv, ConvTranspose, MaxPool, AveragePool, LpPool) on an N-d input:
// kernel_shape from the weights (convolutions), strides and dilations of 1, group 1
// (convolutions), ceil_mode 0 (pools); auto_pad SAME_UPPER / SAME_LOWER resolved to explicit
// pads from the concrete shapes (not for ConvTranspose), VALID to zero pads; pads default 0.
// False (nothing done) when the input has no spatial dimensions.
enum class WindowKind { conv, conv_transpose, pool };
inline bool normalise_window(const Graph& g, const Node& n, Attrs& a, WindowKind kind) {
  const bool conv = kind != WindowKind::pool;
  const Value* x = input(g, n, 0);
  const size_t rank = x ? x->shape.size() : 0;
  if (rank < 3) return false;
  const size_t sp = rank - 2;
  if (conv && !a.count("kernel_shape"))
    if (const Value* w = input(g, n, 1); w && w->shape.size() == rank)
      a["kernel_shape"] = std::vector<int64_t>(w->shape.begin() + 2, w->shape.end());
  set_default(a, "strides", std::vector<int64_t>(sp, 1));
  set_default(a, "dilations", std::vector<int64_t>(sp, 1));
  if (conv) set_default(a, "group", int64_t(1));
  else set_default(a, "ceil_mode", int64_t(0));
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  a.erase("auto_pad");
  const Shape* y = n.outputs.empty() || n.outputs[0] < 0 ? nullptr : &g.values[size_t(n.outputs[0])].shape;
  // ConvTranspose's SAME is defined on its output, not resolved here.
  if ((auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") && kind != WindowKind::conv_transpose && y && y->size() == rank &&
      a.count("kernel_shape") && std::get<std::vector<int64_t>>(a["kernel_shape"]).size() == sp) {
    const WindowGeometry w = window_geometry(n, x->shape, *y, std::get<std::vector<int64_t>>(a["kernel_shape"]));
    std::vector<int64_t> pads = w.pad_begin;
    pads.insert(pads.end(), w.pad_end.begin(), w.pad_end.end());
    a["pads"] = pads;
  } else if (auto_pad == "VALID") {
    a["pads"] = std::vector<int64_t>(2 * sp, 0);
  } else if (auto_pad != "NOTSET") {
    a["auto_pad"] = auto_pad;
  }
  set_default(a, "pads", std::vector<int64_t>(2 * sp, 0));
  return true;
}

// ---- validation helpers (OpDef::check_attributes, OpDef::validate) ------------------------------

[[noreturn]] inline void invalid(const Node& n, const std::string& why) { throw ShapeError({"", n.name, n.op}, why); }

// Every entry of an integer-list attribute (when present) is >= `min`.
inline void require_ints_at_least(const Node& n, const char* key, int64_t min) {
  if (!n.has_attr(key)) return;
  for (int64_t v : n.attr_ints(key))
    if (v < min) invalid(n, std::string("attribute '") + key + "' has " + std::to_string(v) + "; every entry must be >= " + std::to_string(min));
}

// An integer attribute that ONNX defines as a flag: 0 or 1 (when present).
inline void require_flag(const Node& n, const char* key) {
  if (!n.has_attr(key)) return;
  const int64_t v = n.attr_int(key, 0);
  if (v != 0 && v != 1) invalid(n, std::string("attribute '") + key + "' is " + std::to_string(v) + "; must be 0 or 1");
}

// A string attribute (when present) is one of `accepted`.
inline void require_one_of(const Node& n, const char* key, std::initializer_list<const char*> accepted) {
  if (!n.has_attr(key)) return;
  const std::string v = n.attr_string(key, "");
  std::string list;
  for (const char* a : accepted) {
    if (v == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  invalid(n, std::string("attribute '") + key + "' is '" + v + "'; accepted: " + list);
}

// A finite, non-negative float attribute (when present): epsilons.
inline void require_finite_non_negative(const Node& n, const char* key) {
  if (!n.has_attr(key)) return;
  const double v = n.attr_float(key, 0.0);
  if (!(v >= 0.0) || v == HUGE_VAL)
    invalid(n, std::string("attribute '") + key + "' is " + std::to_string(v) + "; must be finite and >= 0");
}

// Inputs from `first` on are index lists (axes, starts, ends, steps, split sizes, shapes): 1-D,
// as ONNX defines them and ONNX Runtime requires (a scalar is refused too).
inline void require_index_lists(const Graph& g, const Node& n, size_t first) {
  for (size_t i = first; i < n.inputs.size(); ++i)
    if (n.inputs[i] >= 0 && g.values[size_t(n.inputs[i])].shape.size() != 1)
      invalid(n, "input " + std::to_string(i) + " ('" + g.values[size_t(n.inputs[i])].name + "') has shape " +
                     shape_str(g.values[size_t(n.inputs[i])].shape) + "; it lists indices and must be 1-D");
}

// Windowed operators: kernel_shape, strides, dilations positive; pads non-negative, of 2 x the
// kernel's rank; auto_pad one of ONNX's values.
inline void check_window(const Node& n, bool pool) {
  require_ints_at_least(n, "kernel_shape", 1);
  require_ints_at_least(n, "strides", 1);
  require_ints_at_least(n, "dilations", 1);
  require_ints_at_least(n, "pads", 0);
  const auto k = n.attr_ints("kernel_shape");
  if (pool && k.empty()) invalid(n, "attribute 'kernel_shape' is required");
  const auto pads = n.attr_ints("pads");
  if (!pads.empty() && !k.empty() && pads.size() != 2 * k.size())
    invalid(n, "attribute 'pads' has " + std::to_string(pads.size()) + " entries; kernel_shape has " + std::to_string(k.size()) +
                   " dims, so 2 x " + std::to_string(k.size()) + " are needed");
  // A pooling window entirely in the padding has no defined value (ONNX Runtime refuses it too).
  if (pool)
    for (size_t i = 0; i < pads.size() && !k.empty(); ++i)
      if (pads[i] >= k[i % k.size()])
        invalid(n, "pad " + std::to_string(pads[i]) + " is not smaller than the kernel size " + std::to_string(k[i % k.size()]));
  const std::string ap = n.attr_string("auto_pad", "NOTSET");
  if (ap != "NOTSET" && ap != "SAME_UPPER" && ap != "SAME_LOWER" && ap != "VALID")
    invalid(n, "attribute 'auto_pad' is '" + ap + "'; accepted: NOTSET, SAME_UPPER, SAME_LOWER, VALID");
}

// True when `from` broadcasts to `to` in numpy's one-directional sense (only `from` is expanded).
inline bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  for (size_t i = 0; i < from.size(); ++i) {
    const int64_t f = from[from.size() - 1 - i], t = to[to.size() - 1 - i];
    if (f != t && f != 1) return false;
  }
  return true;
}

// Input i (when present) has exactly `shape`.
inline void require_input_shape(const Graph& g, const Node& n, size_t i, const Shape& shape, const char* what) {
  const Value* v = input(g, n, i);
  if (v && v->shape != shape)
    invalid(n, std::string(what) + " '" + v->name + "' has shape " + shape_str(v->shape) + "; must be " + shape_str(shape));
}

}  // namespace bricklab::ops
