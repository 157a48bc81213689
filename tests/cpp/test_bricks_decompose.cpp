// Bricks: canonical keys (equal layers in different models share a key; any change of shape or
// attribute changes it), granularities, the engine's fused groups, ONNX emission round trip.
#include <catch2/catch.hpp>

#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <map>
#include <algorithm>
#include <set>

#include "bricklab/bricklab.hpp"
#include "bricklab/bricks/decompose.hpp"
#include "bricklab/bricks/emit.hpp"
#include "bricklab/bricks/predict.hpp"
#include "bricklab/bricks/runner.hpp"
#include "model_builder.hpp"

using namespace bricklab;
using testutil::ModelBuilder;
namespace bb = bricklab::bricks;

namespace {

struct ConvSpec {
  int64_t batch = 1, cin = 8, cout = 16, hw = 12, k = 3, stride = 1, dilation = 1, group = 1;
  std::string auto_pad;       // "" = explicit pads
  bool explicit_defaults = false;  // write strides/dilations/group even when default
  std::string node_name = "conv";
  bool stripped = false;
  float weight_scale = 1.0f;
};

// Conv -> Relu model; returns the loaded graph.
Graph conv_model(const ConvSpec& s) {
  ModelBuilder b;
  b.input("x", {s.batch, s.cin, s.hw, s.hw});
  b.weight("w", {s.cout, s.cin / s.group, s.k, s.k}, s.stripped);
  if (s.weight_scale != 1.0f) {
    auto* t = b.graph().mutable_initializer(0);
    std::string raw = t->raw_data();
    for (size_t i = 0; i + 4 <= raw.size(); i += 4) reinterpret_cast<float*>(raw.data())[i / 4] *= s.weight_scale;
    t->set_raw_data(raw);
  }
  auto& n = b.node("Conv", {"x", "w"}, {"y"}, s.node_name);
  ModelBuilder::attr(n, "kernel_shape", std::vector<int64_t>{s.k, s.k});
  if (s.stride != 1 || s.explicit_defaults) ModelBuilder::attr(n, "strides", std::vector<int64_t>{s.stride, s.stride});
  if (s.dilation != 1 || s.explicit_defaults) ModelBuilder::attr(n, "dilations", std::vector<int64_t>{s.dilation, s.dilation});
  if (s.group != 1 || s.explicit_defaults) ModelBuilder::attr(n, "group", s.group);
  if (!s.auto_pad.empty()) ModelBuilder::attr(n, "auto_pad", s.auto_pad);
  else {
    const int64_t p = (s.k - 1) * s.dilation / 2;
    ModelBuilder::attr(n, "pads", std::vector<int64_t>{p, p, p, p});
  }
  b.node("Relu", {"y"}, {"z"}, s.node_name + "_relu");
  b.output("z");
  return load_onnx_bytes(b.bytes());
}

std::string conv_key(const ConvSpec& s) {
  Graph g = conv_model(s);
  return bb::node_key(g, 0);
}

}  // namespace

TEST_CASE("brick keys: equal layers share a key whatever their names, weights or spelling", "[bricks]") {
  ConvSpec a;
  ConvSpec b = a;
  b.node_name = "some_other_layer";
  b.weight_scale = 3.0f;
  CHECK(conv_key(a) == conv_key(b));
  ConvSpec c = a;
  c.explicit_defaults = true;  // strides=1, dilations=1, group=1 written out
  CHECK(conv_key(a) == conv_key(c));
  ConvSpec d = a;
  d.auto_pad = "SAME_UPPER";  // 3x3 stride 1: SAME_UPPER == pads 1,1,1,1
  CHECK(conv_key(a) == conv_key(d));
  ConvSpec e = a;
  e.stripped = true;  // weights without values: same shapes, same key
  CHECK(conv_key(a) == conv_key(e));
}

TEST_CASE("brick keys: any change of shape or attribute changes the key", "[bricks]") {
  const ConvSpec base;
  const std::string k0 = conv_key(base);
  std::vector<ConvSpec> changed(7, base);
  changed[0].batch = 2;
  changed[1].cin = 4;
  changed[2].cout = 32;
  changed[3].hw = 14;
  changed[4].stride = 2;
  changed[5].dilation = 2;
  changed[6].group = 2;
  std::set<std::string> keys{k0};
  for (const auto& s : changed) keys.insert(conv_key(s));
  CHECK(keys.size() == changed.size() + 1);  // all distinct
  ConvSpec k5 = base;
  k5.k = 5;
  CHECK(conv_key(k5) != k0);
  ConvSpec lower = base;
  lower.auto_pad = "SAME_LOWER";
  lower.k = 2;  // even kernel: SAME_LOWER and SAME_UPPER pad differently
  ConvSpec upper = lower;
  upper.auto_pad = "SAME_UPPER";
  CHECK(conv_key(lower) != conv_key(upper));
}

TEST_CASE("brick keys: group keys include the wiring", "[bricks]") {
  // y = Relu(x + x) vs y = Relu(c + x): same operators and shapes, different wiring.
  auto build = [](bool swap) {
    ModelBuilder b;
    b.input("x", {1, 4, 8, 8});
    b.input("c", {1, 4, 8, 8});
    b.node("Add", swap ? std::vector<std::string>{"c", "x"} : std::vector<std::string>{"x", "x"}, {"s"}, "add");
    b.node("Relu", {"s"}, {"y"}, "relu");
    b.output("y");
    return load_onnx_bytes(b.bytes());
  };
  Graph g1 = build(false), g2 = build(true);
  CHECK(bb::group_key(g1, {0, 1}) != bb::group_key(g2, {0, 1}));
  CHECK(bb::group_key(g1, {0, 1}) == bb::group_key(g1, {1, 0}));  // order of the given nodes does not matter
}

TEST_CASE("granularity parsing names what is accepted", "[bricks]") {
  CHECK(bb::Granularity::parse("op").kind == bb::Granularity::Kind::op);
  CHECK(bb::Granularity::parse("fused").kind == bb::Granularity::Kind::fused);
  CHECK(bb::Granularity::parse("seq:3").k == 3);
  for (const char* bad : {"seq:0", "seq:", "seq:x", "seq:2x", "fuse", ""}) {
    try {
      bb::Granularity::parse(bad);
      FAIL("accepted " << bad);
    } catch (const InvalidArgument& e) {
      CHECK(std::string(e.what()).find("seq:K") != std::string::npos);
    }
  }
}

TEST_CASE("decomposition of two ResNets: shared bricks, multiplicities, fused groups", "[bricks]") {
  bb::DecomposeOptions o;
  o.compile.threads = 1;
  const auto d = bb::decompose({testutil::repo_path("models/zoo/resnet18.onnx"), testutil::repo_path("models/zoo/resnet34.onnx")}, o);
  REQUIRE(d.models.size() == 2);
  int64_t total = 0, shared = 0;
  for (const auto& b : d.bricks) {
    total += b.multiplicity;
    int per_model = 0;
    for (const auto& [m, n] : b.per_model) per_model += n;
    CHECK(per_model == b.multiplicity);
    shared += b.per_model.size() == 2;
  }
  CHECK(total == d.instances());
  CHECK(shared >= 10);  // ResNet-18 and -34 share their stem, stage transitions and head
  CHECK(size_t(d.instances()) > d.bricks.size());
  // Fused: every Conv followed only by a Relu runs as one step, so it is one brick with it.
  const Graph& g = *d.models[0].graph;
  int conv_relu = 0;
  for (const auto& u : d.models[0].uses) {
    std::vector<std::string> ops;
    for (int n : u.nodes) ops.push_back(g.nodes[size_t(n)].op);
    if (ops == std::vector<std::string>{"Conv", "Relu"}) ++conv_relu;
    // No view op (Flatten) is a brick: it runs no step.
    for (const auto& op : ops) CHECK(op != "Flatten");
  }
  CHECK(conv_relu >= 8);
  // Every non-view node is in exactly one unit.
  std::set<int> seen;
  for (const auto& u : d.models[0].uses)
    for (int n : u.nodes) CHECK(seen.insert(n).second);

  // Without fusion, Conv and Relu are separate bricks.
  bb::DecomposeOptions unfused = o;
  unfused.compile.fusion = false;
  const auto d2 = bb::decompose({testutil::repo_path("models/zoo/resnet18.onnx")}, unfused);
  for (const auto& u : d2.models[0].uses) CHECK(u.nodes.size() == 1);

  // op granularity: one brick use per node; seq:3 groups three fused units.
  bb::DecomposeOptions op = o;
  op.granularity = bb::Granularity::parse("op");
  const auto d3 = bb::decompose({testutil::repo_path("models/zoo/resnet18.onnx")}, op);
  CHECK(d3.models[0].uses.size() == d3.models[0].graph->nodes.size());
  bb::DecomposeOptions seq = o;
  seq.granularity = bb::Granularity::parse("seq:3");
  const auto d4 = bb::decompose({testutil::repo_path("models/zoo/resnet18.onnx")}, seq);
  const size_t fused_units = d.models[0].uses.size();
  CHECK(d4.models[0].uses.size() == (fused_units + 2) / 3);
}

TEST_CASE("batch is part of the key", "[bricks]") {
  bb::DecomposeOptions o1, o8;
  o1.compile.threads = o8.compile.threads = 1;
  o8.load.batch = 8;
  const auto d1 = bb::decompose({testutil::repo_path("models/bundled/resnet18.onnx")}, o1);
  const auto d8 = bb::decompose({testutil::repo_path("models/bundled/resnet18.onnx")}, o8);
  REQUIRE(d1.bricks.size() == d8.bricks.size());
  for (const auto& b : d1.bricks) CHECK(d8.index.count(b.key) == 0);
}

TEST_CASE("emitted brick: a valid ONNX model that bricklab loads and runs like the original node", "[bricks]") {
  ConvSpec s;
  s.cin = 4;
  s.cout = 6;
  s.hw = 7;
  Graph g = conv_model(s);
  const Graph brick = extract_subgraph(g, {0, 1});
  const std::string bytes = bb::to_onnx_bytes(brick);
  onnx::ModelProto proto;
  REQUIRE(proto.ParseFromString(bytes));
  CHECK(proto.opset_import(0).version() == 13);
  CHECK(proto.graph().initializer_size() == 1);
  CHECK(proto.graph().input_size() == 1);
  Graph reloaded = load_onnx_bytes(bytes);
  CHECK(bb::group_key(reloaded, {0, 1}) == bb::group_key(g, {0, 1}));
  // Same outputs on the same inputs (weights were copied, not re-randomised).
  CompileOptions co;
  co.threads = 1;
  auto inputs = random_inputs(g, 3);
  auto a = get_backend("cpu").compile(g, co)->run(inputs);
  auto b = get_backend("cpu").compile(reloaded, co)->run(inputs);
  const Tensor& ta = a.begin()->second;
  const Tensor& tb = b.begin()->second;
  REQUIRE(ta.numel() == tb.numel());
  for (int64_t i = 0; i < ta.numel(); ++i) CHECK(ta.data_as<float>()[i] == Approx(tb.data_as<float>()[i]).margin(1e-5));
}

TEST_CASE("emitted brick of a stripped model gets random weights of the right shape", "[bricks]") {
  ConvSpec s;
  s.stripped = true;
  Graph g = conv_model(s);
  onnx::ModelProto proto;
  REQUIRE(proto.ParseFromString(bb::to_onnx_bytes(extract_subgraph(g, {0}))));
  REQUIRE(proto.graph().initializer_size() == 1);
  const auto& w = proto.graph().initializer(0);
  CHECK(w.raw_data().size() == size_t(16 * 8 * 3 * 3 * 4));
  const float* p = reinterpret_cast<const float*>(w.raw_data().data());
  double sum_sq = 0;
  for (int i = 0; i < 16 * 8 * 9; ++i) sum_sq += double(p[i]) * p[i];
  CHECK(sum_sq > 0);
}

TEST_CASE("per-model error budget: small bricks get looser tolerances, the prediction's CI combines them", "[bricks]") {
  bb::DecomposeOptions o;
  o.compile.threads = 1;
  const auto d = bb::decompose({testutil::repo_path("models/zoo/resnet18.onnx"), testutil::repo_path("models/zoo/mobilenet_v3_small.onnx")}, o);
  bb::RunnerOptions r;
  r.tolerance = 0.02;
  const auto tol = bb::brick_tolerances(d, r);
  REQUIRE(tol.size() == d.bricks.size());
  // Each brick's tolerance is tolerance / sqrt(its largest share), clamped to [tolerance, cap];
  // recompute the shares here from the same FLOP/byte estimate, model by model.
  double lowest = 1, highest = 0;
  for (size_t i = 0; i < tol.size(); ++i) {
    CHECK(tol[i] >= r.tolerance - 1e-12);
    CHECK(tol[i] <= r.brick_tolerance_cap + 1e-12);
    lowest = std::min(lowest, tol[i]);
    highest = std::max(highest, tol[i]);
  }
  CHECK(highest == Approx(r.brick_tolerance_cap));  // e.g. a tiny element-wise brick
  CHECK(lowest < 0.1);                              // the big convolutions stay tight
  // The sum over a model of (share * tol^2) is at most tolerance^2: with independent errors the
  // model's predicted CI is within the target (the guarantee the rule is built on).
  for (const auto& m : d.models) {
    const Graph& g = *m.graph;
    std::map<size_t, int> uses;
    std::map<size_t, double> est;
    double total = 0;
    for (const auto& u : m.uses) {
      const size_t i = d.index.at(u.key);
      double flops = 0, bytes = 0;
      for (int n : d.bricks[i].nodes) {
        const Graph& bg = *d.models[size_t(d.bricks[i].model)].graph;
        flops += bg.nodes[size_t(n)].cost.flops;
        bytes += bg.nodes[size_t(n)].cost.bytes_read + bg.nodes[size_t(n)].cost.bytes_written;
      }
      est[i] = std::max(flops / 20e9, bytes / 10e9) + 5e-6;
      uses[i]++;
      total += est[i];
    }
    (void)g;
    double var = 0;
    for (const auto& [i, count] : uses) var += std::pow(count * est[i] * tol[i], 2);
    CHECK(std::sqrt(var) / total <= r.tolerance * 1.0001);
  }
  r.per_model_tolerance = false;
  for (double t : bb::brick_tolerances(d, r)) CHECK(t == r.tolerance);
}

TEST_CASE("large prepacked weights live on 2 MiB-aligned memory (transparent huge pages)", "[bricks]") {
  ConvSpec s;
  s.cin = 256;
  s.cout = 512;  // 512 x 256 x 3 x 3 floats: 4.7 MB
  Graph g = conv_model(s);
  CompileOptions c;
  c.threads = 1;
  auto exe = get_backend("cpu").compile(g, c);
  bool large = false;
  for (const auto& [p, n] : exe->weight_buffers())
    if (n >= (size_t(2) << 20)) {
      large = true;
      CHECK(reinterpret_cast<uintptr_t>(p) % (uintptr_t(2) << 20) == 0);
    }
  CHECK(large);
  Tensor x(DType::float32, {1, 256, 12, 12});
  CHECK(exe->run({{"x", x}}).count("z") == 1);
}

TEST_CASE("the CPU executable reports its weight buffers (for evicting them between repetitions)", "[bricks]") {
  ConvSpec s;
  s.cin = 32;
  s.cout = 64;
  Graph g = conv_model(s);
  CompileOptions c;
  c.threads = 1;
  auto exe = get_backend("cpu").compile(g, c);
  size_t bytes = 0;
  for (const auto& [p, n] : exe->weight_buffers()) {
    CHECK(p != nullptr);
    bytes += n;
  }
  CHECK(bytes >= size_t(64 * 32 * 9 * 4));  // the (prepacked) 3x3 weights at least
  bb::evict_lines(exe->weight_buffers());   // must not fault
  Tensor x(DType::float32, {1, 32, 12, 12});
  CHECK(exe->run({{"x", x}}).count("z") == 1);
}

// conv -> relu -> conv -> relu: the first unit ("c1", "c1_relu") is the context of the second.
Graph two_conv_model(bool stripped) {
  ModelBuilder b;
  b.input("x", {1, 8, 10, 10});
  b.weight("w1", {16, 8, 3, 3}, stripped);
  b.weight("w2", {8, 16, 3, 3}, stripped);
  for (auto [name, in, w, out] : {std::tuple{"c1", "x", "w1", "y1"}, std::tuple{"c2", "r1", "w2", "y2"}}) {
    auto& n = b.node("Conv", {in, w}, {out}, name);
    ModelBuilder::attr(n, "kernel_shape", std::vector<int64_t>{3, 3});
    ModelBuilder::attr(n, "pads", std::vector<int64_t>{1, 1, 1, 1});
  }
  b.node("Relu", {"y1"}, {"r1"}, "c1_relu");
  b.node("Relu", {"y2"}, {"z"}, "c2_relu");
  b.output("z");
  return load_onnx_bytes(b.bytes());
}

TEST_CASE("skip_steps: a brick's context runs once and later runs give the same outputs", "[bricks]") {
  Graph g = two_conv_model(false);
  Tensor x(DType::float32, {1, 8, 10, 10});
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = float((i * 37) % 11) - 5.0f;
  CompileOptions c;
  c.threads = 1;
  {
    // With buffer reuse the engine may refuse (a later step takes over the context's buffer);
    // whatever it answers, the outputs must stay right.
    auto reusing = get_backend("cpu").compile(g, c);
    const Tensor want = reusing->run({{"x", x}}).at("z");
    reusing->skip_steps({"c1", "c1_relu"});
    for (int rep = 0; rep < 2; ++rep)
      CHECK(std::memcmp(reusing->run({{"x", x}}).at("z").data(), want.data(), want.nbytes()) == 0);
  }
  c.reuse_buffers = false;  // as the brick runner compiles
  auto exe = get_backend("cpu").compile(g, c);
  const Tensor full = exe->run({{"x", x}}).at("z");
  REQUIRE(exe->skip_steps({"c1", "c1_relu"}));
  const auto profile = exe->run_profiled({{"x", x}});
  for (const auto& s : profile)
    for (const auto& n : s.nodes) CHECK((n != "c1" && n != "c1_relu"));  // the context is left out
  CHECK_FALSE(profile.empty());
  for (int rep = 0; rep < 3; ++rep) {
    const Tensor again = exe->run({{"x", x}}).at("z");
    REQUIRE(again.nbytes() == full.nbytes());
    CHECK(std::memcmp(again.data(), full.data(), full.nbytes()) == 0);
  }
  // A changed input no longer reaches the output while the context is left out; restoring full
  // runs brings it back (the left-out steps really did not run).
  Tensor x2(DType::float32, {1, 8, 10, 10});
  CHECK(std::memcmp(exe->run({{"x", x2}}).at("z").data(), full.data(), full.nbytes()) == 0);
  REQUIRE(exe->skip_steps({}));
  CHECK(std::memcmp(exe->run({{"x", x2}}).at("z").data(), full.data(), full.nbytes()) != 0);
}

TEST_CASE("placeholder weights: Gemm and MatMul read by unused nodes compute zeros, others stand-ins", "[bricks]") {
  // fc1 (Gemm, transB) -> relu -> fc2 (MatMul by a constant): the prepacked weights of a
  // placeholder node are zeros made without a reorder; the other node's weights stay stand-ins.
  ModelBuilder b;
  b.input("x", {2, 32});
  b.weight("w1", {24, 32}, true);
  b.weight("b1", {24}, true);
  b.weight("w2", {24, 16}, true);
  auto& fc1 = b.node("Gemm", {"x", "w1", "b1"}, {"h"}, "fc1");
  ModelBuilder::attr(fc1, "transB", int64_t(1));
  b.node("Relu", {"h"}, {"r"}, "relu");
  b.node("MatMul", {"r", "w2"}, {"y"}, "fc2");
  b.output("h");
  b.output("y");
  const Graph g = load_onnx_bytes(b.bytes());
  Tensor x(DType::float32, {2, 32});
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = float(i % 7) - 3.0f;
  CompileOptions c;
  c.threads = 1;
  auto nonzero = [](const Tensor& t) {
    for (int64_t i = 0; i < t.numel(); ++i)
      if (t.data_as<float>()[i] != 0.0f) return true;
    return false;
  };
  const auto full = get_backend("cpu").compile(g, c)->run({{"x", x}});
  REQUIRE(nonzero(full.at("h")));
  REQUIRE(nonzero(full.at("y")));
  c.placeholder_nodes = {"fc1"};
  auto out = get_backend("cpu").compile(g, c)->run({{"x", x}});
  CHECK_FALSE(nonzero(out.at("h")));  // zero weights, zero bias
  CHECK_FALSE(nonzero(out.at("y")));  // relu(0) times the stand-in w2
  c.placeholder_nodes = {"fc2"};
  out = get_backend("cpu").compile(g, c)->run({{"x", x}});
  CHECK(std::memcmp(out.at("h").data(), full.at("h").data(), full.at("h").nbytes()) == 0);
  CHECK_FALSE(nonzero(out.at("y")));
}

TEST_CASE("fill_skipped_outputs: a brick's context never runs, the brick reads stand-in values", "[bricks]") {
  Graph g = two_conv_model(true);
  const std::set<std::string> context{"c1", "c1_relu"};
  CompileOptions c;
  c.threads = 1;
  c.reuse_buffers = false;
  Tensor x(DType::float32, {1, 8, 10, 10}), x2(DType::float32, {1, 8, 10, 10});
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = float((i * 37) % 11) - 5.0f;
  auto finite_nonzero = [](const Tensor& t) {
    bool finite = true, nonzero = false;
    for (int64_t i = 0; i < t.numel(); ++i) {
      finite = finite && std::isfinite(t.data_as<float>()[i]);
      nonzero = nonzero || t.data_as<float>()[i] != 0.0f;
    }
    return finite && nonzero;
  };
  const Tensor full = get_backend("cpu").compile(g, c)->run({{"x", x}}).at("z");
  REQUIRE(finite_nonzero(full));

  // The context's stripped weights are placeholders: zeros instead of stand-in values (were the
  // context to run, it would compute zeros, and so would the brick).
  c.placeholder_nodes = context;
  auto exe = get_backend("cpu").compile(g, c);
  const Tensor zeros = exe->run({{"x", x}}).at("z");
  for (int64_t i = 0; i < zeros.numel(); ++i) REQUIRE(zeros.data_as<float>()[i] == 0.0f);

  // Left out and filled: the brick computes from stand-in values (nonzero, finite), the same in
  // every executable and whatever the graph input is, since the context does not run.
  const auto all_weights = exe->weight_buffers();
  const auto all_outputs = exe->output_buffers();
  REQUIRE(exe->skip_steps(context));
  // Only the weights of steps that run are reported for eviction: c2's, not c1's.
  const auto kept_weights = exe->weight_buffers();
  CHECK_FALSE(kept_weights.empty());
  CHECK(kept_weights.size() < all_weights.size());
  for (const auto& w : kept_weights) CHECK(std::find(all_weights.begin(), all_weights.end(), w) != all_weights.end());
  // Likewise the memory written: c2's output, not c1's (which the brick reads), no weights.
  const auto kept_outputs = exe->output_buffers();
  CHECK_FALSE(kept_outputs.empty());
  CHECK(kept_outputs.size() < all_outputs.size());
  for (const auto& o : kept_outputs) {
    CHECK(std::find(all_outputs.begin(), all_outputs.end(), o) != all_outputs.end());
    CHECK(std::find(all_weights.begin(), all_weights.end(), o) == all_weights.end());
  }
  // What the runner evicts: the weights, plus the written buffers of at least the threshold.
  size_t largest = 0;
  for (const auto& o : kept_outputs) largest = std::max(largest, o.second);
  bb::RunnerOptions ro;
  ro.evict_outputs_bytes = 1;
  CHECK(bb::eviction_ranges(*exe, ro).size() == kept_weights.size() + kept_outputs.size());
  ro.evict_outputs_bytes = int64_t(largest) + 1;
  CHECK(bb::eviction_ranges(*exe, ro) == kept_weights);
  ro.evict_outputs_bytes = int64_t(largest);
  CHECK(bb::eviction_ranges(*exe, ro).size() > kept_weights.size());
  ro.evict_outputs_bytes = 0;
  CHECK(bb::eviction_ranges(*exe, ro) == kept_weights);
  ro.evict_weights = false;
  CHECK(bb::eviction_ranges(*exe, ro).empty());
  ro.evict_outputs_bytes = 1;
  CHECK(bb::eviction_ranges(*exe, ro) == kept_outputs);
  ro.cold_weights = true;  // everything is flushed anyway
  CHECK(bb::eviction_ranges(*exe, ro).empty());
  REQUIRE(exe->fill_skipped_outputs(0));
  const auto profile = exe->run_profiled({{"x", x}});
  for (const auto& s : profile)
    for (const auto& n : s.nodes) CHECK((n != "c1" && n != "c1_relu"));
  const Tensor stand_in = exe->run({{"x", x}}).at("z");
  CHECK(finite_nonzero(stand_in));
  CHECK(std::memcmp(stand_in.data(), full.data(), full.nbytes()) != 0);
  CHECK(std::memcmp(exe->run({{"x", x2}}).at("z").data(), stand_in.data(), stand_in.nbytes()) == 0);
  auto other = get_backend("cpu").compile(g, c);
  REQUIRE(other->skip_steps(context));
  REQUIRE(other->fill_skipped_outputs(0));
  CHECK(std::memcmp(other->run({{"x", x2}}).at("z").data(), stand_in.data(), stand_in.nbytes()) == 0);
}

TEST_CASE("time_brick: output reorders measured already are left out, the rest are reported", "[bricks]") {
  ConvSpec s;
  s.cin = 16;
  s.cout = 32;
  s.stripped = true;
  Graph g = conv_model(s);  // the conv reads the plain graph input (a reorder into its layout)
  bb::RunnerOptions r;      // and its output leaves plain (a reorder the model would not do)
  r.threads = 1;
  r.tolerance = 0.5;
  r.min_reps = 3;
  r.warmup = 1;
  const auto first = bb::time_brick(g, r);
  std::set<std::string> known, inputs, outputs;
  for (const auto& [k, m] : first.reorders) {
    CHECK(k.rfind("reorder|", 0) == 0);
    CHECK(m.reps == first.steps.reps);
    known.insert(k);
    (k.rfind("reorder|plain|", 0) == 0 ? outputs : inputs).insert(k);
  }
  REQUIRE(inputs.size() == 1);
  REQUIRE(outputs.size() == 1);
  CHECK(first.steps.median_ms > 0);
  // Known: the output's conversion to plain (a brick-boundary artifact) is left out; the input's
  // conversion, which the model does right before the layer, still runs and is reported.
  const auto again = bb::time_brick(g, r, {}, known);
  CHECK(again.steps.median_ms > 0);
  REQUIRE(again.reorders.size() == 1);
  CHECK(again.reorders.count(*inputs.begin()) == 1);
  CHECK(bb::time_brick(g, r, {}, inputs).reorders.size() == 2);
}

TEST_CASE("reorders are keyed by their layouts, and each model reorder is measured as it runs there", "[bricks]") {
  // RegNet's grouped convolutions run blocked (aBcd16b) between channels-last (acdb) 1x1
  // convolutions, so the same activation shape is converted both ways: two different costs.
  bb::DecomposeOptions o;
  o.compile.threads = 1;
  const auto d = bb::decompose({testutil::repo_path("models/zoo/regnet_x_400mf.onnx")}, o);
  const auto& m = d.models[0];
  // With AVX2 (no AVX-512) oneDNN keeps the grouped convolutions channels-last too: one reorder
  // (the input's) is left, and the two-way conversion below is checked only where it happens.
  const bool avx512 = testutil::cpu_has("avx512f");
  REQUIRE(m.reorders.size() >= (avx512 ? 4u : 1u));
  std::map<std::string, std::set<std::string>> directions;  // value shape -> src>dst
  for (const auto& r : m.reorders) {
    CHECK_FALSE(r.src.empty());
    CHECK_FALSE(r.dst.empty());
    CHECK(r.src != r.dst);
    const std::string tail = "|" + r.src + ">" + r.dst;
    REQUIRE(r.key.size() > tail.size());
    CHECK(r.key.compare(r.key.size() - tail.size(), tail.size(), tail) == 0);
    directions[r.key.substr(0, r.key.size() - tail.size()).substr(r.key.find('|', 8))].insert(r.src + ">" + r.dst);
  }
  bool both_ways = false;
  for (const auto& [shape, dirs] : directions)
    for (const auto& d : dirs)
      if (d.rfind("acdb>", 0) == 0) both_ways = both_ways || dirs.count(d.substr(5) + ">acdb");
  if (avx512) CHECK(both_ways);
  // The plan text the keys come from: the same layouts as the engine's describe().
  Graph g = *m.graph;
  CompileOptions c;
  c.threads = 1;
  const auto parsed = bb::plan_reorders(g, get_backend("cpu").compile(g, c)->describe());
  REQUIRE(parsed.size() == m.reorders.size());
  for (size_t i = 0; i < parsed.size(); ++i) CHECK(parsed[i].key == m.reorders[i].key);

  // Timing the bricks records every one of those conversions under its own key (the brick's
  // context produces the input in the model's layout), so none is estimated from a rate.
  const auto dir = testutil::temp_dir("bricks_reorders");
  auto db = bb::open_database((dir / "r.sqlite").string(), true);
  bb::RunnerOptions r;
  r.threads = 1;
  r.tolerance = 0.25;
  r.min_reps = 3;
  r.warmup = 1;
  const auto summary = bb::benchmark(d, *db, r);
  CHECK(summary.measured == int(d.bricks.size()) + 1);  // + the run-overhead brick
  const std::string fp = bb::system_fingerprint(r).id();
  const auto p = bb::predict(m, *db, fp);
  CHECK(p.missing.empty());
  CHECK(p.reorders_estimated == 0);
  CHECK(p.reorders_ms > 0);
  for (const auto& re : m.reorders) CHECK(db->find(re.key, fp));
}
