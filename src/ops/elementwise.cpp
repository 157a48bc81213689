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
  if (n.def && n.def->elementwise == EltFn::mean) per += 1;
  return streaming_cost(g, n, per * output_numel(g, n));
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  struct Entry {
    const char* name;
    EltFn fn;
    CostFn cost;
    const char* summary;
    NormaliseFn normalise = nullptr;
  };
  using F = EltFn;
  const Entry entries[] = {
      // unary arithmetic
      {"Abs", F::abs, per_element<1>, "|x|"}, {"Neg", F::neg, per_element<1>, "-x"},
      {"Reciprocal", F::reciprocal, per_element<1>, "1/x"}, {"Sqrt", F::sqrt, per_element<1>, "square root"},
      {"Exp", F::exp, per_element<1>, "e^x"}, {"Log", F::log, per_element<1>, "natural log"},
      {"Floor", F::floor, per_element<1>, "floor"}, {"Ceil", F::ceil, per_element<1>, "ceil"},
      {"Round", F::round, per_element<1>, "round half to even"}, {"Sign", F::sign, per_element<1>, "sign"},
      {"Not", F::logical_not, per_element<1>, "logical not"}, {"Erf", F::erf, per_element<4>, "error function"},
      {"Sin", F::sin, per_element<1>, "sine"}, {"Cos", F::cos, per_element<1>, "cosine"},
      {"Tan", F::tan, per_element<1>, "tangent"}, {"Asin", F::asin, per_element<1>, "arcsine"},
      {"Acos", F::acos, per_element<1>, "arccosine"}, {"Atan", F::atan, per_element<1>, "arctangent"},
      {"Sinh", F::sinh, per_element<1>, "hyperbolic sine"}, {"Cosh", F::cosh, per_element<1>, "hyperbolic cosine"},
      {"Asinh", F::asinh, per_element<1>, "inverse hyperbolic sine"},
      {"Acosh", F::acosh, per_element<1>, "inverse hyperbolic cosine"},
      {"Atanh", F::atanh, per_element<1>, "inverse hyperbolic tangent"},
      {"IsNaN", F::is_nan, per_element<1>, "x is NaN"},
      {"IsInf", F::is_inf, per_element<1>, "x is +-inf (detect_positive / detect_negative)",
       [](const Graph&, const Node&, Attrs& a) {
         set_default(a, "detect_positive", int64_t(1));
         set_default(a, "detect_negative", int64_t(1));
       }},
      // activations
      {"Relu", F::relu, per_element<1>, "max(x, 0)"},
      {"LeakyRelu", F::leaky_relu, per_element<2>, "x or alpha*x",
       [](const Graph&, const Node&, Attrs& a) { set_default(a, "alpha", 0.01); }},
      {"PRelu", F::prelu, per_element<2>, "x or slope*x (broadcast slope)"},
      {"Elu", F::elu, per_element<3>, "exponential linear unit",
       [](const Graph&, const Node&, Attrs& a) { set_default(a, "alpha", 1.0); }},
      {"Selu", F::selu, per_element<3>, "scaled ELU",
       [](const Graph&, const Node&, Attrs& a) {
         set_default(a, "alpha", 1.67326319217681884765625);
         set_default(a, "gamma", 1.05070102214813232421875);
       }},
      {"Celu", F::celu, per_element<3>, "continuously differentiable ELU",
       [](const Graph&, const Node&, Attrs& a) { set_default(a, "alpha", 1.0); }},
      {"ThresholdedRelu", F::thresholded_relu, per_element<1>, "x where x > alpha, else 0",
       [](const Graph&, const Node&, Attrs& a) { set_default(a, "alpha", 1.0); }},
      {"Shrink", F::shrink, per_element<2>, "soft/hard shrinkage",
       [](const Graph&, const Node&, Attrs& a) {
         set_default(a, "bias", 0.0);
         set_default(a, "lambd", 0.5);
       }},
      {"Clip", F::clip, per_element<2>, "clamp to [min, max]"},
      {"Sigmoid", F::sigmoid, per_element<4>, "1/(1+e^-x)"},
      {"HardSigmoid", F::hard_sigmoid, per_element<3>, "clamp(alpha*x+beta, 0, 1)",
       [](const Graph&, const Node&, Attrs& a) {
         set_default(a, "alpha", 0.2);
         set_default(a, "beta", 0.5);
       }},
      {"HardSwish", F::hard_swish, per_element<4>, "x*hardsigmoid(x)"}, {"Tanh", F::tanh, per_element<4>, "tanh"},
      {"Softplus", F::softplus, per_element<3>, "log(1+e^x)"}, {"Softsign", F::softsign, per_element<2>, "x/(1+|x|)"},
      {"Cast", F::cast, per_element<0>, "element type conversion"},
      // binary with numpy broadcasting
      {"Add", F::add, per_element<1>, "a + b"}, {"Sub", F::sub, per_element<1>, "a - b"},
      {"Mul", F::mul, per_element<1>, "a * b"}, {"Div", F::div, per_element<1>, "a / b"},
      {"Pow", F::pow, per_element<1>, "a ^ b"},
      {"Mod", F::mod, per_element<1>, "a mod b", [](const Graph&, const Node&, Attrs& a) { set_default(a, "fmod", int64_t(0)); }},
      {"Equal", F::equal, per_element<1>, "a == b"}, {"Less", F::less, per_element<1>, "a < b"},
      {"Greater", F::greater, per_element<1>, "a > b"}, {"LessOrEqual", F::less_equal, per_element<1>, "a <= b"},
      {"GreaterOrEqual", F::greater_equal, per_element<1>, "a >= b"},
      {"And", F::logical_and, per_element<1>, "logical and"}, {"Or", F::logical_or, per_element<1>, "logical or"},
      {"Xor", F::logical_xor, per_element<1>, "logical xor"},
      {"BitShift", F::bit_shift, per_element<1>, "a << b or a >> b (unsigned integers)"},
      {"Where", F::where, per_element<1>, "cond ? a : b"},
  };
  for (const auto& e : entries) {
    OpDef def{e.name, OpClass::elementwise, e.cost, e.summary, nullptr, e.normalise};
    def.elementwise = e.fn;
    // The slope broadcasts to the input, not the other way round (ONNX's unidirectional rule).
    if (e.fn == F::prelu)
      def.validate = [](const Graph& g, const Node& n) {
        const Value& x = required_input(g, n, 0);
        const Value& slope = required_input(g, n, 1);
        if (!broadcasts_to(slope.shape, x.shape))
          invalid(n, "slope '" + slope.name + "' of shape " + shape_str(slope.shape) + " does not broadcast to the input's " + shape_str(x.shape));
      };
    if (e.fn == F::mod) def.check_attributes = [](const Node& n) { require_flag(n, "fmod"); };
    // alpha = 0 divides by zero (x / alpha): ONNX Runtime computes NaN, bricklab refuses.
    if (e.fn == F::celu)
      def.check_attributes = [](const Node& n) {
        const double alpha = n.attr_float("alpha", 1.0);
        if (!(std::isfinite(alpha) && alpha != 0.0)) invalid(n, "attribute 'alpha' is " + std::to_string(alpha) + "; Celu divides by it (must be finite and non-zero)");
      };
    // Clip-11's min and max (optional inputs) are scalars.
    if (e.fn == F::clip)
      def.validate = [](const Graph& g, const Node& n) {
        for (size_t i = 1; i <= 2; ++i)
          if (const Value* b = input(g, n, i); b && b->numel() != 1)
            invalid(n, std::string(i == 1 ? "min" : "max") + " '" + b->name + "' has shape " + shape_str(b->shape) + "; must be a scalar");
      };
    r.add(std::move(def));
  }
  // Variadic: any number of inputs, broadcast together, folded pairwise.
  const Entry variadics[] = {
      {"Sum", F::add, variadic, "sum of N inputs"},
      {"Mean", F::mean, variadic, "mean of N inputs"},
      {"Max", F::max, variadic, "elementwise max of N inputs"},
      {"Min", F::min, variadic, "elementwise min of N inputs"},
  };
  for (const auto& e : variadics) {
    OpDef def{e.name, OpClass::elementwise, e.cost, e.summary};
    def.elementwise = e.fn;
    def.variadic = true;
    // Broadcasting among the inputs exists from opset 8; before, they all have one shape.
    def.validate = [](const Graph& g, const Node& n) {
      if (n.opset <= 0 || n.opset >= 8) return;
      const Value& first = required_input(g, n, 0);
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (const Value* v = input(g, n, i); v && v->shape != first.shape)
          invalid(n, "inputs have shapes " + shape_str(first.shape) + " and " + shape_str(v->shape) + "; " + n.op +
                         " broadcasts from opset 8 (this model is opset " + std::to_string(n.opset) + ")");
    };
    r.add(std::move(def));
  }
}

}  // namespace bricklab::ops
