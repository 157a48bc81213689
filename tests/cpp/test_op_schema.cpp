// The operator table against ONNX's own schemas (libonnx): every entry has one, every default the
// table fills in equals ONNX's, and node inputs of a type the schema does not allow are refused.
#include <catch2/catch.hpp>

#include "bricklab/bricklab.hpp"
#include "bricklab/ops/registry.hpp"
#include "model_builder.hpp"

using namespace bricklab;
using testutil::ModelBuilder;

namespace {

// The newest opset <= 17 at which ONNX defines the operator (nullopt: none in 7..17).
std::optional<OpSchemaInfo> newest_schema(const std::string& op, int& opset) {
  for (opset = kMaxOpset; opset >= kMinOpset; --opset)
    if (auto s = op_schema(op, opset)) return s;
  return std::nullopt;
}

// Scalars, strings and integer lists (the defaults ONNX gives); floats to float32 precision.
bool same(const Attribute& a, const Attribute& b) {
  if (auto* x = std::get_if<double>(&a))
    if (auto* y = std::get_if<double>(&b)) return std::fabs(*x - *y) <= 1e-6 * std::max(1.0, std::fabs(*x));
  if (auto* x = std::get_if<int64_t>(&a))
    if (auto* y = std::get_if<int64_t>(&b)) return *x == *y;
  if (auto* x = std::get_if<std::string>(&a))
    if (auto* y = std::get_if<std::string>(&b)) return *x == *y;
  if (auto* x = std::get_if<std::vector<int64_t>>(&a))
    if (auto* y = std::get_if<std::vector<int64_t>>(&b)) return *x == *y;
  return false;
}

}  // namespace

TEST_CASE("operator table: every entry has an ONNX schema and its defaults agree with it", "[ops][schema]") {
  Graph empty;
  int checked = 0;
  for (const OpDef& def : OpRegistry::instance().all()) {
    int opset = 0;
    const auto schema = newest_schema(def.name, opset);
    INFO(def.name);
    REQUIRE(schema);
    CHECK(schema->since_version <= opset);
    Node node;
    node.name = "n";
    node.op = def.name;
    node.def = &def;
    node.opset = opset;
    const NodeAttrs attrs(empty, node);
    for (const auto& a : schema->attributes) {
      if (!a.default_value || !attrs.has(a.name)) continue;
      INFO(def.name << "-" << opset << " attribute " << a.name);
      // The table's default (what every backend reads through NodeAttrs) is ONNX's.
      const auto table = normalised_attributes(empty, node).at(a.name);
      CHECK(same(table, *a.default_value));
      ++checked;
    }
  }
  CHECK(checked >= 25);
}

TEST_CASE("operator table: LeakyRelu's alpha, Softmax's axis by opset, from the table for every type", "[ops][schema]") {
  Graph empty;
  Node leaky;
  leaky.op = "LeakyRelu";
  leaky.opset = 16;
  CHECK(NodeAttrs(empty, leaky).real("alpha") == Approx(0.01));
  Node softmax;
  softmax.op = "Softmax";
  softmax.opset = 11;
  CHECK(NodeAttrs(empty, softmax).integer("axis") == 1);
  softmax.opset = 13;
  CHECK(NodeAttrs(empty, softmax).integer("axis") == -1);
  CHECK_THROWS_WITH(NodeAttrs(empty, softmax).real("nope"), Catch::Contains("nope") && Catch::Contains("required"));
}

TEST_CASE("inputs of an element type the ONNX schema does not allow are refused at load", "[ops][schema][bad-input]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(2), int64_t(3)}, onnx::TensorProto::INT64);
  b.node("Sqrt", {"x"}, {"y"}, "int_sqrt");
  b.output("y", onnx::TensorProto::INT64);
  // ONNX's inference catches it where the type is declared ...
  CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), Error);
  CHECK_THROWS_WITH(load_onnx_bytes(b.bytes()), Catch::Contains("int_sqrt") && Catch::Contains("int64"));
  ModelBuilder ok(13);
  ok.input("x", {int64_t(2), int64_t(3)});
  ok.node("Sqrt", {"x"}, {"y"}, "float_sqrt");
  ok.output("y");
  Graph g = load_onnx_bytes(ok.bytes());
  CHECK_NOTHROW(compute_costs(g));
  // ... and the table's check wherever a graph reaches it with a type the schema does not allow
  // (graphs built or edited in code, values whose type came from folding).
  g.values[size_t(g.find_value("x"))].dtype = DType::int64;
  CHECK_THROWS_AS(compute_costs(g), UnsupportedError);
  CHECK_THROWS_WITH(compute_costs(g), Catch::Contains("float_sqrt") && Catch::Contains("int64") && Catch::Contains("float32"));
}

// Window geometry (the one place auto_pad and ceil_mode arithmetic lives) against ONNX's own
// shape inference: the output sizes libonnx infers are those the geometry's declared pads give
// (floor, or ceil with ceil_mode), its exact end pads make the last window end exactly at the
// padded input's edge, and SAME splits its padding as the ONNX spec says (the odd one at the end
// for SAME_UPPER, at the beginning for SAME_LOWER).
TEST_CASE("window geometry: auto_pad and ceil_mode agree with ONNX's shape inference", "[ops][window]") {
  struct Case {
    const char* op;
    int64_t in;
    int64_t kernel, stride, dilation;
    const char* auto_pad;
    std::vector<int64_t> pads;  // [begin, end] when auto_pad is NOTSET
    int64_t ceil_mode;
    int64_t begin, end;  // the expected pads (ONNX spec arithmetic, worked by hand)
  };
  const Case cases[] = {
      {"Conv", 9, 3, 2, 1, "SAME_UPPER", {}, 0, 1, 1},      // out 5: total (5-1)*2+3-9 = 2
      {"Conv", 8, 3, 2, 1, "SAME_UPPER", {}, 0, 0, 1},      // out 4: total 1, odd one at the end
      {"Conv", 8, 3, 2, 1, "SAME_LOWER", {}, 0, 1, 0},      // ... at the beginning
      {"Conv", 10, 3, 1, 2, "SAME_UPPER", {}, 0, 2, 2},     // dilated extent 5: total 4
      {"Conv", 10, 3, 1, 1, "VALID", {}, 0, 0, 0},
      {"MaxPool", 9, 2, 2, 1, "NOTSET", {0, 0}, 1, 0, 0},   // ceil_mode: out 5 overhangs by 1
      {"AveragePool", 10, 3, 2, 1, "NOTSET", {1, 1}, 0, 1, 1},
      {"MaxPool", 7, 3, 3, 1, "SAME_LOWER", {}, 0, 1, 1},   // out 3: total (3-1)*3+3-7 = 2
  };
  for (const Case& c : cases) {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(2), int64_t(4), c.in});
    const bool conv = std::string(c.op) == "Conv";
    if (conv) b.weight("w", {3, 2, 1, c.kernel});
    auto& n = b.node(c.op, conv ? std::vector<std::string>{"x", "w"} : std::vector<std::string>{"x"}, {"y"}, "win");
    if (!conv) ModelBuilder::attr(n, "kernel_shape", std::vector<int64_t>{1, c.kernel});
    ModelBuilder::attr(n, "strides", std::vector<int64_t>{1, c.stride});
    if (c.dilation != 1) ModelBuilder::attr(n, "dilations", std::vector<int64_t>{1, c.dilation});
    if (std::string(c.auto_pad) != "NOTSET") ModelBuilder::attr(n, "auto_pad", std::string(c.auto_pad));
    else ModelBuilder::attr(n, "pads", std::vector<int64_t>{0, c.pads[0], 0, c.pads[1]});
    if (c.ceil_mode) ModelBuilder::attr(n, "ceil_mode", c.ceil_mode);
    b.output("y");
    INFO(c.op << " in " << c.in << " kernel " << c.kernel << " stride " << c.stride << " " << c.auto_pad);
    const Graph g = load_onnx_bytes(b.bytes());
    const Node& node = g.nodes.at(0);
    const WindowGeometry w = window_geometry(g, node);
    REQUIRE(w.rank() == 2);
    CHECK(w.pad_begin[1] == c.begin);
    CHECK(w.pad_end[1] == c.end);
    const int64_t out = g.values[size_t(node.outputs[0])].shape[3];  // ONNX's inference
    const int64_t extent = (c.kernel - 1) * c.dilation + 1, span = c.in + w.pad_begin[1] + w.pad_end[1] - extent;
    CHECK(out == (c.ceil_mode ? (span + c.stride - 1) / c.stride : span / c.stride) + 1);
    CHECK((out - 1) * c.stride + extent == c.in + w.pad_begin[1] + w.pad_end_exact[1]);
    CHECK(w.pad_end_exact[1] >= w.pad_end[1] - (c.stride - 1));
  }
}
