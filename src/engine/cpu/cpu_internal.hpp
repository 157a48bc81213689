// Internals of the oneDNN CPU backend: the plan (slots = values at run time, steps = kernels),
// the builder that lowers graph nodes into steps, and the runtime. Private to src/engine/cpu/.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bricklab/core/error.hpp"
#include "bricklab/engine/backend.hpp"
#include "bricklab/graph/graph.hpp"
#include "bricklab/ops/lowering.hpp"

namespace bricklab::cpu {

using dnnl::memory;
using dims = memory::dims;

dnnl::engine& cpu_engine();
memory::data_type dnnl_type(DType t);
memory::desc plain_md(DType t, const Shape& shape);
// `bytes` of zeroed memory aligned to 64 bytes (calloc: large blocks come as fresh zero pages,
// so memory that is never touched costs nothing).
std::shared_ptr<void> zeroed_buffer(size_t bytes);

// A value as it exists at run time: a logical shape plus a physical layout.
struct Slot {
  std::string name;
  DType dtype = DType::float32;
  Shape shape;
  memory::desc md;      // physical layout (plain row-major unless `blocked`)
  bool blocked = false;
  enum class Storage { arena, constant, input } storage = Storage::arena;
  int alias_of = -1;    // views share the storage of this slot
  std::shared_ptr<void> constant;  // constant data (plain), for Storage::constant
  bool is_output = false;
};

struct Runtime {
  dnnl::stream stream;
  std::vector<Slot>* slots = nullptr;
  std::vector<memory> mems;  // one per slot, bound to its storage
  void* ptr(int slot) const { return mems[size_t(slot)].get_data_handle(); }
  template <typename T> T* data(int slot) const { return static_cast<T*>(ptr(slot)); }
};

struct Step {
  std::vector<std::string> nodes;
  std::string kind;
  std::string reorder_value, reorder_why;  // layout conversions (kind "reorder"): of what, for what
  std::vector<int> reads, writes;  // slot ids, for liveness
  virtual ~Step() = default;
  virtual void prepare(Runtime&) {}
  virtual void execute(Runtime& rt) = 0;
};

// A oneDNN primitive with its arguments: slot ids bound at prepare(), plus owned memories
// (prepacked weights, bias, ...).
struct PrimitiveStep : Step {
  dnnl::primitive prim;
  std::vector<std::pair<int, int>> slot_args;     // (DNNL_ARG_*, slot)
  std::vector<std::pair<int, memory>> own_args;   // (DNNL_ARG_*, memory)
  std::vector<std::shared_ptr<void>> own_buffers; // storage of own_args memories made on user buffers
  std::unordered_map<int, memory> args;
  void prepare(Runtime& rt) override {
    args.clear();
    for (auto [arg, slot] : slot_args) args[arg] = rt.mems[size_t(slot)];
    for (auto& [arg, mem] : own_args) args[arg] = mem;
  }
  void execute(Runtime& rt) override { prim.execute(rt.stream, args); }
};

// A plain C++ kernel over plain row-major slots.
struct FunctionStep : Step {
  std::function<void(Runtime&)> fn;
  void execute(Runtime& rt) override { fn(rt); }
};

class PlanBuilder {
 public:
  PlanBuilder(const Graph& graph, const CompileOptions& options);

  const Graph& graph;
  CompileOptions options;
  std::vector<Slot> slots;
  std::vector<std::unique_ptr<Step>> steps;
  bool random_weights = false;

  // The slot that currently holds a graph value (constants get a slot on first use).
  int slot_of(int value);
  // A plain-layout slot with the same contents (adds a reorder step for blocked slots).
  int plain(int slot);
  // A slot with the given layout and contents of `slot` (reorder when different).
  int as_layout(int slot, const memory::desc& md, const std::string& why);
  int new_slot(const std::string& name, DType dtype, const Shape& shape, const memory::desc& md);
  void bind(int value, int slot) { value_slot_[value] = slot; }
  // True when the value exists at this point of the plan (computed already, an input or a constant).
  bool ready(int value) const { return value_slot_.count(value) || is_constant(value); }
  // Float values of a constant graph value (weights); random when stripped, zeros when a
  // placeholder.
  std::vector<float> constant_floats(int value);
  // A stripped float32 weight into `dst` (numel floats, zeroed by the caller): deterministic
  // stand-in values shaped like a trained network's, or nothing (zeros) for a placeholder.
  void fill_stripped(int value, float* dst);
  // True for a stripped weight read only by CompileOptions::placeholder_nodes (steps that never
  // run): it needs no values, and no prepacking.
  bool placeholder(int value) const;
  // A constant weight in layout `to_md`: `data` (in `from_md`) reordered, or zeros without a
  // reorder when `value` is a placeholder. The buffer's owner is added to `step`.
  memory prepack(PrimitiveStep& step, int value, const memory::desc& from_md, const std::vector<float>& data,
                 const memory::desc& to_md);
  bool is_constant(int value) const { return value >= 0 && graph.values[size_t(value)].is_constant(); }
  // The node that alone consumes `value` (and value is not a graph output), or -1.
  int sole_consumer(int value) const;
  bool done(int node) const { return done_[size_t(node)]; }
  void mark_done(int node) { done_[size_t(node)] = true; }
  void unmark_done(int node) { done_[size_t(node)] = false; }
  ErrorContext where(const Node& n) const { return {graph.path, n.name, n.op}; }
  std::string variant_for(const Node& n) const {
    auto it = options.variants.find(n.name);
    return it == options.variants.end() ? std::string() : it->second;
  }
  void add_step(std::unique_ptr<Step> step) { steps.push_back(std::move(step)); }

 private:
  std::unordered_map<int, int> value_slot_;
  std::unordered_map<int, int> plain_cache_;
  std::vector<bool> done_;
};

// When node `pad` is a zero-constant Pad of spatial dims only whose sole consumer is an
// AveragePool that can take the padding itself (counting it, as the explicit zeros are counted),
// the pads per spatial dim (begin..., end...); empty otherwise. The Pad then adds no step and the
// pool reads the Pad's input. Defined in kernels.cpp.
std::vector<int64_t> pad_folded_into_pool(PlanBuilder& b, int pad);

// Appends a plain C++ step for node `n`; the caller sets its `fn`.
inline FunctionStep* add_fn(PlanBuilder& b, const Node& n, const std::string& kind, std::vector<int> reads,
                            std::vector<int> writes) {
  auto step = std::make_unique<FunctionStep>();
  step->nodes = {n.name};
  step->kind = kind;
  step->reads = std::move(reads);
  step->writes = std::move(writes);
  FunctionStep* raw = step.get();
  b.add_step(std::move(step));
  return raw;
}

// Helpers shared by the kernel files.
inline const Value& val(PlanBuilder& b, int v) { return b.graph.values[size_t(v)]; }
[[noreturn]] inline void unsupported(PlanBuilder& b, const Node& n, const std::string& why) { throw UnsupportedError(b.where(n), why); }
// Row-major element strides of a shape.
inline std::vector<int64_t> row_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}
// A new plain slot for graph value `value`, bound to it.
inline int output_slot(PlanBuilder& b, int value) {
  const Value& v = val(b, value);
  const int s = b.new_slot(v.name, v.dtype, v.shape, plain_md(v.dtype, v.shape));
  b.bind(value, s);
  return s;
}
// A (possibly negative) axis of a rank-`rank` tensor made non-negative; ShapeError when outside.
inline int64_t checked_axis(PlanBuilder& b, const Node& n, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1))
    throw ShapeError(b.where(n), "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

// Calls fn(T{}) for the element type t (float32 and float64 always; the integer types with Ints,
// bool with Bools); throws for types the plain kernels do not handle.
template <bool Ints, bool Bools, typename Fn>
inline void dispatch_type(PlanBuilder& b, const Node& n, DType t, Fn&& fn) {
  auto no = [&] { unsupported(b, n, "element type " + dtype_name(t) + " is not supported for " + n.op + " on the CPU backend"); };
  if (t == DType::float32) return fn(float{});
  if (t == DType::float64) return fn(double{});
  if constexpr (Ints) {
    switch (t) {
      case DType::int8: return fn(int8_t{});
      case DType::int16: return fn(int16_t{});
      case DType::int32: return fn(int32_t{});
      case DType::int64: return fn(int64_t{});
      case DType::uint8: return fn(uint8_t{});
      case DType::uint16: return fn(uint16_t{});
      case DType::uint32: return fn(uint32_t{});
      case DType::uint64: return fn(uint64_t{});
      default: break;
    }
  }
  if constexpr (Bools)
    if (t == DType::boolean) return fn(bool{});
  no();
}

// float -> IEEE half, rounding to nearest even (elementwise_kernels.cpp); half_to_float is in
// bricklab/core/dtype.hpp.
uint16_t float_to_half(float f);

// Lowers node `index` (and whatever the fusion rules absorb) into steps, through the CPU's
// lowering table. Defined in kernels.cpp.
void lower_node(PlanBuilder& b, int index);

// The CPU backend's lowerings: one per operator-table entry it supports (kernels.cpp builds it
// from the registration functions of each kernel file).
using LowerFn = void (*)(PlanBuilder&, int);
using CpuLowerings = LoweringTable<LowerFn>;
const CpuLowerings& lowerings();
void register_plain_lowerings(CpuLowerings& table);      // plain_kernels.cpp
void register_reduction_lowerings(CpuLowerings& table);  // reduction_kernels.cpp
void register_movement_lowerings(CpuLowerings& table);   // movement_kernels.cpp
// The oneDNN reduction primitive `algorithm` (sum, mean, max, min) for a float32 Reduce* node;
// false where it does not apply.
bool lower_reduce_dnnl(PlanBuilder& b, int index, dnnl::algorithm algorithm);
// Softmax / LogSoftmax over the middle axis of the input viewed as [outer, len, inner], for
// element types oneDNN does not take (reduction_kernels.cpp).
void lower_softmax_plain(PlanBuilder& b, const Node& n, bool log, int64_t outer, int64_t len, int64_t inner);
// Concat of plain inputs (plain_kernels.cpp), where oneDNN's concat does not apply.
void lower_concat_plain(PlanBuilder& b, int index);
// Any elementwise operator of the table (its EltFn), any supported element type, numpy
// broadcasting, variadic folding (elementwise_kernels.cpp).
void lower_elementwise(PlanBuilder& b, const Node& n);
// The variants the CPU backend offers for a node.
std::vector<Variant> node_variants(const Graph& graph, int index);

}  // namespace bricklab::cpu
