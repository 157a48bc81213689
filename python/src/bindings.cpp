// Python bindings: bricklab._core. The Python API reads like the domain (bricklab.load(...),
// model.nodes, node.flops); weight arrays are zero-copy, read-only numpy views of the C++ buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>

#include "bricklab/bricklab.hpp"
#include "bricklab/core/threads.hpp"
#include "bind_util.hpp"

namespace py = pybind11;
using namespace bricklab;
void bind_tensor(pybind11::module_& m);

void bind_engine(pybind11::module_& m);  // bind_engine.cpp
void bind_soft(pybind11::module_& m);    // bind_soft.cpp
void bind_bricks(pybind11::module_& m);  // bind_bricks.cpp
void bind_lowerbound(pybind11::module_& m);  // bind_lowerbound.cpp

namespace {

using GraphPtr = std::shared_ptr<const Graph>;

struct ValueRef {
  GraphPtr graph;
  int index;
  const Value& get() const { return graph->values[size_t(index)]; }
};

struct NodeRef {
  GraphPtr graph;
  int index;
  const Node& get() const { return graph->nodes[size_t(index)]; }
};

py::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::float32: return py::dtype("float32");
    case DType::float64: return py::dtype("float64");
    case DType::float16: return py::dtype("float16");
    case DType::bfloat16: return py::dtype("uint16");  // numpy has no bfloat16: raw bits
    case DType::int8: return py::dtype("int8");
    case DType::uint8: return py::dtype("uint8");
    case DType::int16: return py::dtype("int16");
    case DType::uint16: return py::dtype("uint16");
    case DType::int32: return py::dtype("int32");
    case DType::uint32: return py::dtype("uint32");
    case DType::int64: return py::dtype("int64");
    case DType::uint64: return py::dtype("uint64");
    case DType::boolean: return py::dtype("bool");
    case DType::complex64: return py::dtype("complex64");
    case DType::complex128: return py::dtype("complex128");
    default: throw UnsupportedError("no numpy type for " + dtype_name(t));
  }
}

// A numpy view of tensor data: zero-copy for stored buffers (the capsule keeps the buffer alive),
// a broadcast view for fills, None when the values are stripped.
py::object tensor_to_numpy(const TensorData& t) {
  if (!t.has_values()) return py::none();
  py::dtype dt = numpy_dtype(t.dtype());
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  if (t.kind() == TensorData::Kind::fill) {
    py::array one(dt, std::vector<py::ssize_t>{});
    py::module_ np = py::module_::import("numpy");
    return np.attr("broadcast_to")(np.attr("asarray")(t.fill_value(), dt), py::tuple(py::cast(shape)));
  }
  auto* keep = new std::shared_ptr<const std::string>(t.shared_buffer());
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<const std::string>*>(p); });
  py::array arr(dt, shape, {}, (*keep)->data(), owner);
  py::detail::array_proxy(arr.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(arr);
}

py::object attribute_to_python(const Attribute& a) {
  return std::visit(
      [](const auto& v) -> py::object {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, TensorData>) return tensor_to_numpy(v);
        else return py::cast(v);
      },
      a);
}

py::tuple shape_tuple(const Shape& s) { return py::tuple(py::cast(s)); }

// Python exception classes, created once and raised by the translator below.
struct PyErrors {
  py::object error, file, missing, format, unsupported, shape, external, invalid;
};
PyErrors& errors() {
  static PyErrors e;
  return e;
}

py::object make_exception(py::module_& m, const char* name, py::tuple bases, const char* doc) {
  const std::string qualified = std::string("bricklab.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (!cls) throw py::error_already_set();
  py::object obj = py::reinterpret_steal<py::object>(cls);
  m.attr(name) = obj;
  return obj;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "bricklab C++ core: ONNX model processor (graph IR, shapes, FLOPs, bytes)";
  m.attr("__version__") = bricklab::version();
  m.def("usable_cpus", &bricklab::usable_cpus,
        "The CPUs this process may use (affinity mask, capped by its cgroup's CPU quota): the default thread count.");
  m.def("memory_limit", &bricklab::memory_limit,
        "The memory budget in bytes: the most bricklab allocates for one tensor or one compiled plan. Larger models, inputs "
        "or intermediate values are refused with an error naming the value, its shape and bytes. Set with "
        "set_memory_limit() or the BRICKLAB_MEMORY_LIMIT environment variable (e.g. '8G'); default: the memory this "
        "process may use (physical memory, capped by its cgroup).");
  m.def("set_memory_limit", &bricklab::set_memory_limit, py::arg("bytes"),
        "Sets the memory budget for this process in bytes (0: back to BRICKLAB_MEMORY_LIMIT or the machine's memory). "
        "A negative value raises bricklab.InvalidArgument.");

  auto& E = errors();
  E.error = make_exception(m, "Error", py::make_tuple(py::handle(PyExc_RuntimeError)), "Base class of bricklab errors.");
  E.file = make_exception(m, "FileError", py::make_tuple(E.error, py::handle(PyExc_OSError)),
                          "The model file is missing or unreadable.");
  E.missing = make_exception(m, "MissingFileError", py::make_tuple(E.file, py::handle(PyExc_FileNotFoundError)),
                             "The file does not exist.");
  E.format = make_exception(m, "ModelFormatError", py::make_tuple(E.error),
                            "The file is not a valid ONNX model (corrupt, truncated, structurally invalid).");
  E.unsupported = make_exception(m, "UnsupportedError", py::make_tuple(E.error),
                                 "Valid ONNX that bricklab does not support (operator, opset, type).");
  E.shape = make_exception(m, "ShapeError", py::make_tuple(E.error),
                           "Inconsistent, unknown or unbound shapes.");
  E.external = make_exception(m, "ExternalDataError", py::make_tuple(E.error),
                              "External tensor data missing, out of range, or outside the model folder.");
  E.invalid = make_exception(m, "InvalidArgument", py::make_tuple(E.error, py::handle(PyExc_ValueError)),
                             "A bad argument from the caller.");
  py::register_exception_translator([](std::exception_ptr p) {
    auto& E = errors();
    try {
      if (p) std::rethrow_exception(p);
    } catch (const MissingFileError& e) {
      PyErr_SetString(E.missing.ptr(), e.what());
    } catch (const FileError& e) {
      PyErr_SetString(E.file.ptr(), e.what());
    } catch (const ModelFormatError& e) {
      PyErr_SetString(E.format.ptr(), e.what());
    } catch (const UnsupportedError& e) {
      PyErr_SetString(E.unsupported.ptr(), e.what());
    } catch (const ShapeError& e) {
      PyErr_SetString(E.shape.ptr(), e.what());
    } catch (const ExternalDataError& e) {
      PyErr_SetString(E.external.ptr(), e.what());
    } catch (const InvalidArgument& e) {
      PyErr_SetString(E.invalid.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(E.error.ptr(), e.what());
    }
  });

  py::class_<ValueRef>(m, "Value", "A tensor in the graph: an input, a weight, a constant or an activation.")
      .def_property_readonly("name", [](const ValueRef& v) { return v.get().name; },
           "The value's name in the ONNX graph.")
      .def_property_readonly("shape", [](const ValueRef& v) { return shape_tuple(v.get().shape); },
           "The concrete shape as a tuple of ints (symbolic dims bound at load).")
      .def_property_readonly("dtype", [](const ValueRef& v) -> py::object {
        if (v.get().dtype == DType::bfloat16) return py::str("bfloat16");  // numpy has none
        try {
          return numpy_dtype(v.get().dtype);
        } catch (const UnsupportedError&) {
          return py::str(dtype_name(v.get().dtype));
        }
      }, "The element type as a numpy dtype (the ONNX name as a str where numpy has none, e.g. 'bfloat16').")
      .def_property_readonly("dtype_name", [](const ValueRef& v) { return dtype_name(v.get().dtype); },
                             "The ONNX element type's name: 'float32', 'bfloat16', ...")
      .def_property_readonly("kind", [](const ValueRef& v) { return value_kind_name(v.get().kind); },
           "'input', 'weight', 'constant' or 'activation'.")
      .def_property_readonly("numel", [](const ValueRef& v) { return v.get().numel(); },
           "Number of elements (the product of the shape).")
      .def_property_readonly("nbytes", [](const ValueRef& v) { return v.get().nbytes(); },
           "Size in bytes (numel x element size).")
      .def_property_readonly("producer", [](const ValueRef& v) -> py::object {
        int p = v.get().producer;
        return p < 0 ? py::none() : py::cast(v.graph->nodes[size_t(p)].name);
      },
           "Name of the node that computes it; None for inputs, weights and constants.")
      .def_property_readonly("consumers", [](const ValueRef& v) {
        std::vector<std::string> out;
        for (int c : v.get().consumers) out.push_back(v.graph->nodes[size_t(c)].name);
        return out;
      },
           "Names of the nodes that read it, in topological order.")
      .def_property_readonly("data", [](const ValueRef& v) -> py::object {
        return v.get().data ? tensor_to_numpy(*v.get().data) : py::none();
      }, "Weights/constants as a read-only numpy array sharing C++ memory; None for activations or stripped weights.")
      .def("__repr__", [](const ValueRef& v) {
        return "<bricklab.Value '" + v.get().name + "' " + dtype_name(v.get().dtype) + shape_str(v.get().shape) + " " +
               value_kind_name(v.get().kind) + ">";
      });

  py::class_<NodeRef>(m, "Node", "One operator invocation with its attributes and cost.")
      .def_property_readonly("name", [](const NodeRef& n) { return n.get().name; },
           "The node's name as the model gives it.")
      .def_property_readonly("op", [](const NodeRef& n) { return n.get().op; },
           "The ONNX operator type, e.g. 'Conv'.")
      .def_property_readonly("opset", [](const NodeRef& n) { return n.get().opset; },
           "The opset version of the node's domain in this model.")
      .def_property_readonly("index", [](const NodeRef& n) { return n.index; },
           "Position in the model's topological order.")
      .def_property_readonly("inputs", [](const NodeRef& n) {
        std::vector<py::object> out;
        for (int v : n.get().inputs) out.push_back(v < 0 ? py::none() : py::cast(ValueRef{n.graph, v}));
        return out;
      },
           "Input Values in ONNX order (None for an omitted optional input).")
      .def_property_readonly("outputs", [](const NodeRef& n) {
        std::vector<py::object> out;
        for (int v : n.get().outputs) out.push_back(v < 0 ? py::none() : py::cast(ValueRef{n.graph, v}));
        return out;
      },
           "Output Values in ONNX order (None for an omitted optional output).")
      .def_property_readonly("output_shape", [](const NodeRef& n) -> py::object {
        for (int v : n.get().outputs)
          if (v >= 0) return shape_tuple(n.graph->values[size_t(v)].shape);
        return py::none();
      },
           "Shape of the first output as a tuple, or None.")
      .def_property_readonly("attrs", [](const NodeRef& n) {
        py::dict d;
        for (const auto& [k, a] : n.get().attrs) d[py::str(k)] = attribute_to_python(a);
        return d;
      },
           "The attributes the model sets: name -> int, float, str, list or numpy array.")
      .def_property_readonly("flops", [](const NodeRef& n) { return n.get().cost.flops; },
           "Floating-point operations of one run (a multiply-add counts 2).")
      .def_property_readonly("bytes_read", [](const NodeRef& n) { return n.get().cost.bytes_read; },
           "Bytes read by one run: each distinct input once, weights included.")
      .def_property_readonly("bytes_written", [](const NodeRef& n) { return n.get().cost.bytes_written; },
           "Bytes written by one run: each output once.")
      .def_property_readonly("bytes", [](const NodeRef& n) { return n.get().cost.bytes(); },
           "bytes_read + bytes_written.")
      .def_property_readonly("producers", [](const NodeRef& n) {
        std::vector<std::string> out;
        for (int p : n.graph->producers(n.index)) out.push_back(n.graph->nodes[size_t(p)].name);
        return out;
      },
           "Names of the nodes whose outputs this node reads.")
      .def_property_readonly("consumers", [](const NodeRef& n) {
        std::vector<std::string> out;
        for (int c : n.graph->consumers(n.index)) out.push_back(n.graph->nodes[size_t(c)].name);
        return out;
      },
           "Names of the nodes that read this node's outputs.")
      .def("__repr__", [](const NodeRef& n) { return "<bricklab.Node '" + n.get().name + "' " + n.get().op + ">"; });

  py::class_<Graph, std::shared_ptr<Graph>>(m, "Model", "A loaded model: nodes in topological order with shapes and costs.")
      .def_property_readonly("path", [](const Graph& g) { return g.path; },
           "The file the model was loaded from.")
      .def_property_readonly("name", [](const Graph& g) { return g.name; },
           "The ONNX graph's name.")
      .def_property_readonly("opset", [](const Graph& g) { return g.opset; },
           "The default-domain opset version the model imports.")
      .def_property_readonly("ir_version", [](const Graph& g) { return g.ir_version; },
           "The ONNX IR version of the file.")
      .def_property_readonly("weights_stripped", [](const Graph& g) { return g.weights_stripped; },
           "True when some weights store no values (shapes only); runs then use random values.")
      .def_property_readonly("nodes", [](std::shared_ptr<Graph> g) {
        std::vector<NodeRef> out;
        for (size_t i = 0; i < g->nodes.size(); ++i) out.push_back({g, int(i)});
        return out;
      },
           "Nodes in topological order.")
      .def_property_readonly("values", [](std::shared_ptr<Graph> g) {
        py::dict d;
        for (size_t i = 0; i < g->values.size(); ++i) d[py::str(g->values[i].name)] = ValueRef{g, int(i)};
        return d;
      },
           "Every tensor by name: name -> Value.")
      .def_property_readonly("inputs", [](std::shared_ptr<Graph> g) {
        std::vector<ValueRef> out;
        for (int v : g->inputs) out.push_back({g, v});
        return out;
      },
           "Runtime inputs (initializers excluded), in ONNX order.")
      .def_property_readonly("outputs", [](std::shared_ptr<Graph> g) {
        std::vector<ValueRef> out;
        for (int v : g->outputs) out.push_back({g, v});
        return out;
      },
           "Graph outputs, in ONNX order.")
      .def("node", [](std::shared_ptr<Graph> g, const std::string& name) {
        int i = g->find_node(name);
        if (i < 0) throw py::key_error("no node named '" + name + "'");
        return NodeRef{g, i};
      }, py::arg("name"),
           "The node with this name (KeyError when there is none).")
      .def_property_readonly("flops", [](const Graph& g) { return g.total_cost().flops; },
           "Total FLOPs of one run (sum over nodes).")
      .def_property_readonly("bytes_read", [](const Graph& g) { return g.total_cost().bytes_read; },
           "Total bytes read by one run (sum over nodes).")
      .def_property_readonly("bytes_written", [](const Graph& g) { return g.total_cost().bytes_written; },
           "Total bytes written by one run (sum over nodes).")
      .def_property_readonly("parameter_count", &Graph::parameter_count,
           "Number of weight elements.")
      .def_property_readonly("parameter_bytes", &Graph::parameter_bytes,
           "Size of the weights in bytes.")
      .def("topological_order", [](const Graph& g) {
        std::vector<std::string> out;
        for (int i : g.topological_order()) out.push_back(g.nodes[size_t(i)].name);
        return out;
      },
           "Node names in a topological order of the DAG.")
      .def("critical_path", [](const Graph& g, const py::object& weights) {
        std::vector<double> w(g.nodes.size(), 0.0);
        if (py::isinstance<py::dict>(weights)) {
          for (auto item : weights.cast<py::dict>()) {
            const std::string name = py::str(item.first);
            int i = g.find_node(name);
            if (i < 0) throw InvalidArgument("critical_path: no node named '" + name + "'");
            w[size_t(i)] = item.second.cast<double>();
          }
        } else {
          w = weights.cast<std::vector<double>>();
        }
        for (double x : w)
          if (!(x >= 0) || x == INFINITY) throw InvalidArgument("critical_path: weights must be finite and >= 0");
        CriticalPath cp = g.critical_path(w);
        std::vector<std::string> names;
        for (int i : cp.nodes) names.push_back(g.nodes[size_t(i)].name);
        return py::make_tuple(cp.length, names);
      }, py::arg("weights"),
           "Longest path through the node DAG. weights: a list (one per node, in order) or a dict name -> weight "
           "(missing nodes weigh 0). Returns (length, [node names]).")
      .def("__len__", [](const Graph& g) { return g.nodes.size(); })
      .def("__repr__", [](const Graph& g) {
        return "<bricklab.Model '" + g.path + "' " + std::to_string(g.nodes.size()) + " nodes, opset " +
               std::to_string(g.opset) + ">";
      });

  m.def("load", [](const py::object& path_like, std::optional<int64_t> batch, std::map<std::string, int64_t> dims) {
        const std::string path = bricklab::pybind::fspath(path_like, "load(): path");
        LoadOptions opts;
        if (batch) {
          if (*batch < 1) throw InvalidArgument("batch must be >= 1, got " + std::to_string(*batch));
          opts.batch = *batch;
        }
        opts.dims = std::move(dims);
        std::shared_ptr<Graph> g;
        {
          py::gil_scoped_release release;
          g = std::make_shared<Graph>(load_onnx(path, opts));
        }
        return g;
      }, py::arg("path"), py::arg("batch") = py::none(), py::arg("dims") = std::map<std::string, int64_t>{},
        "Load an ONNX model from a path (str or os.PathLike). batch binds the leading symbolic dim of each input "
        "(default 1); dims binds other symbolic dims by name. A missing file raises bricklab.MissingFileError (a "
        "FileNotFoundError); an invalid one bricklab.ModelFormatError.");

  m.def("supported_ops", [] {
    std::vector<py::dict> out;
    for (const auto& d : OpRegistry::instance().all()) {
      py::dict e;
      e["op"] = d.name;
      e["class"] = op_class_name(d.cls);
      e["summary"] = d.summary;
      py::dict per_backend;
      for (const auto& name : backend_names()) per_backend[py::str(name)] = get_backend(name).lowers(d) ? "lowered" : "unsupported";
      e["backends"] = per_backend;
      out.push_back(e);
    }
    return out;
  }, "The operator table: one dict per operator with op, class, summary and, per backend, 'lowered' or 'unsupported'.");
  m.def("backends", [] {
    std::vector<py::dict> out;
    for (const auto& b : backends()) {
      py::dict e;
      e["name"] = b.name;
      e["compiled"] = b.compiled;
      e["available"] = b.available;
      e["library"] = b.library;
      e["device"] = b.device;
      e["reason"] = b.reason;
      out.push_back(e);
    }
    return out;
  }, "The execution backends: name, compiled (built in), available (usable here), library, device and, when not available, the reason.");
  bind_engine(m);
  bind_tensor(m);
  bind_soft(m);
  bind_bricks(m);
  bind_lowerbound(m);
}
