// The operator table and cost filling. Each family file in src/ops/ registers its entries.
#include "bricklab/ops/registry.hpp"

#include <algorithm>

#include "bricklab/core/error.hpp"

namespace bricklab {

namespace ops {
void register_conv_ops(OpRegistry&);
void register_matmul_ops(OpRegistry&);
void register_elementwise_ops(OpRegistry&);
void register_pooling_ops(OpRegistry&);
void register_normalization_ops(OpRegistry&);
void register_movement_ops(OpRegistry&);
void register_shape_ops(OpRegistry&);
}  // namespace ops

std::string op_class_name(OpClass c) {
  switch (c) {
    case OpClass::compute: return "compute";
    case OpClass::elementwise: return "elementwise";
    case OpClass::reduction: return "reduction";
    case OpClass::movement: return "movement";
    case OpClass::view: return "view";
    case OpClass::shape: return "shape";
  }
  return "?";
}

const OpRegistry& OpRegistry::instance() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    ops::register_conv_ops(r);
    ops::register_matmul_ops(r);
    ops::register_elementwise_ops(r);
    ops::register_pooling_ops(r);
    ops::register_normalization_ops(r);
    ops::register_movement_ops(r);
    ops::register_shape_ops(r);
    std::sort(r.defs_.begin(), r.defs_.end(), [](const OpDef& a, const OpDef& b) { return a.name < b.name; });
    for (size_t i = 0; i < r.defs_.size(); ++i) r.defs_[i].index = i;
    return r;
  }();
  return registry;
}

const OpDef* OpRegistry::find(const std::string& op_type) const {
  auto it = std::lower_bound(defs_.begin(), defs_.end(), op_type,
                             [](const OpDef& d, const std::string& name) { return d.name < name; });
  return (it != defs_.end() && it->name == op_type) ? &*it : nullptr;
}

const OpDef* OpRegistry::of(const Node& node) const {
  if (node.def) return node.def;
  return node.domain.empty() ? find(node.op) : nullptr;
}

EltFn binary_fn(const Node& node) {
  const OpDef* def = OpRegistry::instance().of(node);
  if (!def || def->elementwise == EltFn::none || is_unary(def->elementwise) || def->elementwise == EltFn::where) return EltFn::none;
  size_t present = 0;
  for (int v : node.inputs) present += v >= 0;
  if (present != 2) return EltFn::none;
  return def->elementwise == EltFn::mean ? EltFn::none : def->elementwise;
}

void OpRegistry::add(OpDef def) {
  for (const auto& d : defs_)
    if (d.name == def.name) throw Error("operator '" + def.name + "' registered twice");
  defs_.push_back(std::move(def));
}

std::map<std::string, Attribute> normalised_attributes(const Graph& g, const Node& n) {
  std::map<std::string, Attribute> a = n.attrs;
  if (n.domain.empty())
    if (const OpDef* def = OpRegistry::instance().of(n); def && def->normalise) def->normalise(g, n, a);
  const size_t rank = (!n.inputs.empty() && n.inputs[0] >= 0) ? g.values[size_t(n.inputs[0])].shape.size() : 0;
  auto non_negative = [&](int64_t axis) { return axis < 0 ? axis + int64_t(rank) : axis; };
  if (rank > 0) {
    auto axis = a.find("axis");
    if (axis != a.end() && std::holds_alternative<int64_t>(axis->second))
      axis->second = non_negative(std::get<int64_t>(axis->second));
    auto axes = a.find("axes");
    if (axes != a.end() && std::holds_alternative<std::vector<int64_t>>(axes->second) && n.op != "Unsqueeze") {
      auto v = std::get<std::vector<int64_t>>(axes->second);
      for (auto& x : v) x = non_negative(x);
      std::sort(v.begin(), v.end());
      axes->second = v;
    }
  }
  return a;
}

void check_attributes(const Node& node) {
  const OpDef* def = OpRegistry::instance().of(node);
  if (!def || !def->check_attributes) return;
  try {
    def->check_attributes(node);
  } catch (const Error& e) {
    throw ShapeError({"", node.name, node.op}, e.problem());
  }
}

NodeAttrs::NodeAttrs(const Graph& graph, const Node& node) : node_(node), attrs_(normalised_attributes(graph, node)) {}

const Attribute& NodeAttrs::get(const std::string& key) const {
  auto it = attrs_.find(key);
  if (it == attrs_.end())
    throw ShapeError({"", node_.name, node_.op}, "attribute '" + key + "' is required (the operator has no default for it)");
  return it->second;
}

double NodeAttrs::real(const std::string& key) const {
  const Attribute& a = get(key);
  if (auto* f = std::get_if<double>(&a)) return *f;
  if (auto* i = std::get_if<int64_t>(&a)) return double(*i);
  throw ShapeError({"", node_.name, node_.op}, "attribute '" + key + "' must be a float");
}

int64_t NodeAttrs::integer(const std::string& key) const {
  if (auto* i = std::get_if<int64_t>(&get(key))) return *i;
  throw ShapeError({"", node_.name, node_.op}, "attribute '" + key + "' must be an integer");
}

std::vector<int64_t> NodeAttrs::ints(const std::string& key) const {
  if (auto* v = std::get_if<std::vector<int64_t>>(&get(key))) return *v;
  throw ShapeError({"", node_.name, node_.op}, "attribute '" + key + "' must be a list of integers");
}

std::string NodeAttrs::text(const std::string& key) const {
  if (auto* v = std::get_if<std::string>(&get(key))) return *v;
  throw ShapeError({"", node_.name, node_.op}, "attribute '" + key + "' must be a string");
}

void compute_costs(Graph& graph) {
  const OpRegistry& registry = OpRegistry::instance();
  for (Node& n : graph.nodes) {
    const OpDef* def = registry.of(n);
    if (!def) throw UnsupportedError({"", n.name, n.op}, "operator '" + n.op + "' is not supported");
    check_input_types(graph, n);  // ONNX's type constraints (UnsupportedError)
    try {
      if (def->validate) def->validate(graph, n);
      n.cost = def->cost(graph, n);
    } catch (const Error& e) {
      throw ShapeError({"", n.name, n.op}, e.problem());
    } catch (const std::exception& e) {
      throw ShapeError({"", n.name, n.op}, e.what());
    }
  }
}

}  // namespace bricklab
