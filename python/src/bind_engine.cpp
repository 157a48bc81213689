// Python bindings for running models: bricklab.Session (compile once, run many times, time,
// profile) and bricklab.variants. Inputs are read in place (C-contiguous arrays of any element type
// the engine computes in: floats, bool, 8- to 64-bit integers);
// outputs are numpy arrays that own the C++ buffers (no copies). The GIL is released while
// the engine runs.
#include <algorithm>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bricklab/bricklab.hpp"
#include "bricklab/core/threads.hpp"
#include "bind_util.hpp"

namespace py = pybind11;
using namespace bricklab;

namespace {

// numpy's dtypes for the engine's element types (every one the engine computes in).
const std::vector<std::pair<DType, const char*>>& numpy_types() {
  static const std::vector<std::pair<DType, const char*>> types = {
      {DType::float32, "float32"}, {DType::float64, "float64"}, {DType::float16, "float16"}, {DType::int8, "int8"},
      {DType::uint8, "uint8"},     {DType::int16, "int16"},     {DType::uint16, "uint16"},   {DType::int32, "int32"},
      {DType::uint32, "uint32"},   {DType::int64, "int64"},     {DType::uint64, "uint64"},   {DType::boolean, "bool"}};
  return types;
}

DType dtype_of(const py::array& a) {
  const std::string str = py::str(a.dtype());  // ">f4" and other foreign byte orders match none
  for (const auto& [dt, name] : numpy_types())
    if (str == name) return dt;
  throw InvalidArgument("unsupported numpy dtype '" + std::string(py::str(a.dtype())) +
                        "' (supported: float32, float64, float16, bool and the 8-, 16-, 32- and 64-bit integers)");
}

py::array to_numpy(const Tensor& t) {
  const auto& types = numpy_types();
  auto it = std::find_if(types.begin(), types.end(), [&](const auto& p) { return p.first == t.dtype(); });
  if (it == types.end()) throw UnsupportedError("no numpy type for output of type " + dtype_name(t.dtype()));
  auto* keep = new std::shared_ptr<void>(t.owner());
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  return py::array(py::dtype(it->second), shape, {}, const_cast<void*>(t.data()), owner);
}

class Session {
 public:
  Session(std::shared_ptr<Graph> graph, int threads, const py::object& fusion, std::map<std::string, std::string> variants,
          int branch_workers = 1)
      : graph_(std::move(graph)) {
    CompileOptions o;
    o.threads = resolve_threads(threads, "threads");  // the one thread rule (0: the CPUs this process may use)
    threads_ = o.threads;
    o.branch_workers = branch_workers;
    if (py::isinstance<py::bool_>(fusion)) {
      o.fusion = fusion.cast<bool>();
    } else {
      // An iterable of the fusions to enable: "batchnorm", "activation", "residual", "bias".
      o.fuse_batchnorm = o.fuse_activation = o.fuse_residual = o.fuse_bias = false;
      for (auto item : fusion) {
        const std::string f = py::str(item);
        if (f == "batchnorm") o.fuse_batchnorm = true;
        else if (f == "activation") o.fuse_activation = true;
        else if (f == "residual") o.fuse_residual = true;
        else if (f == "bias") o.fuse_bias = true;
        else throw InvalidArgument("unknown fusion '" + f + "' (known: batchnorm, activation, residual, bias)");
      }
    }
    o.variants = std::move(variants);
    for (const auto& [node, v] : o.variants)
      if (graph_->find_node(node) < 0) throw InvalidArgument("variants: no node named '" + node + "'");
    py::gil_scoped_release release;
    exe_ = get_backend("cpu").compile(*graph_, o);
  }

  py::dict run(const py::dict& inputs) {
    std::vector<py::array> keep;
    auto tensors = convert(inputs, keep);
    std::map<std::string, Tensor> outputs;
    {
      py::gil_scoped_release release;
      outputs = exe_->run(tensors);
    }
    py::dict out;
    for (auto& [name, t] : outputs) out[py::str(name)] = to_numpy(t);
    return out;
  }

  py::dict time(const py::object& inputs, int warmup, int repeats) {
    if (warmup < 0 || repeats < 1) throw InvalidArgument("time: need warmup >= 0 and repeats >= 1");
    std::vector<py::array> keep;
    auto tensors = inputs.is_none() ? random_inputs(*graph_, 0) : convert(inputs.cast<py::dict>(), keep);
    TimingStats s;
    {
      py::gil_scoped_release release;
      s = time_runs(*exe_, tensors, warmup, repeats);
    }
    py::dict d;
    d["median_ms"] = s.median_ms;
    d["p10_ms"] = s.p10_ms;
    d["p90_ms"] = s.p90_ms;
    d["mean_ms"] = s.mean_ms;
    d["min_ms"] = s.min_ms;
    d["repeats"] = s.repeats;
    d["samples_ms"] = s.samples_ms;
    return d;
  }

  py::list profile(const py::object& inputs) {
    std::vector<py::array> keep;
    auto tensors = inputs.is_none() ? random_inputs(*graph_, 0) : convert(inputs.cast<py::dict>(), keep);
    std::vector<StepTime> steps;
    {
      py::gil_scoped_release release;
      steps = exe_->run_profiled(tensors);
    }
    py::list out;
    for (const auto& s : steps) {
      py::dict d;
      d["step"] = s.name;
      d["nodes"] = s.nodes;
      d["kind"] = s.kind;
      d["ms"] = s.ms;
      out.append(d);
    }
    return out;
  }

  const Executable& exe() const { return *exe_; }

  std::string repr() const {
    const std::string plan = exe_->describe();
    const auto steps = std::count(plan.begin(), plan.end(), '\n');
    return "<bricklab.Session '" + graph_->path + "' on the CPU: " + std::to_string(steps) + " steps, " +
           std::to_string(threads_) + (threads_ == 1 ? " thread" : " threads") +
           (exe_->uses_random_weights() ? ", random weights" : "") + ">";
  }

 private:
  std::shared_ptr<Graph> graph_;
  int threads_ = 1;
  std::unique_ptr<Executable> exe_;

  std::map<std::string, Tensor> convert(const py::dict& inputs, std::vector<py::array>& keep) {
    std::map<std::string, Tensor> tensors;
    for (auto item : inputs) {
      const std::string name = py::str(item.first);
      py::array a = py::array::ensure(item.second, py::array::c_style);
      if (!a) throw InvalidArgument("input '" + name + "' is not convertible to a numpy array");
      const DType t = dtype_of(a);
      for (py::ssize_t i = 0; i < a.ndim(); ++i)
        if (a.shape(i) < 0) throw InvalidArgument("input '" + name + "' has a negative dimension");
      if (t == DType::float32 || t == DType::float64) {
        // NaN/Inf are legal data for a network; nothing to check here.
      }
      Shape shape(a.shape(), a.shape() + a.ndim());
      keep.push_back(a);  // keeps the buffer alive (and contiguous) during the call
      tensors[name] = Tensor::wrap(t, shape, const_cast<void*>(a.data()), nullptr);
    }
    return tensors;
  }
};

std::shared_ptr<Graph> model_from(const py::object& model, const py::object& batch) {
  if (py::isinstance<Graph>(model)) {
    if (!batch.is_none()) throw InvalidArgument("batch applies when a path is given; load the model with bricklab.load(path, batch=...)");
    return model.cast<std::shared_ptr<Graph>>();
  }
  LoadOptions opts;
  if (!batch.is_none()) opts.batch = batch.cast<int64_t>();
  const std::string path = bricklab::pybind::fspath(model, "model (a bricklab.Model or a path)");
  py::gil_scoped_release release;
  return std::make_shared<Graph>(load_onnx(path, opts));
}

}  // namespace

void bind_engine(py::module_& m) {
  py::class_<Session>(m, "Session",
                      "A model compiled for the CPU (oneDNN). Session(model, threads=0, fusion=True, batch=None, variants=None): "
                      "model is a bricklab.Model or a path; threads 0 = all cores; fusion is True, False or the set of "
                      "fusions to apply ({'batchnorm', 'activation', 'residual', 'bias'}); variants maps node names to a "
                      "variant from bricklab.variants(); branch_workers > 1 runs independent steps concurrently on that many "
                      "workers, each step with threads / branch_workers threads.")
      .def(py::init([](const py::object& model, int threads, const py::object& fusion, const py::object& batch,
                       std::optional<std::map<std::string, std::string>> variants, int branch_workers) {
             return std::make_unique<Session>(model_from(model, batch), threads, fusion, variants.value_or(std::map<std::string, std::string>{}),
                                              branch_workers);
           }),
           py::arg("model"), py::arg("threads") = 0, py::arg("fusion") = true, py::arg("batch") = py::none(), py::arg("variants") = py::none(),
           py::arg("branch_workers") = 1)
      .def("run", &Session::run, py::arg("inputs"), "Run once: {input name: array} -> {output name: array}.")
      .def("time", [](Session& s, const py::object& inputs, int warmup, int repeat, const py::object& repeats) {
             if (!repeats.is_none()) {  // the old name; `repeat` is the CLI's (--repeat)
               if (PyErr_WarnEx(PyExc_DeprecationWarning, "Session.time(repeats=) is now repeat=, as the CLI's --repeat", 1) < 0)
                 throw py::error_already_set();
               repeat = repeats.cast<int>();
             }
             return s.time(inputs, warmup, repeat);
           }, py::arg("inputs") = py::none(), py::arg("warmup") = 3, py::arg("repeat") = 20, py::arg("repeats") = py::none(),
           "Wall-clock latency over `repeat` runs after `warmup` runs (random inputs when none are given), as "
           "`bricklab run --repeat N --warmup N`: median_ms, p10_ms, p90_ms, mean_ms, min_ms, repeats, samples_ms.")
      .def("__repr__", &Session::repr)
      .def("profile", &Session::profile, py::arg("inputs") = py::none(), "Time of every plan step (a node or a fused group).")
      .def("describe", [](const Session& s) { return s.exe().describe(); }, "The execution plan, one step per line.")
      .def_property_readonly("input_names", [](const Session& s) { return s.exe().input_names(); }, "The model's runtime inputs, in order.")
      .def_property_readonly("output_names", [](const Session& s) { return s.exe().output_names(); }, "The model's outputs, in order.")
      .def_property_readonly("uses_random_weights", [](const Session& s) { return s.exe().uses_random_weights(); },
                             "True when the model's weights were stripped and random values of the right shape stand in.");

  m.def("variants", [](const std::shared_ptr<Graph>& graph, const std::string& node) { bricklab::pybind::require_model(graph, "bricklab.variants");
    const int index = graph->find_node(node);
    if (index < 0) throw InvalidArgument("no node named '" + node + "'");
    py::list out;
    for (const auto& v : get_backend("cpu").variants(*graph, index)) {
      py::dict d;
      d["name"] = v.name;
      d["description"] = v.description;
      d["is_default"] = v.is_default;
      d["precision"] = precision_name(v.precision);
      d["algorithm"] = v.algorithm;
      d["layout"] = v.layout;
      out.append(d);
    }
    return out;
  }, py::arg("model"), py::arg("node"), "The equivalent ways the CPU backend can run a node.");
}
