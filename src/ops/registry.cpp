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
    return r;
  }();
  return registry;
}

const OpDef* OpRegistry::find(const std::string& op_type) const {
  auto it = std::lower_bound(defs_.begin(), defs_.end(), op_type,
                             [](const OpDef& d, const std::string& name) { return d.name < name; });
  return (it != defs_.end() && it->name == op_type) ? &*it : nullptr;
}

void OpRegistry::add(OpDef def) {
  for (const auto& d : defs_)
    if (d.name == def.name) throw Error("operator '" + def.name + "' registered twice");
  defs_.push_back(std::move(def));
}

std::map<std::string, Attribute> normalised_attributes(const Graph& g, const Node& n) {
  std::map<std::string, Attribute> a = n.attrs;
  if (n.domain.empty())
    if (const OpDef* def = OpRegistry::instance().find(n.op); def && def->normalise) def->normalise(g, n, a);
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

void compute_costs(Graph& graph) {
  const OpRegistry& registry = OpRegistry::instance();
  for (Node& n : graph.nodes) {
    const OpDef* def = registry.find(n.op);
    if (!def) throw UnsupportedError({"", n.name, n.op}, "operator '" + n.op + "' is not supported");
    try {
      n.cost = def->cost(graph, n);
    } catch (const Error& e) {
      throw ShapeError({"", n.name, n.op}, e.problem());
    } catch (const std::exception& e) {
      throw ShapeError({"", n.name, n.op}, e.what());
    }
  }
}

}  // namespace bricklab
