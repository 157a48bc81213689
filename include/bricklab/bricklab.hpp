// Umbrella header: everything a C++ user of bricklab needs.
#pragma once

#include "bricklab/core/dtype.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/core/version.hpp"
#include "bricklab/graph/graph.hpp"
#include "bricklab/graph/onnx_import.hpp"
#include "bricklab/graph/tensor.hpp"
#include "bricklab/ops/registry.hpp"
#include "bricklab/backend/devices.hpp"
#include "bricklab/engine/backend.hpp"
#include "bricklab/engine/tensor.hpp"
