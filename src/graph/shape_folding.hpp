// Constant folding of shape computations (Shape -> Gather -> Concat -> Reshape chains and the
// like) on an ONNX model whose input dims are bound. ONNX 1.12's own data propagation misses many
// of these, which would leave Reshape/Resize/Expand outputs without shapes. Private to src/.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>

namespace bricklab::detail {

// Replaces every node computable from known shapes and small constants by an initializer.
// `opset` is the default-domain opset. Returns the number of nodes folded.
int fold_shape_computations(onnx::ModelProto& model, int opset);

}  // namespace bricklab::detail
