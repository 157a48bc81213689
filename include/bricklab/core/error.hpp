// Typed exceptions for everything that can go wrong with user input. Every message names the
// file, the node and operator where known, and the problem, so a user can act on it.
#pragma once

#include <stdexcept>
#include <string>

namespace bricklab {

// Where an error happened; each field is optional.
struct ErrorContext {
  std::string file;  // model file (or external-data file)
  std::string node;  // node name
  std::string op;    // operator type
};

// Base of all bricklab errors (Python: bricklab.Error, a RuntimeError).
class Error : public std::runtime_error {
 public:
  Error(const ErrorContext& where, const std::string& problem)
      : std::runtime_error(format(where, problem)), where_(where), problem_(problem) {}
  explicit Error(const std::string& problem) : Error(ErrorContext{}, problem) {}

  const ErrorContext& where() const noexcept { return where_; }
  const std::string& problem() const noexcept { return problem_; }

  static std::string format(const ErrorContext& where, const std::string& problem) {
    std::string msg;
    if (!where.file.empty()) msg += where.file + ": ";
    if (!where.node.empty() || !where.op.empty()) {
      msg += "node '" + where.node + "'";
      if (!where.op.empty()) msg += " (" + where.op + ")";
      msg += ": ";
    }
    return msg + problem;
  }

 private:
  ErrorContext where_;
  std::string problem_;
};

// The file is missing or unreadable (Python: bricklab.FileError, also an OSError).
class FileError : public Error { using Error::Error; };
// The file does not exist (Python: bricklab.MissingFileError, also a FileNotFoundError).
class MissingFileError : public FileError { using FileError::FileError; };
// The bytes are not a valid ONNX model: not protobuf, truncated, corrupt, structurally invalid.
class ModelFormatError : public Error { using Error::Error; };
// Valid ONNX that bricklab does not support: operator, domain, opset, data type.
class UnsupportedError : public Error { using Error::Error; };
// Shapes that are inconsistent, unknown or not set (e.g. a symbolic dim the caller did not bind).
class ShapeError : public Error { using Error::Error; };
// External tensor data that is missing, out of range, or points outside the model's folder.
class ExternalDataError : public Error { using Error::Error; };
// A bad argument from the caller (Python: ValueError).
class InvalidArgument : public Error { using Error::Error; };

}  // namespace bricklab
