// Bricks as standalone ONNX models (see emit.hpp). Built with the protobuf API directly, so the
// output does not depend on bricklab's importer; the tests check it with onnx.checker and ORT.
#include "bricklab/bricks/emit.hpp"

#include <onnx/onnx_pb.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "bricklab/core/error.hpp"
#include "bricklab/engine/backend.hpp"

namespace bricklab::bricks {

namespace {

void fill_tensor(onnx::TensorProto& t, const TensorData& data, const std::string& name) {
  t.set_name(name);
  t.set_data_type(int(data.dtype()));
  for (int64_t d : data.shape()) t.add_dims(d);
  const size_t nbytes = size_t(data.numel()) * size_t(dtype_size(data.dtype()));
  if (data.kind() == TensorData::Kind::bytes) {
    t.set_raw_data(data.buffer()->substr(0, std::min(nbytes, data.buffer()->size())));
  } else if (data.kind() == TensorData::Kind::fill) {
    std::string raw(nbytes, '\0');
    const double f = data.fill_value();
    for (int64_t i = 0; i < data.numel(); ++i) {
      switch (data.dtype()) {
        case DType::float32: reinterpret_cast<float*>(raw.data())[i] = float(f); break;
        case DType::float64: reinterpret_cast<double*>(raw.data())[i] = f; break;
        case DType::int64: reinterpret_cast<int64_t*>(raw.data())[i] = int64_t(f); break;
        case DType::int32: reinterpret_cast<int32_t*>(raw.data())[i] = int32_t(f); break;
        case DType::uint8: case DType::boolean: case DType::int8: raw[size_t(i)] = char(int(f)); break;
        default: throw UnsupportedError("emit: cannot write a constant fill of type " + dtype_name(data.dtype()));
      }
    }
    t.set_raw_data(raw);
  }
}

void set_value_info(onnx::ValueInfoProto* vi, const Value& v) {
  vi->set_name(v.name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(int(v.dtype));
  auto* shape = tt->mutable_shape();
  for (int64_t d : v.shape) shape->add_dim()->set_dim_value(d);
}

void set_attribute(onnx::AttributeProto* a, const std::string& name, const Attribute& value) {
  a->set_name(name);
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          a->set_type(onnx::AttributeProto::INT);
          a->set_i(v);
        } else if constexpr (std::is_same_v<T, double>) {
          a->set_type(onnx::AttributeProto::FLOAT);
          a->set_f(float(v));
        } else if constexpr (std::is_same_v<T, std::string>) {
          a->set_type(onnx::AttributeProto::STRING);
          a->set_s(v);
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          a->set_type(onnx::AttributeProto::INTS);
          for (auto x : v) a->add_ints(x);
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          a->set_type(onnx::AttributeProto::FLOATS);
          for (auto x : v) a->add_floats(float(x));
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          a->set_type(onnx::AttributeProto::STRINGS);
          for (const auto& x : v) a->add_strings(x);
        } else {
          a->set_type(onnx::AttributeProto::TENSOR);
          if (!v.has_values()) throw UnsupportedError("emit: attribute '" + name + "' holds a stripped tensor");
          fill_tensor(*a->mutable_t(), v, "");
        }
      },
      value);
}

}  // namespace

std::string to_onnx_bytes(const Graph& g, uint64_t weight_seed) {
  onnx::ModelProto model;
  model.set_ir_version(g.ir_version > 0 ? g.ir_version : 7);
  model.set_producer_name("bricklab");
  auto* imp = model.add_opset_import();
  imp->set_domain("");
  imp->set_version(g.opset > 0 ? g.opset : 13);
  auto* meta = model.add_metadata_props();
  meta->set_key("bricklab.brick");
  meta->set_value(g.name);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("brick");
  for (int v : g.inputs) set_value_info(graph->add_input(), g.values[size_t(v)]);
  for (int v : g.outputs) set_value_info(graph->add_output(), g.values[size_t(v)]);
  for (size_t i = 0; i < g.values.size(); ++i) {
    const Value& v = g.values[i];
    if (!v.is_constant() || !v.data) continue;
    if (v.consumers.empty()) continue;
    onnx::TensorProto* t = graph->add_initializer();
    if (v.data->has_values()) {
      fill_tensor(*t, *v.data, v.name);
    } else {
      if (v.dtype != DType::float32)
        throw UnsupportedError("emit: stripped weight '" + v.name + "' of type " + dtype_name(v.dtype) + " cannot be synthesised");
      t->set_name(v.name);
      t->set_data_type(int(v.dtype));
      for (int64_t d : v.shape) t->add_dims(d);
      auto w = random_weight_values(g, int(i), weight_seed);
      t->set_raw_data(std::string(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float)));
    }
  }
  for (const Node& n : g.nodes) {
    onnx::NodeProto* p = graph->add_node();
    p->set_name(n.name);
    p->set_op_type(n.op);
    if (!n.domain.empty()) p->set_domain(n.domain);
    for (int v : n.inputs) p->add_input(v < 0 ? std::string() : g.values[size_t(v)].name);
    // Trailing omitted inputs are dropped (ONNX allows omitting them only by position).
    while (p->input_size() > 0 && p->input(p->input_size() - 1).empty()) p->mutable_input()->RemoveLast();
    for (int v : n.outputs) p->add_output(v < 0 ? std::string() : g.values[size_t(v)].name);
    for (const auto& [k, a] : n.attrs) set_attribute(p->add_attribute(), k, a);
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error("emit: could not serialize the brick '" + g.name + "'");
  return bytes;
}

void write_onnx(const Graph& g, const std::string& path, uint64_t weight_seed) {
  const std::string bytes = to_onnx_bytes(g, weight_seed);
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream f(path, std::ios::binary);
  if (!f) throw FileError({path, "", ""}, "cannot open for writing");
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw FileError({path, "", ""}, "write failed");
}

double emit_size_estimate(const Decomposition& d) {
  constexpr double kPerFile = 2048;  // the graph, its attributes and value infos
  double total = 0;
  for (const Brick& b : d.bricks) {
    const Graph& g = *d.models[size_t(b.model)].graph;
    std::set<int> constants;
    for (int n : b.nodes)
      for (int v : g.nodes[size_t(n)].inputs)
        if (v >= 0 && g.values[size_t(v)].is_constant()) constants.insert(v);
    total += kPerFile;
    for (int v : constants) total += g.values[size_t(v)].nbytes();
  }
  return total;
}

}  // namespace bricklab::bricks
