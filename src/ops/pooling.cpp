// Operator-table entries: pooling and local response normalisation.
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

// One operation (compare or add) per kernel tap per output element.
Cost windowed_pool_cost(const Graph& g, const Node& n) {
  const Value& y = output(g, n, 0);
  const std::vector<int64_t> kernel = n.attr_ints("kernel_shape");
  if (kernel.empty()) throw ShapeError({"", n.name, n.op}, "attribute 'kernel_shape' is required");
  double taps = 1;
  for (int64_t k : kernel) taps *= double(k);
  return streaming_cost(g, n, double(y.numel()) * taps);
}

// Reads every input element once.
Cost global_pool_cost(const Graph& g, const Node& n) {
  return streaming_cost(g, n, double(required_input(g, n, 0).numel()));
}

// Square-sum over `size` neighbouring channels (2 per tap) plus scale, pow and divide.
Cost lrn_cost(const Graph& g, const Node& n) {
  const double size = double(n.attr_int("size", 1));
  return streaming_cost(g, n, double(output(g, n).numel()) * (2 * size + 3));
}

}  // namespace

void register_pooling_ops(OpRegistry& r) {
  const auto window_pool = [](OpDef def) {
    def.check_attributes = [](const Node& n) { check_window(n, true); };
    return def;
  };
  r.add(window_pool({"MaxPool", OpClass::reduction, windowed_pool_cost, "max pooling (pads, strides, dilations, ceil_mode)", nullptr,
                     [](const Graph& g, const Node& n, Attrs& a) {
                       if (normalise_window(g, n, a, WindowKind::pool)) set_default(a, "storage_order", int64_t(0));
                     }}));
  OpDef average = window_pool({"AveragePool", OpClass::reduction, windowed_pool_cost, "average pooling (count_include_pad, ceil_mode)",
                               nullptr, [](const Graph& g, const Node& n, Attrs& a) {
                                 if (normalise_window(g, n, a, WindowKind::pool)) set_default(a, "count_include_pad", int64_t(0));
                               }});
  average.absorbs_zero_pad = true;
  r.add(std::move(average));
  r.add(window_pool({"LpPool", OpClass::reduction, windowed_pool_cost, "Lp-norm pooling", nullptr,
                     [](const Graph& g, const Node& n, Attrs& a) {
                       (void)normalise_window(g, n, a, WindowKind::pool);
                       set_default(a, "p", int64_t(2));
                     }}));
  r.add({"GlobalAveragePool", OpClass::reduction, global_pool_cost, "mean over all spatial positions"});
  r.add({"GlobalMaxPool", OpClass::reduction, global_pool_cost, "max over all spatial positions"});
  OpDef lrn{"LRN", OpClass::reduction, lrn_cost, "local response normalisation across channels"};
  lrn.check_attributes = [](const Node& n) {
    if (!n.has_attr("size")) invalid(n, "attribute 'size' is required");
    if (n.attr_int("size", 0) < 1) invalid(n, "attribute 'size' is " + std::to_string(n.attr_int("size", 0)) + "; must be >= 1");
    for (const char* key : {"alpha", "beta"})  // ONNX Runtime requires both positive; beta = 0 makes the division a no-op
      if (n.has_attr(key) && !(n.attr_float(key, 1.0) > 0.0))
        invalid(n, std::string("attribute '") + key + "' is " + std::to_string(n.attr_float(key, 1.0)) + "; must be > 0");
    // An even window has no centre channel; ONNX Runtime refuses it too.
    if (n.attr_int("size", 0) % 2 == 0 || n.attr_int("size", 0) > INT32_MAX)
      invalid(n, "attribute 'size' is " + std::to_string(n.attr_int("size", 0)) + "; must be odd (a window centred on each channel)");
  };
  r.add(std::move(lrn));
}

}  // namespace bricklab::ops
