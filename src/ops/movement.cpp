// Operator-table entries: operators that move data without arithmetic (except Resize's
// interpolation). Bytes are the compulsory traffic: what is read to produce the output.
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

Cost copy_cost(const Graph& g, const Node& n) { return streaming_cost(g, n, 0); }

// Reads only the selected part of input 0 (as many bytes as it writes), plus the index inputs.
Cost select_cost(const Graph& g, const Node& n) {
  double read = output_bytes(g, n);
  for (size_t i = 1; i < n.inputs.size(); ++i)
    if (const Value* v = input(g, n, i)) read += v->nbytes();
  return Cost{0, read, output_bytes(g, n)};
}

// Nearest: a copy. Linear / cubic: 2 FLOPs per tap, 2 (or 4) taps per resized axis.
Cost resize_cost(const Graph& g, const Node& n) {
  const Value& x = required_input(g, n, 0);
  const Value& y = output(g, n);
  const std::string mode = n.attr_string("mode", "nearest");
  if (x.shape.size() != y.shape.size()) throw ShapeError({"", n.name, n.op}, "input and output ranks differ");
  int resized = 0;
  for (size_t i = 0; i < x.shape.size(); ++i) resized += x.shape[i] != y.shape[i];
  double taps = 0;
  if (mode == "linear" || mode == "bilinear") taps = double(int64_t(1) << resized);
  else if (mode == "cubic") taps = double(int64_t(1) << (2 * resized));
  return Cost{2 * taps * double(y.numel()), x.nbytes(), y.nbytes()};
}

}  // namespace

void register_movement_ops(OpRegistry& r) {
  const NormaliseFn axis0 = [](const Graph&, const Node&, Attrs& a) { set_default(a, "axis", int64_t(0)); };
  r.add({"Concat", OpClass::movement, copy_cost, "data movement", nullptr, axis0});
  OpDef split{"Split", OpClass::movement, copy_cost, "data movement", nullptr, axis0};
  split.validate = [](const Graph& g, const Node& n) { require_index_lists(g, n, 1); };
  r.add(std::move(split));
  OpDef transpose{"Transpose", OpClass::movement, copy_cost, "data movement"};
  transpose.validate = [](const Graph& g, const Node& n) {
    const size_t rank = required_input(g, n, 0).shape.size();
    if (!n.has_attr("perm")) return;
    const auto perm = n.attr_ints("perm");
    std::vector<bool> seen(rank, false);
    if (perm.size() != rank) invalid(n, "attribute 'perm' has " + std::to_string(perm.size()) + " entries; the input has rank " + std::to_string(rank));
    for (int64_t p : perm) {
      if (p < 0 || p >= int64_t(rank) || seen[size_t(p)])
        invalid(n, "attribute 'perm' is not a permutation of 0.." + std::to_string(rank - 1));
      seen[size_t(p)] = true;
    }
  };
  r.add(std::move(transpose));
  OpDef expand{"Expand", OpClass::movement, copy_cost, "data movement"};
  expand.validate = [](const Graph& g, const Node& n) { require_index_lists(g, n, 1); };
  r.add(std::move(expand));
  OpDef tile{"Tile", OpClass::movement, copy_cost, "data movement"};
  tile.validate = [](const Graph& g, const Node& n) { require_index_lists(g, n, 1); };
  r.add(std::move(tile));
  r.add({"SpaceToDepth", OpClass::movement, copy_cost, "data movement"});
  OpDef pad{"Pad", OpClass::movement, copy_cost, "pads with a constant, or by reflection or edge values"};
  pad.pads_constant = true;
  r.add(std::move(pad));
  OpDef scatter_nd{"ScatterND", OpClass::movement, copy_cost, "writes slices at index tuples (reduction none/add/mul/max/min)", nullptr,
                   [](const Graph&, const Node&, Attrs& a) { set_default(a, "reduction", std::string("none")); }};
  // updates: indices.shape[:-1] + data.shape[indices.shape[-1]:]
  scatter_nd.validate = [](const Graph& g, const Node& n) {
    const Value& data = required_input(g, n, 0);
    const Value& idx = required_input(g, n, 1);
    const Value& upd = required_input(g, n, 2);
    if (idx.shape.empty()) invalid(n, "indices '" + idx.name + "' is a scalar; needs rank >= 1");
    const int64_t k = idx.shape.back();
    if (k < 1 || k > int64_t(data.shape.size()))
      invalid(n, "indices '" + idx.name + "' " + shape_str(idx.shape) + " index " + std::to_string(k) + " dims of data " + shape_str(data.shape));
    Shape want(idx.shape.begin(), idx.shape.end() - 1);
    want.insert(want.end(), data.shape.begin() + k, data.shape.end());
    if (upd.shape != want)
      invalid(n, "updates '" + upd.name + "' has shape " + shape_str(upd.shape) + "; data " + shape_str(data.shape) + " and indices " +
                     shape_str(idx.shape) + " need " + shape_str(want));
  };
  r.add(std::move(scatter_nd));
  r.add({"DepthToSpace", OpClass::movement, copy_cost, "data movement", nullptr,
         [](const Graph&, const Node&, Attrs& a) { set_default(a, "mode", std::string("DCR")); }});
  r.add({"ScatterElements", OpClass::movement, copy_cost, "data movement", nullptr, [](const Graph&, const Node&, Attrs& a) {
           set_default(a, "axis", int64_t(0));
           set_default(a, "reduction", std::string("none"));
         }});
  r.add({"Trilu", OpClass::movement, copy_cost, "upper / lower triangle of matrices", nullptr,
         [](const Graph&, const Node&, Attrs& a) { set_default(a, "upper", int64_t(1)); }});
  r.add({"Gather", OpClass::movement, select_cost, "selects part of its input", nullptr, axis0});
  r.add({"GatherElements", OpClass::movement, select_cost, "selects elements by index along an axis", nullptr, axis0});
  r.add({"GatherND", OpClass::movement, select_cost, "selects slices by index tuples", nullptr,
         [](const Graph&, const Node&, Attrs& a) { set_default(a, "batch_dims", int64_t(0)); }});
  OpDef slice{"Slice", OpClass::movement, select_cost, "selects part of its input"};
  slice.validate = [](const Graph& g, const Node& n) { require_index_lists(g, n, 1); };
  r.add(std::move(slice));
  OpDef resize{"Resize", OpClass::movement, resize_cost, "nearest / linear / cubic resize"};
  resize.check_attributes = [](const Node& n) {
    require_one_of(n, "mode", {"nearest", "linear", "cubic"});
    require_one_of(n, "coordinate_transformation_mode",
                   {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"});
    require_one_of(n, "nearest_mode", {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"});
    require_flag(n, "exclude_outside");
  };
  resize.validate = [](const Graph& g, const Node& n) {
    if (n.opset >= 11) {  // exactly one of scales (input 2) and sizes (input 3)
      const Value* scales = input(g, n, 2);
      const Value* sizes = input(g, n, 3);
      const bool has_scales = scales && scales->numel() > 0, has_sizes = sizes && sizes->numel() > 0;
      if (has_scales == has_sizes)
        invalid(n, has_scales ? "both 'scales' and 'sizes' are given; ONNX takes exactly one" : "neither 'scales' nor 'sizes' is given; ONNX takes exactly one");
    }
    // roi, scales, sizes from opset 11 (scales alone at 10): one entry per input dim (two for roi).
    const Value& x = required_input(g, n, 0);
    const size_t rank = x.shape.size();
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      const Value* v = input(g, n, i);
      if (!v || v->numel() == 0) continue;  // an empty optional input
      const bool roi = n.opset >= 11 && i == 1;
      const size_t want = roi ? 2 * rank : rank;
      const char* what = roi ? "roi" : (n.opset >= 11 ? (i == 2 ? "scales" : "sizes") : "scales");
      if (v->shape.size() != 1 || size_t(v->shape[0]) != want)
        invalid(n, std::string(what) + " '" + v->name + "' has shape " + shape_str(v->shape) + "; the input has rank " +
                       std::to_string(rank) + ", so " + std::to_string(want) + " entries are needed");
    }
  };
  r.add(std::move(resize));
  r.add({"Upsample", OpClass::movement, resize_cost, "nearest / linear upsample (opset < 10)"});
}

}  // namespace bricklab::ops
