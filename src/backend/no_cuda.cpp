// Stand-in for the CUDA backend when bricklab is built without it (BRICKLAB_WITH_CUDA=OFF).
#include "bricklab/backend/devices.hpp"

namespace bricklab::cuda {

BackendInfo describe() {
  BackendInfo info;
  info.name = "cuda";
  info.reason = "built without the CUDA backend (BRICKLAB_WITH_CUDA=OFF or CUDA/cuDNN not found at configure time)";
  return info;
}

bool is_available() { return false; }
std::string unavailable_reason() { return describe().reason; }

}  // namespace bricklab::cuda
