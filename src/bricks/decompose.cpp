// Decomposition of models into bricks and the canonical brick keys (see decompose.hpp).
#include "bricklab/bricks/decompose.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>

#include "bricklab/core/error.hpp"
#include "bricklab/ops/registry.hpp"

namespace bricklab::bricks {

Granularity Granularity::parse(const std::string& text) {
  Granularity g;
  if (text == "op") g.kind = Kind::op;
  else if (text == "fused") g.kind = Kind::fused;
  else if (text.rfind("seq:", 0) == 0) {
    g.kind = Kind::seq;
    const std::string k = text.substr(4);
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(k, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (k.empty() || used != k.size() || v < 1 || v > 1000)
      throw InvalidArgument("granularity '" + text + "': K in seq:K must be an integer from 1 to 1000");
    g.k = int(v);
  } else {
    throw InvalidArgument("unknown granularity '" + text + "' (accepted: op, fused, seq:K)");
  }
  return g;
}

std::string Granularity::str() const {
  switch (kind) {
    case Kind::op: return "op";
    case Kind::fused: return "fused";
    case Kind::seq: return "seq:" + std::to_string(k);
  }
  return "?";
}

std::string key_id(const std::string& key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

namespace {

std::string fmt_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::string attr_str(const Attribute& a) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return std::to_string(v);
        else if constexpr (std::is_same_v<T, double>) return fmt_double(v);
        else if constexpr (std::is_same_v<T, std::string>) return "'" + v + "'";
        else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return ints_str(v);
        else if constexpr (std::is_same_v<T, std::vector<double>>) {
          std::string s = "[";
          for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + fmt_double(v[i]);
          return s + "]";
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string s = "[";
          for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
          return s + "]";
        } else {  // TensorData: type, shape and (small) values
          std::string s = "tensor(" + dtype_name(v.dtype()) + shape_str(v.shape());
          if (v.has_values() && v.numel() <= 16) {
            auto d = v.as_double();
            for (double x : d) s += "," + fmt_double(x);
          }
          return s + ")";
        }
      },
      a);
}

// The node's attributes as the operator table normalises them (ops/registry.hpp), as text.
std::map<std::string, std::string> normalised_attrs(const Graph& g, const Node& n) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : normalised_attributes(g, n)) out[k] = attr_str(v);
  return out;
}

std::string value_desc(const Graph& g, int v) {
  if (v < 0) return "-";
  const Value& val = g.values[size_t(v)];
  std::string s = dtype_name(val.dtype) + shape_str(val.shape);
  if (val.is_constant()) {
    s += val.kind == ValueKind::weight ? "w" : "c";
    // Small integer constants (shapes, axes, pads, indices) and scalars change what runs.
    const bool small_int = !dtype_is_float(val.dtype) && val.numel() <= 64;
    const bool scalar = dtype_is_float(val.dtype) && val.numel() <= 4;
    if (val.data && val.data->has_values() && (small_int || scalar)) {
      auto d = val.data->as_double();
      s += "{";
      for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + fmt_double(d[i]);
      s += "}";
    }
  }
  return s;
}

}  // namespace

std::string node_key(const Graph& g, int index) {
  const Node& n = g.nodes.at(size_t(index));
  std::string key = n.domain.empty() ? n.op : n.domain + "." + n.op;
  key += "{";
  bool first = true;
  for (const auto& [k, v] : normalised_attrs(g, n)) {
    key += (first ? "" : ";") + k + "=" + v;
    first = false;
  }
  key += "}(";
  for (size_t i = 0; i < n.inputs.size(); ++i) key += (i ? "," : "") + value_desc(g, n.inputs[i]);
  key += ")->(";
  for (size_t i = 0; i < n.outputs.size(); ++i)
    key += (i ? "," : "") + (n.outputs[i] < 0 ? std::string("-") : dtype_name(g.values[size_t(n.outputs[i])].dtype) +
                                                                         shape_str(g.values[size_t(n.outputs[i])].shape));
  return key + ")";
}

std::string group_key(const Graph& g, const std::vector<int>& nodes_in) {
  std::vector<int> nodes = nodes_in;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  if (nodes.size() == 1) {
    // A single node: its key, plus whether its outputs leave (always, for one node).
    return node_key(g, nodes[0]);
  }
  std::map<int, int> position;
  for (size_t i = 0; i < nodes.size(); ++i) position[nodes[i]] = int(i);
  std::map<int, int> external;  // value -> external input number, by first appearance
  std::string key;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = g.nodes[size_t(nodes[i])];
    key += (i ? " ; " : "") + node_key(g, nodes[i]) + " <- ";
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int v = n.inputs[j];
      std::string ref = "-";
      if (v >= 0) {
        const Value& val = g.values[size_t(v)];
        auto p = val.producer >= 0 ? position.find(val.producer) : position.end();
        if (p != position.end()) {
          const auto& outs = g.nodes[size_t(val.producer)].outputs;
          ref = "n" + std::to_string(p->second) + "." + std::to_string(std::find(outs.begin(), outs.end(), v) - outs.begin());
        } else if (val.is_constant()) {
          ref = "k";
        } else {
          auto [it, added] = external.emplace(v, int(external.size()));
          ref = "x" + std::to_string(it->second);
        }
      }
      key += (j ? "," : "") + ref;
    }
    key += " ->";
    for (int v : n.outputs) {
      if (v < 0) continue;
      const Value& val = g.values[size_t(v)];
      bool leaves = val.is_graph_output;
      for (int c : val.consumers) leaves = leaves || !position.count(c);
      key += leaves ? " out" : " in";
    }
  }
  return key;
}

namespace {

std::string reorder_key(const std::string& why, const Value& v, const std::string& src, const std::string& dst) {
  return "reorder|" + why + "|" + dtype_name(v.dtype) + shape_str(v.shape) + "|" + src + ">" + dst;
}

// Splits a step's '+'-joined name into node indices, tolerating '+' inside node names.
std::vector<int> step_nodes(const Graph& g, const std::string& joined) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t p = joined.find('+', start);
    parts.push_back(joined.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  std::vector<int> out;
  for (size_t i = 0; i < parts.size();) {
    std::string name = parts[i];
    size_t j = i + 1;
    int idx = g.find_node(name);
    while (idx < 0 && j < parts.size()) {
      name += "+" + parts[j++];
      idx = g.find_node(name);
    }
    if (idx >= 0) {
      out.push_back(idx);
      i = j;
    } else {
      ++i;  // not a node (should not happen): skip the token
    }
  }
  return out;
}

}  // namespace

std::vector<Reorder> plan_reorders(const Graph& g, const std::vector<PlanStep>& plan, std::vector<std::vector<int>>* steps) {
  // A value's layout is that of the step whose nodes produce it (plain for graph inputs and
  // views), which is where a reorder of it starts.
  std::map<int, std::string> layout_of;  // value -> layout its producer's step writes
  std::vector<Reorder> out;
  for (const PlanStep& step : plan) {
    // Reorder keys use the layout's tag alone (a note such as " (channels-last)" dropped).
    std::string layout = step.layout;
    if (const size_t paren = layout.find(" ("); paren != std::string::npos) layout.resize(paren);
    if (step.kind == PlanStep::Kind::reorder) {
      const int v = g.find_value(step.value);
      if (v < 0) continue;
      Reorder r;
      r.value = step.value;
      r.why = step.why;
      auto it = layout_of.find(v);
      r.src = it == layout_of.end() ? "plain" : it->second;
      r.dst = layout;
      r.key = reorder_key(r.why, g.values[size_t(v)], r.src, r.dst);
      r.bytes = g.values[size_t(v)].nbytes();
      out.push_back(r);
      continue;
    }
    std::vector<int> nodes;
    for (const auto& name : step.nodes)
      if (const int n = g.find_node(name); n >= 0) nodes.push_back(n);
    for (int n : nodes)
      for (int o : g.nodes[size_t(n)].outputs) layout_of[o] = layout;
    if (steps && !nodes.empty()) steps->push_back(nodes);
  }
  return out;
}

std::vector<Reorder> plan_reorders(const Graph& g, const std::string& plan, std::vector<std::vector<int>>* steps) {
  // Plan lines: "  KIND  NAMES[  [LAYOUT layout]...]"; a step without a bracket writes plain
  // memory; a reorder's NAMES is "value@why".
  std::istringstream lines(plan);
  std::string line;
  std::getline(lines, line);  // header
  std::vector<PlanStep> parsed;
  while (std::getline(lines, line)) {
    if (line.size() < 3 || line.compare(0, 2, "  ") != 0) continue;
    const size_t kind_end = line.find("  ", 2);
    if (kind_end == std::string::npos) continue;
    PlanStep step;
    step.label = line.substr(2, kind_end - 2);
    size_t names_end = line.find("  ", kind_end + 2);
    const std::string names = line.substr(kind_end + 2, names_end == std::string::npos ? std::string::npos : names_end - kind_end - 2);
    if (names_end != std::string::npos) {
      const size_t open = line.find('[', names_end), close = line.find(" layout]", names_end);
      if (open != std::string::npos && close != std::string::npos && close > open) step.layout = line.substr(open + 1, close - open - 1);
    }
    if (step.label == "reorder") {
      const size_t at = names.rfind('@');
      if (at == std::string::npos) continue;
      step.kind = PlanStep::Kind::reorder;
      step.value = names.substr(0, at);
      step.why = names.substr(at + 1);
    } else {
      for (int n : step_nodes(g, names)) step.nodes.push_back(g.nodes[size_t(n)].name);
    }
    parsed.push_back(std::move(step));
  }
  return plan_reorders(g, parsed, steps);
}

PlanUnits fused_units(const Graph& g, const CompileOptions& options, const std::string& backend) {
  auto exe = get_backend(backend).compile(g, options);
  std::vector<std::vector<int>> steps;
  PlanUnits out;
  out.reorders = plan_reorders(g, exe->plan(), &steps);
  // Union steps that share nodes (e.g. a residual copy and its conv+add step).
  std::vector<int> parent(g.nodes.size());
  std::iota(parent.begin(), parent.end(), 0);
  std::function<int(int)> find = [&](int a) { return parent[size_t(a)] == a ? a : parent[size_t(a)] = find(parent[size_t(a)]); };
  for (const auto& s : steps)
    for (size_t i = 1; i < s.size(); ++i) parent[size_t(find(s[i]))] = find(s[0]);
  std::map<int, size_t> unit_of_root;
  for (const auto& s : steps)
    for (int n : s) {
      const int r = find(n);
      auto it = unit_of_root.find(r);
      if (it == unit_of_root.end()) {
        unit_of_root[r] = out.units.size();
        out.units.push_back({n});
      } else {
        out.units[it->second].push_back(n);
      }
    }
  for (auto& u : out.units) {
    std::sort(u.begin(), u.end());
    u.erase(std::unique(u.begin(), u.end()), u.end());
  }
  return out;
}

int64_t Decomposition::instances() const {
  int64_t n = 0;
  for (const auto& m : models) n += int64_t(m.uses.size());
  return n;
}

Graph runtime_graph(const Graph& model) {
  Graph g;
  g.name = model.name + ":runtime";
  g.path = model.path;
  g.ir_version = model.ir_version;
  g.opset = model.opset;
  for (size_t i = 0; i < model.outputs.size(); ++i) {
    const Value& src = model.values[size_t(model.outputs[i])];
    Value in;
    in.name = "runtime_in_" + std::to_string(i);
    in.dtype = src.dtype;
    in.shape = src.shape;
    in.kind = ValueKind::input;
    Value out = in;
    out.name = "runtime_out_" + std::to_string(i);
    out.kind = ValueKind::activation;
    out.is_graph_output = true;
    g.values.push_back(in);
    g.values.push_back(out);
    Node n;
    n.name = "runtime_identity_" + std::to_string(i);
    n.op = "Identity";
    n.opset = model.opset;
    n.inputs = {int(g.values.size()) - 2};
    n.outputs = {int(g.values.size()) - 1};
    g.nodes.push_back(n);
    g.inputs.push_back(int(g.values.size()) - 2);
    g.outputs.push_back(int(g.values.size()) - 1);
  }
  g.rebuild_links();
  compute_costs(g);
  return g;
}

static std::string runtime_key(const Graph& model) {
  std::string key = "runtime|";
  for (size_t i = 0; i < model.outputs.size(); ++i) {
    const Value& v = model.values[size_t(model.outputs[i])];
    key += (i ? "," : "") + dtype_name(v.dtype) + shape_str(v.shape);
  }
  return key;
}

// The units producing the external activation inputs of `unit` (through view nodes, which run
// no step), and a label of them for the key: the layout of an input depends on its producer.
// Producers without a convolution (pooling, element-wise, concat: they keep whatever layout
// they get) are followed further up, so that the context starts where the layout is set.
static std::vector<int> context_of(const Graph& g, const std::vector<int>& unit, const std::vector<std::vector<int>>& units,
                                   const std::vector<int>& unit_of, std::string& label) {
  std::set<int> inside(unit.begin(), unit.end()), context;
  std::vector<std::string> labels;
  auto sets_layout = [&](int u) {
    for (int n : units[size_t(u)])
      if (const OpDef* def = OpRegistry::instance().of(g.nodes[size_t(n)]); def && def->sets_layout) return true;
    return false;
  };
  // Frontier of (node set, depth): the brick first, then context units that pass layouts through.
  std::vector<std::pair<std::vector<int>, int>> todo{{unit, 0}};
  std::set<int> seen_values, seen_units;
  while (!todo.empty()) {
    auto [nodes, depth] = todo.back();
    todo.pop_back();
    for (int n : nodes)
      for (int v : g.nodes[size_t(n)].inputs) {
        if (v < 0 || !seen_values.insert(v).second) continue;
        int producer = g.values[size_t(v)].producer;
        if (producer < 0) {
          if (depth == 0 && !g.values[size_t(v)].is_constant()) labels.push_back("input");
          continue;
        }
        if (inside.count(producer) || context.count(producer)) continue;
        std::string what;
        for (int hops = 0; producer >= 0 && hops < 8; ++hops) {
          const int u = unit_of[size_t(producer)];
          if (u >= 0) {
            if (!seen_units.insert(u).second) break;
            for (int c : units[size_t(u)]) context.insert(c);
            what += g.nodes[size_t(units[size_t(u)].back())].op;
            if (!sets_layout(u) && depth < 3) todo.push_back({units[size_t(u)], depth + 1});
            break;
          }
          // A view (no step of its own): it runs on its source's buffer; go up to the source.
          context.insert(producer);
          what += g.nodes[size_t(producer)].op + "<";
          int next = -1;
          for (int in : g.nodes[size_t(producer)].inputs)
            if (in >= 0 && !g.values[size_t(in)].is_constant()) {
              next = g.values[size_t(in)].producer;
              break;
            }
          producer = next;
        }
        if (depth == 0) labels.push_back(what.empty() ? "input" : what);
      }
  }
  for (size_t i = 0; i < labels.size(); ++i) label += (i ? "," : "") + labels[i];
  for (int n : unit) context.erase(n);
  return std::vector<int>(context.begin(), context.end());
}

Decomposition decompose_graphs(const std::vector<std::shared_ptr<const Graph>>& graphs, const DecomposeOptions& options) {
  if (graphs.empty()) throw InvalidArgument("decompose: no models given");
  Decomposition d;
  d.granularity = options.granularity;
  d.batch = options.load.batch > 0 ? options.load.batch : 1;
  for (size_t mi = 0; mi < graphs.size(); ++mi) {
    const Graph& g = *graphs[mi];
    ModelBricks m;
    m.path = g.path.empty() ? g.name : g.path;
    m.graph = graphs[mi];
    m.runtime_key = runtime_key(g);
    std::vector<std::vector<int>> units;
    if (options.granularity.kind == Granularity::Kind::op) {
      for (size_t i = 0; i < g.nodes.size(); ++i) units.push_back({int(i)});
    } else {
      PlanUnits plan = fused_units(g, options.compile, options.backend);
      if (options.granularity.kind == Granularity::Kind::fused) {
        units = std::move(plan.units);
      } else {
        const size_t k = size_t(options.granularity.k);
        for (size_t i = 0; i < plan.units.size(); i += k) {
          std::vector<int> chunk;
          for (size_t j = i; j < std::min(plan.units.size(), i + k); ++j)
            chunk.insert(chunk.end(), plan.units[j].begin(), plan.units[j].end());
          std::sort(chunk.begin(), chunk.end());
          units.push_back(chunk);
        }
      }
      // A reorder belongs to the model unless its value is made and used inside one unit
      // (then the brick's own run does it and counts it).
      std::vector<int> unit_of(g.nodes.size(), -1);
      for (size_t u = 0; u < units.size(); ++u)
        for (int n : units[u]) unit_of[size_t(n)] = int(u);
      for (const auto& r : plan.reorders) {
        const Value& v = g.values[size_t(g.find_value(r.value))];
        if (v.is_constant()) continue;  // weight reorders run inside the consumer's brick too
        bool internal = v.producer >= 0 && unit_of[size_t(v.producer)] >= 0 && !v.is_graph_output;
        for (int c : v.consumers) internal = internal && unit_of[size_t(c)] == unit_of[size_t(v.producer)];
        if (!internal) m.reorders.push_back(r);
      }
    }
    std::vector<int> unit_of(g.nodes.size(), -1);
    for (size_t u = 0; u < units.size(); ++u)
      for (int n : units[u]) unit_of[size_t(n)] = int(u);
    for (auto& u : units) {
      BrickUse use;
      use.nodes = u;
      std::string ctx;
      use.context = context_of(g, u, units, unit_of, ctx);
      use.key = group_key(g, u) + " | ctx " + ctx;
      auto it = d.index.find(use.key);
      if (it == d.index.end()) {
        Brick b;
        b.key = use.key;
        b.id = key_id(use.key);
        for (int n : u) {
          b.label += (b.label.empty() ? "" : "+") + g.nodes[size_t(n)].op;
          b.flops += g.nodes[size_t(n)].cost.flops;
        }
        b.model = int(mi);
        b.nodes = u;
        b.context = use.context;
        d.index[use.key] = d.bricks.size();
        d.bricks.push_back(b);
        it = d.index.find(use.key);
      }
      Brick& b = d.bricks[it->second];
      b.multiplicity++;
      b.per_model[m.path]++;
      m.uses.push_back(std::move(use));
    }
    d.models.push_back(std::move(m));
  }
  return d;
}

Decomposition decompose(const std::vector<std::string>& paths, const DecomposeOptions& options) {
  std::vector<std::shared_ptr<const Graph>> graphs;
  for (const auto& p : paths) graphs.push_back(std::make_shared<const Graph>(load_onnx(p, options.load)));
  return decompose_graphs(graphs, options);
}

Graph brick_graph(const Decomposition& d, const Brick& brick) {
  return extract_subgraph(*d.models.at(size_t(brick.model)).graph, brick.nodes);
}

Graph timing_graph(const Decomposition& d, const Brick& brick, std::set<std::string>& own) {
  const Graph& g = *d.models.at(size_t(brick.model)).graph;
  std::vector<int> nodes = brick.nodes;
  nodes.insert(nodes.end(), brick.context.begin(), brick.context.end());
  own.clear();
  for (int n : brick.nodes) own.insert(g.nodes[size_t(n)].name);
  return extract_subgraph(g, nodes);
}

}  // namespace bricklab::bricks
