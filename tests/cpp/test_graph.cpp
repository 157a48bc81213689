// Graph utilities: producers/consumers, topological order and critical path, the latter checked
// against a brute-force enumeration of every path on random DAGs.
#include <catch2/catch.hpp>

#include <functional>
#include <random>

#include "bricklab/bricklab.hpp"

using namespace bricklab;

namespace {

// Builds a graph whose node i consumes the outputs of nodes deps[i] (all < i), plus one input.
Graph make_dag(const std::vector<std::vector<int>>& deps) {
  Graph g;
  Value in;
  in.name = "x";
  in.kind = ValueKind::input;
  in.dtype = DType::float32;
  in.shape = {1};
  g.values.push_back(in);
  g.inputs = {0};
  for (size_t i = 0; i < deps.size(); ++i) {
    Value out;
    out.name = "v" + std::to_string(i);
    out.dtype = DType::float32;
    out.shape = {1};
    g.values.push_back(out);
    Node n;
    n.name = "n" + std::to_string(i);
    n.op = "Add";
    if (deps[i].empty()) n.inputs.push_back(0);
    for (int d : deps[i]) n.inputs.push_back(d + 1);
    n.outputs.push_back(int(i) + 1);
    g.nodes.push_back(n);
  }
  g.outputs = {int(deps.size())};
  g.rebuild_links();
  return g;
}

double brute_force_longest(const std::vector<std::vector<int>>& deps, const std::vector<double>& w) {
  // Enumerate every path by DFS from each node backwards.
  std::function<double(int)> longest_to = [&](int i) {
    double best = 0;
    for (int d : deps[size_t(i)]) best = std::max(best, longest_to(d));
    return best + w[size_t(i)];
  };
  double best = 0;
  for (size_t i = 0; i < deps.size(); ++i) best = std::max(best, longest_to(int(i)));
  return best;
}

}  // namespace

TEST_CASE("diamond: producers, consumers and critical path", "[graph]") {
  //   n0 -> n1 -> n3
  //   n0 -> n2 -> n3
  Graph g = make_dag({{}, {0}, {0}, {1, 2}});
  CHECK(g.producers(3) == std::vector<int>{1, 2});
  CHECK(g.consumers(0) == std::vector<int>{1, 2});
  CHECK(g.find_node("n2") == 2);
  CHECK(g.find_value("v3") == 4);
  auto cp = g.critical_path({1.0, 5.0, 2.0, 1.0});
  CHECK(cp.length == Approx(7.0));
  CHECK(cp.nodes == std::vector<int>{0, 1, 3});
  cp = g.critical_path({1.0, 2.0, 5.0, 1.0});
  CHECK(cp.nodes == std::vector<int>{0, 2, 3});
  CHECK_THROWS_AS(g.critical_path({1.0}), InvalidArgument);
}

TEST_CASE("critical path equals brute force on random DAGs", "[graph]") {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + int(rng() % 12);
    std::vector<std::vector<int>> deps(static_cast<size_t>(n));
    for (int i = 1; i < n; ++i)
      for (int j = 0; j < i; ++j)
        if (rng() % 3 == 0) deps[size_t(i)].push_back(j);
    std::vector<double> w(static_cast<size_t>(n));
    for (auto& x : w) x = double(rng() % 100) / 10.0;
    Graph g = make_dag(deps);
    auto cp = g.critical_path(w);
    REQUIRE(cp.length == Approx(brute_force_longest(deps, w)));
    // The path is a chain of producer -> consumer edges whose weights add up to its length.
    double sum = 0;
    for (size_t k = 0; k < cp.nodes.size(); ++k) {
      sum += w[size_t(cp.nodes[k])];
      if (k > 0) {
        auto prods = g.producers(cp.nodes[k]);
        REQUIRE(std::find(prods.begin(), prods.end(), cp.nodes[k - 1]) != prods.end());
      }
    }
    REQUIRE(sum == Approx(cp.length));
    // Topological order: every producer comes before its consumer.
    auto order = g.topological_order();
    std::vector<int> pos(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) pos[size_t(order[size_t(k)])] = k;
    for (int i = 0; i < n; ++i)
      for (int d : deps[size_t(i)]) REQUIRE(pos[size_t(d)] < pos[size_t(i)]);
  }
}

TEST_CASE("topological order detects a cycle", "[graph]") {
  Graph g = make_dag({{}, {0}});
  g.nodes[0].inputs = {2};  // n0 now consumes n1's output: a cycle
  g.rebuild_links();
  CHECK_THROWS_AS(g.topological_order(), ModelFormatError);
}

TEST_CASE("tensor data conversions", "[graph]") {
  std::vector<int32_t> raw = {3, -1, 7};
  auto buf = std::make_shared<const std::string>(reinterpret_cast<const char*>(raw.data()), raw.size() * 4);
  auto t = TensorData::make_bytes(DType::int32, {3}, buf);
  CHECK(t.as_int64() == std::vector<int64_t>{3, -1, 7});
  auto f = TensorData::make_fill(DType::float32, {2, 2}, 1.5);
  CHECK(f.as_double() == std::vector<double>{1.5, 1.5, 1.5, 1.5});
  auto a = TensorData::make_absent(DType::float32, {4});
  CHECK_FALSE(a.has_values());
  CHECK_THROWS_AS(a.as_double(), Error);
  CHECK(shape_numel({2, 3, 4}) == 24);
  CHECK(shape_numel({}) == 1);
  CHECK(shape_numel({int64_t(1) << 40, int64_t(1) << 40}) == INT64_MAX);
}
