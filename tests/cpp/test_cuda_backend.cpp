// The CUDA backend (cuda/): without a GPU (or without CUDA compiled in) the first test checks
// that it refuses to compile with the reason and still lists Conv variants; every other test
// prints why it is skipped (WARN) and returns. With a GPU, each supported operator and the fused
// Conv + bias + ReLU must match the CPU backend: 1e-4 relative to the largest reference value
// for float32, 2e-2 for the TF32 / float16 variants (10-bit mantissas).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "bricklab/bricklab.hpp"
#include "model_builder.hpp"

using namespace bricklab;
using testutil::ModelBuilder;

namespace {

constexpr double kFp32Tol = 1e-4;
constexpr double kReducedTol = 2e-2;

// Why the GPU tests cannot run here ("" when they can).
std::string gpu_skip_reason() {
  if (!cuda::is_available()) return cuda::unavailable_reason();
  try {
    if (!get_backend("cuda").available()) return "the CUDA backend reports no usable GPU";
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define REQUIRE_GPU()                                            \
  do {                                                           \
    const std::string why_ = gpu_skip_reason();                  \
    if (!why_.empty()) {                                         \
      WARN("skipped, no GPU: " << why_);                         \
      return;                                                    \
    }                                                            \
  } while (0)

std::vector<float> random_vec(size_t n, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void add_weight(ModelBuilder& b, const std::string& name, const Shape& shape, unsigned seed = 1, float scale = 0.3f) {
  *b.graph().add_initializer() = ModelBuilder::tensor(name, shape, random_vec(size_t(shape_numel(shape)), scale, seed));
}

// Largest |got - want| relative to the largest |want|, over every output.
double max_rel_error(const std::map<std::string, Tensor>& got, const std::map<std::string, Tensor>& want) {
  double err = 0, ref = 1e-6;
  for (const auto& [name, w] : want) {
    const Tensor& g = got.at(name);
    REQUIRE(g.shape() == w.shape());
    for (int64_t i = 0; i < w.numel(); ++i) {
      err = std::max(err, double(std::fabs(g.data_as<float>()[i] - w.data_as<float>()[i])));
      ref = std::max(ref, double(std::fabs(w.data_as<float>()[i])));
    }
  }
  return err / ref;
}

std::map<std::string, Tensor> run_on(const std::string& backend, const Graph& g, const CompileOptions& o) {
  auto exe = get_backend(backend).compile(g, o);
  return exe->run(random_inputs(g, 7));
}

// Runs the model on both backends and checks the CUDA result against the CPU one.
void check_matches_cpu(const ModelBuilder& b, const CompileOptions& o = {}, double tol = kFp32Tol) {
  Graph g = load_onnx_bytes(b.bytes());
  CompileOptions cpu = o;
  cpu.variants.clear();
  cpu.threads = 2;
  const double err = max_rel_error(run_on("cuda", g, o), run_on("cpu", g, cpu));
  INFO("relative error " << err << " (tolerance " << tol << ")");
  CHECK(err <= tol);
}

ModelBuilder conv_model(const Shape& xs, const Shape& ws, bool bias, int64_t group, std::vector<int64_t> strides,
                        std::vector<int64_t> pads, std::vector<int64_t> dil, bool relu, bool stripped = false) {
  ModelBuilder b(13);
  b.input("x", {xs[0], xs[1], xs[2], xs[3]});
  if (stripped) b.weight("w", ws, true);
  else add_weight(b, "w", ws, 2);
  std::vector<std::string> ins{"x", "w"};
  if (bias) {
    add_weight(b, "b", {ws[0]}, 3);
    ins.push_back("b");
  }
  auto& conv = b.node("Conv", ins, {relu ? "c" : "y"}, "conv");
  ModelBuilder::attr(conv, "group", group);
  ModelBuilder::attr(conv, "strides", strides);
  ModelBuilder::attr(conv, "pads", pads);
  ModelBuilder::attr(conv, "dilations", dil);
  if (relu) b.node("Relu", {"c"}, {"y"}, "relu");
  b.output("y");
  return b;
}

ModelBuilder unary_model(const std::string& op, const Shape& xs, int opset = 13) {
  ModelBuilder b(opset);
  std::vector<testutil::Dim> dims(xs.begin(), xs.end());
  b.input("x", dims);
  b.node(op, {"x"}, {"y"}, "op");
  b.output("y");
  return b;
}

}  // namespace

TEST_CASE("cuda backend without a GPU: compile refuses with the reason, Conv variants are listed", "[cuda]") {
  const ModelBuilder b = conv_model({1, 3, 8, 8}, {4, 3, 3, 3}, true, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, false);
  Graph g = load_onnx_bytes(b.bytes());
  const Backend* backend = nullptr;
  try {
    backend = &get_backend("cuda");
  } catch (const UnsupportedError& e) {
    // Built without CUDA: the error carries the reason.
    CHECK_THAT(e.what(), Catch::Contains(cuda::unavailable_reason()));
    WARN("CUDA backend not compiled in: " << e.what());
    return;
  }
  REQUIRE(backend->name() == "cuda");
  const auto variants = backend->variants(g, 0);
  REQUIRE(!variants.empty());
  int defaults = 0;
  for (const auto& v : variants) defaults += v.is_default;
  CHECK(defaults == 1);
  CHECK(variants.front().is_default);
  if (!cuda::is_available()) {
    CHECK_FALSE(backend->available());
    const std::string reason = cuda::unavailable_reason();
    REQUIRE(!reason.empty());
    try {
      backend->compile(g, {});
      FAIL("compile() without a GPU must throw");
    } catch (const UnsupportedError& e) {
      CHECK_THAT(e.what(), Catch::Contains(reason));
    }
    // The unfiltered candidates: 8 algorithms x 3 maths x 2 layouts, implicit GEMM first.
    CHECK(variants.size() == 48);
    CHECK(variants.front().name == "implicit_gemm/fp32/nchw");
    WARN("no GPU (" << reason << "): checked the refusal and the unfiltered variant list only");
  } else {
    CHECK(backend->available());
  }
  // Non-Conv nodes: Gemm has fp32 / tf32 / fp16; everything else one default.
  ModelBuilder m(13);
  m.input("a", {2, 3});
  add_weight(m, "w", {3, 4});
  m.node("MatMul", {"a", "w"}, {"y"}, "mm");
  m.output("y");
  Graph mg = load_onnx_bytes(m.bytes());
  const auto gv = backend->variants(mg, 0);
  REQUIRE(gv.size() == 3);
  CHECK(gv[0].name == "fp32");
  CHECK(gv[0].is_default);
}

TEST_CASE("cuda: Conv matches the CPU: groups, dilations, pads, strides, bias, stripped weights", "[cuda]") {
  REQUIRE_GPU();
  struct Case { Shape xs, ws; bool bias; int64_t group, stride, pad, dil; };
  const Case cases[] = {
      {{1, 3, 9, 9}, {4, 3, 3, 3}, true, 1, 1, 1, 1},      {{2, 8, 10, 7}, {8, 1, 3, 3}, true, 8, 2, 1, 1},
      {{1, 6, 12, 12}, {4, 3, 3, 3}, false, 2, 1, 2, 2},   {{1, 4, 11, 11}, {5, 4, 2, 2}, true, 1, 3, 0, 1},
      {{1, 5, 6, 6}, {7, 5, 1, 1}, true, 1, 1, 0, 1},      {{3, 16, 14, 14}, {32, 16, 3, 3}, true, 1, 2, 1, 1},
  };
  for (const auto& c : cases)
    for (bool fusion : {true, false}) {
      INFO("x " << shape_str(c.xs) << " w " << shape_str(c.ws) << " group " << c.group << " fusion " << fusion);
      CompileOptions o;
      o.fusion = fusion;
      check_matches_cpu(conv_model(c.xs, c.ws, c.bias, c.group, {c.stride, c.stride}, {c.pad, c.pad, c.pad, c.pad},
                                   {c.dil, c.dil}, false),
                        o);
    }
  // Stripped weights: both backends use random_weight_values with the same seed.
  check_matches_cpu(conv_model({1, 3, 8, 8}, {4, 3, 3, 3}, false, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, false, true));
  // auto_pad SAME_UPPER with stride 2 on an odd size (symmetric in effect).
  ModelBuilder b(13);
  b.input("x", {1, 3, 9, 9});
  add_weight(b, "w", {4, 3, 3, 3});
  auto& conv = b.node("Conv", {"x", "w"}, {"y"}, "conv");
  ModelBuilder::attr(conv, "auto_pad", std::string("SAME_UPPER"));
  ModelBuilder::attr(conv, "strides", std::vector<int64_t>{2, 2});
  b.output("y");
  check_matches_cpu(b);
}

TEST_CASE("cuda: Conv + bias + Relu runs fused in cudnnConvolutionBiasActivationForward", "[cuda]") {
  REQUIRE_GPU();
  const ModelBuilder b = conv_model({2, 8, 16, 16}, {16, 8, 3, 3}, true, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true);
  for (bool fusion : {true, false}) {
    CompileOptions o;
    o.fusion = fusion;
    check_matches_cpu(b, o);
    Graph g = load_onnx_bytes(b.bytes());
    auto exe = get_backend("cuda").compile(g, o);
    const auto steps = exe->run_profiled(random_inputs(g, 7));
    INFO(exe->describe());
    REQUIRE(!steps.empty());
    CHECK(steps.front().kind == (fusion ? "conv+bias+relu" : "conv"));
    CHECK(steps.size() == (fusion ? 1u : 2u));
  }
}

TEST_CASE("cuda: every Conv variant gives the same output", "[cuda]") {
  REQUIRE_GPU();
  for (bool relu : {false, true}) {
    const ModelBuilder b = conv_model({2, 8, 12, 12}, {16, 8, 3, 3}, true, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, relu);
    Graph g = load_onnx_bytes(b.bytes());
    const auto variants = get_backend("cuda").variants(g, 0);
    REQUIRE(!variants.empty());
    CHECK(variants.front().is_default);
    CompileOptions cpu;
    cpu.threads = 2;
    const auto want = run_on("cpu", g, cpu);
    for (const auto& v : variants) {
      CompileOptions o;
      o.variants["conv"] = v.name;
      const bool reduced = v.name.find("/tf32/") != std::string::npos || v.name.find("/fp16/") != std::string::npos;
      std::map<std::string, Tensor> got;
      try {
        got = run_on("cuda", g, o);
      } catch (const UnsupportedError& e) {
        // cuDNN may accept a workspace query and still refuse to run (reported, not a failure).
        WARN("variant " << v.name << " refused at run time: " << e.what());
        continue;
      }
      const double err = max_rel_error(got, want);
      INFO("variant " << v.name << " relu " << relu << " relative error " << err);
      CHECK(err <= (reduced ? kReducedTol : kFp32Tol));
    }
  }
}

TEST_CASE("cuda: BatchNormalization, activations, pools, softmax match the CPU", "[cuda]") {
  REQUIRE_GPU();
  {
    ModelBuilder b(13);
    b.input("x", {2, 4, 5, 5});
    for (const char* p : {"s", "bias", "mean"}) add_weight(b, p, {4}, 5);
    b.weight("var", {4}, true);  // stripped: uniform(0.5, 1.5) on both backends
    b.node("BatchNormalization", {"x", "s", "bias", "mean", "var"}, {"y"}, "bn");
    b.output("y");
    CompileOptions o;
    o.fusion = false;
    check_matches_cpu(b, o);
  }
  for (const char* op : {"Relu", "Sigmoid", "Tanh", "Elu", "GlobalAveragePool", "GlobalMaxPool"}) {
    INFO(op);
    check_matches_cpu(unary_model(op, {2, 3, 6, 7}));
  }
  {
    ModelBuilder b(13);
    b.input("x", {2, 3, 6, 7});
    *b.graph().add_initializer() = ModelBuilder::tensor("lo", {}, {0.f});
    *b.graph().add_initializer() = ModelBuilder::tensor("hi", {}, {0.5f});
    b.node("Clip", {"x", "lo", "hi"}, {"y"}, "clip");
    b.output("y");
    check_matches_cpu(b);
  }
  for (const char* op : {"MaxPool", "AveragePool"})
    for (int64_t include_pad : {0, 1}) {
      INFO(op << " count_include_pad " << include_pad);
      ModelBuilder b = unary_model(op, {2, 3, 9, 9});
      auto& n = *b.graph().mutable_node(0);
      ModelBuilder::attr(n, "kernel_shape", std::vector<int64_t>{3, 3});
      ModelBuilder::attr(n, "strides", std::vector<int64_t>{2, 2});
      ModelBuilder::attr(n, "pads", std::vector<int64_t>{1, 1, 1, 1});
      if (std::string(op) == "AveragePool") ModelBuilder::attr(n, "count_include_pad", include_pad);
      check_matches_cpu(b);
    }
  for (int opset : {11, 13})
    for (int64_t axis : {-1, 1}) {
      INFO("Softmax opset " << opset << " axis " << axis);
      ModelBuilder b = unary_model("Softmax", {2, 3, 4, 5}, opset);
      ModelBuilder::attr(*b.graph().mutable_node(0), "axis", axis);
      check_matches_cpu(b);
    }
}

TEST_CASE("cuda: Add / Sub / Mul, Concat and views match the CPU", "[cuda]") {
  REQUIRE_GPU();
  for (const char* op : {"Add", "Sub", "Mul"})
    for (int form = 0; form < 3; ++form) {
      INFO(op << " form " << form);
      ModelBuilder b(13);
      b.input("x", {2, 4, 3, 3});
      if (form == 0) add_weight(b, "c", {4, 1, 1});        // per-channel constant
      else if (form == 1) add_weight(b, "c", {2, 4, 3, 3});  // same shape
      else add_weight(b, "c", {1});                          // scalar-like, on the left
      if (form == 2) b.node(op, {"c", "x"}, {"y"}, "op");
      else b.node(op, {"x", "c"}, {"y"}, "op");
      b.output("y");
      check_matches_cpu(b);
    }
  {
    ModelBuilder b(13);
    b.input("x", {2, 3, 4, 4});
    b.node("Relu", {"x"}, {"r"}, "relu");
    b.node("Sigmoid", {"x"}, {"s"}, "sig");
    auto& cat = b.node("Concat", {"r", "s", "x"}, {"c"}, "cat");
    ModelBuilder::attr(cat, "axis", int64_t(1));
    auto& fl = b.node("Flatten", {"c"}, {"y"}, "flat");
    ModelBuilder::attr(fl, "axis", int64_t(1));
    b.output("y");
    check_matches_cpu(b);
  }
}

TEST_CASE("cuda: Gemm / MatMul match the CPU in every variant", "[cuda]") {
  REQUIRE_GPU();
  std::vector<ModelBuilder> models;
  {
    ModelBuilder b(13);  // Gemm with transB and a broadcast C (a classifier head)
    b.input("x", {3, 20});
    add_weight(b, "w", {10, 20});
    add_weight(b, "c", {10});
    auto& n = b.node("Gemm", {"x", "w", "c"}, {"y"}, "mm");
    ModelBuilder::attr(n, "transB", int64_t(1));
    ModelBuilder::attr(n, "alpha", 0.5f);
    b.output("y");
    models.push_back(b);
  }
  for (Shape as : {Shape{5, 7}, Shape{2, 5, 7}, Shape{7}, Shape{1, 7}}) {
    ModelBuilder b(13);  // 2-D, batched (weights shared), vector, single row (cublasSgemv)
    std::vector<testutil::Dim> dims(as.begin(), as.end());
    b.input("x", dims);
    add_weight(b, "w", {7, 6});
    b.node("MatMul", {"x", "w"}, {"y"}, "mm");
    b.output("y");
    models.push_back(b);
  }
  {
    ModelBuilder b(13);  // batched activations x activations
    b.input("a", {3, 4, 5});
    b.input("b", {3, 5, 6});
    b.node("MatMul", {"a", "b"}, {"y"}, "mm");
    b.output("y");
    models.push_back(b);
  }
  for (size_t i = 0; i < models.size(); ++i)
    for (const char* v : {"fp32", "tf32", "fp16"}) {
      INFO("model " << i << " variant " << v);
      CompileOptions o;
      o.variants["mm"] = v;
      check_matches_cpu(models[i], o, std::string(v) == "fp32" ? kFp32Tol : kReducedTol);
    }
}

TEST_CASE("cuda: errors: unsupported operator, unknown variant", "[cuda]") {
  REQUIRE_GPU();
  {
    Graph g = load_onnx_bytes(unary_model("Abs", {2, 3}).bytes());
    try {
      get_backend("cuda").compile(g, {});
      FAIL("Abs must be refused");
    } catch (const UnsupportedError& e) {
      CHECK_THAT(e.what(), Catch::Contains("Abs") && Catch::Contains("node 'op'"));
    }
  }
  {
    Graph g = load_onnx_bytes(conv_model({1, 3, 8, 8}, {4, 3, 3, 3}, true, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, false).bytes());
    CompileOptions o;
    o.variants["conv"] = "no_such_algo/fp32/nchw";
    try {
      get_backend("cuda").compile(g, o);
      FAIL("an unknown variant must be refused");
    } catch (const InvalidArgument& e) {
      CHECK_THAT(e.what(), Catch::Contains("conv") && Catch::Contains("implicit_precomp_gemm/tf32/nhwc"));
    }
  }
}

TEST_CASE("cuda: run_profiled: one positive kernel time per step", "[cuda]") {
  REQUIRE_GPU();
  ModelBuilder b(13);
  b.input("x", {2, 3, 16, 16});
  add_weight(b, "w", {8, 3, 3, 3});
  add_weight(b, "bias", {8});
  auto& conv = b.node("Conv", {"x", "w", "bias"}, {"c"}, "conv");
  ModelBuilder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c"}, {"r"}, "relu");
  b.node("GlobalAveragePool", {"r"}, {"p"}, "gap");
  b.node("Flatten", {"p"}, {"f"}, "flat");
  add_weight(b, "fc", {8, 4});
  b.node("MatMul", {"f", "fc"}, {"y"}, "fc");
  b.output("y");
  Graph g = load_onnx_bytes(b.bytes());
  auto exe = get_backend("cuda").compile(g, {});
  const auto steps = exe->run_profiled(random_inputs(g, 7));
  INFO(exe->describe());
  REQUIRE(steps.size() == 3);  // conv+bias+relu, pool, gemm (Flatten is a view)
  CHECK(steps[0].kind == "conv+bias+relu");
  CHECK(steps[1].kind == "pool");
  CHECK(steps[2].kind == "gemm");
  for (const auto& s : steps) CHECK(s.ms > 0);
  CHECK_FALSE(exe->uses_random_weights());
}
