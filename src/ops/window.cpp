// Window geometry of convolutions and pools (see registry.hpp): auto_pad and ceil_mode.
#include <algorithm>

#include "bricklab/ops/registry.hpp"
#include "op_helpers.hpp"

namespace bricklab {
using ops::input;
using ops::invalid;

WindowGeometry window_geometry(const Node& n, const Shape& in, const Shape& out, const std::vector<int64_t>& kernel) {
  const size_t sp = kernel.size();
  if (sp == 0 || in.size() != sp + 2 || out.size() != sp + 2)
    invalid(n, "a window of rank " + std::to_string(sp) + " needs input and output of rank " + std::to_string(sp + 2) + ", got " +
                   shape_str(in) + " and " + shape_str(out));
  WindowGeometry w;
  w.kernel = kernel;
  w.strides = n.attr_ints("strides", std::vector<int64_t>(sp, 1));
  w.dilations = n.attr_ints("dilations", std::vector<int64_t>(sp, 1));
  const auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * sp, 0));
  if (w.strides.size() != sp || w.dilations.size() != sp || pads.size() != 2 * sp)
    invalid(n, "strides, dilations and pads have " + std::to_string(w.strides.size()) + ", " + std::to_string(w.dilations.size()) +
                   " and " + std::to_string(pads.size()) + " entries; a kernel of rank " + std::to_string(sp) + " needs " +
                   std::to_string(sp) + ", " + std::to_string(sp) + " and " + std::to_string(2 * sp));
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  for (size_t i = 0; i < sp; ++i) {
    const int64_t in_i = in[2 + i], out_i = out[2 + i];
    const int64_t extent = (kernel[i] - 1) * w.dilations[i] + 1;
    int64_t begin = pads[i], end = pads[sp + i];
    if (same) {
      // SAME: the output is ceil(in / stride); the padding that needs is split evenly, the odd
      // one at the end (UPPER) or the beginning (LOWER).
      const int64_t total = std::max<int64_t>(0, (out_i - 1) * w.strides[i] + extent - in_i);
      begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      end = total - begin;
    } else if (auto_pad == "VALID") {
      begin = end = 0;
    }
    w.pad_begin.push_back(begin);
    w.pad_end.push_back(end);
    w.pad_end_exact.push_back((out_i - 1) * w.strides[i] + extent - in_i - begin);
  }
  return w;
}

WindowGeometry window_geometry(const Graph& g, const Node& n) {
  const Value* x = input(g, n, 0);
  if (!x || n.outputs.empty() || n.outputs[0] < 0) invalid(n, "a windowed operator needs an input and an output");
  const Shape& y = g.values[size_t(n.outputs[0])].shape;
  std::vector<int64_t> kernel = n.attr_ints("kernel_shape");
  if (kernel.empty())
    if (const Value* w = input(g, n, 1); w && w->shape.size() == x->shape.size() && w->shape.size() > 2)
      kernel.assign(w->shape.begin() + 2, w->shape.end());
  return window_geometry(n, x->shape, y, kernel);
}

}  // namespace bricklab
