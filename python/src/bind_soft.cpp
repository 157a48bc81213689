// Python bindings of the soft-training aggregation: bricklab._core.soft.aggregate. The Pythonic
// API (dict of named parameters, ClientUpdate, torch tensors) is python/bricklab/soft/aggregate.py.
// Buffers are borrowed without copying: float32 C-contiguous arrays for values, 1-byte (bool or
// uint8) C-contiguous arrays for masks, a writable float32 array per tensor for the output; the
// GIL is released during the pass. Anything else is an InvalidArgument (a ValueError) naming the
// client and tensor, never a silent copy or conversion.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bricklab/core/error.hpp"
#include "bricklab/soft/aggregate.hpp"

namespace py = pybind11;
using namespace bricklab;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t k = 0; k < a.ndim(); ++k)
    if (a.shape(k) != b.shape(k)) return false;
  return true;
}

const float* float_buffer(const py::handle& obj, const std::string& what, const py::array& like) {
  if (!py::isinstance<py::array>(obj)) throw InvalidArgument(what + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw InvalidArgument(what + " must be float32, got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw InvalidArgument(what + " must be C-contiguous");
  if (!same_shape(a, like))
    throw InvalidArgument(what + " has shape " + shape_str(a) + " but the global tensor has shape " + shape_str(like));
  return static_cast<const float*>(a.data());
}

const uint8_t* mask_buffer(const py::handle& obj, const std::string& what, const py::array& like) {
  if (!py::isinstance<py::array>(obj)) throw InvalidArgument(what + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const char kind = a.dtype().kind();
  if (a.itemsize() != 1 || (kind != 'b' && kind != 'u'))
    throw InvalidArgument(what + " must be bool or uint8, got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw InvalidArgument(what + " must be C-contiguous");
  if (!same_shape(a, like))
    throw InvalidArgument(what + " has shape " + shape_str(a) + " but the tensor has shape " + shape_str(like));
  return static_cast<const uint8_t*>(a.data());
}

py::dict aggregate_py(const std::vector<std::string>& names, const py::list& global, const py::list& out,
                      const py::list& clients, double soft_factor, int threads) {
  const size_t nt = names.size();
  if (py::len(global) != nt || py::len(out) != nt)
    throw InvalidArgument("aggregate: " + std::to_string(nt) + " names but " + std::to_string(py::len(global)) +
                          " global and " + std::to_string(py::len(out)) + " output arrays");
  std::vector<py::array> globals;
  std::vector<soft::TensorSlot> slots(nt);
  for (size_t t = 0; t < nt; ++t) {
    py::handle g = global[t];
    if (!py::isinstance<py::array>(g)) throw InvalidArgument("global tensor '" + names[t] + "' must be a numpy array");
    globals.push_back(py::reinterpret_borrow<py::array>(g));
    slots[t].name = names[t];
    slots[t].size = size_t(globals[t].size());
    slots[t].global = float_buffer(g, "global tensor '" + names[t] + "'", globals[t]);
    py::handle o = out[t];
    const float* op = float_buffer(o, "output tensor '" + names[t] + "'", globals[t]);
    if (!py::reinterpret_borrow<py::array>(o).writeable())
      throw InvalidArgument("output tensor '" + names[t] + "' is read-only");
    slots[t].out = const_cast<float*>(op);
  }
  std::vector<soft::ClientUpdate> updates;
  for (size_t i = 0; i < py::len(clients); ++i) {
    py::tuple c = clients[i].cast<py::tuple>();
    if (c.size() != 5) throw InvalidArgument("aggregate: each client is (id, samples, soft, values, masks)");
    soft::ClientUpdate u;
    u.id = py::str(c[0]).cast<std::string>();
    u.samples = c[1].cast<double>();
    u.soft = c[2].cast<bool>();
    py::list values = c[3].cast<py::list>();
    py::list masks = c[4].cast<py::list>();
    const std::string who = "client '" + u.id + "' (index " + std::to_string(i) + ")";
    if (py::len(values) != nt || py::len(masks) != nt)
      throw InvalidArgument("aggregate: " + who + " must give one value and one mask entry (or None) per tensor");
    for (size_t t = 0; t < nt; ++t) {
      const std::string where = who + ", tensor '" + names[t] + "'";
      u.values.push_back(values[t].is_none() ? nullptr : float_buffer(values[t], "values of " + where, globals[t]));
      u.masks.push_back(masks[t].is_none() ? nullptr : mask_buffer(masks[t], "mask of " + where, globals[t]));
    }
    updates.push_back(std::move(u));
  }
  soft::AggregateOptions options;
  options.soft_factor = soft_factor;
  options.threads = threads;
  soft::AggregateStats stats;
  {
    py::gil_scoped_release release;  // the arrays stay alive: the caller's lists hold them
    stats = soft::aggregate(slots, updates, options);
  }
  py::dict d;
  d["elements"] = stats.elements;
  d["untouched"] = stats.untouched;
  d["bytes_moved"] = stats.bytes_moved;
  d["seconds"] = stats.seconds;
  return d;
}

}  // namespace

void bind_soft(py::module_& m);

void bind_soft(py::module_& m) {
  py::module_ s = m.def_submodule("soft", "Soft-training aggregation (C++ core; see bricklab.soft)");
  s.def("aggregate", &aggregate_py, py::arg("names"), py::arg("global_values"), py::arg("out"), py::arg("clients"),
        py::arg("soft_factor") = 1.0, py::arg("threads") = 0,
        "Masked weighted average in place into `out` (float32 arrays, borrowed). clients: list of "
        "(id, samples, soft, values, masks) with one array or None per tensor. Returns statistics.");
}
