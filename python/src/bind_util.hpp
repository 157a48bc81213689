// Helpers shared by the binding files.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "bricklab/graph/graph.hpp"

namespace bricklab::pybind {

// A path argument: str, bytes or any os.PathLike (pathlib.Path, ...), as os.fspath takes it;
// anything else is a TypeError naming the argument.
inline std::string fspath(const pybind11::handle& obj, const char* what) {
  namespace py = pybind11;
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  PyObject* p = PyOS_FSPath(obj.ptr());
  if (!p) {
    PyErr_Clear();
    throw py::type_error(std::string(what) + " must be a str or os.PathLike, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  py::object path = py::reinterpret_steal<py::object>(p);
  if (py::isinstance<py::bytes>(path)) return path.cast<std::string>();
  return path.cast<std::string>();
}

// pybind11 turns None into an empty shared_ptr: every function taking a model checks it first.
inline const Graph& require_model(const std::shared_ptr<Graph>& g, const char* function) {
  if (!g) throw pybind11::type_error(std::string(function) + "(): model must be a bricklab.Model, got None");
  return *g;
}

}  // namespace bricklab::pybind
