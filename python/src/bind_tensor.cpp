// Python bindings of the tensor-recovery module: bricklab._core.tensor. The Pythonic API
// (quantize, recover, baselines, the result class) is python/bricklab/tensor.py; this layer
// takes numpy arrays without copying when their dtype and layout already match (int64 indices,
// int32 levels, C order), releases the GIL while solving, and returns the result's arrays as
// numpy views of the C++ buffers (the Recovery object owns them).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bricklab/core/error.hpp"
#include "bricklab/tensor/recovery.hpp"

namespace py = pybind11;
using namespace bricklab;
using namespace bricklab::tensor;

namespace {

using IndexArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using LevelArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using RecoveryPtr = std::shared_ptr<Recovery>;

Loss parse_loss(const std::string& s) {
  if (s == "probit") return Loss::probit;
  if (s == "logistic") return Loss::logistic;
  if (s == "squared") return Loss::squared;
  throw InvalidArgument("noise must be 'probit' or 'logistic' (or 'squared' for least squares), got '" + s + "'");
}

StepRule parse_step(const std::string& s) {
  if (s == "newton") return StepRule::newton;
  if (s == "curvature") return StepRule::curvature;
  if (s == "lipschitz") return StepRule::lipschitz;
  if (s == "backtracking") return StepRule::backtracking;
  throw InvalidArgument("step must be 'newton', 'curvature', 'lipschitz' or 'backtracking', got '" + s + "'");
}

// The observation view over numpy buffers (kept alive by the caller's array objects).
ObservationView make_view(const std::vector<int64_t>& shape, const IndexArray& indices, const LevelArray* levels,
                          const DoubleArray* values) {
  ObservationView v;
  v.shape = shape;
  if (indices.ndim() != 2)
    throw InvalidArgument("indices must be a 2-D array (count x order), got " + std::to_string(indices.ndim()) + " dimensions");
  if (size_t(indices.shape(1)) != shape.size())
    throw InvalidArgument("indices have " + std::to_string(indices.shape(1)) + " columns but the shape has " +
                          std::to_string(shape.size()) + " dimensions");
  v.count = size_t(indices.shape(0));
  v.indices = indices.data();
  if (levels) {
    if (levels->ndim() != 1 || size_t(levels->shape(0)) != v.count)
      throw InvalidArgument("levels must be a 1-D array with one level per index row (" + std::to_string(v.count) + ")");
    v.levels = levels->data();
  }
  if (values) {
    if (values->ndim() != 1 || size_t(values->shape(0)) != v.count)
      throw InvalidArgument("values must be a 1-D array with one value per index row (" + std::to_string(v.count) + ")");
    v.values = values->data();
  }
  return v;
}

// A numpy view of a vector owned by the Recovery (base object keeps it alive).
py::array view(const std::vector<double>& data, std::vector<py::ssize_t> shape, py::handle owner) {
  py::array arr(py::dtype::of<double>(), shape, {}, data.data(), owner);
  py::detail::array_proxy(arr.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return arr;
}

RecoverOptions options_from(int rank, const std::string& noise, double sigma, double alpha,
                            const std::vector<double>& boundaries, int num_levels, double min_gap, int max_iter,
                            double tol, double grad_tol, const std::string& step, bool extrapolate, uint64_t seed,
                            int threads, const std::vector<std::vector<double>>& init, double init_scale, bool verbose) {
  RecoverOptions o;
  o.rank = rank;
  o.loss = parse_loss(noise);
  o.sigma = sigma;
  o.alpha = alpha;
  o.boundaries = boundaries;
  o.num_levels = num_levels;
  o.min_gap = min_gap;
  o.max_iter = max_iter;
  o.tol = tol;
  o.grad_tol = grad_tol;
  o.step = parse_step(step);
  o.extrapolate = extrapolate;
  o.seed = seed;
  o.threads = threads;
  o.init = init;
  o.init_scale = init_scale;
  o.verbose = verbose;
  return o;
}

}  // namespace

void bind_tensor(py::module_& m);

void bind_tensor(py::module_& m) {
  py::module_ t = m.def_submodule("tensor", "Tensor recovery from quantized measurements (C++ core; see bricklab.tensor)");

  py::class_<Recovery, RecoveryPtr>(t, "Recovery", "Result of a recovery (C++ side; wrapped by bricklab.tensor.Recovery).")
      .def_readonly("method", &Recovery::method)
      .def_readonly("shape", &Recovery::shape)
      .def_readonly("rank", &Recovery::rank)
      .def_readonly("iterations", &Recovery::iterations)
      .def_readonly("stop_reason", &Recovery::stop_reason)
      .def_readonly("restarts", &Recovery::restarts)
      .def_readonly("rejected_steps", &Recovery::rejected_steps)
      .def_readonly("setup_seconds", &Recovery::setup_seconds)
      .def_readonly("solve_seconds", &Recovery::solve_seconds)
      .def_readonly("index_bytes", &Recovery::index_bytes)
      .def_property_readonly("factors", [](py::object self) {
        const Recovery& r = self.cast<const Recovery&>();
        py::list out;
        if (r.method == "cp") {
          for (size_t k = 0; k < r.factors.size(); ++k) out.append(view(r.factors[k], {r.shape[k], r.rank}, self));
        } else if (r.method == "unfold") {
          py::ssize_t cols = py::ssize_t(r.factors[1].size() / size_t(std::max(r.rank, 1)));
          out.append(view(r.factors[0], {r.shape[0], r.rank}, self));
          out.append(view(r.factors[1], {cols, r.rank}, self));
        } else {
          out.append(view(r.factors[0], {r.shape[0], r.rank, r.shape[2]}, self));
          out.append(view(r.factors[1], {r.rank, r.shape[1], r.shape[2]}, self));
        }
        return out;
      })
      .def_property_readonly("boundaries", [](py::object self) {
        const Recovery& r = self.cast<const Recovery&>();
        return view(r.boundaries, {py::ssize_t(r.boundaries.size())}, self);
      })
      .def_property_readonly("objective", [](py::object self) {
        const Recovery& r = self.cast<const Recovery&>();
        return view(r.objective, {py::ssize_t(r.objective.size())}, self);
      })
      .def_property_readonly("kkt_residual", [](py::object self) {
        const Recovery& r = self.cast<const Recovery&>();
        return view(r.kkt_residual, {py::ssize_t(r.kkt_residual.size())}, self);
      })
      .def_property_readonly("iteration_seconds", [](py::object self) {
        const Recovery& r = self.cast<const Recovery&>();
        return view(r.iteration_seconds, {py::ssize_t(r.iteration_seconds.size())}, self);
      })
      .def("entries", [](const Recovery& r, IndexArray indices, int threads) {
        if (indices.ndim() != 2 || size_t(indices.shape(1)) != r.shape.size())
          throw InvalidArgument("indices must be a 2-D array with " + std::to_string(r.shape.size()) + " columns");
        std::vector<double> out;
        {
          py::gil_scoped_release release;
          out = recovery_entries(r, indices.data(), size_t(indices.shape(0)), threads);
        }
        return py::array_t<double>(py::ssize_t(out.size()), out.data());
      }, py::arg("indices"), py::arg("threads") = 0)
      .def("dense", [](const Recovery& r, int threads) {
        auto* data = new std::vector<double>();
        py::capsule owner(data, [](void* p) { delete static_cast<std::vector<double>*>(p); });
        {
          py::gil_scoped_release release;
          *data = recovery_dense(r, threads);
        }
        std::vector<py::ssize_t> shape(r.shape.begin(), r.shape.end());
        return py::array(py::dtype::of<double>(), shape, {}, data->data(), owner);
      }, py::arg("threads") = 0);

  auto solve = [](const std::string& method, IndexArray indices, LevelArray levels, std::vector<int64_t> shape, int rank,
                  const std::string& noise, double sigma, double alpha, std::vector<double> boundaries, int num_levels,
                  double min_gap, int max_iter, double tol, double grad_tol, const std::string& step, bool extrapolate,
                  uint64_t seed, int threads, std::vector<std::vector<double>> init, double init_scale, bool verbose,
                  int threshold_level, int n_init, py::object callback) {
    RecoverOptions o = options_from(rank, noise, sigma, alpha, boundaries, num_levels, min_gap, max_iter, tol,
                                    grad_tol, step, extrapolate, seed, threads, init, init_scale, verbose);
    if (n_init < 1) throw InvalidArgument("n_init must be >= 1, got " + std::to_string(n_init));
    o.n_init = n_init;
    if (!callback.is_none()) {
      if (!PyCallable_Check(callback.ptr())) throw InvalidArgument("callback must be callable or None");
      // Runs on the solver's thread between iterations: take the GIL, hand Python copies of the
      // factors (n_k x rank) and boundaries; a truthy return value stops the solver.
      o.callback = [callback, shape, rank](const IterationInfo& info) {
        py::gil_scoped_acquire gil;
        py::list factors;
        for (size_t k = 0; k < info.factors->size(); ++k) {
          const auto& f = (*info.factors)[k];
          const py::ssize_t rows = py::ssize_t(f.size() / size_t(rank));
          py::array_t<double> a({rows, py::ssize_t(rank)});
          std::copy(f.begin(), f.end(), a.mutable_data());
          factors.append(a);
        }
        py::array_t<double> w(py::ssize_t(info.boundaries->size()));
        std::copy(info.boundaries->begin(), info.boundaries->end(), w.mutable_data());
        py::object r = callback(info.iteration, info.objective, factors, w);
        return !r.is_none() && r.cast<bool>();
      };
    }
    const ObservationView v = make_view(shape, indices, &levels, nullptr);
    auto rec = std::make_shared<Recovery>();
    {
      py::gil_scoped_release release;
      if (method == "cp") *rec = recover_cp(v, o);
      else if (method == "tsvd") *rec = recover_tsvd(v, o);
      else if (method == "least_squares") *rec = recover_least_squares(v, o);
      else if (method == "one_bit") *rec = recover_one_bit(v, o, threshold_level);
      else if (method == "unfold") *rec = recover_unfolding(v, o);
      else throw InvalidArgument("method must be 'cp' or 'tsvd', got '" + method + "'");
    }
    return rec;
  };
  t.def("solve", solve, py::arg("method"), py::arg("indices"), py::arg("levels"), py::arg("shape"), py::arg("rank"),
        py::arg("noise"), py::arg("sigma"), py::arg("alpha"), py::arg("boundaries"), py::arg("num_levels"),
        py::arg("min_gap"), py::arg("max_iter"), py::arg("tol"), py::arg("grad_tol"), py::arg("step"),
        py::arg("extrapolate"), py::arg("seed"), py::arg("threads"), py::arg("init"), py::arg("init_scale"),
        py::arg("verbose"), py::arg("threshold_level") = 0, py::arg("n_init") = 3, py::arg("callback") = py::none(),
        "Run a recovery (method: cp, tsvd, least_squares, one_bit, unfold); see bricklab.tensor.recover.");

  t.def("solve_values", [](IndexArray indices, DoubleArray values, std::vector<int64_t> shape, int rank, double alpha,
                           int max_iter, double tol, const std::string& step, uint64_t seed, int threads,
                           const std::string& method) {
        RecoverOptions o;
        o.rank = rank;
        o.loss = Loss::squared;
        o.alpha = alpha;
        o.max_iter = max_iter;
        o.tol = tol;
        o.step = parse_step(step);
        o.seed = seed;
        o.threads = threads;
        const ObservationView v = make_view(shape, indices, nullptr, &values);
        auto rec = std::make_shared<Recovery>();
        {
          py::gil_scoped_release release;
          *rec = method == "tsvd" ? recover_tsvd(v, o) : recover_cp(v, o);
        }
        return rec;
      }, py::arg("indices"), py::arg("values"), py::arg("shape"), py::arg("rank"), py::arg("alpha"), py::arg("max_iter"),
      py::arg("tol"), py::arg("step"), py::arg("seed"), py::arg("threads"), py::arg("method") = "cp",
      "Unquantized least-squares completion on real values (squared loss).");

  t.def("cp_gradient", [](IndexArray indices, LevelArray levels, std::vector<int64_t> shape,
                          std::vector<std::vector<double>> factors, std::vector<double> boundaries,
                          const std::string& noise, double sigma, int rank) {
        RecoverOptions o;
        o.rank = rank;
        o.loss = parse_loss(noise);
        o.sigma = sigma;
        o.boundaries = boundaries;
        const ObservationView v = make_view(shape, indices, &levels, nullptr);
        CpGradient g;
        {
          py::gil_scoped_release release;
          g = cp_objective_gradient(v, o, factors);
        }
        return py::make_tuple(g.objective, g.factor_grads, g.boundary_grad);
      }, py::arg("indices"), py::arg("levels"), py::arg("shape"), py::arg("factors"), py::arg("boundaries"),
      py::arg("noise"), py::arg("sigma"), py::arg("rank"),
      "F at CP factors (lists of row-major n_k x rank values) and its gradients (factors, boundaries).");

  t.def("objective", [](DoubleArray x, LevelArray levels, std::vector<double> boundaries, const std::string& noise,
                        double sigma) {
        if (x.ndim() != 1 || levels.ndim() != 1 || x.shape(0) != levels.shape(0))
          throw InvalidArgument("x and levels must be 1-D arrays of the same length");
        std::vector<double> gx, gw;
        const double f = quantized_objective(parse_loss(noise), sigma, boundaries, levels.data(), x.data(),
                                             size_t(x.shape(0)), &gx, &gw);
        return py::make_tuple(f, py::array_t<double>(py::ssize_t(gx.size()), gx.data()),
                              py::array_t<double>(py::ssize_t(gw.size()), gw.data()));
      }, py::arg("x"), py::arg("levels"), py::arg("boundaries"), py::arg("noise"), py::arg("sigma"),
      "Negative log-likelihood sum at entries x with their levels, its gradient in x and in the boundaries.");

  t.def("level_terms", [](DoubleArray u, DoubleArray v, const std::string& noise) {
        if (u.ndim() != 1 || v.ndim() != 1 || u.shape(0) != v.shape(0))
          throw InvalidArgument("u and v must be 1-D arrays of the same length");
        const Loss loss = parse_loss(noise);
        if (loss == Loss::squared) throw InvalidArgument("level_terms: noise must be 'probit' or 'logistic'");
        const py::ssize_t n = u.shape(0);
        py::array_t<double> nll(n), du(n), dv(n), dxs(n);
        for (py::ssize_t j = 0; j < n; ++j) {
          const LevelTerms lt = loss == Loss::probit ? probit_terms(u.data()[j], v.data()[j]) : logistic_terms(u.data()[j], v.data()[j]);
          nll.mutable_data()[j] = lt.nll;
          du.mutable_data()[j] = lt.du;
          dv.mutable_data()[j] = lt.dv;
          dxs.mutable_data()[j] = lt.dxs;
        }
        return py::make_tuple(nll, du, dv, dxs);
      }, py::arg("u"), py::arg("v"), py::arg("noise"),
      "-log P(u < Z <= v) for standard noise Z and its derivatives in u, v and in the location (dxs).");

  t.def("log_normal_cdf", py::vectorize(&log_normal_cdf), py::arg("t"), "log Phi(t), accurate in both tails.");
  t.def("erfcx", py::vectorize(&erfcx), py::arg("y"), "exp(y^2) erfc(y).");
  t.def("curvature_bound", [](const std::string& noise, double sigma) { return curvature_bound(parse_loss(noise), sigma); },
        py::arg("noise"), py::arg("sigma"));
  t.def("project_ordered", &project_ordered, py::arg("w"), py::arg("weights"), py::arg("min_gap"),
        "Weighted projection onto boundaries with gaps >= min_gap.");
  t.def("level_values", &level_values, py::arg("boundaries"), py::arg("sigma"), py::arg("alpha"),
        "Representative value of each bin (least-squares baseline).");
  t.def("validate_observations", [](IndexArray indices, LevelArray levels, std::vector<int64_t> shape, int num_levels) {
        const ObservationView v = make_view(shape, indices, &levels, nullptr);
        py::gil_scoped_release release;
        validate_observations(v, num_levels);
      }, py::arg("indices"), py::arg("levels"), py::arg("shape"), py::arg("num_levels"));
}
