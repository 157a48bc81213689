// Which backends this build has and what this machine offers; used by `bricklab info`.
#include "bricklab/backend/devices.hpp"

#include <fstream>
#include <thread>

#ifdef BRICKLAB_WITH_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace bricklab {

namespace cuda {
BackendInfo describe();  // cuda/cuda_devices.cpp or src/backend/no_cuda.cpp
}

namespace {
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown CPU";
}
}  // namespace

std::vector<BackendInfo> backends() {
  BackendInfo cpu;
  cpu.name = "cpu";
  cpu.device = cpu_model() + " (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
#ifdef BRICKLAB_WITH_DNNL
  const dnnl_version_t* v = dnnl_version();
  cpu.compiled = true;
  cpu.available = true;
  cpu.library = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
#else
  cpu.reason = "built without oneDNN (BRICKLAB_WITH_DNNL=OFF)";
#endif
  return {cpu, cuda::describe()};
}

}  // namespace bricklab
