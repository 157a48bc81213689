// How many threads bricklab uses: one rule for every command, the Python API and every module.
//
// The default (a requested count of 0) is the number of CPUs this process may actually use: its
// CPU affinity mask (taskset, cpusets), capped by its cgroup's CPU quota (a container given
// 1.5 CPUs gets 2). A requested count must be between 1 and kMaxThreadsPerCpu x the machine's
// CPUs; anything else is an InvalidArgument naming the option, not a silent oversubscription.
#pragma once

#include <string>

namespace bricklab {

inline constexpr int kMaxThreadsPerCpu = 4;

// The CPUs this process may run on (affinity mask, then the cgroup v2 cpu.max or v1
// cpu.cfs_quota_us / cpu.cfs_period_us quota, rounded up), at least 1. Read once.
int usable_cpus();

// The largest thread count accepted: kMaxThreadsPerCpu x the machine's online CPUs.
int max_threads();

// The thread rule: 0 gives usable_cpus(); 1..max_threads() is taken as given; a negative count
// or one above max_threads() throws InvalidArgument naming `what` (e.g. "--threads").
int resolve_threads(int requested, const std::string& what = "threads");

}  // namespace bricklab
