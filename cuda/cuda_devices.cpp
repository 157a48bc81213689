// CUDA backend: device discovery through the CUDA runtime, cuDNN and cuBLAS. Compiled only when
// BRICKLAB_WITH_CUDA is on; public headers never see these includes.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <filesystem>
#include <system_error>

#include "bricklab/backend/devices.hpp"

namespace bricklab::cuda {

BackendInfo describe() {
  BackendInfo info;
  info.name = "cuda";
  info.compiled = true;
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  const size_t dnn = cudnnGetVersion();
  info.library = "CUDA runtime " + std::to_string(runtime / 1000) + "." + std::to_string((runtime % 1000) / 10) +
                 ", cuDNN " + std::to_string(dnn / 10000) + "." + std::to_string((dnn % 10000) / 100) + "." +
                 std::to_string(dnn % 100);
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    // No driver (no /dev/nvidiactl) is the usual case on a machine without a GPU: say so plainly
    // instead of the runtime's "driver version is insufficient".
    std::error_code ec;
    const bool driver = std::filesystem::exists("/dev/nvidiactl", ec);
    if (!driver && (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice || count == 0))
      info.reason = "no NVIDIA GPU found (no NVIDIA driver: /dev/nvidiactl is absent)";
    else if (err != cudaSuccess)
      info.reason = std::string("no usable NVIDIA GPU: ") + cudaGetErrorString(err);
    else
      info.reason = "no NVIDIA GPU found (the driver reports none)";
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    info.reason = "cannot query GPU 0";
    return info;
  }
  info.device = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
                std::to_string(prop.totalGlobalMem >> 20) + " MiB)";
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    info.reason = "cuBLAS could not be initialised";
    return info;
  }
  int blas = 0;
  cublasGetVersion(handle, &blas);
  cublasDestroy(handle);
  info.library += ", cuBLAS " + std::to_string(blas / 10000) + "." + std::to_string((blas % 10000) / 100);
  info.available = true;
  return info;
}

bool is_available() { return describe().available; }
std::string unavailable_reason() { return describe().reason; }

}  // namespace bricklab::cuda
