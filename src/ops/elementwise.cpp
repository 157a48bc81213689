// Operator-table entries: elementwise operators. FLOPs are per output element, a documented
// convention (docs/cost-model.md): 1 for simple arithmetic and comparisons, more for
// activations that need several operations; these ops are memory-bound, so bytes dominate.
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

template <int FlopsPerElement>
Cost per_element(const Graph& g, const Node& n) {
  return streaming_cost(g, n, FlopsPerElement * output_numel(g, n));
}

// Variadic Sum/Max/Min/Mean: (inputs - 1) operations per output element (+1 for Mean's divide).
Cost variadic(const Graph& g, const Node& n) {
  size_t present = 0;
  for (int v : n.inputs) present += v >= 0;
  double per = present > 0 ? double(present - 1) : 0.0;
  if (n.op == "Mean") per += 1;
  return streaming_cost(g, n, per * output_numel(g, n));
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  struct Entry { const char* name; CostFn cost; const char* summary; NormaliseFn normalise = nullptr; };
  const Entry entries[] = {
      // unary arithmetic
      {"Abs", per_element<1>, "|x|"}, {"Neg", per_element<1>, "-x"}, {"Reciprocal", per_element<1>, "1/x"},
      {"Sqrt", per_element<1>, "square root"}, {"Exp", per_element<1>, "e^x"}, {"Log", per_element<1>, "natural log"},
      {"Floor", per_element<1>, "floor"}, {"Ceil", per_element<1>, "ceil"}, {"Round", per_element<1>, "round half to even"},
      {"Sign", per_element<1>, "sign"}, {"Not", per_element<1>, "logical not"}, {"Erf", per_element<4>, "error function"},
      {"Sin", per_element<1>, "sine"}, {"Cos", per_element<1>, "cosine"},
      // activations
      {"Relu", per_element<1>, "max(x, 0)"}, {"LeakyRelu", per_element<2>, "x or alpha*x",
       [](const Graph&, const Node&, Attrs& a) { set_default(a, "alpha", 0.01); }},
      {"PRelu", per_element<2>, "x or slope*x (broadcast slope)"}, {"Elu", per_element<3>, "exponential linear unit",
       [](const Graph&, const Node&, Attrs& a) { set_default(a, "alpha", 1.0); }},
      {"Selu", per_element<3>, "scaled ELU"}, {"Clip", per_element<2>, "clamp to [min, max]"},
      {"Sigmoid", per_element<4>, "1/(1+e^-x)"}, {"HardSigmoid", per_element<3>, "clamp(alpha*x+beta, 0, 1)",
       [](const Graph&, const Node&, Attrs& a) {
         set_default(a, "alpha", 0.2);
         set_default(a, "beta", 0.5);
       }},
      {"HardSwish", per_element<4>, "x*hardsigmoid(x)"}, {"Tanh", per_element<4>, "tanh"},
      {"Softplus", per_element<3>, "log(1+e^x)"}, {"Softsign", per_element<2>, "x/(1+|x|)"},
      {"Cast", per_element<0>, "element type conversion"},
      // binary with numpy broadcasting
      {"Add", per_element<1>, "a + b"}, {"Sub", per_element<1>, "a - b"}, {"Mul", per_element<1>, "a * b"},
      {"Div", per_element<1>, "a / b"}, {"Pow", per_element<1>, "a ^ b"}, {"Mod", per_element<1>, "a mod b"},
      {"Equal", per_element<1>, "a == b"}, {"Less", per_element<1>, "a < b"}, {"Greater", per_element<1>, "a > b"},
      {"LessOrEqual", per_element<1>, "a <= b"}, {"GreaterOrEqual", per_element<1>, "a >= b"},
      {"And", per_element<1>, "logical and"}, {"Or", per_element<1>, "logical or"}, {"Xor", per_element<1>, "logical xor"},
      {"Where", per_element<1>, "cond ? a : b"},
      // variadic
      {"Sum", variadic, "sum of N inputs"}, {"Mean", variadic, "mean of N inputs"},
      {"Max", variadic, "elementwise max of N inputs"}, {"Min", variadic, "elementwise min of N inputs"},
  };
  for (const auto& e : entries) r.add({e.name, OpClass::elementwise, e.cost, e.summary, nullptr, e.normalise});
}

}  // namespace bricklab::ops
