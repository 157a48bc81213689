// Shared helpers for the operator-table entries in src/ops/ (not a public header).
#pragma once

#include <algorithm>
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

}  // namespace bricklab::ops
