// The operator table: one entry per ONNX operator that bricklab understands. Everything that
// knows about an operator hangs off its entry (cost model now; brick keys and backend lowerings
// are added to the same entry), so adding an operator means adding one entry in src/ops/.
#pragma once

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

struct OpDef {
  std::string name;      // ONNX op_type (default domain)
  OpClass cls = OpClass::elementwise;
  CostFn cost = nullptr;
  std::string summary;   // one line for `bricklab ops`
  ShapeFn infer_shapes = nullptr;  // optional fallback shape rule
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

// Fills node.cost for every node of the graph from the table (throws UnsupportedError for an
// operator without an entry).
void compute_costs(Graph& graph);

}  // namespace bricklab
