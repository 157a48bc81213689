// Python bindings of the bricks module (DLBricks): decomposition, ONNX bricks, the benchmark
// runner, the results database and prediction. The Python API lives in bricklab/bricks.py;
// these are its building blocks (bricklab._core.bricks_*). The GIL is released while timing.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bricklab/bricklab.hpp"
#include "bricklab/core/threads.hpp"
#include "bricklab/bricks/database.hpp"
#include "bricklab/bricks/decompose.hpp"
#include "bricklab/bricks/emit.hpp"
#include "bind_util.hpp"
#include "bricklab/bricks/predict.hpp"
#include "bricklab/bricks/runner.hpp"

namespace py = pybind11;
using namespace bricklab;
namespace bb = bricklab::bricks;

// Shared with bind_lowerbound.cpp (declared there).
bb::RunnerOptions runner_options(const py::dict& o) {
  bb::RunnerOptions r;
  for (auto item : o) {
    const std::string k = py::str(item.first);
    py::handle v = item.second;
    if (k == "threads") r.threads = v.cast<int>();
    else if (k == "pin") r.pin = v.cast<bool>();
    else if (k == "cold_weights") r.cold_weights = v.cast<bool>();
    else if (k == "evict_weights") r.evict_weights = v.cast<bool>();
    else if (k == "evict_outputs") {
      // True: outputs of at least the private cache's size; False: none (the default); an int:
      // outputs of at least that many bytes.
      if (py::isinstance<py::bool_>(v)) r.evict_outputs_bytes = v.cast<bool>() ? -1 : 0;
      else {
        const int64_t b = v.cast<int64_t>();
        if (b < 0) throw InvalidArgument("evict_outputs must be a bool or a byte count >= 0, got " + std::to_string(b));
        r.evict_outputs_bytes = b;
      }
    }
    else if (k == "per_model_tolerance") r.per_model_tolerance = v.cast<bool>();
    else if (k == "warmup") r.warmup = v.cast<int>();
    else if (k == "min_reps") r.min_reps = v.cast<int>();
    else if (k == "max_reps") r.max_reps = v.cast<int>();
    else if (k == "tolerance") r.tolerance = v.cast<double>();
    else if (k == "budget_s" || k == "budget") r.budget_s = v.cast<double>();  // budget: the CLI's --budget
    else if (k == "fusion") r.fusion = v.cast<bool>();
    else if (k == "backend") r.backend = py::str(v);
    else if (k == "branch_workers") r.branch_workers = v.cast<int>();
    else if (k == "busy_retries") r.busy_retries = v.cast<int>();
    else if (k == "busy_wait_s") r.busy_wait_s = v.cast<double>();
    else if (k == "clock") {
      const std::string c = py::str(v);
      if (c != "wall" && c != "cpu") throw InvalidArgument("clock must be 'wall' or 'cpu', got '" + c + "'");
      r.cpu_clock = c == "cpu";
    }
    else throw InvalidArgument("unknown runner option '" + k +
                               "' (known: threads, pin, cold_weights, evict_weights, evict_outputs, per_model_tolerance, warmup, min_reps, max_reps, tolerance, budget_s (or budget), fusion, clock, backend, branch_workers, busy_retries, busy_wait_s)");
  }
  r.threads = resolve_threads(r.threads, "threads");  // the one thread rule (0: the CPUs this process may use)
  if (r.warmup < 0 || r.min_reps < 1 || r.max_reps < r.min_reps) throw InvalidArgument("need warmup >= 0 and 1 <= min_reps <= max_reps");
  if (!(r.tolerance > 0) || !(r.budget_s > 0)) throw InvalidArgument("tolerance and budget_s must be > 0");
  if (r.busy_retries < 0 || r.busy_retries > 100 || !(r.busy_wait_s >= 0) || r.busy_wait_s > 3600)
    throw InvalidArgument("need 0 <= busy_retries <= 100 and 0 <= busy_wait_s <= 3600");
  return r;
}

namespace {

py::dict measurement_dict(const bb::Measurement& m) {
  py::dict d;
  d["median_ms"] = m.median_ms;
  d["p10_ms"] = m.p10_ms;
  d["p90_ms"] = m.p90_ms;
  d["mean_ms"] = m.mean_ms;
  d["cv"] = m.cv;
  d["ci_low_ms"] = m.ci_low_ms;
  d["ci_high_ms"] = m.ci_high_ms;
  d["ci_rel"] = m.ci_rel;
  d["reps"] = m.reps;
  d["converged"] = m.converged;
  d["wall_s"] = m.wall_s;
  return d;
}

py::dict prediction_dict(const bb::Prediction& p) {
  py::dict d;
  d["model"] = p.model;
  d["fingerprint"] = p.fingerprint;
  d["sum_ms"] = p.sum_ms;
  d["critical_path_ms"] = p.critical_path_ms;
  d["ci_ms"] = p.ci_ms;
  d["steps_ms"] = p.steps_ms;
  d["reorders_ms"] = p.reorders_ms;
  d["overhead_ms"] = p.overhead_ms;
  d["reorders_estimated"] = p.reorders_estimated;
  d["missing"] = p.missing;
  d["noisy"] = p.noisy;
  d["noisy_accepted"] = p.noisy_accepted;
  d["complete"] = p.complete();
  py::list uses;
  for (const auto& u : p.uses) {
    py::dict x;
    x["id"] = u.id;
    x["key"] = u.key;
    x["label"] = u.label;
    x["nodes"] = u.nodes;
    x["ms"] = u.ms;
    x["missing"] = u.missing;
    x["noisy"] = u.noisy;
    uses.append(x);
  }
  d["bricks"] = uses;
  return d;
}

using DecompositionPtr = std::shared_ptr<bb::Decomposition>;

}  // namespace

void bind_bricks(py::module_& m) {
  py::class_<bb::Decomposition, DecompositionPtr>(m, "Decomposition", "Models split into bricks (see bricklab.bricks.decompose).")
      .def("__repr__", [](const bb::Decomposition& d) {
        return "<bricklab.bricks.Decomposition " + std::to_string(d.models.size()) + (d.models.size() == 1 ? " model, " : " models, ") +
               std::to_string(d.instances()) + " layer instances, " + std::to_string(d.bricks.size()) + " unique bricks, granularity " +
               d.granularity.str() + ", batch " + std::to_string(d.batch) + ">";
      })
      .def_property_readonly("granularity", [](const bb::Decomposition& d) { return d.granularity.str(); },
           "'op', 'fused' or 'seq:K': what one brick is.")
      .def_property_readonly("batch", [](const bb::Decomposition& d) { return d.batch; },
           "The batch size the models were loaded with.")
      .def_property_readonly("instances", &bb::Decomposition::instances, "Layer instances (brick uses) across all models.")
      .def_property_readonly("unique", [](const bb::Decomposition& d) { return d.bricks.size(); },
           "Number of unique bricks (what benchmarking times).")
      .def_property_readonly("bricks", [](const bb::Decomposition& d) {
        py::list out;
        for (const auto& b : d.bricks) {
          py::dict x;
          x["id"] = b.id;
          x["key"] = b.key;
          x["label"] = b.label;
          x["flops"] = b.flops;
          x["multiplicity"] = b.multiplicity;
          x["per_model"] = b.per_model;
          x["model"] = d.models[size_t(b.model)].path;
          py::list nodes;
          for (int n : b.nodes) nodes.append(d.models[size_t(b.model)].graph->nodes[size_t(n)].name);
          x["nodes"] = nodes;
          py::list context;
          for (int n : b.context) context.append(d.models[size_t(b.model)].graph->nodes[size_t(n)].name);
          x["context"] = context;
          out.append(x);
        }
        return out;
      },
           "One dict per unique brick: id, key, label (operators), flops, multiplicity, per_model uses, the representative model and nodes, and the context nodes run before it.")
      .def_property_readonly("models", [](const bb::Decomposition& d) {
        py::list out;
        for (const auto& mb : d.models) {
          py::dict x;
          x["model"] = mb.path;
          py::list uses;
          for (const auto& u : mb.uses) {
            py::dict ud;
            ud["id"] = bb::key_id(u.key);
            py::list nodes;
            for (int n : u.nodes) nodes.append(mb.graph->nodes[size_t(n)].name);
            ud["nodes"] = nodes;
            uses.append(ud);
          }
          x["uses"] = uses;
          py::list reorders;
          for (const auto& r : mb.reorders) reorders.append(py::make_tuple(r.value, r.why, r.key));
          x["reorders"] = reorders;
          x["runtime_key"] = mb.runtime_key;
          out.append(x);
        }
        return out;
      },
           "One dict per model: its path, its brick uses in order (id, nodes), the layout reorders between them and its runtime key.")
      .def("brick_model", [](const bb::Decomposition& d, const std::string& id) {
        for (const auto& b : d.bricks)
          if (b.id == id || b.key == id) return std::make_shared<Graph>(bb::brick_graph(d, b));
        throw InvalidArgument("no brick with id '" + id + "'");
      }, py::arg("id"), "The brick's runnable graph (extract_subgraph of its representative nodes).")
      .def("emit", [](const bb::Decomposition& d, const py::object& dir_like, uint64_t seed) {
        const std::string dir = bricklab::pybind::fspath(dir_like, "emit(): dir");
        py::list files;
        for (const auto& b : d.bricks) {
          const std::string path = dir + "/" + b.id + ".onnx";
          bb::write_onnx(bb::brick_graph(d, b), path, seed);
          files.append(path);
        }
        return files;
      }, py::arg("dir"), py::arg("weight_seed") = 0, "Writes every brick as DIR/<id>.onnx; returns the paths.")
      .def_property_readonly("emit_bytes", &bb::emit_size_estimate,
                             "About how many bytes emit() writes (weights and constants included).")
      .def("benchmark", [](const bb::Decomposition& d, const std::string& db, const py::dict& options, const std::string& queue,
                           const py::object& progress, bool remeasure) {
        auto r = runner_options(options);
        bb::BenchmarkSummary s;
        bb::Progress cb;
        if (!progress.is_none())
          cb = [progress](int done, int total, double elapsed, const std::string& what) {
            py::gil_scoped_acquire gil;
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C between bricks
            progress(done, total, elapsed, what);
          };
        {
          py::gil_scoped_release release;
          auto database = bb::open_database(db, true);
          s = bb::benchmark(d, *database, r, cb, queue, remeasure);
        }
        py::dict out;
        out["bricks"] = s.bricks;
        out["already_stored"] = s.already;
        out["measured"] = s.measured;
        out["reorders_stored"] = s.reorders_stored;
        out["remeasured"] = s.remeasured;
        out["noisy"] = s.noisy;
        out["wall_s"] = s.wall_s;
        out["fingerprint"] = bb::system_fingerprint(r).id();
        return out;
      }, py::arg("db"), py::arg("options") = py::dict(), py::arg("queue") = "", py::arg("progress") = py::none(),
         py::arg("remeasure") = false,
         "Times the bricks not yet in db (and those stored marked noisy; every one with remeasure=True, replacing "
         "the stored results); progress(done, total, elapsed_s, label) is called after each.")
      .def("predict", [](const bb::Decomposition& d, size_t model, const std::string& db, const py::dict& options,
                         bool accept_noisy) {
        if (model >= d.models.size()) throw py::index_error("model index out of range");
        auto r = runner_options(options);
        auto database = bb::open_database(db, false);
        return prediction_dict(bb::predict(d.models[model], *database, bb::system_fingerprint(r).id(), accept_noisy));
      }, py::arg("model"), py::arg("db"), py::arg("options") = py::dict(), py::arg("accept_noisy") = false,
           "Model number `model`'s latency from the bricks stored in db (see bricklab.predict, which also raises on missing bricks).");

  m.def("bricks_decompose", [](const std::vector<std::shared_ptr<Graph>>& graphs, const std::string& granularity, const py::dict& options) {
    bb::DecomposeOptions o;
    o.granularity = bb::Granularity::parse(granularity);
    o.compile = bb::compile_options(runner_options(options));
    int64_t batch = 1;
    std::vector<std::shared_ptr<const Graph>> cgraphs;
    for (const auto& g : graphs) {
      cgraphs.push_back(g);
      if (!g->inputs.empty() && !g->values[size_t(g->inputs[0])].shape.empty()) batch = g->values[size_t(g->inputs[0])].shape[0];
    }
    DecompositionPtr d;
    {
      py::gil_scoped_release release;
      d = std::make_shared<bb::Decomposition>(bb::decompose_graphs(cgraphs, o));
    }
    d->batch = batch;
    return d;
  }, py::arg("models"), py::arg("granularity") = "fused", py::arg("options") = py::dict());

  m.def("bricks_node_key", [](const std::shared_ptr<Graph>& g, const std::string& node) { bricklab::pybind::require_model(g, "bricklab.bricks.node_key");
    const int i = g->find_node(node);
    if (i < 0) throw InvalidArgument("no node named '" + node + "'");
    return bb::node_key(*g, i);
  });
  m.def("bricks_group_key", [](const std::shared_ptr<Graph>& g, const std::vector<std::string>& nodes) { bricklab::pybind::require_model(g, "bricklab.bricks.group_key");
    std::vector<int> idx;
    for (const auto& n : nodes) {
      const int i = g->find_node(n);
      if (i < 0) throw InvalidArgument("no node named '" + n + "'");
      idx.push_back(i);
    }
    return bb::group_key(*g, idx);
  });
  m.def("bricks_subgraph", [](const std::shared_ptr<Graph>& g, const std::vector<std::string>& nodes) { bricklab::pybind::require_model(g, "bricklab.bricks.subgraph");
    std::vector<int> idx;
    for (const auto& n : nodes) {
      const int i = g->find_node(n);
      if (i < 0) throw InvalidArgument("no node named '" + n + "'");
      idx.push_back(i);
    }
    return std::make_shared<Graph>(extract_subgraph(*g, idx));
  });
  m.def("bricks_to_onnx", [](const std::shared_ptr<Graph>& g, uint64_t seed) { bricklab::pybind::require_model(g, "bricklab.bricks.to_onnx"); return py::bytes(bb::to_onnx_bytes(*g, seed)); },
        py::arg("model"), py::arg("weight_seed") = 0);
  m.def("bricks_measure_model", [](const std::shared_ptr<Graph>& g, const py::dict& options) { bricklab::pybind::require_model(g, "bricklab.bricks.measure_model");
    auto r = runner_options(options);
    bb::Measurement meas;
    {
      py::gil_scoped_release release;
      meas = bb::time_whole(*g, r);
    }
    return measurement_dict(meas);
  }, py::arg("model"), py::arg("options") = py::dict());
  m.def("bricks_fingerprint", [](const py::dict& options) {
    const auto fp = bb::system_fingerprint(runner_options(options));
    py::dict d;
    d["id"] = fp.id();
    d["json"] = fp.json();
    return d;
  }, py::arg("options") = py::dict());
  m.def("bricks_default_db", &bb::default_db_path);
  m.def("bricks_median_ci", [](std::vector<double> samples) {
    std::sort(samples.begin(), samples.end());
    double lo = 0, hi = 0;
    bb::median_ci(samples, lo, hi);
    return py::make_tuple(lo, hi);
  });
}
