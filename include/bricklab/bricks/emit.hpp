// Writing bricks as standalone ONNX models (DLBricks' framework-agnostic benchmarks): the
// brick's nodes with their attributes, activations as graph inputs, weights as initializers
// (their values when the model has them, deterministic random values of the right shape when
// the model is stripped), the model's opset and IR version.
#pragma once

#include <cstdint>
#include <string>

#include "bricklab/bricks/decompose.hpp"
#include "bricklab/graph/graph.hpp"

namespace bricklab::bricks {

// Serialized ONNX ModelProto of a graph (typically extract_subgraph of a brick).
std::string to_onnx_bytes(const Graph& graph, uint64_t weight_seed = 0);
// Writes to_onnx_bytes to `path` (throws FileError when it cannot be written).
void write_onnx(const Graph& graph, const std::string& path, uint64_t weight_seed = 0);

// About how many bytes emitting every brick of `d` writes: each brick's weights and constants
// (random values of the right shape where the model is stripped) plus a small per-file overhead.
// The CLI says this before writing and refuses above a limit unless forced.
double emit_size_estimate(const Decomposition& d);

}  // namespace bricklab::bricks
