// The thread rule (see threads.hpp): affinity mask and cgroup CPU quota.
#include "bricklab/core/threads.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "bricklab/core/error.hpp"

namespace bricklab {
namespace {

// The cgroup CPU quota in CPUs (quota / period), or 0 when there is none or it cannot be read.
double cgroup_cpu_quota() {
  // cgroup v2: "<quota> <period>" or "max <period>" in the process's own cgroup.
  std::string rel;
  {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("0::", 0) == 0) rel = line.substr(3);
  }
  for (const std::string& dir : {std::string("/sys/fs/cgroup") + rel, std::string("/sys/fs/cgroup")}) {
    std::ifstream in(dir + "/cpu.max");
    std::string quota;
    double period = 0;
    if (in >> quota >> period) {
      if (quota == "max" || period <= 0) return 0;
      try {
        return std::stod(quota) / period;
      } catch (...) {
        return 0;
      }
    }
  }
  // cgroup v1.
  std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (q >> quota && p >> period && quota > 0 && period > 0) return quota / period;
  return 0;
}

// Read once: sysconf reads /sys on every call, and the engine resolves its threads per run.
int online_cpus() {
  static const int cpus = [] {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? int(n) : 1;
  }();
  return cpus;
}

int compute_usable_cpus() {
  int cpus = online_cpus();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  if (const double quota = cgroup_cpu_quota(); quota > 0) cpus = std::min(cpus, std::max(1, int(std::ceil(quota - 1e-9))));
  return std::max(1, cpus);
}

}  // namespace

int usable_cpus() {
  static const int cpus = compute_usable_cpus();
  return cpus;
}

int max_threads() { return kMaxThreadsPerCpu * online_cpus(); }

int resolve_threads(int requested, const std::string& what) {
  if (requested == 0) return usable_cpus();
  if (requested < 0 || requested > max_threads())
    throw InvalidArgument(what + " is " + std::to_string(requested) + "; it must be 0 (the " + std::to_string(usable_cpus()) +
                          " CPUs this process may use) or between 1 and " + std::to_string(max_threads()) + " (" +
                          std::to_string(kMaxThreadsPerCpu) + " x the " + std::to_string(online_cpus()) + " CPUs of this machine)");
  return requested;
}

}  // namespace bricklab
