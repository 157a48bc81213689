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
  for (const char* name : {"Concat", "Split"}) r.add({name, OpClass::movement, copy_cost, "data movement", nullptr, axis0});
  for (const char* name : {"Transpose", "Expand", "Tile", "SpaceToDepth"}) r.add({name, OpClass::movement, copy_cost, "data movement"});
  OpDef pad{"Pad", OpClass::movement, copy_cost, "pads with a constant, or by reflection or edge values"};
  pad.pads_constant = true;
  r.add(std::move(pad));
  r.add({"ScatterND", OpClass::movement, copy_cost, "writes slices at index tuples (reduction none/add/mul/max/min)", nullptr,
         [](const Graph&, const Node&, Attrs& a) { set_default(a, "reduction", std::string("none")); }});
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
  r.add({"Slice", OpClass::movement, select_cost, "selects part of its input"});
  OpDef resize{"Resize", OpClass::movement, resize_cost, "nearest / linear / cubic resize"};
  resize.validate = [](const Graph& g, const Node& n) {
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
