// Machine load during a measurement (see machine_load.hpp).
#include "bricklab/core/machine_load.hpp"

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "bricklab/core/threads.hpp"

namespace bricklab {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string percent(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * f);
  return buf;
}

std::vector<std::string> own_schedstats() {
  std::vector<std::string> out;
  DIR* d = opendir("/proc/self/task");
  if (!d) return out;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string text = slurp(std::string("/proc/self/task/") + e->d_name + "/schedstat");
    if (!text.empty()) out.push_back(std::move(text));
  }
  closedir(d);
  return out;
}

}  // namespace

LoadReading parse_load_reading(const std::string& pressure_cpu, const std::string& proc_stat,
                               const std::vector<std::string>& schedstats, double t_s) {
  LoadReading r;
  r.t_s = t_s;
  for (const auto& text : schedstats) {  // "<on-cpu ns> <run-queue wait ns> <timeslices>"
    std::istringstream in(text);
    int64_t on_cpu = 0, wait = 0;
    if (in >> on_cpu >> wait && wait >= 0) r.wait_ns = std::max<int64_t>(r.wait_ns, 0) + wait;
  }
  {
    std::istringstream in(pressure_cpu);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("some ", 0) != 0) continue;
      try {
        if (const auto p = line.find("avg10="); p != std::string::npos) r.psi_some_avg10 = std::stod(line.substr(p + 6)) / 100;
        if (const auto p = line.find("total="); p != std::string::npos) r.psi_some_us = std::stoll(line.substr(p + 6));
      } catch (const std::exception&) {
        r.psi_some_us = -1, r.psi_some_avg10 = -1;
      }
    }
  }
  std::istringstream in(proc_stat);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name;
    fields >> name;
    if (name == "cpu") {  // user nice system idle iowait irq softirq steal guest guest_nice
      int64_t v = 0, total = 0, steal = -1;
      for (int i = 0; i < 8 && fields >> v; ++i) {
        total += v;
        if (i == 7) steal = v;
      }
      if (steal >= 0) r.cpu_ticks = total, r.steal_ticks = steal;
    } else if (name == "procs_running") {
      int v = -1;
      if (fields >> v) r.procs_running = v;
    }
  }
  return r;
}

LoadReading read_load() {
  return parse_load_reading(slurp("/proc/pressure/cpu"), slurp("/proc/stat"), own_schedstats(), now_s());
}

MachineLoad load_between(const LoadReading& a, const LoadReading& b, int threads, int cpus) {
  MachineLoad m;
  threads = std::max(threads, 1);
  const double wall = b.t_s - a.t_s;
  if (wall > 0 && a.wait_ns >= 0 && b.wait_ns >= 0)  // threads that ended meanwhile take their wait along: clamp
    m.cpu_wait = std::clamp(double(b.wait_ns - a.wait_ns) * 1e-9 / (wall * threads), 0.0, 1.0);
  if (wall >= 2.5 && a.psi_some_us >= 0 && b.psi_some_us >= a.psi_some_us)
    m.cpu_pressure = std::min(1.0, double(b.psi_some_us - a.psi_some_us) * 1e-6 / wall);
  else if (b.psi_some_avg10 >= 0)
    m.cpu_pressure = std::min(1.0, b.psi_some_avg10);
  if (a.cpu_ticks >= 0 && b.cpu_ticks - a.cpu_ticks >= 50 && b.steal_ticks >= a.steal_ticks)
    m.steal = double(b.steal_ticks - a.steal_ticks) / double(b.cpu_ticks - a.cpu_ticks);
  if (a.procs_running >= 0 && b.procs_running >= 0)  // the reader is one of this measurement's threads
    m.others = std::max(0.0, (a.procs_running + b.procs_running) / 2.0 - threads);
  const double waited_s = a.wait_ns >= 0 && b.wait_ns >= a.wait_ns ? double(b.wait_ns - a.wait_ns) * 1e-9 : 0;
  if (m.cpu_wait > kBusyWait && waited_s >= kBusyWaitMinS) m.why = "its threads waited " + percent(m.cpu_wait) + " of the time for a CPU";
  else if (m.steal > kBusySteal) m.why = "the hypervisor stole " + percent(m.steal) + " of the CPU time";
  else if (m.cpu_wait < 0 && m.cpu_pressure > kBusyPressure) m.why = "CPU pressure " + percent(m.cpu_pressure);
  else if (m.cpu_wait < 0 && m.others + threads >= cpus + 1)
    m.why = std::to_string(int(m.others + 0.5)) + " other runnable tasks on " + std::to_string(cpus) + " CPUs";
  m.busy = !m.why.empty();
  return m;
}

LoadMeter::LoadMeter(int threads) : start_(read_load()), threads_(threads) {}

MachineLoad LoadMeter::stop() const { return load_between(start_, read_load(), threads_, usable_cpus()); }

std::string describe(const MachineLoad& load) {
  std::string s;
  auto add = [&](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (load.cpu_wait >= 0) add("waited " + percent(load.cpu_wait));
  if (load.cpu_pressure >= 0) add("CPU pressure " + percent(load.cpu_pressure));
  if (load.steal >= 0) add("steal " + percent(load.steal));
  if (load.others >= 0) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.1f other runnable", load.others);
    add(buf);
  }
  return s.empty() ? "machine load unknown" : s;
}

}  // namespace bricklab
