// The operator table: one entry per ONNX operator that bricklab understands. What the library
// knows about an operator independently of a backend hangs off its entry: the cost model (FLOPs,
// bytes), a fallback shape rule, and the attribute normalisation that brick keys are built from.
// The backends' lowerings dispatch on the same operator names (src/engine/cpu/kernels.cpp,
// cuda/cuda_ops.cpp).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bricklab/graph/graph.hpp"

namespace bricklab {

enum class OpClass {
  compute,      // dense arithmetic: Conv, Gemm, MatMul, ...
  elementwise,  // one output element from one element of each input
  reduction,    // pooling, reductions, normalisations, softmax
  movement,     // copies data: Concat, Split, Slice, Gather, Transpose, Pad, ...
  view,         // no data moves at run time: Reshape, Flatten, Squeeze, Identity, ...
  shape,        // computes on shapes/metadata only: Shape, Size, ...
};

std::string op_class_name(OpClass c);

using CostFn = Cost (*)(const Graph&, const Node&);
// Output shapes from input shapes and the node's attributes; used where ONNX's own shape
// inference leaves dimensions unknown (e.g. Einsum in ONNX 1.12).
using ShapeFn = std::vector<Shape> (*)(const std::vector<Shape>& inputs, const Node& node);

// Fills in the operator's attribute defaults and makes equivalent spellings equal, in place
// (`attrs` starts as the node's own), so that two nodes that compute the same thing end with
// equal attributes. See normalised_attributes().
using NormaliseFn = void (*)(const Graph&, const Node&, std::map<std::string, Attribute>& attrs);

struct OpDef {
  std::string name;      // ONNX op_type (default domain)
  OpClass cls = OpClass::elementwise;
  CostFn cost = nullptr;
  std::string summary;   // one line for `bricklab ops`
  ShapeFn infer_shapes = nullptr;  // optional fallback shape rule
  NormaliseFn normalise = nullptr;  // attribute defaults and spellings (none: taken as given)
};

class OpRegistry {
 public:
  static const OpRegistry& instance();
  const OpDef* find(const std::string& op_type) const;  // nullptr when unsupported
  const std::vector<OpDef>& all() const { return defs_; }  // sorted by name
  void add(OpDef def);

 private:
  std::vector<OpDef> defs_;
};

// The node's attributes normalised: its operator entry's `normalise` (defaults filled in, e.g.
// Conv strides of 1, auto_pad resolved to explicit pads), then any `axis` made non-negative and
// any `axes` (except Unsqueeze's, which index the output) made non-negative and sorted. Two
// layers that run the same computation get equal attributes; brick keys are built from them.
// Operators without an entry (other domains) get the generic part only.
std::map<std::string, Attribute> normalised_attributes(const Graph& graph, const Node& node);

// Fills node.cost for every node of the graph from the table (throws UnsupportedError for an
// operator without an entry).
void compute_costs(Graph& graph);

}  // namespace bricklab
