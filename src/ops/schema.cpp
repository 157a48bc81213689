// ONNX's own operator schemas (libonnx's registry), turned into bricklab's OpSchemaInfo: the
// operator table's source for input counts, element-type constraints and attribute defaults.
#include <onnx/defs/schema.h>

#include <map>

#include "bricklab/core/error.hpp"
#include "bricklab/ops/registry.hpp"

namespace bricklab {
namespace {

// "tensor(float)" -> float32, ...; nullopt for sequences, maps and optionals.
std::optional<DType> tensor_type(const std::string& s) {
  static const std::map<std::string, DType> types = {
      {"tensor(float)", DType::float32},   {"tensor(double)", DType::float64}, {"tensor(float16)", DType::float16},
      {"tensor(bfloat16)", DType::bfloat16}, {"tensor(int8)", DType::int8},    {"tensor(int16)", DType::int16},
      {"tensor(int32)", DType::int32},     {"tensor(int64)", DType::int64},    {"tensor(uint8)", DType::uint8},
      {"tensor(uint16)", DType::uint16},   {"tensor(uint32)", DType::uint32},  {"tensor(uint64)", DType::uint64},
      {"tensor(bool)", DType::boolean},    {"tensor(string)", DType::string},  {"tensor(complex64)", DType::complex64},
      {"tensor(complex128)", DType::complex128}};
  auto it = types.find(s);
  return it == types.end() ? std::nullopt : std::optional<DType>(it->second);
}

std::string attribute_type(onnx::AttributeProto::AttributeType t) {
  switch (t) {
    case onnx::AttributeProto::FLOAT: return "float";
    case onnx::AttributeProto::INT: return "int";
    case onnx::AttributeProto::STRING: return "string";
    case onnx::AttributeProto::TENSOR: return "tensor";
    case onnx::AttributeProto::GRAPH: return "graph";
    case onnx::AttributeProto::FLOATS: return "floats";
    case onnx::AttributeProto::INTS: return "ints";
    case onnx::AttributeProto::STRINGS: return "strings";
    case onnx::AttributeProto::TENSORS: return "tensors";
    case onnx::AttributeProto::GRAPHS: return "graphs";
    default: return "other";
  }
}

std::optional<Attribute> default_of(const onnx::AttributeProto& a) {
  switch (a.type()) {
    case onnx::AttributeProto::FLOAT: return Attribute(double(a.f()));
    case onnx::AttributeProto::INT: return Attribute(int64_t(a.i()));
    case onnx::AttributeProto::STRING: return Attribute(a.s());
    case onnx::AttributeProto::INTS: return Attribute(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
    case onnx::AttributeProto::FLOATS: return Attribute(std::vector<double>(a.floats().begin(), a.floats().end()));
    default: return std::nullopt;
  }
}

OpSchemaInfo::Parameter parameter(const onnx::OpSchema::FormalParameter& p) {
  OpSchemaInfo::Parameter out;
  out.name = p.GetName();
  out.optional = p.GetOption() == onnx::OpSchema::Optional;
  out.variadic = p.GetOption() == onnx::OpSchema::Variadic;
  out.type_str = p.GetTypeStr();
  for (const auto* t : p.GetTypes())
    if (auto d = tensor_type(*t)) out.allowed.push_back(*d);
  return out;
}

}  // namespace

std::optional<OpSchemaInfo> op_schema(const std::string& op, int opset) {
  const onnx::OpSchema* s = onnx::OpSchemaRegistry::Schema(op, opset, "");
  if (!s) return std::nullopt;
  OpSchemaInfo info;
  info.since_version = s->since_version();
  for (const auto& p : s->inputs()) info.inputs.push_back(parameter(p));
  for (const auto& p : s->outputs()) info.outputs.push_back(parameter(p));
  for (const auto& [name, a] : s->attributes()) {
    OpSchemaInfo::AttributeInfo ai;
    ai.name = name;
    ai.type = attribute_type(a.type);
    ai.required = a.required;
    if (a.default_value.has_type() || a.default_value.type() != onnx::AttributeProto::UNDEFINED) ai.default_value = default_of(a.default_value);
    info.attributes.push_back(std::move(ai));
  }
  return info;
}

void check_input_types(const Graph& g, const Node& n) {
  if (!n.domain.empty() || n.opset <= 0) return;
  const auto schema = op_schema(n.op, n.opset);
  if (!schema) return;
  if (schema->inputs.empty()) return;
  std::map<std::string, size_t> bound;  // type parameter -> the first input that bound it
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    // Variadic inputs share the last formal parameter's constraint.
    const size_t k = std::min(i, schema->inputs.size() - 1);
    if (n.inputs[i] < 0) {
      if (!schema->inputs[k].optional)
        throw ShapeError({g.path, n.name, n.op}, "input " + std::to_string(i) + " ('" + schema->inputs[k].name +
                                                     "') is empty, but " + n.op + " requires it");
      continue;
    }
    const auto& allowed = schema->inputs[k].allowed;
    const Value& v = g.values[size_t(n.inputs[i])];
    const std::string& ts = schema->inputs[k].type_str;
    if (!ts.empty() && !tensor_type(ts)) {
      auto [it, fresh] = bound.emplace(ts, i);
      const Value& first = g.values[size_t(n.inputs[it->second])];
      if (!fresh && first.dtype != v.dtype)
        throw UnsupportedError({g.path, n.name, n.op}, "inputs " + std::to_string(it->second) + " ('" + first.name + "') and " +
                                                           std::to_string(i) + " ('" + v.name + "') are " + dtype_name(first.dtype) +
                                                           " and " + dtype_name(v.dtype) + "; " + n.op + " takes one element type for both (" + ts + ")");
    }
    if (allowed.empty() || std::find(allowed.begin(), allowed.end(), v.dtype) != allowed.end()) continue;
    std::string names;
    for (DType t : allowed) names += (names.empty() ? "" : ", ") + dtype_name(t);
    throw UnsupportedError({g.path, n.name, n.op}, "input " + std::to_string(i) + " ('" + v.name + "') is " + dtype_name(v.dtype) + "; " +
                                                       n.op + "-" + std::to_string(schema->since_version) + " takes " + names);
  }
}

}  // namespace bricklab
