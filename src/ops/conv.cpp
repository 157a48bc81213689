// Operator-table entries: convolutions. A multiply-add counts as two FLOPs.
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

double product_from(const Shape& s, size_t first) {
  double p = 1;
  for (size_t i = first; i < s.size(); ++i) p *= double(s[i]);
  return p;
}

// Y[n, m, o...] = sum over (c in group, k...) X * W: numel(Y) * (C/group) * prod(kernel) MACs.
Cost conv_cost(const Graph& g, const Node& n) {
  const Value& x = required_input(g, n, 0);
  const Value& w = required_input(g, n, 1);
  const Value& y = output(g, n);
  require_rank(n, x, 3, "input");
  if (w.shape.size() != x.shape.size())
    throw ShapeError({"", n.name, n.op}, "weight rank " + std::to_string(w.shape.size()) + " differs from input rank " +
                                             std::to_string(x.shape.size()));
  const int64_t group = n.attr_int("group", 1);
  if (group < 1 || x.shape[1] != w.shape[1] * group || w.shape[0] % group != 0)
    throw ShapeError({"", n.name, n.op}, "input has " + std::to_string(x.shape[1]) + " channels but weight " +
                                             shape_str(w.shape) + " with group " + std::to_string(group) + " expects " +
                                             std::to_string(w.shape[1] * group));
  const double macs = double(y.numel()) * product_from(w.shape, 1);
  const double bias = input(g, n, 2) ? double(y.numel()) : 0.0;
  return streaming_cost(g, n, 2 * macs + bias);
}

// Each input element is scattered into (M/group) * prod(kernel) outputs.
Cost conv_transpose_cost(const Graph& g, const Node& n) {
  const Value& x = required_input(g, n, 0);
  const Value& w = required_input(g, n, 1);
  const Value& y = output(g, n);
  require_rank(n, x, 3, "input");
  if (w.shape.size() != x.shape.size())
    throw ShapeError({"", n.name, n.op}, "weight rank differs from input rank");
  const double macs = double(x.numel()) * product_from(w.shape, 1);
  const double bias = input(g, n, 2) ? double(y.numel()) : 0.0;
  return streaming_cost(g, n, 2 * macs + bias);
}

// Weights of the input's rank, channels that match the input's and the groups, and a bias with
// one entry per output channel (W[0] for Conv, W[1] x group for ConvTranspose).
void validate_window_weights(const Graph& g, const Node& n, bool transpose) {
  const Value& x = required_input(g, n, 0);
  const Value& w = required_input(g, n, 1);
  if (w.shape.size() < 3 || w.shape.size() != x.shape.size())
    invalid(n, "weight '" + w.name + "' has shape " + shape_str(w.shape) + "; needs the input's rank (" +
                   std::to_string(x.shape.size()) + ", at least 3)");
  const int64_t group = n.attr_int("group", 1);
  if (group < 1) invalid(n, "attribute 'group' is " + std::to_string(group) + "; must be >= 1");
  // Conv: W is [M, C/group, k...]; ConvTranspose: W is [C, M/group, k...].
  const int64_t in_channels = transpose ? w.shape[0] : w.shape[1] * group;
  if (x.shape[1] != in_channels)
    invalid(n, "input '" + x.name + "' has " + std::to_string(x.shape[1]) + " channels; weight '" + w.name + "' " +
                   shape_str(w.shape) + " with group " + std::to_string(group) + " needs " + std::to_string(in_channels));
  if (w.shape[0] % group != 0)
    invalid(n, "weight '" + w.name + "' has " + std::to_string(w.shape[0]) + " filters, not a multiple of group " + std::to_string(group));
  const int64_t out_channels = transpose ? w.shape[1] * group : w.shape[0];
  require_input_shape(g, n, 2, {out_channels}, "bias");
}
void validate_conv(const Graph& g, const Node& n) { validate_window_weights(g, n, false); }
void validate_conv_transpose(const Graph& g, const Node& n) {
  validate_window_weights(g, n, true);
  // output_padding and output_shape: one entry per spatial dim; output_padding below the stride.
  const size_t spatial = required_input(g, n, 0).shape.size() - 2;
  const auto strides = n.attr_ints("strides");
  for (const char* key : {"output_padding", "output_shape"}) {
    if (!n.has_attr(key)) continue;
    const auto v = n.attr_ints(key);
    if (v.size() != spatial)
      invalid(n, std::string("attribute '") + key + "' has " + std::to_string(v.size()) + " entries; the input has " + std::to_string(spatial) +
                     " spatial dims");
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0) invalid(n, std::string("attribute '") + key + "' has " + std::to_string(v[i]) + "; entries must be >= 0");
      const int64_t stride = i < strides.size() ? strides[i] : 1;
      if (std::string(key) == "output_padding" && v[i] >= stride)
        invalid(n, "output_padding " + std::to_string(v[i]) + " is not smaller than the stride " + std::to_string(stride));
    }
  }
}

}  // namespace

void register_conv_ops(OpRegistry& r) {
  struct Entry {
    const char* name;
    CostFn cost;
    const char* summary;
    NormaliseFn normalise;
    void (*validate)(const Graph&, const Node&);
    bool anchor;
  };
  for (const Entry& e : {Entry{"Conv", conv_cost, "N-d convolution (groups, dilations, pads, auto_pad)",
                               [](const Graph& g, const Node& n, Attrs& a) { (void)normalise_window(g, n, a, WindowKind::conv); }, validate_conv,
                               true},
                         Entry{"ConvTranspose", conv_transpose_cost, "N-d transposed convolution",
                               [](const Graph& g, const Node& n, Attrs& a) {
                                 (void)normalise_window(g, n, a, WindowKind::conv_transpose);
                               },
                               validate_conv_transpose, false}}) {
    OpDef def{e.name, OpClass::compute, e.cost, e.summary, nullptr, e.normalise};
    def.check_attributes = [](const Node& n) {
      check_window(n, false);
      if (n.attr_int("group", 1) < 1) invalid(n, "attribute 'group' is " + std::to_string(n.attr_int("group", 1)) + "; must be >= 1");
    };
    def.check_input_ranks = [](const Node& n, const std::vector<int>& ranks) {
      const int x = ranks.size() > 0 ? ranks[0] : -1, w = ranks.size() > 1 ? ranks[1] : -1;
      if (x >= 0 && x < 3) invalid(n, "input 'X' has rank " + std::to_string(x) + "; " + n.op + " needs (N, C, D1, ...), rank >= 3");
      if (w >= 0 && w < 3) invalid(n, "weight 'W' has rank " + std::to_string(w) + "; " + n.op + " needs rank >= 3 (filters, channels, kernel dims)");
      if (x >= 0 && w >= 0 && x != w)
        invalid(n, "input 'X' has rank " + std::to_string(x) + " and weight 'W' rank " + std::to_string(w) + "; they must be equal");
      if (ranks.size() > 2 && ranks[2] >= 0 && ranks[2] != 1)
        invalid(n, "bias 'B' has rank " + std::to_string(ranks[2]) + "; it must be 1-D");
      const int spatial = (x >= 0 ? x : w) - 2;
      if (spatial > 0)
        for (const char* key : {"output_padding", "output_shape", "strides", "dilations", "kernel_shape"})
          if (n.has_attr(key) && n.attr_ints(key).size() != size_t(spatial))
            invalid(n, std::string("attribute '") + key + "' has " + std::to_string(n.attr_ints(key).size()) + " entries; the input has " +
                           std::to_string(spatial) + " spatial dims");
    };
    def.validate = e.validate;
    def.sets_layout = true;
    def.variant_anchor = e.anchor;
    r.add(std::move(def));
  }
}

}  // namespace bricklab::ops
