// Graph utilities: lookups, producer/consumer links, topological order, critical path, totals.
#include "bricklab/graph/graph.hpp"

#include <algorithm>
#include <cstring>
#include <queue>

#include "bricklab/core/error.hpp"

namespace bricklab {

std::string value_kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::input: return "input";
    case ValueKind::weight: return "weight";
    case ValueKind::constant: return "constant";
    case ValueKind::activation: return "activation";
  }
  return "?";
}

namespace {
template <typename T>
T read_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename Out, typename Fn>
std::vector<Out> convert_all(const TensorData& t, Fn&& fn) {
  if (!t.has_values()) throw Error("tensor values are not stored (stripped weights)");
  const int64_t n = t.numel();
  if (n < 0 || n > (int64_t(1) << 31)) throw Error("tensor too large to convert: " + shape_str(t.shape()));
  std::vector<Out> out(static_cast<size_t>(n));
  if (t.kind() == TensorData::Kind::fill) {
    std::fill(out.begin(), out.end(), Out(t.fill_value()));
    return out;
  }
  const int64_t es = dtype_size(t.dtype());
  const std::string* buf = t.buffer();
  if (es == 0 || buf == nullptr || int64_t(buf->size()) != n * es)
    throw Error("tensor buffer size does not match its shape " + shape_str(t.shape()));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = fn(buf->data() + i * es);
  return out;
}

template <typename Out>
std::vector<Out> convert_numeric(const TensorData& t) {
  switch (t.dtype()) {
    case DType::int64: return convert_all<Out>(t, [](const char* p) { return Out(read_le<int64_t>(p)); });
    case DType::int32: return convert_all<Out>(t, [](const char* p) { return Out(read_le<int32_t>(p)); });
    case DType::int16: return convert_all<Out>(t, [](const char* p) { return Out(read_le<int16_t>(p)); });
    case DType::int8: return convert_all<Out>(t, [](const char* p) { return Out(read_le<int8_t>(p)); });
    case DType::uint8:
    case DType::boolean: return convert_all<Out>(t, [](const char* p) { return Out(read_le<uint8_t>(p)); });
    case DType::uint16: return convert_all<Out>(t, [](const char* p) { return Out(read_le<uint16_t>(p)); });
    case DType::uint32: return convert_all<Out>(t, [](const char* p) { return Out(read_le<uint32_t>(p)); });
    case DType::uint64: return convert_all<Out>(t, [](const char* p) { return Out(read_le<uint64_t>(p)); });
    case DType::float32: return convert_all<Out>(t, [](const char* p) { return Out(read_le<float>(p)); });
    case DType::float64: return convert_all<Out>(t, [](const char* p) { return Out(read_le<double>(p)); });
    case DType::float16: return convert_all<Out>(t, [](const char* p) { return Out(half_to_float(read_le<uint16_t>(p))); });
    default: throw Error("cannot convert a " + dtype_name(t.dtype()) + " tensor to numbers");
  }
}
}  // namespace

std::vector<int64_t> TensorData::as_int64() const { return convert_numeric<int64_t>(*this); }
std::vector<double> TensorData::as_double() const { return convert_numeric<double>(*this); }

int64_t Node::attr_int(const std::string& key, int64_t fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (auto v = std::get_if<int64_t>(&it->second)) return *v;
  throw Error({"", name, op}, "attribute '" + key + "' is not an integer");
}

double Node::attr_float(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (auto v = std::get_if<double>(&it->second)) return *v;
  if (auto v = std::get_if<int64_t>(&it->second)) return double(*v);
  throw Error({"", name, op}, "attribute '" + key + "' is not a float");
}

std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (auto v = std::get_if<std::string>(&it->second)) return *v;
  throw Error({"", name, op}, "attribute '" + key + "' is not a string");
}

std::vector<int64_t> Node::attr_ints(const std::string& key, const std::vector<int64_t>& fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (auto v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
  if (auto v = std::get_if<int64_t>(&it->second)) return {*v};
  throw Error({"", name, op}, "attribute '" + key + "' is not a list of integers");
}

int Graph::find_value(const std::string& value_name) const {
  auto it = value_index_.find(value_name);
  return it == value_index_.end() ? -1 : it->second;
}

int Graph::find_node(const std::string& node_name) const {
  auto it = node_index_.find(node_name);
  return it == node_index_.end() ? -1 : it->second;
}

void Graph::rebuild_links() {
  value_index_.clear();
  node_index_.clear();
  for (size_t v = 0; v < values.size(); ++v) {
    values[v].producer = -1;
    values[v].consumers.clear();
    values[v].is_graph_output = false;
    value_index_[values[v].name] = int(v);
  }
  for (size_t n = 0; n < nodes.size(); ++n) {
    node_index_[nodes[n].name] = int(n);
    for (int v : nodes[n].outputs)
      if (v >= 0) values.at(size_t(v)).producer = int(n);
  }
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (int v : nodes[n].inputs) {
      if (v < 0) continue;
      auto& cons = values.at(size_t(v)).consumers;
      if (cons.empty() || cons.back() != int(n)) cons.push_back(int(n));
    }
  }
  for (int v : outputs) values.at(size_t(v)).is_graph_output = true;
}

std::vector<int> Graph::producers(int node_index) const {
  std::vector<int> out;
  for (int v : node(node_index).inputs)
    if (v >= 0 && values[size_t(v)].producer >= 0) out.push_back(values[size_t(v)].producer);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> Graph::consumers(int node_index) const {
  std::vector<int> out;
  for (int v : node(node_index).outputs)
    if (v >= 0) out.insert(out.end(), values[size_t(v)].consumers.begin(), values[size_t(v)].consumers.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> Graph::topological_order() const {
  const size_t n = nodes.size();
  std::vector<int> indegree(n, 0);
  for (size_t i = 0; i < n; ++i) indegree[i] = int(producers(int(i)).size());
  // A min-heap keeps the stored order where the graph allows it (stable and deterministic).
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (size_t i = 0; i < n; ++i)
    if (indegree[i] == 0) ready.push(int(i));
  std::vector<int> order;
  order.reserve(n);
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int c : consumers(i))
      if (--indegree[size_t(c)] == 0) ready.push(c);
  }
  if (order.size() != n) throw ModelFormatError({path, "", ""}, "the graph has a cycle");
  return order;
}

CriticalPath Graph::critical_path(const std::vector<double>& weights) const {
  if (weights.size() != nodes.size())
    throw InvalidArgument("critical_path: " + std::to_string(weights.size()) + " weights for " +
                          std::to_string(nodes.size()) + " nodes");
  std::vector<double> finish(nodes.size(), 0.0);
  std::vector<int> via(nodes.size(), -1);
  int best = -1;
  for (int i : topological_order()) {
    double start = 0;
    for (int p : producers(i))
      if (via[size_t(i)] < 0 || finish[size_t(p)] > start) {
        start = finish[size_t(p)];
        via[size_t(i)] = p;
      }
    finish[size_t(i)] = start + weights[size_t(i)];
    if (best < 0 || finish[size_t(i)] > finish[size_t(best)]) best = i;
  }
  CriticalPath cp;
  if (best < 0) return cp;
  cp.length = finish[size_t(best)];
  for (int i = best; i >= 0; i = via[size_t(i)]) cp.nodes.push_back(i);
  std::reverse(cp.nodes.begin(), cp.nodes.end());
  return cp;
}

Cost Graph::total_cost() const {
  Cost total;
  for (const Node& n : nodes) {
    total.flops += n.cost.flops;
    total.bytes_read += n.cost.bytes_read;
    total.bytes_written += n.cost.bytes_written;
  }
  return total;
}

int64_t Graph::parameter_count() const {
  int64_t count = 0;
  for (const Value& v : values)
    if (v.is_constant() && dtype_is_float(v.dtype)) count += v.numel();
  return count;
}

double Graph::parameter_bytes() const {
  double bytes = 0;
  for (const Value& v : values)
    if (v.is_constant()) bytes += v.nbytes();
  return bytes;
}

}  // namespace bricklab
