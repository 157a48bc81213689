// ONNX -> bricklab::Graph. Validates the untrusted file before handing it to libonnx, binds
// symbolic dimensions, runs ONNX shape inference, folds Constant/ConstantOfShape weights, and
// fills each node's cost from the operator table. Every failure becomes a typed bricklab error.
#include "bricklab/graph/onnx_import.hpp"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "bricklab/core/error.hpp"
#include "bricklab/core/memory.hpp"
#include "bricklab/ops/registry.hpp"
#include "shape_folding.hpp"

namespace fs = std::filesystem;

namespace bricklab {
namespace {

// Tensors larger than this many elements are refused outright (a corrupt dim, not a real model).
constexpr int64_t kMaxTensorElements = int64_t(1) << 40;

bool is_default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

class Importer {
 public:
  Importer(const LoadOptions& opts, std::string model_dir, std::string label)
      : opts_(opts), model_dir_(std::move(model_dir)), label_(std::move(label)) {}

  Graph run(const std::string& bytes) {
    check_options();
    parse(bytes);
    check_header();
    check_structure();
    load_initializers();
    bind_input_dims();
    check_nodes_against_schemas();
    check_known_ranks();
    infer_shapes();
    return build_graph();
  }

 private:
  const LoadOptions& opts_;
  std::string model_dir_;
  std::string label_;
  onnx::ModelProto model_;
  int opset_ = 0;
  std::unordered_map<std::string, int> opset_imports_;
  int folded_ = 0;                                  // nodes folded into constants
  std::unordered_set<std::string> folded_names_;    // their outputs

  ErrorContext at() const { return {label_, "", ""}; }
  ErrorContext at(const onnx::NodeProto& n) const { return {label_, n.name(), n.op_type()}; }

  void check_options() const {
    if (opts_.batch < 0) throw InvalidArgument(at(), "batch must be >= 1, got " + std::to_string(opts_.batch));
    for (const auto& [name, value] : opts_.dims)
      if (value < 1)
        throw InvalidArgument(at(), "dimension '" + name + "' must be >= 1, got " + std::to_string(value));
  }

  void parse(const std::string& bytes) {
    if (bytes.empty()) throw ModelFormatError(at(), "the file is empty, not an ONNX model");
    google::protobuf::io::CodedInputStream stream(reinterpret_cast<const uint8_t*>(bytes.data()), int(bytes.size()));
    stream.SetTotalBytesLimit(std::numeric_limits<int>::max());
    stream.SetRecursionLimit(64);
    if (!model_.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage())
      throw ModelFormatError(at(), "not a valid ONNX model: protobuf parsing failed (truncated, corrupted or not an .onnx file)");
  }

  void check_header() {
    if (!model_.has_graph() || model_.ir_version() <= 0)
      throw ModelFormatError(at(), "not an ONNX model: no graph or no ir_version (is this really an .onnx file?)");
    if (model_.ir_version() < 3)
      throw UnsupportedError(at(), "IR version " + std::to_string(model_.ir_version()) +
                                       " is too old (opset " + std::to_string(kMinOpset) + "+ needs IR >= 3)");
    if (model_.ir_version() > kMaxIrVersion)
      throw UnsupportedError(at(), "IR version " + std::to_string(model_.ir_version()) + " is newer than any ONNX release (" +
                                       std::to_string(kMaxIrVersion) + " is the newest bricklab knows)");
    for (const auto& imp : model_.opset_import()) {
      const std::string domain = imp.domain() == "ai.onnx" ? "" : imp.domain();
      if (opset_imports_.count(domain)) throw ModelFormatError(at(), "opset for domain '" + domain + "' imported twice");
      opset_imports_[domain] = int(std::clamp<int64_t>(imp.version(), INT32_MIN, INT32_MAX));
    }
    auto it = opset_imports_.find("");
    if (it == opset_imports_.end()) throw ModelFormatError(at(), "the model imports no default-domain opset");
    opset_ = it->second;
    if (opset_ < kMinOpset || opset_ > kMaxOpset)
      throw UnsupportedError(at(), "opset " + std::to_string(opset_) + " is not supported (supported: " +
                                       std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset) + ")");
  }

  // Names, SSA form, operator support, and a topological node order, before libonnx sees the graph.
  void check_structure() {
    auto* g = model_.mutable_graph();
    std::unordered_set<std::string> defined;
    for (const auto& init : g->initializer()) {
      if (init.name().empty()) throw ModelFormatError(at(), "an initializer has no name");
      if (!defined.insert(init.name()).second)
        throw ModelFormatError(at(), "initializer '" + init.name() + "' is defined twice");
    }
    std::unordered_set<std::string> input_names;
    for (const auto& in : g->input()) {
      if (in.name().empty()) throw ModelFormatError(at(), "a graph input has no name");
      if (!input_names.insert(in.name()).second) throw ModelFormatError(at(), "graph input '" + in.name() + "' is declared twice");
      defined.insert(in.name());
    }
    // Declared element types must be ONNX's (0 is "undefined", which no tensor has).
    auto check_declared = [&](const onnx::ValueInfoProto& v, const char* what) {
      if (v.type().has_tensor_type() && !dtype_known(v.type().tensor_type().elem_type()))
        throw ModelFormatError(at(), std::string(what) + " '" + v.name() + "' declares element type " +
                                         std::to_string(v.type().tensor_type().elem_type()) + ", which ONNX does not define");
    };
    for (const auto& v : g->input()) check_declared(v, "graph input");
    for (const auto& v : g->output()) check_declared(v, "graph output");
    // Name nodes that have none, and make names unique (the name is how users find a node).
    std::unordered_set<std::string> node_names;
    for (int i = 0; i < g->node_size(); ++i) {
      auto* n = g->mutable_node(i);
      if (n->name().empty()) n->set_name(n->op_type() + "_" + std::to_string(i));
      std::string base = n->name();
      for (int k = 1; !node_names.insert(n->name()).second; ++k) n->set_name(base + "_" + std::to_string(k));
    }
    std::unordered_map<std::string, int> producer;
    for (int i = 0; i < g->node_size(); ++i) {
      const auto& n = g->node(i);
      if (!is_default_domain(n.domain()))
        throw UnsupportedError(at(n), "operator domain '" + n.domain() + "' is not supported (only the default ONNX domain)");
      const OpDef* def = OpRegistry::instance().find(n.op_type());
      if (def == nullptr)
        throw UnsupportedError(at(n), "operator '" + n.op_type() + "' is not supported (see `bricklab ops` for the list)");
      // ONNX's inference reads many integer attributes as 32-bit ints (an axis of 2^40 becomes 0,
      // 2^40 - 1 becomes -1, a blocksize of 2^40 divides by zero): none may leave that range, except
      // the values that legitimately hold int64 sentinels (Slice-1's INT64_MAX ends, Constant's values).
      // Float attributes are finite (an infinite LRN alpha or bias makes ONNX Runtime and oneDNN
      // disagree on NaN), except Clip-6's bounds, where infinity means "no bound".
      for (const auto& a : n.attribute())
        if (a.type() == onnx::AttributeProto::FLOAT && !std::isfinite(a.f()) && a.name() != "min" && a.name() != "max")
          throw ShapeError(at(n), "attribute '" + a.name() + "' is " + std::to_string(a.f()) + "; must be finite");
      for (const auto& a : n.attribute()) {
        if (a.name() == "starts" || a.name() == "ends" || a.name() == "value_int" || a.name() == "value_ints") continue;
        if (a.type() != onnx::AttributeProto::INT && a.type() != onnx::AttributeProto::INTS) continue;
        std::vector<int64_t> vs(a.ints().begin(), a.ints().end());
        if (a.type() == onnx::AttributeProto::INT) vs.push_back(a.i());
        for (int64_t v : vs)
          if (v > INT32_MAX || v < INT32_MIN)
            throw ShapeError(at(n), "attribute '" + a.name() + "' has " + std::to_string(v) + ", out of range for any tensor rank");
      }
      if (def->check_attributes) {  // before ONNX's shape inference, which trusts them (a zero stride divides)
        Node node;
        node.name = n.name();
        node.op = n.op_type();
        node.def = def;
        for (const auto& a : n.attribute())
          if (a.type() != onnx::AttributeProto::TENSOR && a.type() != onnx::AttributeProto::GRAPH &&
              a.type() != onnx::AttributeProto::GRAPHS)
            node.attrs[a.name()] = convert_attribute(n, a);
        try {
          check_attributes(node);
        } catch (const Error& e) {
          throw ShapeError(at(n), e.problem());
        }
      }
      for (const auto& a : n.attribute())
        if (a.type() == onnx::AttributeProto::GRAPH || a.type() == onnx::AttributeProto::GRAPHS || a.has_g() ||
            a.graphs_size() > 0)
          throw UnsupportedError(at(n), "attribute '" + a.name() + "' holds a subgraph; control flow is not supported");
      for (const auto& out : n.output()) {
        if (out.empty()) continue;
        if (defined.count(out) || !producer.emplace(out, i).second)
          throw ModelFormatError(at(n), "output '" + out + "' is defined more than once");
      }
    }
    // Kahn's algorithm over the stored order; a missing input or a cycle is a corrupt model.
    const int count = g->node_size();
    std::vector<int> pending(static_cast<size_t>(count), 0);
    std::vector<std::vector<int>> users(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
      const auto& n = g->node(i);
      std::set<int> deps;
      for (const auto& in : n.input()) {
        if (in.empty() || defined.count(in)) continue;
        auto p = producer.find(in);
        if (p == producer.end())
          throw ModelFormatError(at(n), "input '" + in + "' is not a graph input, an initializer or any node's output");
        if (p->second == i) throw ModelFormatError(at(n), "the node consumes its own output '" + in + "'");
        deps.insert(p->second);
      }
      pending[size_t(i)] = int(deps.size());
      for (int d : deps) users[size_t(d)].push_back(i);
    }
    std::vector<int> order;
    std::vector<int> ready;
    for (int i = count - 1; i >= 0; --i)
      if (pending[size_t(i)] == 0) ready.push_back(i);
    while (!ready.empty()) {
      int i = ready.back();
      ready.pop_back();
      order.push_back(i);
      for (auto u = users[size_t(i)].rbegin(); u != users[size_t(i)].rend(); ++u)
        if (--pending[size_t(*u)] == 0) ready.push_back(*u);
    }
    if (int(order.size()) != count) throw ModelFormatError(at(), "the graph has a cycle");
    bool sorted = true;
    for (int i = 0; i < count; ++i) sorted = sorted && order[size_t(i)] == i;
    if (!sorted) {
      google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
      for (int i : order) *nodes.Add() = g->node(i);
      g->mutable_node()->Swap(&nodes);
    }
    for (const auto& out : g->output())
      if (!defined.count(out.name()) && !producer.count(out.name()))
        throw ModelFormatError(at(), "graph output '" + out.name() + "' is produced by no node");
  }

  // ---- tensors -------------------------------------------------------------------------------

  Shape tensor_shape(const onnx::TensorProto& t, const std::string& what) const {
    Shape s;
    for (int64_t d : t.dims()) {
      if (d < 0) throw ModelFormatError(at(), what + " has a negative dimension " + std::to_string(d));
      s.push_back(d);
    }
    if (shape_numel(s) > kMaxTensorElements)
      throw ModelFormatError(at(), what + " has an implausible shape " + shape_str(s));
    if (dtype_known(t.data_type()))
      if (auto e = over_budget(what, DType(t.data_type()), s); !e.empty()) throw ShapeError(at(), e);
    return s;
  }

  // Checks that a tensor's stored values match its type and shape. Returns false for a tensor
  // that stores no values at all (stripped weights).
  bool check_tensor_data(const onnx::TensorProto& t, const std::string& what) const {
    if (!dtype_known(t.data_type()) || t.data_type() == int(DType::string))
      throw UnsupportedError(at(), what + " has unsupported element type " + std::to_string(t.data_type()));
    const DType dt = DType(t.data_type());
    const int64_t n = shape_numel(tensor_shape(t, what));
    const int64_t es = dtype_size(dt);
    auto expect = [&](int64_t have, int64_t want, const char* field) {
      if (have != want)
        throw ModelFormatError(at(), what + ": " + field + " holds " + std::to_string(have) + " values, shape " +
                                         shape_str(tensor_shape(t, what)) + " of " + dtype_name(dt) + " needs " +
                                         std::to_string(want));
    };
    int fields = int(t.has_raw_data()) + int(t.float_data_size() > 0) + int(t.int32_data_size() > 0) +
                 int(t.int64_data_size() > 0) + int(t.double_data_size() > 0) + int(t.uint64_data_size() > 0) +
                 int(t.string_data_size() > 0);
    if (fields > 1) throw ModelFormatError(at(), what + " stores its values in more than one field");
    if (fields == 0) return n == 0;
    const int64_t per = (dt == DType::complex64 || dt == DType::complex128) ? 2 : 1;
    if (t.has_raw_data()) expect(int64_t(t.raw_data().size()), n * es, "raw_data (bytes)");
    else if (t.float_data_size()) {
      if (dt != DType::float32 && dt != DType::complex64) throw ModelFormatError(at(), what + ": float_data used for " + dtype_name(dt));
      expect(t.float_data_size(), n * per, "float_data");
    } else if (t.int32_data_size()) {
      if (es > 4 || dt == DType::float32 || dt == DType::uint32)
        throw ModelFormatError(at(), what + ": int32_data used for " + dtype_name(dt));
      expect(t.int32_data_size(), n, "int32_data");
    } else if (t.int64_data_size()) {
      if (dt != DType::int64) throw ModelFormatError(at(), what + ": int64_data used for " + dtype_name(dt));
      expect(t.int64_data_size(), n, "int64_data");
    } else if (t.double_data_size()) {
      if (dt != DType::float64 && dt != DType::complex128) throw ModelFormatError(at(), what + ": double_data used for " + dtype_name(dt));
      expect(t.double_data_size(), n * per, "double_data");
    } else if (t.uint64_data_size()) {
      if (dt != DType::uint32 && dt != DType::uint64) throw ModelFormatError(at(), what + ": uint64_data used for " + dtype_name(dt));
      expect(t.uint64_data_size(), n, "uint64_data");
    } else {
      throw UnsupportedError(at(), what + ": string tensors are not supported");
    }
    return true;
  }

  // Rewrites typed-field storage as raw little-endian bytes so everything downstream sees one form.
  static void to_raw(onnx::TensorProto& t) {
    if (t.has_raw_data()) return;
    const DType dt = DType(t.data_type());
    std::string raw;
    auto put = [&raw](const void* p, size_t n) { raw.append(static_cast<const char*>(p), n); };
    if (t.float_data_size()) for (float v : t.float_data()) put(&v, 4);
    else if (t.double_data_size()) for (double v : t.double_data()) put(&v, 8);
    else if (t.int64_data_size()) for (int64_t v : t.int64_data()) put(&v, 8);
    else if (t.uint64_data_size()) {
      for (uint64_t v : t.uint64_data()) {
        if (dt == DType::uint32) { uint32_t w = uint32_t(v); put(&w, 4); } else put(&v, 8);
      }
    } else if (t.int32_data_size()) {
      const int64_t es = dtype_size(dt);
      for (int32_t v : t.int32_data()) {
        if (es == 1) { uint8_t w = uint8_t(v); put(&w, 1); }
        else if (es == 2) { uint16_t w = uint16_t(v); put(&w, 2); }
        else put(&v, 4);
      }
    } else {
      return;  // no values: stripped or empty
    }
    t.clear_float_data(); t.clear_double_data(); t.clear_int64_data(); t.clear_uint64_data(); t.clear_int32_data();
    t.set_raw_data(std::move(raw));
  }

  // Reads external data into raw_data. The location must stay inside the model's folder.
  void load_external(onnx::TensorProto& t) {
    const std::string what = "initializer '" + t.name() + "'";
    if (model_dir_.empty())
      throw ExternalDataError(at(), what + " refers to external data, but the model was not loaded from a file");
    std::string location;
    int64_t offset = 0, length = -1;
    auto parse_int = [&](const std::string& key, const std::string& s) {
      if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        throw ExternalDataError(at(), what + ": external data '" + key + "' is not a non-negative integer: '" + s + "'");
      return int64_t(std::stoll(s));
    };
    for (const auto& kv : t.external_data()) {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = parse_int("offset", kv.value());
      else if (kv.key() == "length") length = parse_int("length", kv.value());
    }
    if (location.empty()) throw ExternalDataError(at(), what + ": external data has no 'location'");
    const fs::path rel(location);
    if (rel.is_absolute() || location.find('\0') != std::string::npos)
      throw ExternalDataError(at(), what + ": external data location '" + location +
                                        "' is an absolute path; refused (it must be relative to the model's folder)");
    for (const auto& part : rel)
      if (part == "..")
        throw ExternalDataError(at(), what + ": external data location '" + location +
                                          "' points outside the model's folder (path traversal); refused");
    std::error_code ec;
    const fs::path dir = fs::weakly_canonical(fs::path(model_dir_), ec);
    const fs::path file = fs::weakly_canonical(fs::path(model_dir_) / rel, ec);
    if (ec) throw ExternalDataError(at(), what + ": cannot resolve external data location '" + location + "'");
    auto mismatch = std::mismatch(dir.begin(), dir.end(), file.begin(), file.end());
    if (mismatch.first != dir.end())
      throw ExternalDataError(at(), what + ": external data location '" + location +
                                        "' resolves outside the model's folder (symbolic link?); refused");
    if (!fs::is_regular_file(file, ec))
      throw ExternalDataError({file.string(), "", ""}, what + ": external data file is missing");
    const int64_t file_size = int64_t(fs::file_size(file, ec));
    if (ec) throw ExternalDataError({file.string(), "", ""}, what + ": cannot read external data file size");
    const int64_t need = shape_numel(tensor_shape(t, what)) * dtype_size(DType(t.data_type()));
    if (length < 0) length = need;
    if (length != need)
      throw ExternalDataError({file.string(), "", ""}, what + ": external data length " + std::to_string(length) +
                                                           " does not match its shape (" + std::to_string(need) + " bytes)");
    if (offset > file_size || length > file_size - offset)
      throw ExternalDataError({file.string(), "", ""}, what + ": external data [" + std::to_string(offset) + ", +" +
                                                           std::to_string(length) + ") is beyond the end of the file (" +
                                                           std::to_string(file_size) + " bytes)");
    std::ifstream in(file, std::ios::binary);
    std::string raw(size_t(length), '\0');
    in.seekg(offset);
    if (!in.read(raw.data(), length))
      throw ExternalDataError({file.string(), "", ""}, what + ": reading external data failed");
    t.clear_external_data();
    t.set_data_location(onnx::TensorProto::DEFAULT);
    t.set_raw_data(std::move(raw));
  }

  void load_initializers() {
    for (auto& t : *model_.mutable_graph()->mutable_initializer()) {
      const std::string what = "initializer '" + t.name() + "'";
      if (!dtype_known(t.data_type()) || t.data_type() == int(DType::string))
        throw UnsupportedError(at(), what + " has unsupported element type " + std::to_string(t.data_type()));
      if (t.has_segment()) throw UnsupportedError(at(), what + " is segmented; not supported");
      if (t.data_location() == onnx::TensorProto::EXTERNAL) load_external(t);
      else if (t.external_data_size() > 0) throw ModelFormatError(at(), what + " has external_data but data_location DEFAULT");
      check_tensor_data(t, what);
      to_raw(t);
    }
    // Constant nodes carry tensors too: check them the same way.
    for (auto& n : *model_.mutable_graph()->mutable_node())
      for (auto& a : *n.mutable_attribute())
        if (a.has_t()) {
          if (a.t().data_location() == onnx::TensorProto::EXTERNAL) load_external(*a.mutable_t());
          try {
            check_tensor_data(a.t(), "attribute '" + a.name() + "'");
          } catch (const Error& e) {
            throw ModelFormatError(at(n), e.problem());
          }
          to_raw(*a.mutable_t());
        }
  }

  // ---- dimensions ----------------------------------------------------------------------------

  void bind_input_dims() {
    auto* g = model_.mutable_graph();
    std::unordered_set<std::string> inits;
    for (const auto& t : g->initializer()) inits.insert(t.name());
    std::set<std::string> seen_symbols, used_dims;
    std::vector<std::string> unbound;
    for (auto& in : *g->mutable_input()) {
      if (inits.count(in.name())) continue;
      if (!in.type().has_tensor_type())
        throw UnsupportedError(at(), "graph input '" + in.name() + "' is not a tensor");
      auto* tt = in.mutable_type()->mutable_tensor_type();
      if (!dtype_known(tt->elem_type()) || tt->elem_type() == int(DType::string))
        throw UnsupportedError(at(), "graph input '" + in.name() + "' has unsupported element type " +
                                         std::to_string(tt->elem_type()));
      if (!tt->has_shape())
        throw ShapeError(at(), "graph input '" + in.name() + "' has no shape (its rank is unknown)");
      for (int axis = 0; axis < tt->shape().dim_size(); ++axis) {
        auto* d = tt->mutable_shape()->mutable_dim(axis);
        const std::string where = "graph input '" + in.name() + "' axis " + std::to_string(axis);
        if (d->has_dim_value()) {
          if (d->dim_value() < 0) throw ShapeError(at(), where + " has negative size " + std::to_string(d->dim_value()));
          if (axis == 0 && opts_.batch > 0 && d->dim_value() != opts_.batch)
            throw ShapeError(at(), where + " has a fixed batch size of " + std::to_string(d->dim_value()) +
                                       "; cannot set batch " + std::to_string(opts_.batch) +
                                       " (export the model with a dynamic batch axis, or omit --batch)");
          continue;
        }
        const std::string symbol = d->has_dim_param() ? d->dim_param() : std::string();
        if (!symbol.empty()) seen_symbols.insert(symbol);
        int64_t value = 0;
        if (!symbol.empty() && opts_.dims.count(symbol)) {
          value = opts_.dims.at(symbol);
          used_dims.insert(symbol);
        } else if (axis == 0) {
          value = opts_.batch > 0 ? opts_.batch : 1;
        } else {
          unbound.push_back(where + (symbol.empty() ? " (unnamed)" : " ('" + symbol + "')"));
          continue;
        }
        d->clear_dim_param();
        d->set_dim_value(value);
      }
      // The memory budget, before inference sees the dims (ONNX's Conv inference with a
      // 2^40-wide input and auto_pad loops for minutes).
      Shape shape;
      bool complete = true;
      for (const auto& d : tt->shape().dim()) {
        complete = complete && d.has_dim_value();
        shape.push_back(d.has_dim_value() ? d.dim_value() : 0);
      }
      if (complete)
        if (auto e = over_budget("graph input '" + in.name() + "'", DType(tt->elem_type()), shape); !e.empty()) throw ShapeError(at(), e);
    }
    for (const auto& [name, value] : opts_.dims)
      if (!used_dims.count(name)) {
        std::string known;
        for (const auto& s : seen_symbols) known += (known.empty() ? "" : ", ") + s;
        throw InvalidArgument(at(), "dimension '" + name + "' was given but no input has a symbolic dimension of that name" +
                                        (known.empty() ? std::string(" (the model has none)") : " (it has: " + known + ")"));
      }
    if (!unbound.empty()) {
      std::string list;
      for (const auto& u : unbound) list += (list.empty() ? "" : ", ") + u;
      throw ShapeError(at(), "symbolic dimensions without a value: " + list + "; set them with --dim NAME=N (Python: dims={'NAME': N})");
    }
  }

  // ---- ONNX schema checks and shape inference -------------------------------------------------

  void check_nodes_against_schemas() {
    onnx::checker::CheckerContext ctx;
    ctx.set_ir_version(int(std::min<int64_t>(model_.ir_version(), onnx::Version::IR_VERSION)));
    ctx.set_opset_imports(opset_imports_);
    onnx::checker::LexicalScopeContext scope;
    for (const auto& in : model_.graph().input()) scope.add(in.name());
    for (const auto& t : model_.graph().initializer()) scope.add(t.name());
    for (const auto& n : model_.graph().node()) {
      try {
        onnx::checker::check_node(n, ctx, scope);
      } catch (const std::exception& e) {
        throw ModelFormatError(at(n), std::string("invalid node: ") + e.what());
      }
      // An empty name stands for a left-out optional input only (the checker lets it through
      // anywhere; ONNX Runtime then crashes on Min(x, "")).
      if (const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(n.op_type(), opset_, ""); schema && !schema->inputs().empty())
        for (int i = 0; i < n.input_size(); ++i) {
          const auto& formal = schema->inputs()[size_t(std::min<int>(i, int(schema->inputs().size()) - 1))];
          if (n.input(i).empty() && formal.GetOption() != onnx::OpSchema::Optional)
            throw ModelFormatError(at(n), "input " + std::to_string(i) + " ('" + formal.GetName() + "') is empty, but " + n.op_type() +
                                              " requires it");
        }
      for (const auto& out : n.output()) scope.add(out);
    }
  }

  // The operator table's rank rules on the inputs whose rank is known before inference: ONNX's
  // inference functions index into input shapes without checking (see OpDef::check_input_ranks).
  void check_known_ranks() {
    const auto& g = model_.graph();
    std::unordered_map<std::string, int> rank;
    for (const auto& t : g.initializer()) rank[t.name()] = t.dims_size();
    for (const auto& in : g.input())
      if (in.type().has_tensor_type() && in.type().tensor_type().has_shape() && !rank.count(in.name()))
        rank[in.name()] = in.type().tensor_type().shape().dim_size();
    for (const auto& n : g.node()) {
      if (n.op_type() == "Constant" && n.output_size() == 1)
        for (const auto& a : n.attribute())
          if (a.name() == "value" && a.has_t()) rank[n.output(0)] = a.t().dims_size();
      const OpDef* def = OpRegistry::instance().find(n.op_type());
      if (!def || !def->check_input_ranks) continue;
      std::vector<int> ranks;
      for (const auto& in : n.input()) {
        auto it = rank.find(in);
        ranks.push_back(in.empty() || it == rank.end() ? -1 : it->second);
      }
      Node node;
      node.name = n.name();
      node.op = n.op_type();
      node.def = def;
      for (const auto& a : n.attribute())
        if (a.type() == onnx::AttributeProto::INT || a.type() == onnx::AttributeProto::INTS) node.attrs[a.name()] = convert_attribute(n, a);
      try {
        def->check_input_ranks(node, ranks);
      } catch (const Error& e) {
        throw ShapeError(at(n), e.problem());
      }
    }
  }

  // ONNX shape inference, alternating with folding of shape computations (Shape -> Gather ->
  // Concat -> Reshape and the like) that ONNX 1.12's data propagation leaves unresolved.
  // The graph outputs' declared shapes are the exporter's claim, not a rule: inference runs
  // without them, and a declared dimension that differs from the computed one is an error (it
  // would otherwise become the output's shape). Nor do declared dims fill what inference leaves
  // open: a Slice-1 or an Expand to an empty shape would then run with the exporter's shape.
  void infer_shapes() {
    auto* g = model_.mutable_graph();
    std::vector<std::optional<onnx::TensorShapeProto>> declared;
    for (auto& out : *g->mutable_output()) {
      declared.emplace_back();
      if (out.type().has_tensor_type() && out.type().tensor_type().has_shape()) {
        declared.back() = out.type().tensor_type().shape();
        out.mutable_type()->mutable_tensor_type()->clear_shape();
      }
    }
    infer_shapes_passes();
    for (int i = 0; i < g->output_size(); ++i) {
      if (!declared[size_t(i)]) continue;
      const auto& want = *declared[size_t(i)];
      auto* tt = g->mutable_output(i)->mutable_type()->mutable_tensor_type();
      if (!tt->has_shape()) continue;  // left to the "could not infer" error: a declared shape is not evidence
      auto* got = tt->mutable_shape();
      auto dims = [](const onnx::TensorShapeProto& s) {
        std::string out = "[";
        for (int k = 0; k < s.dim_size(); ++k)
          out += (k ? "x" : "") + (s.dim(k).has_dim_value() ? std::to_string(s.dim(k).dim_value()) : s.dim(k).has_dim_param() ? s.dim(k).dim_param() : "?");
        return out + "]";
      };
      const std::string name = g->output(i).name();
      if (got->dim_size() != want.dim_size())
        throw ShapeError(at(), "graph output '" + name + "' is declared as " + dims(want) + " but computes " + dims(*got));
      for (int k = 0; k < want.dim_size(); ++k) {
        const auto& w = want.dim(k);
        auto* d = got->mutable_dim(k);
        if (d->has_dim_value() && w.has_dim_value() && d->dim_value() != w.dim_value())
          throw ShapeError(at(), "graph output '" + name + "' is declared as " + dims(want) + " but computes " + dims(*got));
      }
    }
  }

  void infer_shapes_passes() {
    auto* g = model_.mutable_graph();
    g->clear_value_info();  // stale or symbolic annotations from the exporter; inference recomputes them
    onnx::ShapeInferenceOptions options(/*check_type=*/true, /*strict=*/1, /*data_propagation=*/true);
    for (int pass = 0; pass < 32; ++pass) {
      try {
        onnx::shape_inference::InferShapes(model_, onnx::OpSchemaRegistry::Instance(), options);
      } catch (const std::exception& e) {
        throw ShapeError(at(), std::string("shape inference failed: ") + e.what());
      }
      const int before = g->initializer_size();
      const int folded = detail::fold_shape_computations(model_, opset_);
      for (int k = before; k < g->initializer_size(); ++k) folded_names_.insert(g->initializer(k).name());
      folded_ += folded;
      if (folded == 0 && complete_shapes() == 0) return;
    }
  }

  // Applies the operator table's fallback shape rules to outputs ONNX left (partly) unknown.
  // Returns how many outputs it completed.
  int complete_shapes() {
    auto* g = model_.mutable_graph();
    std::unordered_map<std::string, onnx::ValueInfoProto*> info;
    for (auto& v : *g->mutable_input()) info[v.name()] = &v;
    for (auto& v : *g->mutable_value_info()) info[v.name()] = &v;
    for (auto& v : *g->mutable_output()) info[v.name()] = &v;
    std::unordered_map<std::string, Shape> init_shapes;
    for (const auto& t : g->initializer()) init_shapes[t.name()] = Shape(t.dims().begin(), t.dims().end());
    auto concrete = [](const onnx::ValueInfoProto* v, Shape& out) {
      if (!v || !v->type().has_tensor_type() || !v->type().tensor_type().has_shape()) return false;
      out.clear();
      for (const auto& d : v->type().tensor_type().shape().dim()) {
        if (!d.has_dim_value()) return false;
        out.push_back(d.dim_value());
      }
      return true;
    };
    int completed = 0;
    for (const auto& n : g->node()) {
      const OpDef* def = OpRegistry::instance().find(n.op_type());
      if (!def || !def->infer_shapes || n.output_size() < 1) continue;
      bool all_known = true;
      for (const auto& out : n.output()) {
        Shape have;
        auto it = info.find(out);
        all_known = all_known && (out.empty() || (it != info.end() && concrete(it->second, have)));
      }
      if (all_known) continue;
      std::vector<Shape> inputs;
      bool known = true;
      for (const auto& in : n.input()) {
        Shape s;
        if (init_shapes.count(in)) s = init_shapes[in];
        else if (!concrete(info.count(in) ? info[in] : nullptr, s)) known = false;
        inputs.push_back(s);
      }
      if (!known) continue;
      Node node;
      node.name = n.name();
      node.op = n.op_type();
      node.def = def;
      node.opset = opset_;
      for (int i = 0; i < n.output_size(); ++i) node.outputs.push_back(i);  // only the count matters here
      for (const auto& a : n.attribute())
        if (a.type() != onnx::AttributeProto::TENSOR) node.attrs[a.name()] = convert_attribute(n, a);
      std::vector<Shape> shapes;
      try {
        shapes = def->infer_shapes(inputs, node);
      } catch (const Error& e) {
        throw ShapeError(at(n), e.problem());
      }
      const auto* first = info.count(n.input(0)) ? info[n.input(0)] : nullptr;
      const int input0_type = first ? first->type().tensor_type().elem_type() : int(onnx::TensorProto::FLOAT);
      for (int i = 0; i < n.output_size() && size_t(i) < shapes.size(); ++i) {
        const std::string& name = n.output(i);
        Shape have;
        auto out_it = info.find(name);
        if (name.empty() || (out_it != info.end() && concrete(out_it->second, have))) continue;
        onnx::ValueInfoProto* v = out_it != info.end() ? out_it->second : g->add_value_info();
        v->set_name(name);
        info[name] = v;
        auto* tt = v->mutable_type()->mutable_tensor_type();
        if (!tt->has_elem_type() || tt->elem_type() == 0) {
          int type = input0_type;
          if (def->output_dtype && dtype_known(input0_type)) type = int(def->output_dtype(node, size_t(i), DType(input0_type)));
          tt->set_elem_type(type);
        }
        tt->mutable_shape()->clear_dim();
        for (int64_t d : shapes[size_t(i)]) tt->mutable_shape()->add_dim()->set_dim_value(d);
        ++completed;
      }
    }
    return completed;
  }

  // ---- building the Graph ---------------------------------------------------------------------

  Attribute convert_attribute(const onnx::NodeProto& n, const onnx::AttributeProto& a) {
    switch (a.type()) {
      case onnx::AttributeProto::FLOAT: return double(a.f());
      case onnx::AttributeProto::INT: return int64_t(a.i());
      case onnx::AttributeProto::STRING: return a.s();
      case onnx::AttributeProto::FLOATS: return std::vector<double>(a.floats().begin(), a.floats().end());
      case onnx::AttributeProto::INTS: return std::vector<int64_t>(a.ints().begin(), a.ints().end());
      case onnx::AttributeProto::STRINGS: return std::vector<std::string>(a.strings().begin(), a.strings().end());
      case onnx::AttributeProto::TENSOR: return take_tensor(*const_cast<onnx::AttributeProto&>(a).mutable_t());
      default:
        throw UnsupportedError(at(n), "attribute '" + a.name() + "' has an unsupported type");
    }
  }

  TensorData take_tensor(onnx::TensorProto& t) {
    Shape shape(t.dims().begin(), t.dims().end());
    const DType dt = DType(t.data_type());
    if (!t.has_raw_data()) {
      if (shape_numel(shape) == 0) return TensorData::make_bytes(dt, shape, std::make_shared<const std::string>());
      return TensorData::make_absent(dt, shape);
    }
    std::shared_ptr<const std::string> buf(t.release_raw_data());
    return TensorData::make_bytes(dt, shape, std::move(buf));
  }

  Graph build_graph() {
    auto* g = model_.mutable_graph();
    Graph graph;
    graph.name = g->name();
    graph.path = label_;
    graph.ir_version = int(model_.ir_version());
    graph.opset = opset_;
    graph.folded_nodes = folded_;

    // Types and shapes of everything inference saw.
    std::unordered_map<std::string, const onnx::ValueInfoProto*> info;
    for (const auto& v : g->input()) info[v.name()] = &v;
    for (const auto& v : g->value_info()) info[v.name()] = &v;
    for (const auto& v : g->output()) info[v.name()] = &v;

    std::unordered_map<std::string, int> index;
    auto add_value = [&](Value v) {
      index[v.name] = int(graph.values.size());
      graph.values.push_back(std::move(v));
      return int(graph.values.size()) - 1;
    };

    for (auto& t : *g->mutable_initializer()) {
      Value v;
      v.name = t.name();
      v.kind = folded_names_.count(t.name()) ? ValueKind::constant : ValueKind::weight;
      v.dtype = DType(t.data_type());
      v.shape = Shape(t.dims().begin(), t.dims().end());
      v.data = take_tensor(t);
      graph.weights_stripped = graph.weights_stripped || !v.data->has_values();
      add_value(std::move(v));
    }
    for (const auto& in : g->input()) {
      if (index.count(in.name())) continue;  // initializer listed as input (IR < 4)
      Value v;
      v.name = in.name();
      v.kind = ValueKind::input;
      v.dtype = DType(in.type().tensor_type().elem_type());
      for (const auto& d : in.type().tensor_type().shape().dim()) v.shape.push_back(d.dim_value());
      graph.inputs.push_back(add_value(std::move(v)));
    }

    for (auto& n : *g->mutable_node()) {
      // Weights given as nodes become constant values; the node disappears from the run graph.
      if (n.op_type() == "Constant") {
        fold_constant(n, graph, add_value);
        continue;
      }
      if (n.op_type() == "ConstantOfShape" && n.input_size() == 1 && index.count(n.input(0)) &&
          graph.values[size_t(index[n.input(0)])].is_constant() && fold_constant_of_shape(n, graph, index, add_value))
        continue;

      Node node;
      node.name = n.name();
      node.op = n.op_type();
      node.def = OpRegistry::instance().find(node.op);
      node.domain = n.domain();
      node.opset = opset_;
      for (const auto& a : n.attribute()) node.attrs[a.name()] = convert_attribute(n, a);
      for (const auto& in : n.input()) node.inputs.push_back(in.empty() ? -1 : index.at(in));
      for (const auto& out : n.output()) {
        if (out.empty()) {
          node.outputs.push_back(-1);
          continue;
        }
        Value v;
        v.name = out;
        v.kind = ValueKind::activation;
        auto it = info.find(out);
        if (it == info.end() || !it->second->type().has_tensor_type() ||
            !it->second->type().tensor_type().has_shape())
          throw ShapeError(at(n), "could not infer the shape of output '" + out + "'");
        const auto& tt = it->second->type().tensor_type();
        if (!dtype_known(tt.elem_type()))
          throw UnsupportedError(at(n), "output '" + out + "' has unsupported element type " + std::to_string(tt.elem_type()));
        v.dtype = DType(tt.elem_type());
        for (const auto& d : tt.shape().dim()) {
          if (!d.has_dim_value() || d.dim_value() < 0)
            throw ShapeError(at(n), "could not infer a concrete shape for output '" + out + "'" +
                                        (d.has_dim_param() ? " (dimension '" + d.dim_param() + "' stays symbolic)" : std::string()) +
                                        "; data-dependent shapes are not supported");
          v.shape.push_back(d.dim_value());
        }
        if (shape_numel(v.shape) > kMaxTensorElements)
          throw ShapeError(at(n), "output '" + out + "' has an implausible shape " + shape_str(v.shape));
        if (auto e = over_budget("output '" + out + "'", v.dtype, v.shape); !e.empty()) throw ShapeError(at(n), e);
        node.outputs.push_back(add_value(std::move(v)));
      }
      graph.nodes.push_back(std::move(node));
    }
    for (const auto& out : g->output()) {
      auto it = index.find(out.name());
      if (it == index.end()) throw ModelFormatError(at(), "graph output '" + out.name() + "' is never defined");
      graph.outputs.push_back(it->second);
    }
    graph.rebuild_links();
    try {
      compute_costs(graph);
    } catch (const Error& e) {
      ErrorContext where = e.where();
      where.file = label_;
      throw ShapeError(where, e.problem());
    }
    return graph;
  }

  template <typename AddValue>
  void fold_constant(onnx::NodeProto& n, Graph& graph, AddValue& add_value) {
    if (n.output_size() != 1 || n.attribute_size() != 1)
      throw ModelFormatError(at(n), "a Constant node needs exactly one output and one value attribute");
    auto& a = *n.mutable_attribute(0);
    Value v;
    v.name = n.output(0);
    v.kind = ValueKind::constant;
    auto scalar_bytes = [](const void* p, size_t size) { return std::make_shared<const std::string>(static_cast<const char*>(p), size); };
    if (a.name() == "value" && a.has_t()) {
      v.data = take_tensor(*a.mutable_t());
    } else if (a.name() == "value_float") {
      float f = a.f();
      v.data = TensorData::make_bytes(DType::float32, {}, scalar_bytes(&f, 4));
    } else if (a.name() == "value_int") {
      int64_t i = a.i();
      v.data = TensorData::make_bytes(DType::int64, {}, scalar_bytes(&i, 8));
    } else if (a.name() == "value_floats") {
      std::vector<float> f(a.floats().begin(), a.floats().end());
      v.data = TensorData::make_bytes(DType::float32, {int64_t(f.size())}, scalar_bytes(f.data(), f.size() * 4));
    } else if (a.name() == "value_ints") {
      std::vector<int64_t> i(a.ints().begin(), a.ints().end());
      v.data = TensorData::make_bytes(DType::int64, {int64_t(i.size())}, scalar_bytes(i.data(), i.size() * 8));
    } else {
      throw UnsupportedError(at(n), "Constant attribute '" + a.name() + "' is not supported");
    }
    v.dtype = v.data->dtype();
    v.shape = v.data->shape();
    graph.weights_stripped = graph.weights_stripped || !v.data->has_values();
    add_value(std::move(v));
  }

  template <typename AddValue>
  bool fold_constant_of_shape(onnx::NodeProto& n, Graph& graph, std::unordered_map<std::string, int>& index,
                              AddValue& add_value) {
    const Value& shape_value = graph.values[size_t(index.at(n.input(0)))];
    if (!shape_value.data || !shape_value.data->has_values() || n.output_size() != 1) return false;
    Shape shape;
    for (int64_t d : shape_value.data->as_int64()) {
      if (d < 0) throw ShapeError(at(n), "ConstantOfShape with negative dimension " + std::to_string(d));
      shape.push_back(d);
    }
    if (shape_numel(shape) > kMaxTensorElements)
      throw ShapeError(at(n), "ConstantOfShape with an implausible shape " + shape_str(shape));
    if (auto e = over_budget("ConstantOfShape output '" + n.output(0) + "'", DType::float64, shape); !e.empty()) throw ShapeError(at(n), e);
    DType dt = DType::float32;
    double fill = 0.0;
    for (auto& a : *n.mutable_attribute())
      if (a.name() == "value" && a.has_t()) {
        TensorData t = take_tensor(*a.mutable_t());
        if (t.numel() != 1) throw ModelFormatError(at(n), "ConstantOfShape value must hold exactly one element");
        dt = t.dtype();
        if (t.has_values()) fill = t.as_double().at(0);
      }
    Value v;
    v.name = n.output(0);
    v.kind = ValueKind::constant;
    v.dtype = dt;
    v.shape = shape;
    v.data = TensorData::make_fill(dt, shape, fill);
    add_value(std::move(v));
    return true;
  }
};

}  // namespace

Graph load_onnx_bytes(const std::string& bytes, const LoadOptions& options, const std::string& model_dir,
                      const std::string& label) {
  if (int64_t(bytes.size()) > options.max_file_bytes)
    throw ModelFormatError({label, "", ""}, "model is " + std::to_string(bytes.size()) + " bytes, over the " +
                                               std::to_string(options.max_file_bytes) + "-byte limit");
  Importer importer(options, model_dir, label);
  return importer.run(bytes);
}

Graph load_onnx(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) throw MissingFileError({path, "", ""}, "no such file");
  if (fs::is_directory(p, ec)) throw FileError({path, "", ""}, "is a directory, not an ONNX file");
  const auto size = fs::file_size(p, ec);
  if (ec) throw FileError({path, "", ""}, "cannot read file: " + ec.message());
  if (int64_t(size) > options.max_file_bytes)
    throw ModelFormatError({path, "", ""}, "file is " + std::to_string(size) + " bytes, over the " +
                                              std::to_string(options.max_file_bytes) + "-byte limit of protobuf");
  std::ifstream in(p, std::ios::binary);
  if (!in) throw FileError({path, "", ""}, "cannot open file for reading");
  std::string bytes(size_t(size), '\0');
  if (size > 0 && !in.read(bytes.data(), std::streamsize(size))) throw FileError({path, "", ""}, "reading the file failed");
  std::string dir = p.parent_path().string();
  if (dir.empty()) dir = ".";
  return load_onnx_bytes(bytes, options, dir, path);
}

}  // namespace bricklab
