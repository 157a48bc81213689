// What compute backends this build has and what this machine offers (CPU via oneDNN, GPU via
// CUDA/cuDNN/cuBLAS). No CUDA or oneDNN header is included here: the GPU backend lives in cuda/.
#pragma once

#include <string>
#include <vector>

namespace bricklab {

struct BackendInfo {
  std::string name;        // "cpu" or "cuda"
  bool compiled = false;   // built into this library
  bool available = false;  // usable on this machine now
  std::string library;     // e.g. "oneDNN 2.6.3", "cuDNN 9.x / cuBLAS 13.x"
  std::string device;      // CPU model or GPU name
  std::string reason;      // why it is not available, when it is not
};

std::vector<BackendInfo> backends();

namespace cuda {
// True when the CUDA backend is compiled in and a GPU is present.
bool is_available();
// The reason the CUDA backend cannot be used, or "" when it can.
std::string unavailable_reason();
}  // namespace cuda

}  // namespace bricklab
