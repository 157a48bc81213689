// Cost model: FLOPs and bytes of single operators against independent counts (naive loop nests
// that count every multiply-add), and ResNet-50's published ~4.1 GMACs.
#include <catch2/catch.hpp>

#include "bricklab/bricklab.hpp"
#include "model_builder.hpp"

using namespace bricklab;
using testutil::ModelBuilder;

namespace {
// Multiply-adds of a direct 2-D convolution, counted by walking the loop nest.
double naive_conv2d_macs(int64_t n, int64_t c, int64_t m, int64_t group, int64_t oh, int64_t ow, int64_t kh, int64_t kw) {
  double macs = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < m; ++oc)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t x = 0; x < ow; ++x)
          for (int64_t ic = 0; ic < c / group; ++ic)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) macs += 1;
  return macs;
}
}  // namespace

TEST_CASE("depthwise strided conv FLOPs match the loop nest", "[cost]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(2), int64_t(8), int64_t(10), int64_t(10)}).weight("w", {8, 1, 3, 3});
  auto& conv = b.node("Conv", {"x", "w"}, {"y"}, "dw");
  ModelBuilder::attr(conv, "group", int64_t(8));
  ModelBuilder::attr(conv, "strides", std::vector<int64_t>{2, 2});
  ModelBuilder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  REQUIRE(g.value(g.outputs[0]).shape == Shape{2, 8, 5, 5});
  CHECK(g.nodes[0].cost.flops == 2 * naive_conv2d_macs(2, 8, 8, 8, 5, 5, 3, 3));
  // bytes: input + weight read, output written (float32)
  CHECK(g.nodes[0].cost.bytes_read == 4.0 * (2 * 8 * 10 * 10 + 8 * 9));
  CHECK(g.nodes[0].cost.bytes_written == 4.0 * (2 * 8 * 5 * 5));
}

TEST_CASE("grouped dilated conv with bias", "[cost]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(1), int64_t(6), int64_t(12), int64_t(12)}).weight("w", {4, 3, 3, 3}).weight("b", {4});
  auto& conv = b.node("Conv", {"x", "w", "b"}, {"y"}, "g2");
  ModelBuilder::attr(conv, "group", int64_t(2));
  ModelBuilder::attr(conv, "dilations", std::vector<int64_t>{2, 2});
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  REQUIRE(g.value(g.outputs[0]).shape == Shape{1, 4, 8, 8});
  CHECK(g.nodes[0].cost.flops == 2 * naive_conv2d_macs(1, 6, 4, 2, 8, 8, 3, 3) + 1 * 4 * 8 * 8);
}

TEST_CASE("Gemm with transB and C, batched broadcast MatMul, ConvTranspose", "[cost]") {
  {
    ModelBuilder b(13);
    b.input("a", {int64_t(3), int64_t(5)}).weight("bt", {4, 5}).weight("c", {4});
    auto& gemm = b.node("Gemm", {"a", "bt", "c"}, {"y"});
    ModelBuilder::attr(gemm, "transB", int64_t(1));
    b.output("y");
    Graph g = load_onnx_bytes(b.bytes());
    REQUIRE(g.value(g.outputs[0]).shape == Shape{3, 4});
    CHECK(g.nodes[0].cost.flops == 2.0 * 3 * 4 * 5 + 3 * 4);
  }
  {
    ModelBuilder b(13);
    b.input("a", {int64_t(2), int64_t(1), int64_t(3), int64_t(5)}).input("b", {int64_t(4), int64_t(5), int64_t(6)});
    b.node("MatMul", {"a", "b"}, {"y"});
    b.output("y");
    Graph g = load_onnx_bytes(b.bytes());
    REQUIRE(g.value(g.outputs[0]).shape == Shape{2, 4, 3, 6});
    CHECK(g.nodes[0].cost.flops == 2.0 * (2 * 4) * 3 * 6 * 5);
  }
  {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(4), int64_t(5), int64_t(5)}).weight("w", {4, 2, 3, 3});
    auto& ct = b.node("ConvTranspose", {"x", "w"}, {"y"});
    ModelBuilder::attr(ct, "strides", std::vector<int64_t>{2, 2});
    b.output("y");
    Graph g = load_onnx_bytes(b.bytes());
    REQUIRE(g.value(g.outputs[0]).shape == Shape{1, 2, 11, 11});
    // every input element (4*5*5) meets (2 output channels * 9 taps) weights
    CHECK(g.nodes[0].cost.flops == 2.0 * (4 * 5 * 5) * (2 * 9));
  }
}

TEST_CASE("elementwise, pooling and view costs", "[cost]") {
  ModelBuilder b(13);
  b.input("x", {int64_t(2), int64_t(3), int64_t(8), int64_t(8)}).weight_i64("shape", {2, -1});
  b.node("Relu", {"x"}, {"r"}, "relu");
  auto& pool = b.node("MaxPool", {"r"}, {"p"}, "pool");
  ModelBuilder::attr(pool, "kernel_shape", std::vector<int64_t>{3, 3});
  ModelBuilder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  ModelBuilder::attr(pool, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Reshape", {"p", "shape"}, {"y"}, "flat");
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  const double elems = 2 * 3 * 8 * 8;
  CHECK(g.nodes[0].cost.flops == elems);
  CHECK(g.nodes[0].cost.bytes_read == 4 * elems);
  CHECK(g.nodes[0].cost.bytes_written == 4 * elems);
  REQUIRE(g.value(g.nodes[1].outputs[0]).shape == Shape{2, 3, 4, 4});
  CHECK(g.nodes[1].cost.flops == 2 * 3 * 4 * 4 * 9);
  CHECK(g.nodes[2].cost.bytes() == 0);
  CHECK(g.value(g.outputs[0]).shape == Shape{2, 48});
}

TEST_CASE("ResNet-50 at batch 1 is ~4.1 GMACs (8.2 GFLOP) within 5%", "[cost][zoo]") {
  Graph g = load_onnx(testutil::repo_path("models/zoo/resnet50.onnx"));
  const double gflop = g.total_cost().flops / 1e9;
  INFO("ResNet-50 GFLOP = " << gflop);
  CHECK(gflop == Approx(8.2).epsilon(0.05));
  LoadOptions b8;
  b8.batch = 8;
  CHECK(load_onnx(testutil::repo_path("models/zoo/resnet50.onnx"), b8).total_cost().flops == Approx(8 * gflop * 1e9).epsilon(1e-6));
}

TEST_CASE("Einsum: shapes where ONNX 1.12 leaves them unknown, and FLOPs", "[cost][einsum]") {
  auto einsum = [](const std::string& eq, const std::vector<testutil::Dim>& a, const std::vector<testutil::Dim>& b) {
    ModelBuilder m(13);
    m.input("a", a).input("b", b);
    auto& n = m.node("Einsum", {"a", "b"}, {"y"}, "es");
    ModelBuilder::attr(n, "equation", eq);
    m.output("y");
    return load_onnx_bytes(m.bytes());
  };
  Graph g = einsum("bij,bjk->bik", {int64_t(2), int64_t(3), int64_t(4)}, {int64_t(2), int64_t(4), int64_t(5)});
  CHECK(g.value(g.outputs[0]).shape == Shape{2, 3, 5});
  CHECK(g.nodes[0].cost.flops == 2.0 * 2 * 3 * 4 * 5);
  g = einsum("ij,jk", {int64_t(3), int64_t(4)}, {int64_t(4), int64_t(6)});  // implicit output: "ik"
  CHECK(g.value(g.outputs[0]).shape == Shape{3, 6});
  g = einsum("...ij,...jk->...ik", {int64_t(7), int64_t(2), int64_t(3), int64_t(4)}, {int64_t(7), int64_t(2), int64_t(4), int64_t(5)});
  CHECK(g.value(g.outputs[0]).shape == Shape{7, 2, 3, 5});
  CHECK(g.nodes[0].cost.flops == 2.0 * 7 * 2 * 3 * 4 * 5);
  CHECK_THROWS_AS(einsum("ij,jk->ik", {int64_t(3), int64_t(4)}, {int64_t(5), int64_t(6)}), ShapeError);
}

TEST_CASE("operator table: attribute normalisation (what brick keys are built from)", "[cost][ops]") {
  using Ints = std::vector<int64_t>;
  SECTION("Conv: defaults filled, SAME_UPPER resolved to explicit pads") {
    ModelBuilder b(13);
    b.input("x", {int64_t(1), int64_t(4), int64_t(9), int64_t(9)}).weight("w", {6, 4, 2, 2});
    auto& conv = b.node("Conv", {"x", "w"}, {"y"}, "c");
    ModelBuilder::attr(conv, "auto_pad", std::string("SAME_UPPER"));
    b.output("y");
    Graph g = load_onnx_bytes(b.bytes());
    auto a = normalised_attributes(g, g.nodes[0]);
    CHECK(std::get<Ints>(a.at("kernel_shape")) == Ints{2, 2});
    CHECK(std::get<Ints>(a.at("strides")) == Ints{1, 1});
    CHECK(std::get<Ints>(a.at("dilations")) == Ints{1, 1});
    CHECK(std::get<int64_t>(a.at("group")) == 1);
    // Even kernel, stride 1: one pad in total per axis, the extra one at the end for SAME_UPPER.
    CHECK(std::get<Ints>(a.at("pads")) == Ints{0, 0, 1, 1});
    CHECK(a.count("auto_pad") == 0);
  }
  SECTION("Softmax's default axis depends on the opset; axes made non-negative and sorted") {
    for (int opset : {11, 13}) {
      ModelBuilder b(opset);
      b.input("x", {int64_t(2), int64_t(3), int64_t(4)});
      b.node("Softmax", {"x"}, {"y"}, "s");
      auto& r = b.node("ReduceMean", {"x"}, {"z"}, "r");
      ModelBuilder::attr(r, "axes", Ints{-1, 1});
      b.output("y").output("z");
      Graph g = load_onnx_bytes(b.bytes());
      CHECK(std::get<int64_t>(normalised_attributes(g, g.nodes[0]).at("axis")) == (opset >= 13 ? 2 : 1));
      auto a = normalised_attributes(g, g.nodes[1]);
      CHECK(std::get<Ints>(a.at("axes")) == Ints{1, 2});
      CHECK(std::get<int64_t>(a.at("keepdims")) == 1);
    }
  }
  SECTION("Gemm and activation defaults; Dropout's seed dropped") {
    ModelBuilder b(13);
    b.input("x", {int64_t(2), int64_t(3)}).weight("w", {4, 3});
    auto& gemm = b.node("Gemm", {"x", "w"}, {"y"}, "g");
    ModelBuilder::attr(gemm, "transB", int64_t(1));
    b.node("LeakyRelu", {"y"}, {"z"}, "l");
    auto& drop = b.node("Dropout", {"z"}, {"d"}, "d");
    ModelBuilder::attr(drop, "seed", int64_t(7));
    b.output("d");
    Graph g = load_onnx_bytes(b.bytes());
    auto a = normalised_attributes(g, g.nodes[0]);
    CHECK(std::get<double>(a.at("alpha")) == 1.0);
    CHECK(std::get<int64_t>(a.at("transA")) == 0);
    CHECK(std::get<int64_t>(a.at("transB")) == 1);
    CHECK(std::get<double>(normalised_attributes(g, g.nodes[1]).at("alpha")) == Approx(0.01));
    CHECK(normalised_attributes(g, g.nodes[2]).count("seed") == 0);
  }
}
