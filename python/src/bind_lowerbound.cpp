// Python bindings of the lower-bound module (Benanza): variant benchmarks, machine roofline,
// the analysis (as its JSON text, parsed in bricklab/lowerbound.py), the HTML report, and the
// keys under which peer runtimes' latencies are stored. The GIL is released while timing.
#include <pybind11/functional.h>

#include <algorithm>
#include <cmath>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bricklab/bricklab.hpp"
#include "bricklab/bricks/database.hpp"
#include "bricklab/lowerbound/lowerbound.hpp"
#include "bricklab/lowerbound/report.hpp"

#include "bind_util.hpp"

namespace py = pybind11;
using namespace bricklab;
namespace bb = bricklab::bricks;
namespace lb = bricklab::lowerbound;

bb::RunnerOptions runner_options(const py::dict& o);  // bind_bricks.cpp

namespace {

// Progress from the timing thread: take the GIL only to call back into Python.
lb::Progress python_progress(const py::object& callback) {
  if (callback.is_none()) return nullptr;
  return [callback](int done, int total, double elapsed, const std::string& what) {
    py::gil_scoped_acquire gil;
    callback(done, total, elapsed, what);
  };
}

}  // namespace

void bind_lowerbound(py::module_& m) {
  m.def("lowerbound_analyze",
        [](const std::shared_ptr<Graph>& g, const std::string& db, const py::dict& runner, bool measure, bool apply,
           const py::object& progress) { bricklab::pybind::require_model(g, "bricklab.lowerbound.analyze");
          lb::Options o;
          o.runner = runner_options(runner);
          o.measure_model = measure;
          o.apply_advice = apply;
          const lb::Progress cb = python_progress(progress);
          py::gil_scoped_release release;
          auto database = bb::open_database(db, true);
          return lb::analyze(*g, *database, o, cb).json();
        },
        py::arg("model"), py::arg("db"), py::arg("runner"), py::arg("measure") = true, py::arg("apply") = true,
        py::arg("progress") = py::none());
  m.def("lowerbound_machine",
        [](const std::string& db, const py::dict& runner, bool measure) {
          const bb::RunnerOptions r = runner_options(runner);
          py::gil_scoped_release release;
          auto database = bb::open_database(db, true);
          const lb::Machine mc = lb::machine_roofline(*database, r, measure);
          py::gil_scoped_acquire gil;
          py::dict d;
          d["peak_gflops"] = mc.peak_gflops;
          d["bandwidth_gbs"] = mc.bandwidth_gbs;
          d["description"] = mc.description;
          return d;
        },
        py::arg("db"), py::arg("runner"), py::arg("measure") = true);
  m.def("lowerbound_peer_key", [](const std::shared_ptr<Graph>& g, const std::string& runtime) { bricklab::pybind::require_model(g, "bricklab.lowerbound.peer_key"); return lb::peer_key(*g, runtime); });
  m.def("lowerbound_model_id", [](const std::shared_ptr<Graph>& g) { bricklab::pybind::require_model(g, "bricklab.lowerbound.model_id"); return lb::model_id(*g); });
  // Stores a peer runtime's whole-model latency (ms samples) under the runner's fingerprint.
  m.def("lowerbound_store_peer",
        [](const std::shared_ptr<Graph>& g, const std::string& runtime, const std::string& db, const py::dict& runner,
           std::vector<double> samples_ms) { bricklab::pybind::require_model(g, "bricklab.lowerbound.store_peer");
          if (samples_ms.empty()) throw InvalidArgument("store_peer: no samples for " + runtime);
          for (double x : samples_ms)
            if (!(x > 0) || !std::isfinite(x)) throw InvalidArgument("store_peer: samples of " + runtime + " must be finite and > 0");
          bb::RunnerOptions r = runner_options(runner);
          r.fusion = true;
          const bb::Fingerprint fp = bb::system_fingerprint(r);
          bb::Measurement mm;
          mm.samples_ms = samples_ms;
          bb::summarise(mm);
          mm.converged = true;
          auto database = bb::open_database(db, true);
          database->register_fingerprint(fp);
          const std::string key = lb::peer_key(*g, runtime);
          if (database->find(key, fp.id())) return false;  // measured once per fingerprint, like every result
          return database->insert(bb::to_stored(key, fp.id(), mm));
        },
        py::arg("model"), py::arg("runtime"), py::arg("db"), py::arg("runner"), py::arg("samples_ms"));
  // The stored median of a peer runtime for this model and fingerprint, or None.
  m.def("lowerbound_peer_ms",
        [](const std::shared_ptr<Graph>& g, const std::string& runtime, const std::string& db, const py::dict& runner) -> py::object { bricklab::pybind::require_model(g, "bricklab.lowerbound.peer_ms");
          bb::RunnerOptions r = runner_options(runner);
          r.fusion = true;
          auto database = bb::open_database(db, true);
          if (auto row = database->find(lb::peer_key(*g, runtime), bb::system_fingerprint(r).id())) return py::float_(row->median_ms);
          return py::none();
        });
  m.def("lowerbound_render_html", [](const std::string& analysis_json) { return lb::render_report_html(analysis_json); });
}
