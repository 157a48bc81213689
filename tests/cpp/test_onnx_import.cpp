// ONNX import: shapes, dtypes, attributes, weights (initializers, Constant, ConstantOfShape,
// external data, stripped), symbolic dims, opsets 7..17, topological order.
#include <catch2/catch.hpp>

#include <filesystem>

#include "bricklab/bricklab.hpp"
#include "model_builder.hpp"

using namespace bricklab;
using testutil::ModelBuilder;
namespace fs = std::filesystem;

namespace {
ModelBuilder conv_relu_model(bool stripped = false) {
  ModelBuilder b(13);
  b.input("x", {std::string("N"), int64_t(3), int64_t(8), int64_t(8)}).weight("w", {4, 3, 3, 3}, stripped).weight("b", {4}, stripped);
  auto& conv = b.node("Conv", {"x", "w", "b"}, {"c"}, "conv1");
  ModelBuilder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  ModelBuilder::attr(conv, "kernel_shape", std::vector<int64_t>{3, 3});
  b.node("Relu", {"c"}, {"y"}, "relu1");
  b.output("y");
  return b;
}
}  // namespace

TEST_CASE("conv+relu: shapes, attributes, weights and links", "[import]") {
  LoadOptions opts;
  opts.batch = 2;
  Graph g = load_onnx_bytes(conv_relu_model().bytes(), opts);
  REQUIRE(g.nodes.size() == 2);
  CHECK(g.opset == 13);
  const Node& conv = g.nodes[0];
  CHECK(conv.name == "conv1");
  CHECK(conv.op == "Conv");
  CHECK(conv.attr_ints("pads") == std::vector<int64_t>{1, 1, 1, 1});
  CHECK(g.value(conv.outputs[0]).shape == Shape{2, 4, 8, 8});
  CHECK(g.value(g.inputs[0]).shape == Shape{2, 3, 8, 8});
  const Value& w = g.value(conv.inputs[1]);
  CHECK(w.kind == ValueKind::weight);
  REQUIRE(w.data.has_value());
  auto values = w.data->as_double();
  REQUIRE(values.size() == 108);
  CHECK(values[5] == Approx(0.05));
  CHECK(g.consumers(0) == std::vector<int>{1});
  CHECK(g.producers(1) == std::vector<int>{0});
  CHECK(g.value(g.outputs[0]).is_graph_output);
  CHECK(g.parameter_count() == 108 + 4);
  CHECK_FALSE(g.weights_stripped);
}

TEST_CASE("default batch is 1; named dims bind; unbound dims are named in the error", "[import]") {
  Graph g = load_onnx_bytes(conv_relu_model().bytes());
  CHECK(g.value(g.outputs[0]).shape == Shape{1, 4, 8, 8});

  LoadOptions by_name;
  by_name.dims["N"] = 5;
  g = load_onnx_bytes(conv_relu_model().bytes(), by_name);
  CHECK(g.value(g.outputs[0]).shape == Shape{5, 4, 8, 8});

  ModelBuilder b(13);
  b.input("x", {int64_t(2), std::string("seq")});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  try {
    load_onnx_bytes(b.bytes());
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("'seq'") && Catch::Contains("--dim"));
  }
  LoadOptions seq;
  seq.dims["seq"] = 7;
  CHECK(load_onnx_bytes(b.bytes(), seq).value(0).shape == Shape{2, 7});
  LoadOptions wrong;
  wrong.dims["sequence"] = 7;
  CHECK_THROWS_AS(load_onnx_bytes(b.bytes(), wrong), InvalidArgument);
  LoadOptions fixed_batch;
  fixed_batch.batch = 4;  // leading dim is fixed at 2
  CHECK_THROWS_WITH(load_onnx_bytes(b.bytes(), fixed_batch), Catch::Contains("fixed batch size of 2"));
}

TEST_CASE("stripped weights load with shapes and costs but no values", "[import]") {
  Graph g = load_onnx_bytes(conv_relu_model(/*stripped=*/true).bytes());
  CHECK(g.weights_stripped);
  const Value& w = g.value(g.nodes[0].inputs[1]);
  REQUIRE(w.data.has_value());
  CHECK_FALSE(w.data->has_values());
  CHECK(w.shape == Shape{4, 3, 3, 3});
  CHECK(g.nodes[0].cost.flops > 0);
}

TEST_CASE("weights given as Constant and ConstantOfShape nodes", "[import]") {
  ModelBuilder b(11);
  b.input("x", {int64_t(1), int64_t(2), int64_t(4), int64_t(4)});
  auto& c = b.node("Constant", {}, {"w"}, "const_w");
  ModelBuilder::attr(c, "value", ModelBuilder::tensor("w_t", {3, 2, 1, 1}, {1, 2, 3, 4, 5, 6}));
  auto& s = b.node("Constant", {}, {"shape"}, "const_shape");
  ModelBuilder::attr(s, "value", ModelBuilder::tensor_i64("s_t", {1}, {3}));
  auto& fill = b.node("ConstantOfShape", {"shape"}, {"bias"}, "bias_fill");
  ModelBuilder::attr(fill, "value", ModelBuilder::tensor("v", {1}, {0.5f}));
  b.node("Conv", {"x", "w", "bias"}, {"y"}, "conv");
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  REQUIRE(g.nodes.size() == 1);  // constants are folded into values
  const Node& conv = g.nodes[0];
  const Value& w = g.value(conv.inputs[1]);
  CHECK(w.kind == ValueKind::constant);
  CHECK(w.data->as_double() == std::vector<double>{1, 2, 3, 4, 5, 6});
  const Value& bias = g.value(conv.inputs[2]);
  CHECK(bias.kind == ValueKind::constant);
  CHECK(bias.shape == Shape{3});
  CHECK(bias.data->as_double() == std::vector<double>{0.5, 0.5, 0.5});
  CHECK(g.value(conv.outputs[0]).shape == Shape{1, 3, 4, 4});
}

TEST_CASE("a large ConstantOfShape stays a lazy fill (never materialised)", "[import]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(1), int64_t(64), int64_t(100), int64_t(100)}).weight_i64("shape", {1, 64, 100, 100});
  auto& fill = b.node("ConstantOfShape", {"shape"}, {"ones"}, "ones");
  ModelBuilder::attr(fill, "value", ModelBuilder::tensor("v", {1}, {1.0f}));
  b.node("Add", {"x", "ones"}, {"y"}, "add");
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  REQUIRE(g.nodes.size() == 1);
  const Value& ones = g.value(g.nodes[0].inputs[1]);
  CHECK(ones.data->kind() == TensorData::Kind::fill);
  CHECK(ones.data->fill_value() == 1.0);
  CHECK(ones.shape == Shape{1, 64, 100, 100});
}

TEST_CASE("external data inside the model folder loads; traversal is refused", "[import][security]") {
  auto dir = testutil::temp_dir("external");
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  {
    std::ofstream out(dir / "weights.bin", std::ios::binary);
    out << "HEADER!!";  // 8 bytes before the data: exercises the offset
    out.write(reinterpret_cast<const char*>(w.data()), 24);
  }
  auto make = [&](const std::string& location, const std::string& offset, const std::string& length) {
    ModelBuilder b(13);
    b.input("x", {int64_t(2), int64_t(3)});
    auto t = ModelBuilder::tensor("w", {3, 2}, {});
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&t](const std::string& k, const std::string& v) {
      auto* e = t.add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", location);
    if (!offset.empty()) add("offset", offset);
    if (!length.empty()) add("length", length);
    *b.graph().add_initializer() = t;
    b.node("MatMul", {"x", "w"}, {"y"}, "mm");
    b.output("y");
    b.save((dir / "model.onnx").string());
    return (dir / "model.onnx").string();
  };
  Graph g = load_onnx(make("weights.bin", "8", "24"));
  CHECK(g.value(g.nodes[0].inputs[1]).data->as_double() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(g.value(g.outputs[0]).shape == Shape{2, 2});

  CHECK_THROWS_WITH(load_onnx(make("../weights.bin", "", "")), Catch::Contains("path traversal"));
  CHECK_THROWS_AS(load_onnx(make("sub/../../etc/passwd", "", "")), ExternalDataError);
  CHECK_THROWS_WITH(load_onnx(make("/etc/passwd", "", "")), Catch::Contains("absolute"));
  CHECK_THROWS_WITH(load_onnx(make("missing.bin", "", "")), Catch::Contains("missing"));
  CHECK_THROWS_WITH(load_onnx(make("weights.bin", "100", "24")), Catch::Contains("beyond the end"));
  CHECK_THROWS_WITH(load_onnx(make("weights.bin", "0", "12")), Catch::Contains("does not match"));
  CHECK_THROWS_AS(load_onnx(make("weights.bin", "-5", "")), ExternalDataError);
  // A symbolic link inside the folder that points outside it is refused too.
  auto outside = testutil::temp_dir("outside");
  {
    std::ofstream out(outside / "secret.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(w.data()), 24);
  }
  fs::create_symlink(outside / "secret.bin", dir / "link.bin");
  CHECK_THROWS_WITH(load_onnx(make("link.bin", "", "")), Catch::Contains("outside the model's folder"));
  // From memory, external data cannot be resolved at all.
  ModelBuilder b(13);
  CHECK_THROWS_AS(load_onnx_bytes([&] {
                    std::ifstream in(dir / "model.onnx", std::ios::binary);
                    return std::string(std::istreambuf_iterator<char>(in), {});
                  }()),
                  ExternalDataError);
  fs::remove_all(dir);
  fs::remove_all(outside);
}

TEST_CASE("opsets 7 to 17 load; others are refused", "[import][opset]") {
  for (int opset : {7, 9, 10, 11, 13, 15, 17}) {
    ModelBuilder b(opset, opset >= 13 ? 7 : 5);
    b.input("x", {std::string("N"), int64_t(3), int64_t(8), int64_t(8)}).weight("w", {4, 3, 3, 3});
    b.node("Conv", {"x", "w"}, {"c"});
    auto& pool = b.node("MaxPool", {"c"}, {"p"});
    ModelBuilder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
    ModelBuilder::attr(pool, "strides", std::vector<int64_t>{2, 2});
    b.node("Sigmoid", {"p"}, {"y"});
    b.output("y");
    INFO("opset " << opset);
    Graph g = load_onnx_bytes(b.bytes());
    CHECK(g.value(g.outputs[0]).shape == Shape{1, 4, 3, 3});
  }
  for (int opset : {6, 18}) {
    ModelBuilder b(opset);
    b.input("x", {int64_t(1)});
    b.node("Relu", {"x"}, {"y"});
    b.output("y");
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), UnsupportedError);
  }
}

TEST_CASE("opset-specific forms: Slice attributes (9) vs inputs (13), LayerNormalization (17)", "[import][opset]") {
  {
    ModelBuilder b(9, 4);
    b.input("x", {int64_t(4), int64_t(10)});
    auto& s = b.node("Slice", {"x"}, {"y"});
    ModelBuilder::attr(s, "starts", std::vector<int64_t>{1});
    ModelBuilder::attr(s, "ends", std::vector<int64_t>{7});
    ModelBuilder::attr(s, "axes", std::vector<int64_t>{1});
    b.output("y");
    CHECK(load_onnx_bytes(b.bytes()).value(1).shape == Shape{4, 6});
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(4), int64_t(10)}).weight_i64("starts", {1}).weight_i64("ends", {7}).weight_i64("axes", {1});
    b.node("Slice", {"x", "starts", "ends", "axes"}, {"y"});
    b.output("y");
    Graph g = load_onnx_bytes(b.bytes());
    CHECK(g.value(g.outputs[0]).shape == Shape{4, 6});
  }
  {
    ModelBuilder b(17, 8);
    b.input("x", {int64_t(2), int64_t(5), int64_t(16)}).weight("gamma", {16}).weight("beta", {16});
    auto& ln = b.node("LayerNormalization", {"x", "gamma", "beta"}, {"y"}, "ln");
    ModelBuilder::attr(ln, "axis", int64_t(-1));
    b.output("y");
    Graph g = load_onnx_bytes(b.bytes());
    CHECK(g.value(g.outputs[0]).shape == Shape{2, 5, 16});
  }
}

TEST_CASE("Reshape driven by Shape/Gather/Concat resolves through data propagation", "[import]") {
  ModelBuilder b(13);
  b.input("x", {std::string("batch"), int64_t(4), int64_t(3), int64_t(3)}).weight_i64("idx", {0}).weight_i64("minus1", {-1});
  b.node("Shape", {"x"}, {"s"});
  b.node("Gather", {"s", "idx"}, {"n"});
  auto& cat = b.node("Concat", {"n", "minus1"}, {"shape"});
  ModelBuilder::attr(cat, "axis", int64_t(0));
  b.node("Reshape", {"x", "shape"}, {"y"});
  b.output("y");
  LoadOptions opts;
  opts.batch = 3;
  Graph g = load_onnx_bytes(b.bytes(), opts);
  CHECK(g.value(g.outputs[0]).shape == Shape{3, 36});
  CHECK(g.nodes.back().cost.flops == 0);
  CHECK(g.nodes.back().cost.bytes() == 0);
}

TEST_CASE("nodes stored out of order are sorted topologically", "[import]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(2), int64_t(2)});
  b.node("Relu", {"a"}, {"y"}, "second");
  b.node("Neg", {"x"}, {"a"}, "first");
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  REQUIRE(g.nodes.size() == 2);
  CHECK(g.nodes[0].name == "first");
  CHECK(g.nodes[1].name == "second");
}

TEST_CASE("unnamed nodes get unique generated names", "[import]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(2)});
  b.node("Relu", {"x"}, {"a"});
  b.node("Relu", {"a"}, {"y"});
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  CHECK(g.nodes[0].name != g.nodes[1].name);
  CHECK(g.find_node(g.nodes[1].name) == 1);
}

TEST_CASE("bundled models load", "[import][bundled]") {
  for (const char* rel : {"models/bundled/tiny_cnn.onnx", "models/bundled/resnet18.onnx", "models/bundled/squeezenet1_1.onnx",
                          "models/bundled/mobilenet_v2.onnx", "models/bundled/tiny_external/model.onnx",
                          "models/bundled/tiny_constants.onnx"}) {
    INFO(rel);
    LoadOptions opts;
    opts.batch = 2;
    Graph g = load_onnx(testutil::repo_path(rel), opts);
    CHECK(g.nodes.size() > 0);
    CHECK(g.total_cost().flops > 0);
    for (const auto& v : g.values) CHECK(v.numel() >= 0);
  }
}
