// Operator-table entries: views (no data moves) and shape computations (metadata only).
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

// A view reinterprets its input: the element count must not change.
Cost view_cost(const Graph& g, const Node& n) {
  const Value& x = required_input(g, n, 0);
  const Value& y = output(g, n, 0);
  if (x.numel() != y.numel())
    throw ShapeError({"", n.name, n.op}, "changes the element count from " + std::to_string(x.numel()) + " " +
                                             shape_str(x.shape) + " to " + std::to_string(y.numel()) + " " + shape_str(y.shape));
  return Cost{};
}

// Produces a new tensor from metadata alone: only the write costs.
Cost generate_cost(const Graph& g, const Node& n) { return Cost{0, 0, output_bytes(g, n)}; }

}  // namespace

void register_shape_ops(OpRegistry& r) {
  const char* view = "view: no data moves (Dropout: identity at inference)";
  OpDef reshape{"Reshape", OpClass::view, view_cost, view};
  reshape.validate = [](const Graph& g, const Node& n) { require_index_lists(g, n, 1); };
  r.add(std::move(reshape));
  r.add({"Identity", OpClass::view, view_cost, view});
  for (const char* name : {"Squeeze", "Unsqueeze"}) {
    OpDef def{name, OpClass::view, view_cost, view};
    def.validate = [](const Graph& g, const Node& n) { require_index_lists(g, n, 1); };
    r.add(std::move(def));
  }
  r.add({"Flatten", OpClass::view, view_cost, view, nullptr,
         [](const Graph&, const Node&, Attrs& a) { set_default(a, "axis", int64_t(1)); }});
  // Dropout's optional mask has the input's shape (ONNX's inference leaves it unset in old opsets):
  // bool from opset 10, the input's type before.
  OpDef dropout{"Dropout", OpClass::view, view_cost, view,
                [](const std::vector<Shape>& in, const Node& n) { return std::vector<Shape>(n.outputs.size(), in.at(0)); },
                [](const Graph&, const Node&, Attrs& a) { a.erase("seed"); }};
  dropout.output_dtype = [](const Node& n, size_t output, DType input0) {
    return output == 1 && n.opset >= 10 ? DType::boolean : input0;
  };
  r.add(std::move(dropout));
  r.add({"Shape", OpClass::shape, generate_cost, "the shape of a tensor"});
  r.add({"Size", OpClass::shape, generate_cost, "the element count of a tensor"});
  r.add({"Constant", OpClass::shape, generate_cost, "a constant tensor (folded into a weight at load)"});
  r.add({"ConstantOfShape", OpClass::shape, generate_cost, "a tensor filled with one value"});
  r.add({"Range", OpClass::shape, generate_cost, "arithmetic sequence"});
}

}  // namespace bricklab::ops
