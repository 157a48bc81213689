// Lower bound (Benanza): variant benchmarks stored once, bound invariants (roofline <= parallel
// <= sequential, fastest <= default per layer), critical path of a branching model, peers read
// from the database, advice kinds, JSON schema, and bad input.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

#include "bricklab/bricks/database.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/graph/onnx_import.hpp"
#include "bricklab/lowerbound/lowerbound.hpp"
#include "model_builder.hpp"

using namespace bricklab;
namespace bb = bricklab::bricks;
namespace lb = bricklab::lowerbound;

namespace {

// Two branches off one input (a 1x1 conv; two 3x3 convs), concatenated, then a 1x1 conv, global
// pooling and a classifier: an Inception-like block whose short branch is off the critical path.
Graph branching_model() {
  testutil::ModelBuilder b;
  b.input("x", {int64_t(1), int64_t(16), int64_t(28), int64_t(28)}).output("y");
  b.weight("wa", {16, 16, 1, 1}, true).weight("wb1", {24, 16, 3, 3}, true).weight("wb2", {16, 24, 3, 3}, true);
  b.weight("wc", {8, 32, 1, 1}, true).weight("wfc", {10, 8}, true).weight("bfc", {10}, true);
  b.node("Conv", {"x", "wa"}, {"a"}, "conv_a");
  b.node("Relu", {"a"}, {"ar"}, "relu_a");
  auto& cb1 = b.node("Conv", {"x", "wb1"}, {"b1"}, "conv_b1");
  testutil::ModelBuilder::attr(cb1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"b1"}, {"b1r"}, "relu_b1");
  auto& cb2 = b.node("Conv", {"b1r", "wb2"}, {"b2"}, "conv_b2");
  testutil::ModelBuilder::attr(cb2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"b2"}, {"b2r"}, "relu_b2");
  auto& cat = b.node("Concat", {"ar", "b2r"}, {"cat"}, "concat");
  testutil::ModelBuilder::attr(cat, "axis", int64_t(1));
  b.node("Conv", {"cat", "wc"}, {"c"}, "conv_c");
  b.node("GlobalAveragePool", {"c"}, {"p"}, "pool");
  b.node("Flatten", {"p"}, {"f"}, "flatten");
  auto& fc = b.node("Gemm", {"f", "wfc", "bfc"}, {"y"}, "fc");
  testutil::ModelBuilder::attr(fc, "transB", int64_t(1));
  return load_onnx_bytes(b.bytes());
}

lb::Options quick_options() {
  lb::Options o;
  o.runner.threads = 1;
  o.runner.warmup = 1;
  o.runner.min_reps = 3;
  o.runner.max_reps = 20;
  o.runner.tolerance = 0.5;
  o.runner.budget_s = 0.05;
  return o;
}

}  // namespace

TEST_CASE("lower bound: invariants, critical path, advice and the stored variants", "[lowerbound]") {
  const auto dir = testutil::temp_dir("lowerbound");
  const std::string db_path = (dir / "lb.sqlite").string();
  const Graph g = branching_model();
  auto db = bb::open_database(db_path, true);
  const lb::Options o = quick_options();
  const lb::Analysis a = lb::analyze(g, *db, o);

  REQUIRE(a.complete());
  REQUIRE(a.machine.has_value());
  CHECK(a.machine->peak_gflops.count("fp32"));
  CHECK(a.machine->bandwidth_gbs > 0);
  const auto& b = a.bounds;
  CHECK(b.roofline_parallel_ms > 0);
  CHECK(b.roofline_parallel_ms <= b.parallel_ms);
  CHECK(b.roofline_sequential_ms <= b.sequential_ms);
  CHECK(b.parallel_ms <= b.sequential_ms);
  CHECK(b.sequential_ms <= b.sequential_f32_ms + 1e-12);
  CHECK(b.sequential_f32_ms <= b.default_sequential_ms + 1e-12);
  // The short branch (conv_a) runs beside the long one: off the critical path.
  const std::set<std::string> cp(a.critical_path.begin(), a.critical_path.end());
  CHECK(cp.count("conv_b1"));
  CHECK(cp.count("conv_b2"));
  CHECK_FALSE(cp.count("conv_a"));
  CHECK(b.parallel_ms < b.sequential_ms);

  int convs = 0;
  for (const auto& l : a.layers) {
    if (l.free) {
      CHECK(l.op == "Flatten");
      continue;
    }
    INFO(l.name);
    REQUIRE(l.fastest_ms >= 0);
    CHECK(l.fastest_ms <= l.default_ms);
    CHECK(l.fastest_ms <= l.fastest_f32_ms);
    CHECK(l.start_ms <= l.finish_ms);
    int defaults = 0;
    for (const auto& v : l.variants) defaults += v.is_default;
    CHECK(defaults == 1);
    if (l.op == "Conv") {
      ++convs;
      std::set<std::string> names;
      for (const auto& v : l.variants) names.insert(v.name);
      CHECK(names.count("auto"));
      CHECK(names.count("direct"));
      CHECK(names.count("nhwc"));
      // 3x3, stride 1: oneDNN has Winograd kernels with AVX-512 only.
      if ((l.name == "conv_b1" || l.name == "conv_b2") && testutil::cpu_has("avx512f")) CHECK(names.count("winograd"));
    }
  }
  CHECK(convs == 4);
  // Fused steps of the engine's plan (conv+relu), with both their fused and unfused times.
  REQUIRE_FALSE(a.groups.empty());
  for (const auto& gr : a.groups) {
    CHECK(gr.fused_default_ms > 0);
    CHECK(gr.unfused_default_ms > 0);
    CHECK(gr.fused_best_ms <= gr.fused_default_ms);
  }
  std::set<std::string> kinds;
  for (const auto& ad : a.advice) kinds.insert(ad.kind);
  CHECK(kinds == std::set<std::string>{"algorithm", "fusion", "precision", "parallel", "runtime"});
  for (const auto& ad : a.advice)
    if (ad.kind == "parallel") {
      CHECK(ad.predicted_ms > 0);
      CHECK_FALSE(ad.applied);  // one thread: nothing to share between branches
      CHECK(ad.note.find("at least 2 threads") != std::string::npos);
    }
  REQUIRE(a.measured.size() == 1);
  CHECK(a.measured[0].runtime == "bricklab");
  CHECK(a.measured[0].ms > 0);

  // JSON: the report's schema.
  const auto j = nlohmann::json::parse(a.json());
  CHECK(j["schema"] == "bricklab.lowerbound/1");
  CHECK(j["layers"].size() == g.nodes.size());
  CHECK(j["critical_path"].size() == a.critical_path.size());
  CHECK(j["advice"].size() == a.advice.size());

  SECTION("a second analysis measures no variant again, and reads peers from the database") {
    const lb::BenchmarkSummary s = lb::benchmark_variants({&g}, *db, o);
    CHECK(s.measured == 0);
    CHECK(s.already == s.measurements);
    bb::Measurement m;
    m.median_ms = 1.25;
    m.reps = 10;
    const std::string fid = bb::system_fingerprint([&] {
                              bb::RunnerOptions r = o.runner;
                              r.fusion = true;
                              return r;
                            }())
                                .id();
    CHECK(db->insert(bb::to_stored(lb::peer_key(g, "onnxruntime"), fid, m)));
    lb::Options again = o;
    again.apply_advice = false;
    const lb::Analysis a2 = lb::analyze(g, *db, again);
    REQUIRE(a2.measured.size() == 2);
    CHECK(a2.measured[1].runtime == "onnxruntime");
    CHECK(a2.measured[1].ms == Approx(1.25));
    CHECK(a2.bounds.sequential_ms == Approx(a.bounds.sequential_ms));  // same stored numbers
    int runtime_advice = 0;
    for (const auto& ad : a2.advice) runtime_advice += ad.kind == "runtime";
    CHECK(runtime_advice == 2);
  }
  SECTION("the machine's roofline is stored with the fingerprint") {
    const lb::Machine m = lb::machine_roofline(*db, o.runner, false);
    CHECK(m.peak_gflops == a.machine->peak_gflops);
    CHECK(m.bandwidth_gbs == Approx(a.machine->bandwidth_gbs));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("lower bound: an empty database and no measuring gives missing layers, not made-up numbers", "[lowerbound]") {
  const auto dir = testutil::temp_dir("lowerbound_missing");
  const Graph g = branching_model();
  auto db = bb::open_database((dir / "lb.sqlite").string(), true);
  // Roofline only from the database: nothing stored, nothing measured.
  const lb::Machine m = lb::machine_roofline(*db, quick_options().runner, false);
  CHECK(m.peak_gflops.empty());
  CHECK(m.bandwidth_gbs == 0);
  CHECK(lb::model_id(g) == lb::model_id(branching_model()));
  CHECK(lb::peer_key(g, "onnxruntime") != lb::peer_key(g, "pytorch"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("lower bound: unknown backend and variant names are clear errors", "[lowerbound]") {
  const auto dir = testutil::temp_dir("lowerbound_bad");
  const Graph g = branching_model();
  auto db = bb::open_database((dir / "lb.sqlite").string(), true);
  lb::Options o = quick_options();
  o.runner.backend = "tpu";
  CHECK_THROWS_AS(lb::analyze(g, *db, o), InvalidArgument);
  bb::RunnerOptions r = quick_options().runner;
  r.variants["conv_a"] = "no-such-algorithm";
  try {
    bb::time_whole(g, r);
    FAIL("an unknown variant was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("no-such-algorithm") != std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("concurrent branches: the same outputs as one step after another, every step profiled", "[lowerbound][engine]") {
  const Graph g = branching_model();
  const auto inputs = random_inputs(g, 3);
  CompileOptions seq;
  seq.threads = 2;
  CompileOptions par = seq;
  par.branch_workers = 2;
  const Backend& cpu = get_backend("cpu");
  auto a = cpu.compile(g, seq);
  auto b = cpu.compile(g, par);
  CHECK(b->describe().find("2 branch workers") != std::string::npos);
  const auto want = a->run(inputs).at("y");
  for (int i = 0; i < 50; ++i) {
    const auto got = b->run(inputs).at("y");
    REQUIRE(got.numel() == want.numel());
    for (int64_t k = 0; k < got.numel(); ++k) REQUIRE(got.data_as<float>()[k] == Approx(want.data_as<float>()[k]).margin(1e-5));
  }
  const auto steps = b->run_profiled(inputs);
  CHECK(steps.size() == a->run_profiled(inputs).size());
  for (const auto& s : steps) CHECK(s.ms >= 0);
  par.branch_workers = 0;
  CHECK_THROWS_AS(cpu.compile(g, par), InvalidArgument);
}
