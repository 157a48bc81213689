// Bad input never crashes: each case raises the right typed error with a message that names
// the file, node and problem.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "bricklab/bricklab.hpp"
#include "model_builder.hpp"

using namespace bricklab;
using testutil::ModelBuilder;
namespace fs = std::filesystem;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
std::string write_temp(const std::string& name, const std::string& bytes) {
  auto dir = testutil::temp_dir("bad");
  auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}
ModelBuilder relu_model() {
  ModelBuilder b(13);
  b.input("x", {int64_t(2), int64_t(3)});
  b.node("Relu", {"x"}, {"y"}, "relu");
  b.output("y");
  return b;
}
}  // namespace

TEST_CASE("missing file, directory, empty file, text file", "[bad]") {
  CHECK_THROWS_AS(load_onnx("/nonexistent/model.onnx"), FileError);
  CHECK_THROWS_WITH(load_onnx("/nonexistent/model.onnx"), Catch::Contains("/nonexistent/model.onnx") && Catch::Contains("no such file"));
  CHECK_THROWS_AS(load_onnx(fs::temp_directory_path().string()), FileError);
  CHECK_THROWS_AS(load_onnx(write_temp("empty.onnx", "")), ModelFormatError);
  auto text = write_temp("notes.onnx", "This is a README, not a model.\n");
  CHECK_THROWS_AS(load_onnx(text), ModelFormatError);
  CHECK_THROWS_WITH(load_onnx(text), Catch::Contains("notes.onnx"));
}

TEST_CASE("truncated real model", "[bad]") {
  const std::string bytes = read_file(testutil::repo_path("models/bundled/tiny_cnn.onnx"));
  REQUIRE(bytes.size() > 100);
  for (size_t cut : {size_t(10), bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
    INFO("cut at " << cut);
    CHECK_THROWS_AS(load_onnx_bytes(bytes.substr(0, cut)), Error);
  }
}

TEST_CASE("unsupported operator and domain name the node", "[bad]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(4), int64_t(4)}).input("s", {int64_t(4), int64_t(1), int64_t(4)});
  b.node("NonMaxSuppression", {"x", "s"}, {"y"}, "nms_1");
  b.output("y", onnx::TensorProto::INT64);
  try {
    load_onnx_bytes(b.bytes(), {}, "", "det.onnx");
    FAIL("expected UnsupportedError");
  } catch (const UnsupportedError& e) {
    CHECK_THAT(e.what(), Catch::Contains("det.onnx") && Catch::Contains("nms_1") && Catch::Contains("NonMaxSuppression"));
  }
  ModelBuilder c(13);
  c.input("x", {int64_t(4)});
  auto& n = c.node("FusedGelu", {"x"}, {"y"}, "custom");
  n.set_domain("com.microsoft");
  c.output("y");
  CHECK_THROWS_WITH(load_onnx_bytes(c.bytes()), Catch::Contains("com.microsoft"));
}

TEST_CASE("inconsistent shapes", "[bad]") {
  {
    ModelBuilder b(13);
    b.input("a", {int64_t(2), int64_t(3)}).input("b", {int64_t(4), int64_t(5)});
    b.node("Add", {"a", "b"}, {"y"}, "bad_add");
    b.output("y");
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ShapeError);
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(3), int64_t(8), int64_t(8)}).weight("w", {4, 5, 3, 3});
    b.node("Conv", {"x", "w"}, {"y"}, "bad_conv");  // 3 input channels, weight expects 5
    b.output("y");
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), Error);
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(2), int64_t(6)}).weight_i64("shape", {4, 4});
    b.node("Reshape", {"x", "shape"}, {"y"}, "bad_reshape");
    b.output("y");
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ShapeError);
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(2), int64_t(3)});
    b.node("Relu", {"x"}, {"y"});
    auto* out = b.graph().add_output();  // declared output shape disagrees with inference
    testutil::ModelBuilder::set_type(out, "y", {int64_t(5), int64_t(5)}, onnx::TensorProto::FLOAT);
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), Error);
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(-3), int64_t(3)});
    b.node("Relu", {"x"}, {"y"});
    b.output("y");
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ShapeError);
  }
}

TEST_CASE("structural corruption", "[bad]") {
  {
    auto b = relu_model();
    b.graph().mutable_node(0)->set_input(0, "nowhere");
    CHECK_THROWS_WITH(load_onnx_bytes(b.bytes()), Catch::Contains("'nowhere'") && Catch::Contains("relu"));
  }
  {
    auto b = relu_model();
    b.node("Neg", {"x"}, {"y"}, "dup");  // y defined twice
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ModelFormatError);
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(2)});
    b.node("Add", {"x", "b"}, {"a"}, "n1");
    b.node("Neg", {"a"}, {"b"}, "n2");  // cycle a -> b -> a
    b.output("b");
    CHECK_THROWS_WITH(load_onnx_bytes(b.bytes()), Catch::Contains("cycle"));
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(2), int64_t(3)}).weight("w", {3, 4});
    b.graph().mutable_initializer(0)->mutable_raw_data()->resize(7);  // wrong byte count
    b.node("MatMul", {"x", "w"}, {"y"});
    b.output("y");
    CHECK_THROWS_WITH(load_onnx_bytes(b.bytes()), Catch::Contains("initializer 'w'") && Catch::Contains("raw_data"));
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(2), int64_t(3)}).weight("w", {3, 4});
    b.graph().mutable_initializer(0)->set_dims(0, int64_t(1) << 45);
    b.node("MatMul", {"x", "w"}, {"y"});
    b.output("y");
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ModelFormatError);
  }
  {
    auto b = relu_model();
    b.model.clear_graph();
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ModelFormatError);
  }
  {
    auto b = relu_model();
    b.model.clear_opset_import();
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ModelFormatError);
  }
  {
    auto b = relu_model();  // wrong attribute type: Relu has no attributes at all
    ModelBuilder::attr(*b.graph().mutable_node(0), "alpha", std::string("x"));
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ModelFormatError);
  }
}

TEST_CASE("bad options", "[bad]") {
  LoadOptions neg;
  neg.batch = -1;
  CHECK_THROWS_AS(load_onnx_bytes(relu_model().bytes(), neg), InvalidArgument);
  LoadOptions zero_dim;
  zero_dim.dims["N"] = 0;
  CHECK_THROWS_AS(load_onnx_bytes(relu_model().bytes(), zero_dim), InvalidArgument);
}

// The operator table's checks: attribute values before ONNX's shape inference (which divides by
// a zero stride), parameter tensors against the operator's rules once shapes are known. Each is
// a ShapeError naming the node and what is wrong, where computing anyway would read past a buffer
// or give a result ONNX does not define (ONNX Runtime refuses all of these).
TEST_CASE("operator table: bad attribute values and parameter shapes are refused at load", "[bad-input][ops]") {
  auto refused = [](ModelBuilder& b, const std::string& what) {
    CHECK_THROWS_AS(load_onnx_bytes(b.bytes()), ShapeError);
    CHECK_THROWS_WITH(load_onnx_bytes(b.bytes()), Catch::Contains("bad") && Catch::Contains(what));
  };
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(2), int64_t(8), int64_t(8)}).weight("w", {4, 2, 3, 3});
    auto& c = b.node("Conv", {"x", "w"}, {"y"}, "bad");
    ModelBuilder::attr(c, "strides", std::vector<int64_t>{0, 1});
    b.output("y");
    refused(b, "strides");
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(2), int64_t(8), int64_t(8)}).weight("w", {4, 2, 3, 3}).weight("bias", {3});
    b.node("Conv", {"x", "w", "bias"}, {"y"}, "bad");
    b.output("y");
    refused(b, "bias");
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(4), int64_t(8), int64_t(8)}).weight("slope", {3, 1, 1});
    b.node("PRelu", {"x", "slope"}, {"y"}, "bad");
    b.output("y");
    refused(b, "slope");
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(4), int64_t(8), int64_t(8)});
    for (const char* w : {"s", "b", "m"}) b.weight(w, {4});
    b.weight("v", {5});
    b.node("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y"}, "bad");
    b.output("y");
    refused(b, "variance");
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(2), int64_t(8), int64_t(8)});
    auto& p = b.node("MaxPool", {"x"}, {"y"}, "bad");
    ModelBuilder::attr(p, "kernel_shape", std::vector<int64_t>{2, 2});
    ModelBuilder::attr(p, "pads", std::vector<int64_t>{2, 0, 0, 0});
    b.output("y");
    refused(b, "kernel size");
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(4), int64_t(8), int64_t(8)});
    auto& l = b.node("LRN", {"x"}, {"y"}, "bad");
    ModelBuilder::attr(l, "size", int64_t(0));
    b.output("y");
    refused(b, "size");
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(3), int64_t(3)});
    auto& e = b.node("Einsum", {"x"}, {"y"}, "bad");
    ModelBuilder::attr(e, "equation", std::string("ij->ii"));
    b.output("y");
    refused(b, "repeats");
  }
  {  // the same models with valid values load
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(4), int64_t(8), int64_t(8)}).weight("slope", {4, 1, 1});
    b.node("PRelu", {"x", "slope"}, {"y"}, "good");
    b.output("y");
    CHECK_NOTHROW(load_onnx_bytes(b.bytes()));
  }
}
