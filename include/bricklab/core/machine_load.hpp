// How busy the machine was while something was measured: the quality fields every stored
// measurement carries (docs/measurement-quality.md).
//
// A LoadMeter reads the kernel's counters when started and when stopped:
//   cpu_wait      time this process's threads spent runnable but waiting for a CPU, as a fraction
//                 of the interval x the measurement's threads (/proc/self/task/*/schedstat: exact,
//                 updated at every context switch); -1 where the kernel has no schedstat
//   cpu_pressure  fraction of the interval in which some task on the machine waited for a CPU
//                 (/proc/pressure/cpu "some", Linux PSI; its totals move every 2 s, so shorter
//                 intervals read the 10-second average instead); -1 without PSI
//   steal         fraction of CPU time the hypervisor gave to other guests (/proc/stat; -1 when
//                 the interval is under half a second of ticks)
//   others        runnable tasks beyond this measurement's own threads (/proc/stat procs_running,
//                 mean of the two readings)
// busy: the measurement's own threads waited (cpu_wait above kBusyWait, and kBusyWaitMinS in
// all), or, where schedstat is
// missing, PSI above kBusyPressure or other runnable tasks wanting the cores it uses; or steal
// above kBusySteal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bricklab {

inline constexpr double kBusyWait = 0.05;      // 5% of the threads' time spent waiting for a CPU,
inline constexpr double kBusyWaitMinS = 0.002; // and at least 2 ms in all (a thread's wake-up is not contention)
inline constexpr double kBusyPressure = 0.05;  // 5% of the wall time some task waited
inline constexpr double kBusySteal = 0.05;

struct MachineLoad {
  double cpu_wait = -1, cpu_pressure = -1, steal = -1, others = -1;
  bool busy = false;
  std::string why;  // what made it busy ("the threads waited 31% of the time for a CPU", ...), empty when quiet
};

// One reading of the counters (parsed from the /proc texts; exposed for tests).
struct LoadReading {
  double t_s = 0;                   // steady clock
  int64_t wait_ns = -1;             // sum over this process's threads of schedstat's run-queue wait
  int64_t psi_some_us = -1;         // /proc/pressure/cpu some total; -1 without PSI
  double psi_some_avg10 = -1;       // its 10-second average, as a fraction
  int64_t cpu_ticks = -1, steal_ticks = -1;
  int procs_running = -1;
};
// `schedstats`: the texts of /proc/self/task/*/schedstat.
LoadReading parse_load_reading(const std::string& pressure_cpu, const std::string& proc_stat,
                               const std::vector<std::string>& schedstats, double t_s);
LoadReading read_load();
// The load between two readings, for a measurement running `threads` threads on a process
// allowed `cpus` CPUs.
MachineLoad load_between(const LoadReading& a, const LoadReading& b, int threads, int cpus);

class LoadMeter {
 public:
  explicit LoadMeter(int threads);
  MachineLoad stop() const;

 private:
  LoadReading start_;
  int threads_;
};

// A short description: "waited 0.1%, CPU pressure 0.4%, steal 0.0%, 0.0 other runnable" (unknowns left out).
std::string describe(const MachineLoad& load);

}  // namespace bricklab
