// The brick benchmark runner (see runner.hpp): stopping rule on the median's confidence
// interval, cache eviction, thread pinning, system fingerprint.
#include "bricklab/core/threads.hpp"
#include "bricklab/bricks/runner.hpp"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <set>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "bricklab/backend/devices.hpp"
#include "bricklab/bricks/decompose.hpp"
#include "bricklab/core/version.hpp"
#include "bricklab/core/machine_load.hpp"

namespace bricklab::bricks {

namespace {
using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * double(sorted.size() - 1);
  const size_t lo = size_t(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
}
}  // namespace

void summarise(Measurement& m) {
  std::vector<double> s = m.samples_ms;
  std::sort(s.begin(), s.end());
  m.reps = int(s.size());
  if (s.empty()) return;
  m.median_ms = quantile(s, 0.5);
  m.p10_ms = quantile(s, 0.1);
  m.p90_ms = quantile(s, 0.9);
  double sum = 0;
  for (double x : s) sum += x;
  m.mean_ms = sum / double(s.size());
  double var = 0;
  for (double x : s) var += (x - m.mean_ms) * (x - m.mean_ms);
  var = s.size() > 1 ? var / double(s.size() - 1) : 0;
  m.cv = m.mean_ms > 0 ? std::sqrt(var) / m.mean_ms : 0;
  median_ci(s, m.ci_low_ms, m.ci_high_ms);
  m.ci_rel = m.median_ms > 0 ? (m.ci_high_ms - m.ci_low_ms) / 2 / m.median_ms : 0;
}

void median_ci(const std::vector<double>& sorted, double& low, double& high) {
  // Ranks j, k with P(x_(j) <= median <= x_(k)) ~ 95% (binomial(n, 1/2), normal approximation).
  const double n = double(sorted.size());
  if (sorted.empty()) {
    low = high = 0;
    return;
  }
  const double half = 1.96 * std::sqrt(n) / 2;
  long j = long(std::floor(n / 2 - half));      // 1-based
  long k = long(std::ceil(1 + n / 2 + half));   // 1-based
  j = std::clamp(j, 1L, long(n));
  k = std::clamp(k, 1L, long(n));
  low = sorted[size_t(j - 1)];
  high = sorted[size_t(k - 1)];
}

bool is_noisy(const Measurement& m) {
  const double spread = m.median_ms > 0 ? (m.p90_ms - m.p10_ms) / m.median_ms : 0;
  return m.load.busy || (!m.converged && spread > kNoisySpread);
}

namespace {

// One measurement under the stopping rule (no load accounting).
Measurement measure_once(const std::function<double()>& sample, const RunnerOptions& o, const std::function<void()>& before) {
  Measurement m;
  for (int i = 0; i < o.warmup; ++i) {
    if (before) before();
    sample();
  }
  const auto t_reps = clock_type::now();
  std::vector<double> sorted;
  while (true) {
    if (before) before();
    const double x = sample();
    m.samples_ms.push_back(x);
    sorted.insert(std::upper_bound(sorted.begin(), sorted.end(), x), x);
    const int n = int(sorted.size());
    if (n >= o.min_reps) {
      double lo = 0, hi = 0;
      median_ci(sorted, lo, hi);
      const double med = quantile(sorted, 0.5);
      if (med <= 0 || (hi - lo) / 2 <= o.tolerance * med) {
        m.converged = true;
        break;
      }
    }
    if (n >= o.max_reps) break;
    if (n >= 3 && seconds_since(t_reps) > o.budget_s) break;
  }
  summarise(m);
  return m;
}

// Waits (up to `max_s`) until, over half a second, the other runnable tasks (procs_running,
// sampled every 100 ms, less this thread) leave `threads` CPUs free.
void wait_for_quiet(int threads, double max_s) {
  const auto t0 = clock_type::now();
  const int cpus = usable_cpus();
  while (seconds_since(t0) < max_s) {
    double others = 0;
    for (int i = 0; i < 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      others += std::max(0, read_load().procs_running - 1) / 5.0;
    }
    if (others + threads < cpus + 0.5) return;
  }
}

}  // namespace

Measurement measure(const std::function<double()>& sample, const RunnerOptions& o, const std::function<void()>& before) {
  if (o.tolerance <= 0) throw InvalidArgument("runner: tolerance must be > 0");
  if (o.min_reps < 1 || o.max_reps < o.min_reps) throw InvalidArgument("runner: need 1 <= min_reps <= max_reps");
  if (o.busy_retries < 0 || o.busy_retries > 100) throw InvalidArgument("runner: busy_retries must be in 0..100");
  if (!(o.busy_wait_s >= 0) || o.busy_wait_s > 3600) throw InvalidArgument("runner: busy_wait_s must be in 0..3600");
  const int threads = o.backend == "cpu" ? resolve_threads(o.threads, "threads") : 1;
  const auto t0 = clock_type::now();
  Measurement m;
  for (int attempt = 0;; ++attempt) {
    const LoadMeter meter(threads);
    m = measure_once(sample, o, before);
    m.load = meter.stop();
    m.attempts = attempt + 1;
    // Busy: wait for the machine to quiet down and measure again; one that stays busy is marked.
    if (!m.load.busy || attempt >= o.busy_retries) break;
    if (o.busy_wait_s > 0) wait_for_quiet(threads, o.busy_wait_s);
  }
  m.noisy = is_noisy(m);
  m.wall_s = seconds_since(t0);
  return m;
}

void flush_caches() {
  static std::vector<char> buffer;
  if (buffer.empty()) {
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0) llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
    const size_t size = std::max<size_t>(size_t(std::max(llc, 0L)) * 4, size_t(64) << 20);
    buffer.assign(size, 1);
  }
  volatile char sink = 0;
  char acc = 0;
  for (size_t i = 0; i < buffer.size(); i += 64) {
    buffer[i] = char(buffer[i] + 1);
    acc = char(acc + buffer[i]);
  }
  sink = acc;
  (void)sink;
}

void evict_lines(const std::vector<std::pair<const void*, size_t>>& ranges) {
#if defined(__x86_64__) || defined(__i386__)
  for (const auto& [data, bytes] : ranges) {
    const auto* p = static_cast<const char*>(data);
    for (size_t i = 0; i < bytes; i += 64) _mm_clflush(p + i);
    if (bytes) _mm_clflush(p + bytes - 1);
  }
  _mm_mfence();
#else
  (void)ranges;
#endif
}

size_t private_cache_bytes() {
  long bytes = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
  bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  if (bytes <= 0) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index2/size");
    std::string text;
    if (f >> text && !text.empty()) {
      char* end = nullptr;
      const long v = std::strtol(text.c_str(), &end, 10);
      const char unit = end ? *end : '\0';
      bytes = unit == 'K' ? v << 10 : unit == 'M' ? v << 20 : v;
    }
  }
  return bytes > 0 ? size_t(bytes) : size_t(1) << 20;
}

int64_t output_eviction_threshold(const RunnerOptions& o) {
  if (o.cold_weights || o.evict_outputs_bytes == 0) return 0;
  return o.evict_outputs_bytes < 0 ? int64_t(private_cache_bytes()) : o.evict_outputs_bytes;
}

std::vector<std::pair<const void*, size_t>> eviction_ranges(const Executable& exe, const RunnerOptions& o) {
  std::vector<std::pair<const void*, size_t>> out;
  if (o.cold_weights) return out;
  if (o.evict_weights) out = exe.weight_buffers();
  if (const int64_t min_bytes = output_eviction_threshold(o))
    for (const auto& range : exe.output_buffers())
      if (int64_t(range.second) >= min_bytes) out.push_back(range);
  return out;
}

void pin_threads(int threads) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = resolve_threads(threads, "threads");
#pragma omp parallel num_threads(threads)
  {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(omp_get_thread_num() % cores, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
}

CompileOptions compile_options(const RunnerOptions& o) {
  CompileOptions c;
  c.threads = o.threads;
  c.fusion = o.fusion;
  c.profile_cpu_time = o.cpu_clock;
  c.variants = o.variants;
  c.branch_workers = o.branch_workers;
  c.adopt_input_layout = false;  // bricks and models alike: a model's own input rarely feeds such a conv
  return c;
}

namespace {
struct Prepared {
  std::unique_ptr<Executable> exe;
  std::map<std::string, Tensor> inputs;
  double compile_s = 0;
};
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

// `unused`: nodes whose steps will never run (a brick's context): their stripped weights need
// no stand-in values, and graph inputs read only by them are left zero.
Prepared prepare(const Graph& g, const RunnerOptions& o, bool reuse_buffers = true, const std::set<std::string>& unused = {}) {
  if (o.cpu_clock && o.threads != 1)
    throw InvalidArgument("the CPU clock measures one thread: use it with threads = 1 (got " + std::to_string(o.threads) + ")");
  const auto t0 = clock_type::now();
  Prepared p;
  if (o.pin) pin_threads(o.threads);
  CompileOptions c = compile_options(o);
  c.reuse_buffers = reuse_buffers;
  c.placeholder_nodes = unused;
  p.exe = get_backend(o.backend).compile(g, c);
  std::set<std::string> context_only;  // graph inputs that only unused nodes read
  for (int v : g.inputs) {
    const Value& val = g.values[size_t(v)];
    bool read = unused.empty();
    for (int c : val.consumers) read = read || !unused.count(g.nodes[size_t(c)].name);
    if (!read) context_only.insert(val.name);
  }
  p.inputs = random_inputs(g, 0, context_only);
  p.compile_s = seconds_since(t0);
  return p;
}
}  // namespace

BrickTiming time_brick(const Graph& g, const RunnerOptions& o, const std::set<std::string>& own_nodes,
                       const std::set<std::string>& known_reorders) {
  std::set<std::string> own = own_nodes;
  if (own.empty())
    for (const auto& n : g.nodes) own.insert(n.name);
  // The context (the units producing the brick's inputs) never runs: its steps are compiled so
  // that the values it hands the brick have the model's layouts, and those values are filled
  // with stand-in data. A repetition costs only the brick, whose inputs are still hot from its
  // previous repetition, as in the model where they were just written.
  std::set<std::string> context;
  for (const auto& n : g.nodes)
    if (!own.count(n.name)) context.insert(n.name);
  // Every value has its own buffer, so that left-out steps' outputs stay intact.
  Prepared p = prepare(g, o, false, context);
  std::set<std::string> outputs;
  for (int v : g.outputs) outputs.insert(g.values[size_t(v)].name);
  // The plan's reorders ("value@why"), each classified once: inside the brick (its time is the
  // brick's), recorded as a reorder brick under its layouts (at the brick's boundary: from its
  // input, or its output made plain; or between its context and it, the very conversion the
  // model does there), or neither (inside the context). A brick output's conversion to plain
  // whose key is in `known_reorders` (measured already, with another brick) is left out like the
  // context: the model does not do it there. Input-side conversions always run (the model does
  // them right before the brick, and they shape the cache state the brick starts in).
  struct PlanReorder {
    Reorder r;
    bool inside = false, recorded = false;
  };
  std::map<std::string, PlanReorder> plan;
  std::set<std::string> skip = context;
  for (auto& r : plan_reorders(g, p.exe->plan())) {
    const Value& val = g.values[size_t(g.find_value(r.value))];
    const bool from_input = val.kind == ValueKind::input;
    const bool from_own = val.producer >= 0 && own.count(g.nodes[size_t(val.producer)].name);
    bool to_own = false;
    for (int c : val.consumers) to_own = to_own || own.count(g.nodes[size_t(c)].name);
    PlanReorder pr{r};
    pr.inside = from_own && !(outputs.count(val.name) && r.why == "plain");
    pr.recorded = !pr.inside && (from_input || from_own || to_own);
    const std::string step = r.value + "@" + r.why;
    if (pr.recorded && known_reorders.count(r.key) && outputs.count(val.name) && r.why == "plain") skip.insert(step);
    plan.emplace(step, std::move(pr));
  }
  RunnerOptions timed = o;
  if (!skip.empty()) {
    const auto t0 = clock_type::now();
    bool filled = p.exe->skip_steps(skip) && p.exe->fill_skipped_outputs(0);
    if (!filled && skip.size() > context.size()) {  // run the known reorders after all
      for (auto it = skip.begin(); it != skip.end();) it = context.count(*it) ? std::next(it) : skip.erase(it);
      filled = p.exe->skip_steps(skip) && p.exe->fill_skipped_outputs(0);
    }
    if (!filled && !context.empty()) {
      // The backend cannot leave the context out and fill its outputs: the context runs once
      // (and the brick with it: that run is the first warm-up run), then is left out if it can be.
      // It computes from zero inputs (and zero weights where the backend took the placeholders):
      // ordinary numbers, which is all a timing needs.
      p.exe->skip_steps({});
      p.exe->run(p.inputs);
      p.exe->skip_steps(context);
      timed.warmup = std::max(0, o.warmup - 1);
    }
    p.compile_s += seconds_since(t0);
  }
  BrickTiming result;
  std::map<std::string, std::vector<double>> reorder_samples;
  auto sample = [&]() {
    const auto steps = p.exe->run_profiled(p.inputs);
    double mine = 0;
    std::map<std::string, double> reorders;
    for (const auto& s : steps) {
      if (s.kind == "reorder" && !s.nodes.empty()) {
        auto it = plan.find(s.nodes[0]);
        if (it == plan.end()) continue;
        if (it->second.inside) mine += s.ms;
        else if (it->second.recorded) {
          reorders[it->second.r.key] += s.ms;
          result.reorder_bytes[it->second.r.key] = it->second.r.bytes;
        }
        continue;
      }
      bool is_own = false;
      for (const auto& n : s.nodes) is_own = is_own || own.count(n);
      if (is_own) mine += s.ms;
    }
    for (const auto& [k, ms] : reorders) reorder_samples[k].push_back(ms);
    return mine;
  };
  std::function<void()> before;
  const auto evict = eviction_ranges(*p.exe, o);
  if (o.cold_weights) before = flush_caches;
  else if (!evict.empty()) before = [&evict] { evict_lines(evict); };
  result.steps = measure(sample, timed, before);
  result.steps.wall_s += p.compile_s;
  for (auto& [k, samples] : reorder_samples) {
    Measurement m;
    // Warm-up runs also recorded samples: keep the timed ones only.
    if (samples.size() > size_t(result.steps.reps)) samples.erase(samples.begin(), samples.end() - result.steps.reps);
    m.samples_ms = samples;
    summarise(m);
    m.converged = result.steps.converged;
    result.reorders[k] = m;
  }
  return result;
}

Measurement time_whole(const Graph& g, const RunnerOptions& o) {
  Prepared p = prepare(g, o);
  auto sample = [&]() {
    if (o.cpu_clock) {
      const double t0 = thread_cpu_ms();
      p.exe->run(p.inputs);
      return thread_cpu_ms() - t0;
    }
    const auto t0 = clock_type::now();
    p.exe->run(p.inputs);
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  };
  std::function<void()> before;
  if (o.cold_weights) before = flush_caches;
  Measurement m = measure(sample, o, before);
  m.wall_s += p.compile_s;
  return m;
}

namespace {
std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}
}  // namespace

std::string Fingerprint::json() const {
  return "{\"backend\":\"" + json_escape(backend) + "\",\"bricklab\":\"" + json_escape(bricklab_version) +
         "\",\"cold_weights\":" + (cold_weights ? "true" : "false") + ",\"cores\":" + std::to_string(cores) +
         ",\"cpu\":\"" + json_escape(cpu_model) + "\"" + (evict_weights && !cold_weights ? ",\"evict_weights\":true" : "") +
         (evict_outputs_bytes > 0 ? ",\"evict_outputs\":" + std::to_string(evict_outputs_bytes) : "") + ",\"fusion\":" + (fusion ? "true" : "false") + (cpu_clock ? ",\"clock\":\"thread_cpu\"" : "") + ",\"isa\":\"" +
         json_escape(isa) + "\",\"onednn\":\"" + json_escape(onednn) + "\",\"pinned\":" + (pinned ? "true" : "false") +
         ",\"threads\":" + std::to_string(threads) + (label.empty() ? "" : ",\"label\":\"" + json_escape(label) + "\"") + "}";
}

std::string Fingerprint::id() const { return key_id(json()); }

Fingerprint system_fingerprint(const RunnerOptions& o) {
  Fingerprint f;
  f.cores = int(std::max(1u, std::thread::hardware_concurrency()));
  f.threads = resolve_threads(o.threads, "threads");
  f.pinned = o.pin;
  f.cold_weights = o.cold_weights;
  f.evict_weights = o.evict_weights;
  f.evict_outputs_bytes = output_eviction_threshold(o);
  f.fusion = o.fusion;
  f.cpu_clock = o.cpu_clock;
  f.backend = o.backend;
  f.bricklab_version = version();
  if (const char* label = std::getenv("BRICKLAB_FINGERPRINT_LABEL")) f.label = label;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(cpuinfo, line)) {
    if (f.cpu_model.empty() && line.rfind("model name", 0) == 0) f.cpu_model = line.substr(line.find(':') + 2);
    if (flags.empty() && line.rfind("flags", 0) == 0) flags = " " + line.substr(line.find(':') + 1) + " ";
  }
  for (const char* isa : {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"})
    if (flags.find(std::string(" ") + isa + " ") != std::string::npos) f.isa += (f.isa.empty() ? "" : ",") + std::string(isa);
  for (const auto& b : backends()) {
    if (b.name == "cpu") f.onednn = b.library;
    // GPU results carry the device and library versions too (the CPU is still recorded).
    if (b.name == "cuda" && o.backend == "cuda") f.onednn += "; " + b.library + "; " + b.device;
  }
  return f;
}

}  // namespace bricklab::bricks
