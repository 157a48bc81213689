// bricklab's model IR: a graph of nodes and values with concrete shapes, dtypes, attributes
// and per-node cost (FLOPs, bytes), nodes in topological order. Built by load_onnx().
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "bricklab/graph/tensor.hpp"

namespace bricklab {

// How a value comes to exist.
enum class ValueKind {
  input,       // a graph input fed at run time
  weight,      // an initializer (may be stripped: data kind absent)
  constant,    // a Constant / folded ConstantOfShape node's output
  activation,  // produced by a node at run time
};

std::string value_kind_name(ValueKind k);

struct Value {
  std::string name;
  DType dtype = DType::undefined;
  Shape shape;
  ValueKind kind = ValueKind::activation;
  int producer = -1;           // node index, -1 for inputs / weights / constants
  std::vector<int> consumers;  // node indices, in topological order
  bool is_graph_output = false;
  std::optional<TensorData> data;  // set for weights and constants

  int64_t numel() const noexcept { return shape_numel(shape); }
  double nbytes() const noexcept { return double(numel()) * double(dtype_size(dtype)); }
  bool is_constant() const noexcept { return kind == ValueKind::weight || kind == ValueKind::constant; }
};

// One ONNX attribute value. Tensors are held as TensorData; graph attributes are not supported.
using Attribute = std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>,
                               std::vector<std::string>, TensorData>;

// Work a node does when it runs once, counted by the operator table (ops/registry.hpp).
// FLOPs count a multiply-add as 2; bytes count each distinct input read once (weights included)
// and each output written once. View ops (Reshape, Flatten, ...) cost zero.
struct Cost {
  double flops = 0;
  double bytes_read = 0;
  double bytes_written = 0;
  double bytes() const noexcept { return bytes_read + bytes_written; }
  // FLOPs per byte moved; 0 when no bytes move.
  double intensity() const noexcept { return bytes() > 0 ? flops / bytes() : 0.0; }
};

struct OpDef;  // ops/registry.hpp

struct Node {
  std::string name;  // unique; generated ("<Op>_<index>") when the model gives none
  std::string op;    // ONNX op_type
  const OpDef* def = nullptr;  // the operator-table entry (set at import; entries live forever)
  std::string domain;
  int opset = 0;              // opset version of the node's domain
  std::vector<int> inputs;    // value indices; -1 marks an omitted optional input
  std::vector<int> outputs;   // value indices; -1 marks an omitted optional output
  std::map<std::string, Attribute> attrs;
  Cost cost;

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  double attr_float(const std::string& key, double fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, const std::vector<int64_t>& fallback = {}) const;
};

// A path through the graph and its total weight.
struct CriticalPath {
  double length = 0;
  std::vector<int> nodes;  // in execution order
};

class Graph {
 public:
  std::string name;
  std::string path;        // file it was loaded from, if any
  int ir_version = 0;
  int opset = 0;           // default-domain opset
  bool weights_stripped = false;  // true when some weights have no values
  int folded_nodes = 0;           // shape computations folded into constants at load (bound dims)
  std::vector<Node> nodes;        // topological order
  std::vector<Value> values;
  std::vector<int> inputs;   // runtime inputs (initializers excluded)
  std::vector<int> outputs;

  // Lookup by name; -1 when absent.
  int find_value(const std::string& value_name) const;
  int find_node(const std::string& node_name) const;
  const Value& value(int index) const { return values.at(size_t(index)); }
  const Node& node(int index) const { return nodes.at(size_t(index)); }

  // Nodes producing this node's inputs (unique, ascending) / consuming its outputs.
  std::vector<int> producers(int node_index) const;
  std::vector<int> consumers(int node_index) const;

  // Kahn topological order of the nodes as they are stored (throws ModelFormatError on a cycle).
  std::vector<int> topological_order() const;
  // Longest path through the node DAG where each node weighs weights[i] (size == nodes.size()).
  CriticalPath critical_path(const std::vector<double>& weights) const;

  Cost total_cost() const;
  // Number of elements / bytes of all weights and constants.
  int64_t parameter_count() const;
  double parameter_bytes() const;

  // Rebuilds producer / consumer links and the name indices after nodes or values changed.
  void rebuild_links();

 private:
  std::unordered_map<std::string, int> value_index_;
  std::unordered_map<std::string, int> node_index_;
};

}  // namespace bricklab
