// Soft-training aggregation (include/bricklab/soft/aggregate.hpp) against a plain double-precision
// reference written from the formula: masks, sample weights, the soft factor, clients that did
// not train a tensor, elements nobody trained, several thread counts, non-finite rejection (the
// message names client and tensor, and masked-out garbage is ignored), and bad arguments.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bricklab/core/error.hpp"
#include "bricklab/soft/aggregate.hpp"

using namespace bricklab::soft;
using bricklab::InvalidArgument;

namespace {

struct Case {
  std::vector<std::string> names;
  std::vector<std::vector<float>> global, out;
  // client -> tensor -> values / mask (empty: not trained / full)
  std::vector<std::vector<std::vector<float>>> values;
  std::vector<std::vector<std::vector<uint8_t>>> masks;
  std::vector<double> samples;
  std::vector<bool> soft;

  std::vector<TensorSlot> slots() {
    std::vector<TensorSlot> s;
    for (size_t t = 0; t < names.size(); ++t) s.push_back({names[t], global[t].size(), global[t].data(), out[t].data()});
    return s;
  }
  std::vector<ClientUpdate> updates() const {
    std::vector<ClientUpdate> u;
    for (size_t i = 0; i < values.size(); ++i) {
      ClientUpdate c;
      c.id = "c" + std::to_string(i);
      c.samples = samples[i];
      c.soft = soft[i];
      for (size_t t = 0; t < names.size(); ++t) {
        c.values.push_back(values[i][t].empty() ? nullptr : values[i][t].data());
        c.masks.push_back(masks[i][t].empty() ? nullptr : masks[i][t].data());
      }
      u.push_back(c);
    }
    return u;
  }
  // The formula, in double, element by element.
  std::vector<std::vector<double>> reference(double soft_factor) const {
    std::vector<std::vector<double>> r(names.size());
    for (size_t t = 0; t < names.size(); ++t)
      for (size_t j = 0; j < global[t].size(); ++j) {
        double num = 0, den = 0;
        for (size_t i = 0; i < values.size(); ++i) {
          if (values[i][t].empty()) continue;
          if (!masks[i][t].empty() && !masks[i][t][j]) continue;
          const double p = samples[i] * (soft[i] ? soft_factor : 1.0);
          num += p * values[i][t][j];
          den += p;
        }
        r[t].push_back(den > 0 ? num / den : double(global[t][j]));
      }
    return r;
  }
};

Case random_case(uint32_t seed, size_t clients, const std::vector<size_t>& sizes) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<double> uni(1, 100);
  std::bernoulli_distribution coin(0.5), often(0.8);
  Case c;
  for (size_t t = 0; t < sizes.size(); ++t) {
    c.names.push_back("layer" + std::to_string(t) + ".weight");
    std::vector<float> g(sizes[t]);
    for (float& x : g) x = normal(rng);
    c.global.push_back(g);
    c.out.push_back(std::vector<float>(sizes[t], -999.0f));
  }
  for (size_t i = 0; i < clients; ++i) {
    c.samples.push_back(uni(rng));
    c.soft.push_back(coin(rng));
    std::vector<std::vector<float>> vals;
    std::vector<std::vector<uint8_t>> masks;
    for (size_t t = 0; t < sizes.size(); ++t) {
      std::vector<float> v;
      std::vector<uint8_t> m;
      if (often(rng)) {
        v.resize(sizes[t]);
        for (float& x : v) x = normal(rng);
        if (coin(rng) || t + 1 == sizes.size()) {  // the last tensor is always partial
          m.resize(sizes[t]);
          for (auto& b : m) b = coin(rng) && coin(rng);  // 25% trained: many elements nobody trains
        }
      }
      vals.push_back(v);
      masks.push_back(m);
    }
    c.values.push_back(vals);
    c.masks.push_back(masks);
  }
  return c;
}

}  // namespace

TEST_CASE("soft aggregate matches the double reference", "[soft]") {
  for (uint32_t seed : {1u, 2u, 3u}) {
    for (int threads : {1, 2, 3}) {
      Case c = random_case(seed, 2 + seed, {1, 7, 1000, 70001});
      AggregateOptions o;
      o.soft_factor = 0.25 * seed;
      o.threads = threads;
      o.chunk = 4096 + 17;  // chunk and tile borders fall inside tensors
      const AggregateStats stats = aggregate(c.slots(), c.updates(), o);
      const auto ref = c.reference(o.soft_factor);
      size_t untouched = 0;
      for (size_t t = 0; t < ref.size(); ++t)
        for (size_t j = 0; j < ref[t].size(); ++j) {
          INFO("seed " << seed << " threads " << threads << " tensor " << t << " element " << j);
          REQUIRE(c.out[t][j] == Approx(ref[t][j]).margin(1e-5).epsilon(1e-5));
          bool any = false;
          for (size_t i = 0; i < c.values.size(); ++i)
            any |= !c.values[i][t].empty() && (c.masks[i][t].empty() || c.masks[i][t][j]);
          if (!any) {
            REQUIRE(c.out[t][j] == c.global[t][j]);  // bitwise: untouched parameters keep their value
            ++untouched;
          }
        }
      CHECK(stats.untouched == untouched);
      CHECK(untouched > 0);
      CHECK(stats.elements == 1 + 7 + 1000 + 70001);
    }
  }
}

TEST_CASE("soft aggregate of identical full updates returns them", "[soft]") {
  Case c = random_case(9, 1, {513});
  c.masks[0][0].clear();
  c.values[0][0] = std::vector<float>(513, 0.75f);
  Case d = c;
  d.values.push_back(c.values[0]);
  d.masks.push_back(c.masks[0]);
  d.samples.push_back(3.0);
  d.soft.push_back(true);
  aggregate(d.slots(), d.updates());
  for (float x : d.out[0]) REQUIRE(x == Approx(0.75f).epsilon(1e-6));
}

TEST_CASE("soft aggregate works in place", "[soft]") {
  Case c = random_case(4, 3, {5000});
  const auto ref = c.reference(1.0);
  std::vector<TensorSlot> s = c.slots();
  s[0].out = c.global[0].data();
  aggregate(s, c.updates());
  for (size_t j = 0; j < ref[0].size(); ++j) REQUIRE(c.global[0][j] == Approx(ref[0][j]).margin(1e-5));
}

TEST_CASE("soft aggregate rejects non-finite trained values and ignores masked ones", "[soft]") {
  Case c = random_case(5, 3, {100, 100});
  for (size_t i = 0; i < 3; ++i)
    for (size_t t = 0; t < 2; ++t) {
      c.values[i][t].assign(100, 1.0f);
      c.masks[i][t].assign(100, 1);
    }
  // A NaN where the mask says "not trained" is ignored.
  c.values[2][1][10] = std::numeric_limits<float>::quiet_NaN();
  c.masks[2][1][10] = 0;
  REQUIRE_NOTHROW(aggregate(c.slots(), c.updates()));
  // A trained infinity is rejected, naming the client and the tensor.
  c.values[1][1][42] = std::numeric_limits<float>::infinity();
  try {
    aggregate(c.slots(), c.updates());
    FAIL("no exception");
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("client 'c1'") != std::string::npos);
    CHECK(msg.find("layer1.weight") != std::string::npos);
    CHECK(msg.find("element 42") != std::string::npos);
    CHECK(msg.find("inf") != std::string::npos);
  }
  c.values[1][1][42] = 1.0f;
  c.values[0][0][3] = std::numeric_limits<float>::quiet_NaN();
  c.masks[0][0].clear();  // full update
  CHECK_THROWS_WITH(aggregate(c.slots(), c.updates()), Catch::Contains("client 'c0'") && Catch::Contains("nan"));
}

TEST_CASE("soft aggregate in place: a rejected update leaves the global values untouched", "[soft]") {
  // Several tensors and chunks, the bad value in the last tensor's last element: a single pass
  // would have overwritten everything before it.
  Case c = random_case(6, 3, {3000, 5000, 7000});
  for (size_t t = 0; t < 3; ++t) c.values[0][t].assign(c.global[t].size(), 0.5f), c.masks[0][t].clear();
  c.values[0][2].back() = -std::numeric_limits<float>::infinity();
  const auto before = c.global;
  std::vector<TensorSlot> s = c.slots();
  for (size_t t = 0; t < 3; ++t) s[t].out = c.global[t].data();
  AggregateOptions o;
  o.chunk = 1000;
  for (int threads : {1, 2}) {
    o.threads = threads;
    CHECK_THROWS_WITH(aggregate(s, c.updates(), o), Catch::Contains("client 'c0'") && Catch::Contains("-inf"));
    for (size_t t = 0; t < 3; ++t) REQUIRE(c.global[t] == before[t]);  // bitwise
  }
  // +inf and -inf from two clients in one element (their weighted sum is NaN) is rejected too,
  // naming the first of them.
  c.values[0][2].back() = std::numeric_limits<float>::infinity();
  c.values[1][2].assign(c.global[2].size(), 1.0f);
  c.masks[1][2].clear();
  c.values[1][2].back() = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(aggregate(s, c.updates(), o), Catch::Contains("client 'c0'") && Catch::Contains("element 6999"));
  for (size_t t = 0; t < 3; ++t) REQUIRE(c.global[t] == before[t]);
  // Written over a client's update instead (out = client 1's values of the first tensor): that
  // update is left as it was too.
  for (size_t t = 0; t < 3; ++t) s[t].out = c.out[t].data();
  c.values[1][0].assign(c.global[0].size(), 2.0f);
  c.masks[1][0].clear();
  s[0].out = c.values[1][0].data();
  CHECK_THROWS(aggregate(s, c.updates(), o));
  for (float x : c.values[1][0]) REQUIRE(x == 2.0f);
}

TEST_CASE("soft aggregate rejects bad arguments", "[soft]") {
  Case c = random_case(6, 2, {10});
  CHECK_THROWS_AS(aggregate(c.slots(), {}), InvalidArgument);
  auto u = c.updates();
  u[1].samples = 0;
  CHECK_THROWS_WITH(aggregate(c.slots(), u), Catch::Contains("client 'c1'") && Catch::Contains("> 0"));
  u = c.updates();
  u[0].samples = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(aggregate(c.slots(), u), InvalidArgument);
  u = c.updates();
  u[0].values.pop_back();
  CHECK_THROWS_AS(aggregate(c.slots(), u), InvalidArgument);
  AggregateOptions o;
  o.soft_factor = -1;
  CHECK_THROWS_AS(aggregate(c.slots(), c.updates(), o), InvalidArgument);
  u = c.updates();
  static const uint8_t mask[10] = {1};
  u[0].values[0] = nullptr;
  u[0].masks[0] = mask;
  CHECK_THROWS_AS(aggregate(c.slots(), u), InvalidArgument);
}
