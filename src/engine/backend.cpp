// Backend registry and backend-independent helpers: subgraph extraction, random inputs, timing.
#include "bricklab/engine/backend.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <chrono>
#include <random>
#include <set>

#include "bricklab/backend/devices.hpp"
#include "bricklab/ops/registry.hpp"

namespace bricklab {

namespace cpu {
const Backend& backend();  // src/engine/cpu/cpu_backend.cpp
}
namespace cuda {
const Backend& backend();  // cuda/cuda_backend.cpp
}

namespace {

// The backend registry: every backend this build has, by name. The build decides which are
// compiled in; nothing else in the library asks.
struct BackendEntry {
  const char* name;
  const Backend& (*get)();
};

const std::vector<BackendEntry>& registry() {
  static const std::vector<BackendEntry> entries = {
#ifdef BRICKLAB_WITH_DNNL
      {"cpu", cpu::backend},
#endif
#ifdef BRICKLAB_WITH_CUDA
      {"cuda", cuda::backend},  // returned even without a GPU: available() is false, compile() says why
#endif
  };
  return entries;
}

}  // namespace

std::string precision_name(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
  }
  return "?";
}

std::vector<std::string> backend_names() {
  std::vector<std::string> out;
  for (const auto& e : registry()) out.push_back(e.name);
  return out;
}

const Backend& get_backend(const std::string& name) {
  for (const auto& e : registry())
    if (name == e.name) return e.get();
  if (name == "cuda") throw UnsupportedError("the CUDA backend is not compiled in: " + cuda::unavailable_reason());
  if (name == "cpu") throw UnsupportedError("the CPU backend needs oneDNN; this build has BRICKLAB_WITH_DNNL=OFF");
  std::string known;
  for (const auto& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  throw InvalidArgument("unknown backend '" + name + "' (built in: " + (known.empty() ? "none" : known) + ")");
}

Graph extract_subgraph(const Graph& graph, const std::vector<int>& nodes) {
  if (nodes.empty()) throw InvalidArgument("extract_subgraph: no nodes given");
  std::vector<int> sorted = nodes;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::set<int> inside(sorted.begin(), sorted.end());
  for (int n : sorted)
    if (n < 0 || n >= int(graph.nodes.size())) throw InvalidArgument("extract_subgraph: node index " + std::to_string(n) + " out of range");
  Graph sub;
  sub.name = graph.name + (sorted.size() == 1 ? ":" + graph.nodes[size_t(sorted[0])].name : ":subgraph");
  sub.path = graph.path;
  sub.ir_version = graph.ir_version;
  sub.opset = graph.opset;
  std::map<int, int> remap;
  auto map_value = [&](int v, bool as_input) {
    auto it = remap.find(v);
    if (it != remap.end()) return it->second;
    Value copy = graph.values[size_t(v)];
    copy.consumers.clear();
    copy.producer = -1;
    copy.is_graph_output = false;
    if (as_input && !copy.is_constant()) copy.kind = ValueKind::input;
    sub.values.push_back(copy);
    const int id = int(sub.values.size()) - 1;
    remap[v] = id;
    if (as_input && !copy.is_constant()) sub.inputs.push_back(id);
    if (copy.data && !copy.data->has_values()) sub.weights_stripped = true;
    return id;
  };
  for (int n : sorted) {
    Node copy = graph.nodes[size_t(n)];
    for (int& v : copy.inputs)
      if (v >= 0) {
        const int producer = graph.values[size_t(v)].producer;
        v = map_value(v, producer < 0 || !inside.count(producer));
      }
    for (int& v : copy.outputs)
      if (v >= 0) v = map_value(v, false);
    sub.nodes.push_back(std::move(copy));
  }
  for (int n : sorted)
    for (int v : graph.nodes[size_t(n)].outputs) {
      if (v < 0) continue;
      bool used_outside = graph.values[size_t(v)].is_graph_output;
      for (int c : graph.values[size_t(v)].consumers) used_outside = used_outside || !inside.count(c);
      if (used_outside) sub.outputs.push_back(remap.at(v));
    }
  if (sub.outputs.empty()) sub.outputs.push_back(sub.nodes.back().outputs.at(0));
  sub.rebuild_links();
  return sub;
}

namespace {
// Counter-based generator: value i of a tensor is a pure function of (seed, name, i), so filling
// is parallel and the numbers do not depend on the thread count.
inline uint64_t mix64(uint64_t z) {  // the splitmix64 finaliser
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t name_hash(const std::string& s) {  // FNV-1a: the same on every platform
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
// normal(0, 1) from 64 random bits, approximated by the Irwin-Hall sum of four 16-bit uniforms
// (mean 2^17 - 2, variance 4 * 2^32 / 12; tails cut at 3.46 sd).
inline double unit_normal(uint64_t r) {
  const uint32_t sum = uint32_t(r & 0xffff) + uint32_t((r >> 16) & 0xffff) + uint32_t((r >> 32) & 0xffff) + uint32_t(r >> 48);
  return (double(sum) - 131070.0) * (1.7320508075688772 / 65536.0);
}
}  // namespace

namespace {
// Stand-in weights are windows of one fixed sequence of kPeriod values (a prime, so that the
// rows of a weight matrix, consecutive windows of the sequence, are never equal), generated once
// per process: filling a weight is then a scaled copy instead of a generator call per element
// (which had been 10% of benchmarking the batch-1 suite's bricks, under perf).
constexpr int64_t kPeriod = 1048573;
const std::vector<float>& stand_in_sequence(bool positive) {
  auto generate = [](uint64_t salt, float (*from_bits)(uint64_t)) {
    std::vector<float> v(size_t(kPeriod), 0.f);
    const uint64_t base = mix64(salt);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kPeriod; ++i) v[size_t(i)] = from_bits(mix64(base + uint64_t(i)));
    return v;
  };
  static const std::vector<float> normal = generate(0x5eed, [](uint64_t r) { return float(unit_normal(r)); });
  static const std::vector<float> uniform =  // uniform(0, 1)
      generate(0x0dd5, [](uint64_t r) { return float(r >> 40) * (1.0f / 16777216.0f); });
  return positive ? uniform : normal;
}
}  // namespace

void fill_weight_values(const Graph& graph, int value, uint64_t seed, float* out) {
  const Value& v = graph.values.at(size_t(value));
  bool positive = false;  // a variance or a normalisation scale
  for (int c : v.consumers) {
    const Node& n = graph.nodes[size_t(c)];
    const OpDef* def = OpRegistry::instance().of(n);
    for (size_t i = 0; def && i < n.inputs.size() && i < 32; ++i)
      if (n.inputs[i] == value && (def->positive_inputs >> i) & 1u) positive = true;
  }
  const int64_t count = std::max<int64_t>(v.numel(), 0);
  // uniform(0.5, 1.5) for positive values; else normal(0, sd), approximated by the Irwin-Hall
  // sum of four 16-bit uniforms (tails cut at 3.46 sd).
  double fan_in = 1;
  for (size_t i = 1; i < v.shape.size(); ++i) fan_in *= double(v.shape[i]);
  const float scale = positive ? 1.f : float(v.shape.size() >= 2 ? 1.0 / std::sqrt(fan_in) : 0.05);
  const float shift = positive ? 0.5f : 0.f;
  const float* seq = stand_in_sequence(positive).data();
  const int64_t start = int64_t(mix64(seed ^ name_hash(v.name)) % uint64_t(kPeriod));
#pragma omp parallel for schedule(static) if (count > (int64_t(1) << 18))
  for (int64_t lo = 0; lo < count; lo += 65536) {
    const int64_t hi = std::min(count, lo + 65536);
    int64_t j = (start + lo) % kPeriod;
    for (int64_t i = lo; i < hi;) {
      const int64_t n = std::min(hi - i, kPeriod - j);
      for (int64_t k = 0; k < n; ++k) out[i + k] = shift + scale * seq[j + k];
      i += n;
      j = 0;
    }
  }
}

std::vector<float> random_weight_values(const Graph& graph, int value, uint64_t seed) {
  std::vector<float> out(size_t(std::max<int64_t>(graph.values.at(size_t(value)).numel(), 0)));
  fill_weight_values(graph, value, seed, out.data());
  return out;
}

void fill_random_normal(float* p, int64_t count, uint64_t seed, const std::string& name) {
  const uint64_t base = mix64(seed ^ name_hash(name));
#pragma omp parallel for schedule(static) if (count > (int64_t(1) << 16))
  for (int64_t i = 0; i < count; ++i) p[i] = float(unit_normal(mix64(base + uint64_t(i))));
}

std::map<std::string, Tensor> random_inputs(const Graph& graph, uint64_t seed, const std::set<std::string>& leave_zero) {
  // The same counter-based generator as the weights (a pure function of seed, input name and
  // index, filled in parallel): std::normal_distribution here took a third of the time of
  // benchmarking a suite's bricks, whose inputs are activations of up to millions of elements.
  std::map<std::string, Tensor> out;
  for (int v : graph.inputs) {
    const Value& value = graph.values[size_t(v)];
    Tensor t(value.dtype, value.shape);  // zero: valid indices for Gather and friends, false for bool
    const int64_t count = t.numel();
    if (leave_zero.count(value.name)) {
      // stays zero
    } else if (value.dtype == DType::float32) {
      fill_random_normal(t.data_as<float>(), count, seed, value.name);
    } else if (value.dtype == DType::float64) {
      const uint64_t base = mix64(seed ^ name_hash(value.name));
      double* p = t.data_as<double>();
#pragma omp parallel for schedule(static) if (count > (int64_t(1) << 16))
      for (int64_t i = 0; i < count; ++i) p[i] = unit_normal(mix64(base + uint64_t(i)));
    }
    out[value.name] = std::move(t);
  }
  return out;
}

TimingStats time_runs(Executable& exe, const std::map<std::string, Tensor>& inputs, int warmup, int repeats) {
  if (repeats < 1) throw InvalidArgument("time_runs: repeats must be >= 1");
  for (int i = 0; i < warmup; ++i) exe.run(inputs);
  TimingStats s;
  s.repeats = repeats;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    exe.run(inputs);
    s.samples_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = s.samples_ms;
  std::sort(sorted.begin(), sorted.end());
  auto quantile = [&](double q) {
    const double pos = q * double(sorted.size() - 1);
    const size_t lo = size_t(pos);
    const size_t hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
  };
  s.median_ms = quantile(0.5);
  s.p10_ms = quantile(0.1);
  s.p90_ms = quantile(0.9);
  s.min_ms = sorted.front();
  double sum = 0;
  for (double x : sorted) sum += x;
  s.mean_ms = sum / double(sorted.size());
  return s;
}

}  // namespace bricklab
