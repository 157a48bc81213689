// Importing ONNX models into bricklab::Graph (libonnx parsing, checks and shape inference).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "bricklab/graph/graph.hpp"

namespace bricklab {

struct LoadOptions {
  // Batch size bound to the leading dimension of every runtime input whose leading dimension is
  // symbolic or unknown. 0 means "not given": such dimensions default to 1.
  int64_t batch = 0;
  // Other symbolic dimensions, by name (ONNX dim_param), e.g. {"seq", 128}.
  std::map<std::string, int64_t> dims;
  // Largest file accepted (protobuf cannot parse models of 2 GiB or more).
  int64_t max_file_bytes = (int64_t(1) << 31) - 1;
};

// Loads an ONNX file (opsets 7..17 of the default domain). Weights may be initializers,
// Constant / ConstantOfShape nodes, external data files inside the model's folder, or stripped
// (no values; see docs/model-format.md). Every value ends with a concrete shape.
// Throws FileError, ModelFormatError, UnsupportedError, ShapeError or ExternalDataError.
Graph load_onnx(const std::string& path, const LoadOptions& options = {});

// Same from serialized bytes; `model_dir` resolves external data ("" forbids external data),
// `label` names the model in error messages.
Graph load_onnx_bytes(const std::string& bytes, const LoadOptions& options = {}, const std::string& model_dir = "",
                      const std::string& label = "<memory>");

// Supported default-domain opset range.
constexpr int kMinOpset = 7;
constexpr int kMaxOpset = 17;
// Newest IR version of any ONNX release (ONNX 1.16-1.17 write 10; 1.18 writes 11).
constexpr int kMaxIrVersion = 11;

}  // namespace bricklab
