// Builds small ONNX models directly with the protobuf API, independently of bricklab's importer,
// so tests can state exactly what a model contains (including broken models).
#pragma once

#include <onnx/onnx_pb.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

namespace testutil {

using Dim = std::variant<int64_t, std::string>;

struct ModelBuilder {
  onnx::ModelProto model;

  explicit ModelBuilder(int opset = 13, int ir_version = 7) {
    model.set_ir_version(ir_version);
    model.set_producer_name("bricklab-tests");
    auto* imp = model.add_opset_import();
    imp->set_domain("");
    imp->set_version(opset);
    model.mutable_graph()->set_name("test");
  }
  onnx::GraphProto& graph() { return *model.mutable_graph(); }

  static void set_type(onnx::ValueInfoProto* v, const std::string& name, const std::vector<Dim>& dims, int elem) {
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* shape = tt->mutable_shape();
    for (const auto& d : dims) {
      auto* dim = shape->add_dim();
      if (std::holds_alternative<int64_t>(d)) dim->set_dim_value(std::get<int64_t>(d));
      else dim->set_dim_param(std::get<std::string>(d));
    }
  }
  ModelBuilder& input(const std::string& name, const std::vector<Dim>& dims, int elem = onnx::TensorProto::FLOAT) {
    set_type(graph().add_input(), name, dims, elem);
    return *this;
  }
  ModelBuilder& output(const std::string& name, int elem = onnx::TensorProto::FLOAT) {
    auto* v = graph().add_output();
    v->set_name(name);
    v->mutable_type()->mutable_tensor_type()->set_elem_type(elem);
    return *this;
  }
  static onnx::TensorProto tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values) {
    onnx::TensorProto t;
    t.set_name(name);
    t.set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : dims) t.add_dims(d);
    if (!values.empty()) t.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
    return t;
  }
  static onnx::TensorProto tensor_i64(const std::string& name, const std::vector<int64_t>& dims, const std::vector<int64_t>& values) {
    onnx::TensorProto t;
    t.set_name(name);
    t.set_data_type(onnx::TensorProto::INT64);
    for (auto d : dims) t.add_dims(d);
    for (auto v : values) t.add_int64_data(v);
    return t;
  }
  // Float initializer filled with 0.01*i; `stripped` keeps dims and type but stores no values.
  ModelBuilder& weight(const std::string& name, const std::vector<int64_t>& dims, bool stripped = false) {
    int64_t n = 1;
    for (auto d : dims) n *= d;
    std::vector<float> values;
    if (!stripped)
      for (int64_t i = 0; i < n; ++i) values.push_back(0.01f * float(i % 97));
    *graph().add_initializer() = tensor(name, dims, values);
    return *this;
  }
  ModelBuilder& weight_i64(const std::string& name, const std::vector<int64_t>& values) {
    *graph().add_initializer() = tensor_i64(name, {int64_t(values.size())}, values);
    return *this;
  }
  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "") {
    auto* n = graph().add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return *n;
  }
  static void attr(onnx::NodeProto& n, const std::string& key, int64_t v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto& n, const std::string& key, float v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  static void attr(onnx::NodeProto& n, const std::string& key, const std::string& v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void attr(onnx::NodeProto& n, const std::string& key, const std::vector<int64_t>& v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  static void attr(onnx::NodeProto& n, const std::string& key, const onnx::TensorProto& t) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::TENSOR);
    *a->mutable_t() = t;
  }
  std::string bytes() const { return model.SerializeAsString(); }
  void save(const std::string& path) const {
    std::ofstream out(path, std::ios::binary);
    out << bytes();
  }
};

// A fresh empty directory under the system temp dir.
// Directories made by temp_dir() are removed when the test process exits normally (not in a
// forked child, which leaves by _exit, and not by its pid check if a child ever did exit()).
struct TempDirRegistry {
  pid_t owner = ::getpid();
  std::vector<std::filesystem::path> dirs;
  ~TempDirRegistry() {
    if (::getpid() != owner) return;
    for (const auto& d : dirs) {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  }
};

inline std::filesystem::path temp_dir(const std::string& tag) {
  static TempDirRegistry registry;
  auto dir = std::filesystem::temp_directory_path() / ("bricklab_test_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (std::find(registry.dirs.begin(), registry.dirs.end(), dir) == registry.dirs.end()) registry.dirs.push_back(dir);
  return dir;
}

inline std::string repo_path(const std::string& rel) { return std::string(BRICKLAB_SOURCE_DIR) + "/" + rel; }

// True when /proc/cpuinfo lists `flag` (e.g. "avx512f"): kernels oneDNN has only on some CPUs.
inline bool cpu_has(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string word;
  while (in >> word)
    if (word == flag) return true;
  return false;
}

}  // namespace testutil
