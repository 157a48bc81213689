// The operator table: one entry per ONNX operator that bricklab understands. What the library
// knows about an operator independently of a backend hangs off its entry: the cost model (FLOPs,
// bytes), a fallback shape rule, the attribute normalisation that brick keys are built from, and
// the elementwise semantics (EltFn) that backends and shape folding switch on. Each node keeps a
// pointer to its entry (Node::def). Backends register one lowering per entry in a
// LoweringTable (ops/lowering.hpp); an entry a backend has no lowering for is unsupported there.
#pragma once

#include <map>
#include <optional>
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

// What an elementwise operator computes, so that kernels are chosen once, at plan time, by a
// switch on this value (never by comparing operator names per element). Variadic operators
// (Sum, Mean, Max, Min) fold their inputs pairwise with the same function.
enum class EltFn : uint8_t {
  none,
  // unary
  abs, neg, reciprocal, sqrt, exp, log, floor, ceil, round, sign, logical_not, erf, sin, cos, tan, asin, acos, atan,
  sinh, cosh, asinh, acosh, atanh, relu, leaky_relu, elu, selu, celu, clip, sigmoid, hard_sigmoid, hard_swish, tanh,
  softplus, softsign, thresholded_relu, shrink, is_nan, is_inf, identity, cast,
  // binary (numpy broadcasting)
  add, sub, mul, div, pow, mod, prelu, equal, less, greater, less_equal, greater_equal, logical_and, logical_or,
  logical_xor, bit_shift, max, min, mean,
  // ternary
  where,
};

// True for the functions of one input (abs ... cast).
inline bool is_unary(EltFn f) { return f >= EltFn::abs && f <= EltFn::cast; }

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
  // The element type of output `i` where ONNX's inference leaves it unset (used with
  // infer_shapes); none: that of input 0.
  DType (*output_dtype)(const Node& node, size_t output, DType input0) = nullptr;
  // Attribute values checked before ONNX's shape inference sees the node (which divides by a
  // zero stride, for one): ShapeError naming the attribute and what is accepted.
  void (*check_attributes)(const Node& node) = nullptr;
  // Input ranks checked before ONNX's shape inference, which indexes into them unchecked (a
  // ConvTranspose weight of rank 1 makes it read past the dims): ranks[i] is input i's rank where
  // it is known before inference (graph inputs, initializers, Constant nodes), -1 otherwise.
  // ShapeError naming the input and the rank required.
  void (*check_input_ranks)(const Node& node, const std::vector<int>& ranks) = nullptr;
  // Inputs checked against the operator's rules once shapes are known (parameter tensors such as
  // biases, slopes, batch-norm statistics): ShapeError where ONNX does not define the result.
  void (*validate)(const Graph& graph, const Node& node) = nullptr;
  // Fusion traits the analyses read. variant_anchor: a fused step containing this node takes its
  // variants (algorithm, precision) from it. sets_layout: its step picks the blocked activation
  // layout the steps after it receive (a brick's context must then include it).
  // per_channel_affine: y = scale[c] * x + shift[c] with constant parameters (inference batch
  // norm), which a preceding convolution can absorb into its weights.
  // pads_constant: copies its input into a larger tensor with constant (or reflected) borders
  // (Pad). absorbs_zero_pad: a window that can read such a Pad's input directly when the borders
  // are zeros it counts, folding them into its own padding (AveragePool).
  bool variant_anchor = false;
  bool sets_layout = false;
  bool per_channel_affine = false;
  bool pads_constant = false;
  bool absorbs_zero_pad = false;
  // Bit i set: input i is a parameter that must be positive (a variance, a normalisation scale);
  // stand-in weights for it are drawn from a positive range.
  uint32_t positive_inputs = 0;
  EltFn elementwise = EltFn::none;  // elementwise operators: what they compute
  bool variadic = false;            // Sum, Mean, Max, Min: any number of inputs, folded pairwise
  size_t index = 0;                 // position in OpRegistry::all(), for dense per-backend tables
};

// The binary function a node computes on exactly two inputs: Add, Sub, Mul, Div, ... and a
// two-input Sum (add), Max or Min; EltFn::none otherwise. Fusions that accept an Add (a residual
// sum post-op) accept a two-input Sum the same way.
EltFn binary_fn(const Node& node);

class OpRegistry {
 public:
  static const OpRegistry& instance();
  const OpDef* find(const std::string& op_type) const;  // nullptr when unsupported
  // The entry of a node: Node::def where the importer set it, else looked up by name.
  const OpDef* of(const Node& node) const;
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

// An operator's ONNX schema at one opset (read from the ONNX library bricklab is built with):
// what the entry's validation checks node inputs against, and what its attribute defaults must
// agree with (tests/cpp/test_op_schema.cpp).
struct OpSchemaInfo {
  struct Parameter {
    std::string name;
    bool optional = false, variadic = false;
    std::vector<DType> allowed;  // element types the input or output may have
    std::string type_str;        // the type parameter ("T"): inputs sharing one share an element type
  };
  struct AttributeInfo {
    std::string name;
    std::string type;  // "int", "float", "string", "ints", "floats", "strings", "tensor", "graph", ...
    bool required = false;
    std::optional<Attribute> default_value;  // scalar, string and list defaults
  };
  int since_version = 0;  // the opset this version of the operator was introduced in
  std::vector<Parameter> inputs, outputs;
  std::vector<AttributeInfo> attributes;
};
// The schema of `op` in force at `opset` of the default domain; nullopt when ONNX has none.
std::optional<OpSchemaInfo> op_schema(const std::string& op, int opset);

// Checks a node's inputs against its ONNX schema: element types in each constraint's set, one type
// per type parameter (Concat's inputs all "T"), no empty name where the input is not optional.
// Throws UnsupportedError (types) or ShapeError (missing inputs) naming the node and the input.
void check_input_types(const Graph& graph, const Node& node);

// A node's attributes with its operator entry's defaults filled in (normalised_attributes): the
// one place backends read attribute values from, so a default lives only in the table. A typed
// read of an attribute that is absent and has no default in the table throws ShapeError naming
// the node and the attribute.
class NodeAttrs {
 public:
  NodeAttrs(const Graph& graph, const Node& node);
  double real(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  std::vector<int64_t> ints(const std::string& key) const;
  std::string text(const std::string& key) const;
  bool has(const std::string& key) const { return attrs_.count(key) != 0; }

 private:
  const Attribute& get(const std::string& key) const;
  const Node& node_;
  std::map<std::string, Attribute> attrs_;
};

// The window of a windowed node (Conv, MaxPool, AveragePool, LpPool) over concrete input and
// output shapes: the one place auto_pad and ceil_mode arithmetic lives. Per spatial dimension:
// kernel, strides, dilations (ONNX's convention: 1 = dense), the begin pads, the end pads as
// declared (`pads`, or those auto_pad SAME_UPPER / SAME_LOWER / VALID implies), and the end pads
// with which the window yields exactly the output size (`pad_end_exact`: larger than declared
// where ceil_mode adds a window that overhangs the input, smaller where the last input rows are
// never read). `in` and `out` are the full shapes [N, C, spatial...]; `kernel` the spatial
// kernel (a convolution's weights' trailing dims, or kernel_shape). ShapeError naming the node
// when the attribute lengths do not match the kernel's rank.
struct WindowGeometry {
  std::vector<int64_t> kernel, strides, dilations, pad_begin, pad_end, pad_end_exact;
  size_t rank() const { return kernel.size(); }
};
WindowGeometry window_geometry(const Node& node, const Shape& in, const Shape& out, const std::vector<int64_t>& kernel);
// The same for a node of `graph`, its input 0 and output 0, the kernel from kernel_shape or (for
// a convolution without it) the weights.
WindowGeometry window_geometry(const Graph& graph, const Node& node);

// Fills node.cost for every node of the graph from the table (throws UnsupportedError for an
// operator without an entry), after the entry's `validate` (ShapeError naming the node).
void compute_costs(Graph& graph);

// Runs the entry's `check_attributes` on a node (nothing for entries without one); ShapeError.
void check_attributes(const Node& node);

}  // namespace bricklab
