// The oneDNN CPU backend: plan building (lowering, layouts), static memory planning with buffer
// reuse by liveness, and execution with zero-copy inputs.
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>
#include <set>
#include <mutex>
#include <deque>
#include <condition_variable>
#include <ctime>
#include <sys/mman.h>

#include "bricklab/core/memory.hpp"
#include "bricklab/core/threads.hpp"
#include "cpu_internal.hpp"

namespace bricklab::cpu {

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

memory::data_type dnnl_type(DType t) {
  switch (t) {
    case DType::float32: return memory::data_type::f32;
    case DType::bfloat16: return memory::data_type::bf16;
    case DType::float16: return memory::data_type::f16;
    case DType::int32: return memory::data_type::s32;
    case DType::int8: return memory::data_type::s8;
    case DType::uint8:
    case DType::boolean: return memory::data_type::u8;
    default: return memory::data_type::undef;
  }
}

memory::desc plain_md(DType t, const Shape& shape) {
  // oneDNN has no 0-d tensors and no int64: such values are plain byte buffers of the same size.
  dims d = shape.empty() ? dims{1} : dims(shape.begin(), shape.end());
  for (auto& x : d)
    if (x == 0) x = 1;  // empty tensors still get a (tiny) buffer
  memory::data_type dt = dnnl_type(t);
  if (dt == memory::data_type::undef) {
    const int64_t es = dtype_size(t);
    dt = memory::data_type::u8;
    d.back() *= es;
  }
  dims strides(d.size(), 1);
  for (size_t i = d.size() - 1; i-- > 0;) strides[i] = strides[i + 1] * d[i + 1];
  return memory::desc(d, dt, strides);
}

PlanBuilder::PlanBuilder(const Graph& g, const CompileOptions& opts)
    : graph(g), options(opts), done_(g.nodes.size(), false) {}

int PlanBuilder::new_slot(const std::string& name, DType dtype, const Shape& shape, const memory::desc& md) {
  Slot s;
  s.name = name;
  s.dtype = dtype;
  s.shape = shape;
  s.md = md;
  s.blocked = md != plain_md(dtype, shape);
  slots.push_back(std::move(s));
  return int(slots.size()) - 1;
}

std::shared_ptr<void> zeroed_buffer(size_t bytes) {
  if (auto e = over_budget_bytes("a " + std::to_string(bytes) + "-byte buffer", bytes > size_t(INT64_MAX) ? -1 : int64_t(bytes)); !e.empty())
    throw ShapeError({"", "", ""}, e);
  constexpr size_t huge = size_t(2) << 20;
  if (bytes >= huge && !std::getenv("BRICKLAB_NO_HUGEPAGES")) {
    // Large buffers on 2 MiB pages where the kernel allows it (transparent huge pages, asked for
    // with madvise): fresh anonymous memory is zero.
    const size_t length = (bytes + huge - 1) / huge * huge + huge;
    void* map = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map != MAP_FAILED) {
      const uintptr_t start = (reinterpret_cast<uintptr_t>(map) + huge - 1) & ~uintptr_t(huge - 1);
      madvise(reinterpret_cast<void*>(start), length - (start - reinterpret_cast<uintptr_t>(map)), MADV_HUGEPAGE);
      return std::shared_ptr<void>(std::shared_ptr<void>(map, [length](void* q) { munmap(q, length); }),
                                   reinterpret_cast<void*>(start));
    }
  }
  void* raw = std::calloc(bytes + 64, 1);
  if (!raw) throw Error("out of memory allocating a " + std::to_string(bytes) + "-byte buffer");
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + 63) & ~uintptr_t(63));
  // The aliasing constructor: owns `raw`, points at `aligned`.
  return std::shared_ptr<void>(std::shared_ptr<void>(raw, [](void* q) { std::free(q); }), aligned);
}

bool PlanBuilder::placeholder(int value) const {
  if (options.placeholder_nodes.empty() || !is_constant(value)) return false;
  const Value& v = graph.values[size_t(value)];
  if (v.data->has_values() || v.consumers.empty()) return false;
  for (int c : v.consumers)
    if (!options.placeholder_nodes.count(graph.nodes[size_t(c)].name)) return false;
  return true;
}

std::vector<float> PlanBuilder::constant_floats(int value) {
  const Value& v = graph.values[size_t(value)];
  if (!v.data) throw Error("internal: value '" + v.name + "' is not a constant");
  if (v.data->has_values()) {
    std::vector<double> d = v.data->as_double();
    return std::vector<float>(d.begin(), d.end());
  }
  std::vector<float> out(size_t(std::max<int64_t>(v.numel(), 0)), 0.0f);
  fill_stripped(value, out.data());
  return out;
}

void PlanBuilder::fill_stripped(int value, float* dst) {
  random_weights = true;
  // Read only by steps that will never run: the zeros already there do.
  if (!placeholder(value)) fill_weight_values(graph, value, options.weight_seed, dst);
}

memory PlanBuilder::prepack(PrimitiveStep& step, int value, const memory::desc& from_md, const std::vector<float>& data,
                            const memory::desc& to_md) {
  step.own_buffers.push_back(zeroed_buffer(to_md.get_size()));
  memory dst(to_md, cpu_engine(), step.own_buffers.back().get());
  if (placeholder(value)) {  // zeros in the kernel's layout: no values, no reorder
    random_weights = true;
    return dst;
  }
  memory src(from_md, cpu_engine(), const_cast<float*>(data.data()));
  dnnl::stream s(cpu_engine());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  return dst;
}

namespace {
// Writes `count` copies of `value` in element type `t`; false for a type it does not know.
bool fill_constant(void* p, DType t, int64_t count, double value) {
  auto fill = [&](auto tag) {
    using T = decltype(tag);
    std::fill_n(static_cast<T*>(p), size_t(count), T(value));
    return true;
  };
  switch (t) {
    case DType::float32: return fill(float{});
    case DType::float64: return fill(double{});
    case DType::float16:
      std::fill_n(static_cast<uint16_t*>(p), size_t(count), float_to_half(float(value)));
      return true;
    case DType::int8: return fill(int8_t{});
    case DType::int16: return fill(int16_t{});
    case DType::int32: return fill(int32_t{});
    case DType::int64: return fill(int64_t{});
    case DType::uint8: return fill(uint8_t{});
    case DType::uint16: return fill(uint16_t{});
    case DType::uint32: return fill(uint32_t{});
    case DType::uint64: return fill(uint64_t{});
    case DType::boolean: return fill(bool{});
    default: return false;
  }
}
}  // namespace

int PlanBuilder::slot_of(int value) {
  auto it = value_slot_.find(value);
  if (it != value_slot_.end()) return it->second;
  const Value& v = graph.values[size_t(value)];
  if (!v.is_constant())
    throw Error({graph.path, "", ""}, "internal: value '" + v.name + "' is used before any step produced it");
  const int slot = new_slot(v.name, v.dtype, v.shape, plain_md(v.dtype, v.shape));
  Slot& s = slots[size_t(slot)];
  s.storage = Slot::Storage::constant;
  s.constant = zeroed_buffer(std::max<size_t>(s.md.get_size(), 64));
  void* p = s.constant.get();
  const size_t nbytes = size_t(v.numel()) * size_t(dtype_size(v.dtype));
  if (v.data->kind() == TensorData::Kind::bytes) {
    std::memcpy(p, v.data->buffer()->data(), std::min(nbytes, v.data->buffer()->size()));
  } else if (v.dtype == DType::float32 && !v.data->has_values()) {
    fill_stripped(value, static_cast<float*>(p));  // the buffer is zeroed
  } else if (v.dtype == DType::float32) {
    auto f = constant_floats(value);
    std::memcpy(p, f.data(), f.size() * sizeof(float));
  } else if (v.data->kind() == TensorData::Kind::fill && fill_constant(p, v.dtype, v.numel(), v.data->fill_value())) {
    // a ConstantOfShape folded at load: its one value everywhere, in its own element type
  } else {
    throw UnsupportedError({graph.path, "", ""}, "constant '" + v.name + "' of type " + dtype_name(v.dtype) +
                                                     " has no values (stripped) and cannot be synthesised");
  }
  value_slot_[value] = slot;
  return slot;
}

int PlanBuilder::as_layout(int slot, const memory::desc& md, const std::string& why) {
  if (slots[size_t(slot)].md == md) return slot;
  const Slot src = slots[size_t(slot)];
  const DType dt = md.data_type() == memory::data_type::bf16 ? DType::bfloat16 : src.dtype;
  const int out = new_slot(src.name + "@" + why, dt, src.shape, md);
  auto step = std::make_unique<PrimitiveStep>();
  step->kind = "reorder";
  step->nodes = {src.name + "@" + why};
  step->reorder_value = src.name;
  step->reorder_why = why;
  step->prim = dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), src.md, cpu_engine(), md));
  step->slot_args = {{DNNL_ARG_FROM, slot}, {DNNL_ARG_TO, out}};
  step->reads = {slot};
  step->writes = {out};
  add_step(std::move(step));
  return out;
}

int PlanBuilder::plain(int slot) {
  if (!slots[size_t(slot)].blocked) return slot;
  auto it = plain_cache_.find(slot);
  if (it != plain_cache_.end()) return it->second;
  const Slot& s = slots[size_t(slot)];
  const int out = as_layout(slot, plain_md(s.dtype == DType::bfloat16 ? DType::float32 : s.dtype, s.shape), "plain");
  plain_cache_[slot] = out;
  return out;
}

int PlanBuilder::sole_consumer(int value) const {
  const Value& v = graph.values[size_t(value)];
  if (v.is_graph_output || v.consumers.size() != 1) return -1;
  const int c = v.consumers[0];
  // The consumer must read the value exactly once.
  int reads = 0;
  for (int in : graph.nodes[size_t(c)].inputs) reads += in == value;
  return reads == 1 ? c : -1;
}

namespace {

// Static memory plan: arena buffers shared by slots whose lifetimes do not overlap.
class CpuExecutable : public Executable {
 public:
  CpuExecutable(const Graph& graph, const CompileOptions& options) : options_(options) {
    PlanBuilder b(graph, options);
    for (int v : graph.inputs) {
      const Value& value = graph.values[size_t(v)];
      const int slot = b.new_slot(value.name, value.dtype, value.shape, plain_md(value.dtype, value.shape));
      b.slots[size_t(slot)].storage = Slot::Storage::input;
      b.bind(v, slot);
      input_names_.push_back(value.name);
      input_slots_.push_back(slot);
      input_shapes_.push_back(value.shape);
      input_types_.push_back(value.dtype);
    }
    for (size_t i = 0; i < graph.nodes.size(); ++i)
      if (!b.done(int(i))) lower_node(b, int(i));
    for (int v : graph.outputs) {
      const int slot = b.plain(b.slot_of(v));
      b.slots[size_t(slot)].is_output = true;
      output_names_.push_back(graph.values[size_t(v)].name);
      output_slots_.push_back(slot);
    }
    random_weights_ = b.random_weights;
    slots_ = std::move(b.slots);
    steps_ = std::move(b.steps);
    plan_memory();
    if (workers() > 1) plan_dependencies();
  }

  const std::vector<std::string>& input_names() const override { return input_names_; }
  const std::vector<std::string>& output_names() const override { return output_names_; }
  bool uses_random_weights() const override { return random_weights_; }

  bool skip_steps(const std::set<std::string>& nodes) override {
    std::lock_guard<std::mutex> turn(run_mutex_);
    skipped_.clear();
    if (nodes.empty()) return true;
    if (workers() > 1) return false;
    std::vector<char> skip(steps_.size(), 0);
    for (size_t i = 0; i < steps_.size(); ++i) {
      bool all = !steps_[i]->nodes.empty();
      for (const auto& n : steps_[i]->nodes) all = all && nodes.count(n);
      skip[i] = all;
    }
    // Memory a slot lives in: its arena buffer, or its own (input, constant) storage.
    auto storage = [&](int s) {
      const int r = root(s);
      return slots_[size_t(r)].storage == Slot::Storage::arena && buffer_of_[size_t(r)] >= 0 ? buffer_of_[size_t(r)] : -2 - r;
    };
    std::set<int> kept_reads, kept_writes, skipped_writes;
    for (size_t i = 0; i < steps_.size(); ++i) {
      for (int w : steps_[i]->writes) (skip[i] ? skipped_writes : kept_writes).insert(storage(w));
      if (!skip[i])
        for (int r : steps_[i]->reads) kept_reads.insert(storage(r));
    }
    for (int m : skipped_writes)
      if (kept_reads.count(m) && kept_writes.count(m)) return false;  // would be overwritten
    skipped_ = std::move(skip);
    return true;
  }

  bool fill_skipped_outputs(uint64_t seed) override {
    std::lock_guard<std::mutex> turn(run_mutex_);
    if (skipped_.empty()) return true;
    std::set<int> written, read;
    for (size_t i = 0; i < steps_.size(); ++i) {
      if (skipped_[i])
        for (int w : steps_[i]->writes) written.insert(root(w));
      else
        for (int r : steps_[i]->reads) read.insert(root(r));
    }
    for (int r : read) {
      if (!written.count(r)) continue;
      const Slot& s = slots_[size_t(r)];
      void* p = rt_.mems[size_t(r)].get_data_handle();
      const size_t bytes = s.md.get_size();
      if (!p || bytes == 0) continue;
      // A block of normal values, repeated: the numbers only have to be ordinary floats.
      const auto dt = s.md.data_type();
      const size_t elem = dt == memory::data_type::f32 ? 4 : dt == memory::data_type::bf16 ? 2 : 0;
      if (elem) {
        const size_t n = bytes / elem, block = std::min<size_t>(n, 16384);
        std::vector<float> f(block);
        fill_random_normal(f.data(), int64_t(block), seed, s.name);
        auto* q = static_cast<char*>(p);
        if (elem == 4) {
          std::memcpy(q, f.data(), block * 4);
        } else {
          for (size_t i = 0; i < block; ++i) {
            uint32_t u;
            std::memcpy(&u, &f[i], 4);
            const uint16_t h = uint16_t(u >> 16);
            std::memcpy(q + 2 * i, &h, 2);
          }
        }
        for (size_t i = block; i < n; i += block) std::memcpy(q + i * elem, q, std::min(block, n - i) * elem);
      } else {
        std::memset(p, 0, bytes);
      }
    }
    return true;
  }

  std::vector<std::pair<const void*, size_t>> weight_buffers() const override {
    // Only what the steps that run read: a left-out context's weights are never touched.
    std::vector<std::pair<const void*, size_t>> out;
    std::set<int> constants;
    for (size_t i = 0; i < steps_.size(); ++i) {
      if (!skipped_.empty() && skipped_[i]) continue;
      if (const auto* p = dynamic_cast<const PrimitiveStep*>(steps_[i].get()))
        for (const auto& [arg, mem] : p->own_args)
          if (mem.get_data_handle()) out.emplace_back(mem.get_data_handle(), mem.get_desc().get_size());
      for (int r : steps_[i]->reads) {
        const int c = root(r);
        if (slots_[size_t(c)].storage == Slot::Storage::constant && slots_[size_t(c)].constant) constants.insert(c);
      }
    }
    for (int c : constants) out.emplace_back(slots_[size_t(c)].constant.get(), slots_[size_t(c)].md.get_size());
    return out;
  }

  std::vector<std::pair<const void*, size_t>> output_buffers() const override {
    std::set<int> written;
    for (size_t i = 0; i < steps_.size(); ++i)
      if (skipped_.empty() || !skipped_[i])
        for (int w : steps_[i]->writes) written.insert(root(w));
    std::vector<std::pair<const void*, size_t>> out;
    for (int c : written)
      if (slots_[size_t(c)].storage != Slot::Storage::constant && rt_.mems[size_t(c)].get_data_handle())
        out.emplace_back(rt_.mems[size_t(c)].get_data_handle(), rt_.mems[size_t(c)].get_desc().get_size());
    return out;
  }

  // Calls from several threads take turns: the plan's buffers and streams are the executable's.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) override {
    std::lock_guard<std::mutex> turn(run_mutex_);
    bind_inputs(inputs);
    if (workers() > 1) {
      run_concurrently(nullptr);
      return collect_outputs();
    }
    for (size_t i = 0; i < steps_.size(); ++i)
      if (skipped_.empty() || !skipped_[i]) steps_[i]->execute(rt_);
    rt_.stream.wait();
    return collect_outputs();
  }

  // No output copy: a profiled run hands out times only (the copy is not part of any step, and
  // it cost the brick runner a memcpy of every brick's outputs per repetition).
  std::vector<StepTime> run_profiled(const std::map<std::string, Tensor>& inputs) override {
    std::lock_guard<std::mutex> turn(run_mutex_);
    bind_inputs(inputs);
    std::vector<StepTime> times;
    if (workers() > 1) {
      std::vector<double> ms(steps_.size(), 0.0);
      run_concurrently(&ms);
      for (size_t i = 0; i < steps_.size(); ++i) {
        StepTime t;
        t.nodes = steps_[i]->nodes;
        for (const auto& n : steps_[i]->nodes) t.name += (t.name.empty() ? "" : "+") + n;
        t.kind = steps_[i]->kind;
        t.ms = ms[i];
        times.push_back(std::move(t));
      }
      return times;
    }
    // A step's time is the clock's difference less the clock's own cost (what two back-to-back
    // readings differ by): ~0.5 us per step for the thread CPU clock on a VM (a system call),
    // which summed over the ~100 steps of a small model was 5% of its time.
    const bool cpu = options_.profile_cpu_time;
    const double overhead = clock_overhead_ms(cpu);
    for (size_t i = 0; i < steps_.size(); ++i) {
      if (!skipped_.empty() && skipped_[i]) continue;
      auto& s = steps_[i];
      const auto t0 = std::chrono::steady_clock::now();
      const double cpu0 = cpu ? thread_cpu_ms() : 0.0;
      s->execute(rt_);
      rt_.stream.wait();
      const double ms = cpu ? thread_cpu_ms() - cpu0 : std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      StepTime t;
      t.nodes = s->nodes;
      for (const auto& n : s->nodes) t.name += (t.name.empty() ? "" : "+") + n;
      t.kind = s->kind;
      t.ms = std::max(0.0, ms - overhead);
      times.push_back(std::move(t));
    }
    return times;
  }

  // oneDNN-style name of a non-plain layout: dims in order of decreasing stride ('a'..), inner
  // blocks appended (e.g. "acdb" = NHWC, "aBcd16b" = nChw16c).
  static std::string layout_name(const memory::desc& md) {
    const auto& d = md.data;
    if (d.format_kind != dnnl_blocked) return "opaque";
    const auto& blk = d.format_desc.blocking;
    const int nd = d.ndims;
    std::vector<int> order(static_cast<size_t>(nd));
    for (int i = 0; i < nd; ++i) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return blk.strides[a] > blk.strides[b]; });
    std::vector<bool> blocked_dim(static_cast<size_t>(nd), false);
    for (int i = 0; i < blk.inner_nblks; ++i) blocked_dim[size_t(blk.inner_idxs[i])] = true;
    std::string name;
    for (int i : order) name += char(blocked_dim[size_t(i)] ? 'A' + i : 'a' + i);
    for (int i = 0; i < blk.inner_nblks; ++i) name += std::to_string(blk.inner_blks[i]) + char('a' + blk.inner_idxs[i]);
    if (name == "acdb" || name == "acb" || name == "acdeb") name += " (channels-last)";
    return name;
  }

  std::vector<PlanStep> plan() const override {
    std::vector<PlanStep> out;
    for (const auto& s : steps_) {
      PlanStep p;
      p.label = s->kind;
      if (!s->reorder_value.empty()) {
        p.kind = PlanStep::Kind::reorder;
        p.value = s->reorder_value;
        p.why = s->reorder_why;
      } else {
        p.nodes = s->nodes;
      }
      for (int w : s->writes)
        if (slots_[size_t(w)].blocked) {
          p.layout = layout_name(slots_[size_t(w)].md);
          break;
        }
      out.push_back(std::move(p));
    }
    return out;
  }

  std::string describe() const override {
    std::ostringstream os;
    size_t arena = 0;
    for (auto& b : buffers_) arena += b.second;
    os << steps_.size() << " steps, " << buffers_.size() << " arena buffers (" << arena / 1024 << " KiB), threads "
       << threads();
    if (workers() > 1) os << " per step, " << workers() << " branch workers (independent steps run concurrently)";
    os << "\n";
    for (const auto& s : steps_) {
      std::string names;
      for (const auto& n : s->nodes) names += (names.empty() ? "" : "+") + n;
      os << "  " << s->kind << "  " << names;
      for (int w : s->writes)
        if (slots_[size_t(w)].blocked) os << "  [" << layout_name(slots_[size_t(w)].md) << " layout]";
      os << "\n";
    }
    return os.str();
  }

 private:
  CompileOptions options_;
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Step>> steps_;
  std::vector<std::pair<std::shared_ptr<void>, size_t>> buffers_;
  Runtime rt_;
  std::vector<std::string> input_names_, output_names_;
  std::vector<int> input_slots_, output_slots_;
  std::mutex run_mutex_;           // one run at a time (run, run_profiled, skip_steps, fill_skipped_outputs)
  std::vector<Tensor> out_cache_;  // outputs of the last run, reused when no longer held (collect_outputs)
  std::vector<Shape> input_shapes_;
  std::vector<DType> input_types_;
  bool random_weights_ = false;
  std::vector<int> buffer_of_;  // arena buffer of each slot (-1: none)
  std::vector<char> skipped_;   // steps left out of runs (skip_steps); empty: none

  int workers() const { return std::max(1, options_.branch_workers); }
  // Threads per step: all of them, or the share of one branch worker.
  int threads() const {
    return std::max(1, resolve_threads(options_.threads, "threads") / workers());
  }

  // Step dependencies for concurrent branches: a step waits for the last writer of every slot
  // it reads or writes, and for the readers since then of every slot it writes.
  std::vector<int> dep_count_;
  std::vector<std::vector<int>> dependents_;
  void plan_dependencies() {
    const size_t n = slots_.size();
    std::vector<int> last_writer(n, -1);
    std::vector<std::vector<int>> readers(n);
    dep_count_.assign(steps_.size(), 0);
    dependents_.assign(steps_.size(), {});
    for (size_t j = 0; j < steps_.size(); ++j) {
      std::set<int> deps;
      for (int s : steps_[j]->reads) {
        const int r = root(s);
        if (last_writer[size_t(r)] >= 0) deps.insert(last_writer[size_t(r)]);
      }
      for (int s : steps_[j]->writes) {
        const int r = root(s);
        if (last_writer[size_t(r)] >= 0) deps.insert(last_writer[size_t(r)]);
        for (int rd : readers[size_t(r)]) deps.insert(rd);
      }
      deps.erase(int(j));
      for (int d : deps) dependents_[size_t(d)].push_back(int(j));
      dep_count_[j] = int(deps.size());
      for (int s : steps_[j]->reads) readers[size_t(root(s))].push_back(int(j));
      for (int s : steps_[j]->writes) {
        last_writer[size_t(root(s))] = int(j);
        readers[size_t(root(s))].clear();
      }
    }
  }

  // Runs the steps on workers() threads (this one included), each step as soon as the steps it
  // depends on are done; `ms` (optional) gets each step's wall time.
  void run_concurrently(std::vector<double>* ms) {
    const size_t total = steps_.size();
    std::vector<int> remaining = dep_count_;
    std::deque<int> ready;
    for (size_t j = 0; j < total; ++j)
      if (remaining[j] == 0) ready.push_back(int(j));
    std::mutex m;
    std::condition_variable cv;
    size_t done = 0;
    std::exception_ptr error;
    const int per_step = threads();
    const bool ftz = options_.flush_denormals;
    auto worker = [&]() {
      omp_set_num_threads(per_step);
      if (ftz) {
        _mm_setcsr(_mm_getcsr() | 0x8040);
#pragma omp parallel num_threads(per_step)
        _mm_setcsr(_mm_getcsr() | 0x8040);
      }
      Runtime rt = rt_;  // the same memories, a stream of this thread's own
      rt.stream = dnnl::stream(cpu_engine());
      for (;;) {
        int j = -1;
        {
          std::unique_lock<std::mutex> lock(m);
          cv.wait(lock, [&] { return !ready.empty() || done == total || error; });
          if (done == total || error) return;
          j = ready.front();
          ready.pop_front();
        }
        try {
          const auto t0 = std::chrono::steady_clock::now();
          steps_[size_t(j)]->execute(rt);
          rt.stream.wait();
          if (ms) (*ms)[size_t(j)] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        } catch (...) {
          std::lock_guard<std::mutex> lock(m);
          error = std::current_exception();
          cv.notify_all();
          return;
        }
        {
          std::lock_guard<std::mutex> lock(m);
          ++done;
          for (int d : dependents_[size_t(j)])
            if (--remaining[size_t(d)] == 0) ready.push_back(d);
        }
        cv.notify_all();
      }
    };
    std::vector<std::thread> pool;
    for (int w = 1; w < workers(); ++w) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
  }

  int root(int s) const {
    while (slots_[size_t(s)].alias_of >= 0) s = slots_[size_t(s)].alias_of;
    return s;
  }

  void plan_memory() {
    const size_t n = slots_.size();
    std::vector<int> first(n, -1), last(n, -1);
    for (size_t i = 0; i < steps_.size(); ++i) {
      for (int s : steps_[i]->writes) {
        const int r = root(s);
        if (first[size_t(r)] < 0) first[size_t(r)] = int(i);
        last[size_t(r)] = std::max(last[size_t(r)], int(i));
      }
      for (int s : steps_[i]->reads) last[size_t(root(s))] = std::max(last[size_t(root(s))], int(i));
    }
    for (int s : output_slots_) last[size_t(root(s))] = int(steps_.size());  // read after the last step
    // Greedy: walk steps, give each new root a free buffer (best fit), free roots after last use.
    // The roots each step starts and ends are bucketed first, so the walk is linear in the steps
    // and slots (a 10^5-node chain compiles in well under a second).
    std::vector<std::vector<int>> starting(steps_.size() + 1), ending(steps_.size() + 1);
    for (size_t s = 0; s < n; ++s) {
      if (slots_[s].alias_of >= 0) continue;
      if (slots_[s].storage == Slot::Storage::arena && first[s] >= 0) starting[size_t(first[s])].push_back(int(s));
      if (last[s] >= 0) ending[size_t(last[s])].push_back(int(s));
    }
    std::vector<int> buffer_of(n, -1);
    std::vector<size_t> sizes;
    std::vector<bool> busy;
    for (size_t i = 0; i <= steps_.size(); ++i) {
      for (int s : starting[i]) {
        const size_t need = std::max<size_t>(slots_[size_t(s)].md.get_size(), 64);
        int best = -1;
        for (size_t b = 0; b < sizes.size(); ++b)
          if (!busy[b] && (best < 0 || (sizes[b] >= need && (sizes[size_t(best)] < need || sizes[b] < sizes[size_t(best)])) ||
                           (sizes[size_t(best)] < need && sizes[b] > sizes[size_t(best)])))
            best = int(b);
        if (best < 0) {
          sizes.push_back(need);
          busy.push_back(false);
          best = int(sizes.size()) - 1;
        }
        sizes[size_t(best)] = std::max(sizes[size_t(best)], need);
        busy[size_t(best)] = true;
        buffer_of[size_t(s)] = best;
      }
      // With concurrent branches a buffer is never handed on: steps may run in another order.
      if (workers() == 1 && options_.reuse_buffers)
        for (int s : ending[i])
          if (buffer_of[size_t(s)] >= 0) busy[size_t(buffer_of[size_t(s)])] = false;
    }
    buffer_of_ = buffer_of;
    if (std::getenv("BRICKLAB_DEBUG_PLAN")) {
      for (size_t s = 0; s < n; ++s)
        std::fprintf(stderr, "slot %zu %-40s root %d first %d last %d buffer %d bytes %zu blocked %d\n", s, slots_[s].name.c_str(),
                     root(int(s)), first[s], last[s], buffer_of[s], slots_[s].md.get_size(), int(slots_[s].blocked));
    }
    {  // The plan's activation buffers together, against the memory budget, before any is allocated.
      double total = 0;
      for (size_t b = 0; b < sizes.size(); ++b) total += double((sizes[b] + 63) / 64 * 64);
      const int64_t t = total > 9.0e18 ? -1 : int64_t(total);
      if (auto e = over_budget_bytes("the plan's " + std::to_string(sizes.size()) + " activation buffers", t); !e.empty())
        throw ShapeError({"", "", ""}, e);
    }
    for (size_t b = 0; b < sizes.size(); ++b) {
      const size_t bytes = (sizes[b] + 63) / 64 * 64;
      buffers_.emplace_back(zeroed_buffer(bytes), bytes);
    }
    rt_.stream = dnnl::stream(cpu_engine());
    rt_.slots = &slots_;
    rt_.mems.clear();
    for (size_t s = 0; s < n; ++s) {
      const int r = root(int(s));
      void* handle = nullptr;
      const Slot& rs = slots_[size_t(r)];
      if (rs.storage == Slot::Storage::constant) handle = rs.constant.get();
      else if (rs.storage == Slot::Storage::arena) handle = buffer_of[size_t(r)] >= 0 ? buffers_[size_t(buffer_of[size_t(r)])].first.get() : nullptr;
      if (!handle && rs.storage == Slot::Storage::arena) {
        // A slot no step writes (e.g. an unused output of a multi-output node): give it its own buffer.
        const size_t bytes = (std::max<size_t>(rs.md.get_size(), 64) + 63) / 64 * 64;
        buffers_.emplace_back(zeroed_buffer(bytes), bytes);
        handle = buffers_.back().first.get();
      }
      rt_.mems.emplace_back(slots_[s].md, cpu_engine(), handle ? handle : DNNL_MEMORY_NONE);
    }
    for (auto& st : steps_) st->prepare(rt_);
  }

  void bind_inputs(const std::map<std::string, Tensor>& inputs) {
    omp_set_num_threads(threads());
    if (options_.flush_denormals) {
      // MXCSR is per thread: set flush-to-zero and denormals-are-zero on every worker.
#pragma omp parallel num_threads(threads())
      _mm_setcsr(_mm_getcsr() | 0x8040);
    }
    for (const auto& [name, t] : inputs)
      if (std::find(input_names_.begin(), input_names_.end(), name) == input_names_.end())
        throw InvalidArgument("unknown input '" + name + "' (model inputs: " + join(input_names_) + ")");
    for (size_t i = 0; i < input_names_.size(); ++i) {
      auto it = inputs.find(input_names_[i]);
      if (it == inputs.end()) throw InvalidArgument("missing input '" + input_names_[i] + "'");
      const Tensor& t = it->second;
      if (t.dtype() != input_types_[i])
        throw InvalidArgument("input '" + input_names_[i] + "' must be " + dtype_name(input_types_[i]) + ", got " +
                              dtype_name(t.dtype()));
      if (t.shape() != input_shapes_[i])
        throw InvalidArgument("input '" + input_names_[i] + "' must have shape " + shape_str(input_shapes_[i]) + ", got " +
                              shape_str(t.shape()) + " (load the model with the matching batch / dims)");
      // Zero-copy: steps only read input slots.
      const int slot = input_slots_[i];
      rt_.mems[size_t(slot)].set_data_handle(const_cast<void*>(t.data()));
      for (size_t s = 0; s < slots_.size(); ++s)
        if (slots_[s].alias_of >= 0 && root(int(s)) == slot) rt_.mems[s].set_data_handle(const_cast<void*>(t.data()));
    }
  }

  // Copies the outputs into host tensors. A tensor handed out by an earlier run that nobody holds
  // any more is reused: a fresh allocation of a large output costs page faults (a zeroed page per
  // 4 KiB) on every run, whose price depends on the allocator's state, e.g. 20 ms for the 32 MiB
  // output of a segmentation model at batch 8 in one process and nothing in another.
  std::map<std::string, Tensor> collect_outputs() {
    std::map<std::string, Tensor> out;
    out_cache_.resize(output_names_.size());
    for (size_t i = 0; i < output_names_.size(); ++i) {
      const Slot& s = slots_[size_t(output_slots_[i])];
      Tensor& t = out_cache_[i];
      if (t.empty() || t.owner().use_count() != 1 || t.shape() != s.shape || t.dtype() != s.dtype) t = Tensor(s.dtype, s.shape);
      std::memcpy(t.data(), rt_.ptr(output_slots_[i]), t.nbytes());
      out[output_names_[i]] = t;
    }
    return out;
  }

  static double thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
  }

  // The smallest difference of two back-to-back readings of the clock (thread CPU or steady),
  // measured once per process: what every timed interval includes besides the work.
  static double clock_overhead_ms(bool cpu) {
    static const double overhead[2] = {measure_clock_overhead(false), measure_clock_overhead(true)};
    return overhead[cpu ? 1 : 0];
  }
  static double measure_clock_overhead(bool cpu) {
    double best = 1e9;
    for (int i = 0; i < 2000; ++i) {
      double d;
      if (cpu) {
        const double a = thread_cpu_ms();
        d = thread_cpu_ms() - a;
      } else {
        const auto a = std::chrono::steady_clock::now();
        d = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
      }
      if (d > 0) best = std::min(best, d);  // coarse clocks can read the same twice
    }
    return best < 1e9 ? best : 0.0;
  }

  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }
};

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool available() const override { return true; }
  std::unique_ptr<Executable> compile(const Graph& graph, const CompileOptions& options) const override {
    // oneDNN sizes its kernels' work split for the thread count current when a primitive is
    // created and runs that many threads whatever is set later: create them with the plan's.
    const int all = resolve_threads(options.threads, "threads");
    if (options.branch_workers < 1 || options.branch_workers > 256)
      throw InvalidArgument("branch_workers must be between 1 and 256, got " + std::to_string(options.branch_workers));
    omp_set_num_threads(std::max(1, all / options.branch_workers));
    try {
      return std::make_unique<CpuExecutable>(graph, options);
    } catch (const dnnl::error& e) {
      throw Error({graph.path, "", ""}, std::string("oneDNN could not build the plan: ") + e.what());
    }
  }
  std::vector<Variant> variants(const Graph& graph, int node) const override { return node_variants(graph, node); }
  bool lowers(const OpDef& op) const override { return lowerings().lowers(op); }
};

}  // namespace

const Backend& backend() {
  static CpuBackend instance;
  return instance;
}

}  // namespace bricklab::cpu
