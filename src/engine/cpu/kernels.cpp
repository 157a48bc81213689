// Lowering of graph nodes to CPU steps: oneDNN primitives for the compute-heavy operators
// (with fusions: BN folded into Conv, bias + activation + residual add as post-ops), plain C++
// kernels for data movement. Each lowering keeps full ONNX semantics or refuses the node with an
// UnsupportedError that names it.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>

#include "bricklab/ops/registry.hpp"
#include "cpu_internal.hpp"

namespace bricklab::cpu {
namespace {

// What an elementwise node computes (EltFn::none for other operators), from its table entry.
EltFn fn_of(const Node& n) {
  const OpDef* def = OpRegistry::instance().of(n);
  return def ? def->elementwise : EltFn::none;
}

// A node's table entry (an entry with no traits for an operator the table lacks).
const OpDef& def_of(const Node& n) {
  static const OpDef none{};
  const OpDef* def = OpRegistry::instance().of(n);
  return def ? *def : none;
}

// A node the table says is a constant per-channel affine (inference batch norm).
bool per_channel_affine(const Node& n) {
  const OpDef* def = OpRegistry::instance().of(n);
  return def && def->per_channel_affine;
}

using alg = dnnl::algorithm;
constexpr auto kInference = dnnl::prop_kind::forward_inference;

const Node& node_at(PlanBuilder& b, int i) { return b.graph.nodes[size_t(i)]; }


int input_or_none(const Node& n, size_t i) { return i < n.inputs.size() ? n.inputs[i] : -1; }

std::vector<int64_t> const_ints(PlanBuilder& b, const Node& n, int value, const char* what) {
  if (value < 0) return {};
  if (!b.is_constant(value)) unsupported(b, n, std::string(what) + " must be a constant");
  return val(b, value).data->as_int64();
}

// ---- padding ------------------------------------------------------------------------------------

struct Window {
  dims kernel, strides, dilation /* oneDNN: onnx - 1 */, pad_l, pad_r;
  dims pad_r_declared;  // the end pads as declared (pad_r also covers ceil_mode's overhang)
};

// The table's window geometry (auto_pad resolved; pad_r makes the window produce exactly the
// inferred output size, which is how ceil_mode is honoured) in oneDNN's terms.
Window make_window(PlanBuilder& b, const Node& n, const Shape& in, const Shape& out, const dims& kernel) {
  WindowGeometry g;
  try {
    g = window_geometry(n, in, out, std::vector<int64_t>(kernel.begin(), kernel.end()));
  } catch (const ShapeError& e) {
    unsupported(b, n, e.problem());
  }
  Window w;
  w.kernel = kernel;
  for (size_t i = 0; i < g.rank(); ++i) {
    w.strides.push_back(g.strides[i]);
    w.dilation.push_back(g.dilations[i] - 1);
    w.pad_l.push_back(g.pad_begin[i]);
    w.pad_r.push_back(g.pad_end_exact[i]);
    w.pad_r_declared.push_back(g.pad_end[i]);
  }
  return w;
}

// ---- fusable activations ------------------------------------------------------------------------

struct EltOp {
  alg algorithm;
  float alpha = 0, beta = 0;
};

// The oneDNN eltwise ops equivalent to an ONNX activation node; empty when there is none.
std::vector<EltOp> eltwise_of(PlanBuilder& b, const Node& n) {
  const EltFn f = fn_of(n);
  if (f == EltFn::none || (is_unary(f) && n.inputs.empty())) return {};
  if (!is_unary(f) && f != EltFn::pow) return {};
  const NodeAttrs a(b.graph, n);
  switch (f) {
    case EltFn::relu: return {{alg::eltwise_relu, 0, 0}};
    case EltFn::leaky_relu: return {{alg::eltwise_relu, float(a.real("alpha")), 0}};
    case EltFn::sigmoid: return {{alg::eltwise_logistic, 0, 0}};
    case EltFn::tanh: return {{alg::eltwise_tanh, 0, 0}};
    case EltFn::hard_swish: return {{alg::eltwise_hardswish, 0, 0}};
    case EltFn::elu: return {{alg::eltwise_elu, float(a.real("alpha")), 0}};
    case EltFn::abs: return {{alg::eltwise_abs, 0, 0}};
    case EltFn::sqrt: return {{alg::eltwise_sqrt, 0, 0}};
    case EltFn::exp: return {{alg::eltwise_exp, 0, 0}};
    case EltFn::log: return {{alg::eltwise_log, 0, 0}};
    case EltFn::neg: return {{alg::eltwise_linear, -1, 0}};
    case EltFn::reciprocal: return {{alg::eltwise_pow, 1, -1}};
    case EltFn::softplus: return {{alg::eltwise_soft_relu, 0, 0}};
    case EltFn::hard_sigmoid: return {{alg::eltwise_linear, float(a.real("alpha")), float(a.real("beta"))}, {alg::eltwise_clip, 0, 1}};
    case EltFn::clip: {
      float lo = -FLT_MAX, hi = FLT_MAX;
      if (n.opset < 11) {
        if (a.has("min")) lo = float(a.real("min"));
        if (a.has("max")) hi = float(a.real("max"));
      } else {
        for (size_t i = 1; i <= 2; ++i) {
          const int v = input_or_none(n, i);
          if (v < 0) continue;
          if (!b.is_constant(v) || val(b, v).numel() != 1) return {};
          const double x = val(b, v).data->as_double().at(0);
          (i == 1 ? lo : hi) = float(x);
        }
      }
      return {{alg::eltwise_clip, lo, hi}};
    }
    case EltFn::pow: {
      const int e = input_or_none(n, 1);
      if (e >= 0 && b.is_constant(e) && val(b, e).numel() == 1) return {{alg::eltwise_pow, 1, float(val(b, e).data->as_double()[0])}};
      return {};
    }
    default: return {};
  }
}

bool constant_near(PlanBuilder& b, int value, double want) {
  if (value < 0 || !b.is_constant(value) || val(b, value).numel() != 1) return false;
  return std::fabs(val(b, value).data->as_double()[0] - want) < 1e-4 * std::max(1.0, std::fabs(want));
}

// GELU as exporters write it: y = (x * (erf(x / sqrt2) + 1)) * 0.5 (either operand order).
// Returns the nodes of the pattern and the value it produces, or an empty list.
std::vector<int> match_gelu(PlanBuilder& b, int x, int& out_value) {
  const Value& xv = val(b, x);
  if (xv.is_graph_output || xv.consumers.size() != 2) return {};
  int div = -1, mul = -1;
  for (int c : xv.consumers) {
    const EltFn f = binary_fn(node_at(b, c));
    if (f == EltFn::div) div = c;
    else if (f == EltFn::mul) mul = c;
  }
  if (div < 0 || mul < 0 || b.done(div) || b.done(mul)) return {};
  const Node& d = node_at(b, div);
  if (d.inputs.size() != 2 || d.inputs[0] != x || !constant_near(b, d.inputs[1], std::sqrt(2.0))) return {};
  const int erf = b.sole_consumer(d.outputs[0]);
  if (erf < 0 || fn_of(node_at(b, erf)) != EltFn::erf) return {};
  const int add = b.sole_consumer(node_at(b, erf).outputs[0]);
  if (add < 0 || binary_fn(node_at(b, add)) != EltFn::add) return {};
  const Node& a = node_at(b, add);
  const int one = a.inputs[0] == node_at(b, erf).outputs[0] ? a.inputs[1] : a.inputs[0];
  if (!constant_near(b, one, 1.0)) return {};
  const Node& m = node_at(b, mul);
  const int other = m.inputs[0] == x ? m.inputs[1] : m.inputs[0];
  if (other != a.outputs[0] || b.sole_consumer(a.outputs[0]) != mul) return {};
  const int half = b.sole_consumer(m.outputs[0]);
  if (half < 0 || binary_fn(node_at(b, half)) != EltFn::mul) return {};
  const Node& h = node_at(b, half);
  const int k = h.inputs[0] == m.outputs[0] ? h.inputs[1] : h.inputs[0];
  if (!constant_near(b, k, 0.5)) return {};
  out_value = h.outputs[0];
  return {div, erf, add, mul, half};
}

// x * act(x) as exporters write HardSwish (opset < 14: x * HardSigmoid(x, 1/6, 1/2)) and SiLU
// (x * Sigmoid(x)). Returns the two nodes and the eltwise op, or an empty list.
std::vector<int> match_self_gate(PlanBuilder& b, int x, int& out_value, EltOp& op) {
  const Value& xv = val(b, x);
  if (xv.is_graph_output || xv.consumers.size() != 2) return {};
  int act = -1, mul = -1;
  for (int c : xv.consumers) {
    const Node& n = node_at(b, c);
    if (binary_fn(n) == EltFn::mul) mul = c;
    else if (fn_of(n) == EltFn::sigmoid || fn_of(n) == EltFn::hard_sigmoid) act = c;
  }
  if (act < 0 || mul < 0 || b.done(act) || b.done(mul)) return {};
  const Node& a = node_at(b, act);
  const Node& m = node_at(b, mul);
  if (b.sole_consumer(a.outputs[0]) != mul) return {};
  if (!((m.inputs[0] == x && m.inputs[1] == a.outputs[0]) || (m.inputs[1] == x && m.inputs[0] == a.outputs[0]))) return {};
  if (fn_of(a) == EltFn::sigmoid) {
    op = {alg::eltwise_swish, 1.f, 0.f};
  } else {
    const NodeAttrs attrs(b.graph, a);
    if (std::fabs(attrs.real("alpha") - 1.0 / 6) > 1e-6 || std::fabs(attrs.real("beta") - 0.5) > 1e-6) return {};
    op = {alg::eltwise_hardswish, 0.f, 0.f};
  }
  out_value = m.outputs[0];
  return {act, mul};
}

// oneDNN's limit on post-ops per primitive (post_ops_t::post_ops_limit); a longer chain of
// activations continues in a new step.
constexpr int kMaxPostOps = 32;

// Absorbs the chain of activations that alone consume `value` into post-ops (at most
// kMaxPostOps in all). Returns the value the fused step finally produces.
int absorb_activations(PlanBuilder& b, int value, dnnl::post_ops& po, std::vector<std::string>& names, std::string& kind) {
  if (!b.options.fusion || !b.options.fuse_activation) return value;
  while (po.len() < kMaxPostOps) {
    int gelu_out = -1;
    auto gelu = match_gelu(b, value, gelu_out);
    if (!gelu.empty()) {
      po.append_eltwise(1.f, alg::eltwise_gelu_erf, 0.f, 0.f);
      for (int g : gelu) {
        b.mark_done(g);
        names.push_back(node_at(b, g).name);
      }
      kind += "+GELU";
      value = gelu_out;
      continue;
    }
    EltOp gate;
    int gate_out = -1;
    auto gated = match_self_gate(b, value, gate_out, gate);
    if (!gated.empty()) {
      po.append_eltwise(1.f, gate.algorithm, gate.alpha, gate.beta);
      for (int g : gated) {
        b.mark_done(g);
        names.push_back(node_at(b, g).name);
      }
      kind += gate.algorithm == alg::eltwise_swish ? "+SiLU" : "+HardSwish";
      value = gate_out;
      continue;
    }
    const int c = b.sole_consumer(value);
    if (c < 0 || b.done(c)) return value;
    const Node& n = node_at(b, c);
    if (n.inputs.empty() || n.inputs[0] != value) return value;
    auto ops = eltwise_of(b, n);
    if (ops.empty() || po.len() + int(ops.size()) > kMaxPostOps) return value;
    for (const auto& e : ops) po.append_eltwise(1.f, e.algorithm, e.alpha, e.beta);
    b.mark_done(c);
    names.push_back(n.name);
    kind += "+" + n.op;
    value = n.outputs.at(0);
  }
  return value;
}

std::unique_ptr<PrimitiveStep> primitive_step(const std::vector<std::string>& names, const std::string& kind) {
  auto s = std::make_unique<PrimitiveStep>();
  s->nodes = names;
  s->kind = kind;
  return s;
}

memory vector_memory(const std::vector<float>& v) {
  memory m(memory::desc({dims::value_type(v.size())}, memory::data_type::f32, memory::format_tag::a), cpu_engine());
  std::memcpy(m.get_data_handle(), v.data(), v.size() * sizeof(float));
  return m;
}

// Copies `from` into `to` (any layouts, same logical shape): used to seed a sum post-op's dst.
void add_copy(PlanBuilder& b, int from, int to, const std::string& name) {
  auto step = primitive_step({name}, "copy-residual");
  step->prim = dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), b.slots[size_t(from)].md, cpu_engine(), b.slots[size_t(to)].md));
  step->slot_args = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  step->reads = {from};
  step->writes = {to};
  b.add_step(std::move(step));
}

// ---- Conv ---------------------------------------------------------------------------------------

void lower_conv(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const int x = n.inputs.at(0), w = n.inputs.at(1), bias_v = input_or_none(n, 2);
  if (!b.is_constant(w)) unsupported(b, n, "Conv with weights computed at run time is not supported");
  if (bias_v >= 0 && !b.is_constant(bias_v)) unsupported(b, n, "Conv with a bias computed at run time is not supported");
  const Value& xv = val(b, x);
  const Value& wv = val(b, w);
  if (xv.dtype != DType::float32 || val(b, n.outputs.at(0)).dtype != DType::float32)
    unsupported(b, n, "only float32 convolutions are supported (this one is " + dtype_name(xv.dtype) + ")");
  const int64_t group = n.attr_int("group", 1);
  const int64_t M = wv.shape[0];
  const size_t sp = wv.shape.size() - 2;
  if (sp < 1 || sp > 3) unsupported(b, n, "only 1-D, 2-D and 3-D convolutions are supported");
  // A placeholder's values are never needed (prepack makes zeros of the kernel's layout).
  std::vector<float> weights = b.placeholder(w) ? std::vector<float>() : b.constant_floats(w);
  std::vector<float> bias = bias_v >= 0 ? b.constant_floats(bias_v) : std::vector<float>(size_t(M), 0.f);
  std::vector<std::string> names = {n.name};
  std::string kind = "conv";
  int out_value = n.outputs.at(0);

  // BatchNormalization folded into the weights and bias.
  if (b.options.fusion && b.options.fuse_batchnorm) {
    const int c = b.sole_consumer(out_value);
    if (c >= 0 && !b.done(c) && per_channel_affine(node_at(b, c))) {
      const Node& bn = node_at(b, c);
      bool constant = bn.inputs.size() >= 5 && bn.outputs.size() >= 1;
      for (size_t i = 1; constant && i < 5; ++i) constant = b.is_constant(bn.inputs[i]);
      bool extra_outputs = false;
      for (size_t i = 1; i < bn.outputs.size(); ++i) extra_outputs = extra_outputs || bn.outputs[i] >= 0;
      if (constant && !extra_outputs && bn.inputs[0] == out_value) {
        auto scale = b.constant_floats(bn.inputs[1]), shift = b.constant_floats(bn.inputs[2]),
             mean = b.constant_floats(bn.inputs[3]), var = b.constant_floats(bn.inputs[4]);
        const double eps = bn.attr_float("epsilon", 1e-5);
        const size_t per_out = weights.size() / size_t(M);
        for (int64_t o = 0; o < M; ++o) {
          const double a = double(scale[size_t(o)]) / std::sqrt(double(var[size_t(o)]) + eps);
          for (size_t k = 0; k < per_out; ++k) weights[size_t(o) * per_out + k] = float(weights[size_t(o) * per_out + k] * a);
          bias[size_t(o)] = float((double(bias[size_t(o)]) - double(mean[size_t(o)])) * a + double(shift[size_t(o)]));
        }
        b.mark_done(c);
        names.push_back(bn.name);
        kind += "+BatchNormalization";
        out_value = bn.outputs[0];
      }
    }
  }
  // Residual add as a sum post-op: the conv accumulates into a copy of the other operand.
  dnnl::post_ops po;
  int residual = -1;
  if (b.options.fusion && b.options.fuse_residual) {
    const int c = b.sole_consumer(out_value);
    if (c >= 0 && !b.done(c) && binary_fn(node_at(b, c)) == EltFn::add) {
      const Node& add = node_at(b, c);
      const int other = add.inputs[0] == out_value ? add.inputs[1] : add.inputs[0];
      if (!b.is_constant(other) && b.ready(other) && val(b, other).shape == val(b, out_value).shape &&
          val(b, other).dtype == DType::float32) {
        residual = other;
        po.append_sum(1.f);
        b.mark_done(c);
        names.push_back(add.name);
        kind += "+Add";
        out_value = add.outputs[0];
      }
    }
  }
  out_value = absorb_activations(b, out_value, po, names, kind);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);

  const Value& yv = val(b, n.outputs.at(0));
  dims kernel(wv.shape.begin() + 2, wv.shape.end());
  Window win = make_window(b, n, xv.shape, yv.shape, kernel);
  const std::string variant = b.variant_for(n);
  alg algorithm = alg::convolution_direct;
  // Memory-format variants pin the activations' layout (channels-last or plain channels-first)
  // instead of letting oneDNN pick its blocked one; the weights stay in the kernel's own layout.
  memory::format_tag act_tag = memory::format_tag::any;
  const size_t rank = xv.shape.size();
  if (variant == "winograd") algorithm = alg::convolution_winograd;
  else if (variant.empty() || variant == "auto" || variant == "bf16") algorithm = variant == "bf16" ? alg::convolution_direct : alg::convolution_auto;
  else if (variant == "nhwc") act_tag = rank == 3 ? memory::format_tag::nwc : rank == 4 ? memory::format_tag::nhwc : memory::format_tag::ndhwc;
  else if (variant == "nchw") act_tag = rank == 3 ? memory::format_tag::ncw : rank == 4 ? memory::format_tag::nchw : memory::format_tag::ncdhw;
  else if (variant != "direct") unsupported(b, n, "unknown Conv variant '" + variant + "' (known: auto, direct, winograd, bf16, nhwc, nchw)");
  const auto compute_t = variant == "bf16" ? memory::data_type::bf16 : memory::data_type::f32;
  auto any = [act_tag](const Shape& s, memory::data_type t) { return memory::desc(dims(s.begin(), s.end()), t, act_tag); };
  dims wdims;
  if (group > 1) {
    wdims = {group, M / group};
    wdims.insert(wdims.end(), wv.shape.begin() + 1, wv.shape.end());
  } else {
    wdims = dims(wv.shape.begin(), wv.shape.end());
  }
  const memory::desc w_any(wdims, compute_t, memory::format_tag::any);
  const memory::desc b_md({M}, memory::data_type::f32, memory::format_tag::a);
  auto make_pd = [&](const memory::desc& src_md) {
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(kInference, algorithm, src_md, w_any, b_md, any(yv.shape, memory::data_type::f32),
                                        win.strides, win.dilation, win.pad_l, win.pad_r),
        attr, cpu_engine());
  };
  dnnl::convolution_forward::primitive_desc pd;
  try {
    pd = make_pd(any(xv.shape, compute_t));
  } catch (const dnnl::error& e) {
    unsupported(b, n, "oneDNN has no convolution for this configuration (variant '" + (variant.empty() ? "auto" : variant) + "'): " + e.what());
  }
  // Layout propagation: when the input already sits in another layout, take it as it is if
  // oneDNN has a JIT kernel for that layout too, instead of reordering.
  const memory::desc& have = b.slots[size_t(b.slot_of(x))].md;
  const bool from_input = b.slots[size_t(b.slot_of(x))].storage == Slot::Storage::input;
  if (act_tag == memory::format_tag::any && compute_t == memory::data_type::f32 && have != pd.src_desc() &&
      have.data_type() == memory::data_type::f32 && (b.options.adopt_input_layout || !from_input)) {
    try {
      auto alt = make_pd(have);
      // Only when the kernel is the very one oneDNN prefers (same algorithm and ISA), just reading
      // another layout: "gemm:jit" is im2col + GEMM (far slower for depthwise), and the nChw8c
      // that grouped convolutions leave behind would send a 1x1 convolution to an AVX2 kernel
      // instead of the AVX-512 one; a reorder costs less than either.
      if (std::string(alt.impl_info_str()) == std::string(pd.impl_info_str())) pd = alt;
    } catch (const dnnl::error&) {
      // keep the preferred layout and reorder
    }
  }
  const int src = b.as_layout(b.slot_of(x), pd.src_desc(), compute_t == memory::data_type::bf16 ? "bf16" : "conv");
  const int out = b.new_slot(val(b, out_value).name, DType::float32, val(b, out_value).shape, pd.dst_desc());
  if (residual >= 0) add_copy(b, b.slot_of(residual), out, names.back());
  auto step = primitive_step(names, kind);
  step->prim = dnnl::convolution_forward(pd);
  const memory::desc w_plain = plain_md(DType::float32, Shape(wdims.begin(), wdims.end()));
  step->own_args = {{DNNL_ARG_WEIGHTS, b.prepack(*step, w, w_plain, weights, pd.weights_desc())}, {DNNL_ARG_BIAS, vector_memory(bias)}};
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
  step->reads = {src};
  if (residual >= 0) step->reads.push_back(out);
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(out_value, out);
}

// ---- ConvTranspose ------------------------------------------------------------------------------

void lower_conv_transpose(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const int x = n.inputs.at(0), w = n.inputs.at(1), bias_v = input_or_none(n, 2);
  if (!b.is_constant(w) || (bias_v >= 0 && !b.is_constant(bias_v))) unsupported(b, n, "ConvTranspose needs constant weights and bias");
  const Value& xv = val(b, x);
  if (xv.dtype != DType::float32 || val(b, n.outputs.at(0)).dtype != DType::float32)
    unsupported(b, n, "only float32 transposed convolutions are supported (this one is " + dtype_name(xv.dtype) + ")");
  const Value& wv = val(b, w);
  const Value& yv = val(b, n.outputs.at(0));
  const int64_t group = n.attr_int("group", 1);
  const int64_t C = wv.shape[0], Mg = wv.shape[1];
  dims kernel(wv.shape.begin() + 2, wv.shape.end());
  const size_t sp = kernel.size();
  auto strides = n.attr_ints("strides", std::vector<int64_t>(sp, 1));
  auto dil = n.attr_ints("dilations", std::vector<int64_t>(sp, 1));
  auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * sp, 0));
  if (n.attr_string("auto_pad", "NOTSET") != "NOTSET") unsupported(b, n, "ConvTranspose with auto_pad is not supported yet");
  dims pl, pr, dd;
  for (size_t i = 0; i < sp; ++i) {
    const int64_t in_i = xv.shape[2 + i], out_i = yv.shape[2 + i];
    pl.push_back(pads[i]);
    // out = (in-1)*s - pl - pr + (k-1)*d + 1  (output_padding shows up as a smaller pr)
    pr.push_back((in_i - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - out_i - pads[i]);
    dd.push_back(dil[i] - 1);
  }
  auto weights = b.placeholder(w) ? std::vector<float>() : b.constant_floats(w);
  auto bias = bias_v >= 0 ? b.constant_floats(bias_v) : std::vector<float>(size_t(Mg * group), 0.f);
  // ONNX W is [C, M/g, k...]: oneDNN's (g)iohw layout.
  dims wdims = group > 1 ? dims{group, Mg, C / group} : dims{Mg, C};
  wdims.insert(wdims.end(), kernel.begin(), kernel.end());
  dims plain_strides(wdims.size());
  {
    // strides of [g][i][o][k...] storage for dims [g][o][i][k...]
    int64_t kprod = 1;
    for (auto k : kernel) kprod *= k;
    size_t o_pos = group > 1 ? 1 : 0, i_pos = o_pos + 1;
    int64_t s = 1;
    for (size_t d = wdims.size(); d-- > i_pos + 1;) {
      plain_strides[d] = s;
      s *= wdims[d];
    }
    plain_strides[o_pos] = kprod;
    plain_strides[i_pos] = kprod * wdims[o_pos];
    if (group > 1) plain_strides[0] = kprod * wdims[1] * wdims[2];
  }
  dnnl::post_ops po;
  std::vector<std::string> names = {n.name};
  std::string kind = "deconv";
  const int out_value = absorb_activations(b, n.outputs[0], po, names, kind);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  auto any = [](const Shape& s) { return memory::desc(dims(s.begin(), s.end()), memory::data_type::f32, memory::format_tag::any); };
  dnnl::deconvolution_forward::primitive_desc pd;
  try {
    pd = dnnl::deconvolution_forward::primitive_desc(
        dnnl::deconvolution_forward::desc(kInference, alg::deconvolution_direct, any(xv.shape),
                                          memory::desc(wdims, memory::data_type::f32, memory::format_tag::any),
                                          memory::desc({Mg * group}, memory::data_type::f32, memory::format_tag::a), any(yv.shape),
                                          dims(strides.begin(), strides.end()), dd, pl, pr),
        attr, cpu_engine());
  } catch (const dnnl::error& e) {
    unsupported(b, n, std::string("oneDNN has no deconvolution for this configuration: ") + e.what());
  }
  const int src = b.as_layout(b.slot_of(x), pd.src_desc(), "deconv");
  const int out = b.new_slot(val(b, out_value).name, DType::float32, val(b, out_value).shape, pd.dst_desc());
  auto step = primitive_step(names, kind);
  step->prim = dnnl::deconvolution_forward(pd);
  step->own_args = {{DNNL_ARG_WEIGHTS, b.prepack(*step, w, memory::desc(wdims, memory::data_type::f32, plain_strides), weights, pd.weights_desc())},
                    {DNNL_ARG_BIAS, vector_memory(bias)}};
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
  step->reads = {src};
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(out_value, out);
}

// ---- Gemm / MatMul ------------------------------------------------------------------------------

// Gemm (alpha, beta, transA, transB, C) or MatMul (numpy-broadcast batched product).
void lower_matmul(PlanBuilder& b, int index, bool gemm) {
  const Node& n = node_at(b, index);
  const int a = n.inputs.at(0), bw = n.inputs.at(1);
  const Value& av = val(b, a);
  const Value& bv = val(b, bw);
  if (av.dtype != DType::float32 || bv.dtype != DType::float32) unsupported(b, n, "only float32 matrix products are supported");
  // Logical shapes with the rank-1 cases made 2-D and batch ranks aligned.
  Shape as = av.shape, bs = bv.shape;
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const bool trans_a = gemm && n.attr_int("transA", 0), trans_b = gemm && n.attr_int("transB", 0);
  const size_t rank = std::max(as.size(), bs.size());
  while (as.size() < rank) as.insert(as.begin(), 1);
  while (bs.size() < rank) bs.insert(bs.begin(), 1);
  if (!gemm && rank > 2) {
    // A batch of products with one shared 2-D B ([L, 1, E] x [E, F], as in ViT's attention
    // projections): one GEMM over all of A's rows instead of L products of one row each.
    bool shared_b = true;
    int64_t rows = 1;
    for (size_t i = 0; i + 2 < rank; ++i) shared_b = shared_b && bs[i] == 1;
    for (size_t i = 0; i + 1 < rank; ++i) rows *= as[i];
    if (shared_b && rows != as[rank - 2]) {
      Shape folded(rank, 1);
      folded[rank - 2] = rows;
      folded[rank - 1] = as[rank - 1];
      as = folded;
    }
  }
  auto swap_last = [](Shape s) { std::swap(s[s.size() - 1], s[s.size() - 2]); return s; };
  auto strides_of = [](const Shape& s, bool transposed) {
    // row-major strides of the stored tensor; for a transposed operand, swap the last two.
    Shape stored = s;
    if (transposed) std::swap(stored[stored.size() - 1], stored[stored.size() - 2]);
    dims st(stored.size(), 1);
    for (size_t i = stored.size() - 1; i-- > 0;) st[i] = st[i + 1] * stored[i + 1];
    if (transposed) std::swap(st[st.size() - 1], st[st.size() - 2]);
    return st;
  };
  const Shape a_logical = trans_a ? swap_last(as) : as;
  const Shape b_logical = trans_b ? swap_last(bs) : bs;
  Shape y_logical = a_logical;
  y_logical.back() = b_logical.back();
  for (size_t i = 0; i + 2 < rank; ++i) y_logical[i] = std::max(a_logical[i], b_logical[i]);
  const memory::desc a_md(dims(a_logical.begin(), a_logical.end()), memory::data_type::f32, strides_of(a_logical, trans_a));
  const memory::desc y_md = plain_md(DType::float32, y_logical);

  std::vector<std::string> names = {n.name};
  std::string kind = gemm ? "gemm" : "matmul";
  int out_value = n.outputs[0];
  // Bias: Gemm's C (times beta), or a following Add of a constant row vector.
  std::vector<float> bias;
  Shape bias_shape;
  const float alpha = gemm ? float(n.attr_float("alpha", 1.0)) : 1.f;
  if (gemm && input_or_none(n, 2) >= 0) {
    const int c = n.inputs[2];
    if (!b.is_constant(c)) unsupported(b, n, "Gemm with a C computed at run time is not supported");
    bias = b.constant_floats(c);
    const float beta = float(n.attr_float("beta", 1.0));
    for (auto& x : bias) x *= beta;
    bias_shape = val(b, c).shape;
  } else if (b.options.fusion && b.options.fuse_bias) {
    const int c = b.sole_consumer(out_value);
    if (c >= 0 && !b.done(c) && binary_fn(node_at(b, c)) == EltFn::add) {
      const Node& add = node_at(b, c);
      const int other = add.inputs[0] == out_value ? add.inputs[1] : add.inputs[0];
      if (b.is_constant(other) && val(b, other).shape.size() <= 1 && val(b, out_value).shape == val(b, add.outputs[0]).shape) {
        bias = b.constant_floats(other);
        bias_shape = val(b, other).shape;
        b.mark_done(c);
        names.push_back(add.name);
        kind += "+Add";
        out_value = add.outputs[0];
      }
    }
  }
  memory::desc bias_md;
  if (!bias.empty()) {
    // Broadcast the bias (scalar, [N], [1,N] or [M,N]) against the rank-aligned output.
    Shape bshape(rank, 1);
    for (size_t i = 0; i < bias_shape.size(); ++i) bshape[rank - bias_shape.size() + i] = bias_shape[i];
    for (size_t i = 0; i < rank; ++i)
      if (bshape[i] != 1 && bshape[i] != y_logical[i]) unsupported(b, n, "bias shape " + shape_str(bias_shape) + " does not broadcast");
    bias_md = plain_md(DType::float32, bshape);
  }
  dnnl::post_ops po;
  out_value = absorb_activations(b, out_value, po, names, kind);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  const bool const_b = b.is_constant(bw);
  // Variants: "fp32" (default) or "bf16" (A and constant B in bfloat16, float32 accumulation
  // and output; A is converted by a reorder step that counts in the run time).
  const std::string variant = b.variant_for(n);
  const bool bf16 = variant == "bf16";
  if (!variant.empty() && variant != "default" && variant != "fp32" && !bf16)
    unsupported(b, n, "unknown " + n.op + " variant '" + variant + "' (known: fp32, bf16)");
  if (bf16 && (!const_b || trans_a)) unsupported(b, n, "the bf16 variant needs a constant, untransposed-A operand pair");
  const auto compute_t = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::desc a_compute = bf16 ? memory::desc(dims(a_logical.begin(), a_logical.end()), compute_t, strides_of(a_logical, false)) : a_md;
  // alpha: folded into constant weights; otherwise an output scale, which oneDNN applies to
  // (A.B + bias), so the bias is pre-divided by it.
  if (alpha != 1.f && !const_b) {
    if (alpha == 0.f) unsupported(b, n, "Gemm with alpha = 0 and a run-time B is not supported");
    attr.set_output_scales(0, {alpha});
    for (auto& x : bias) x /= alpha;
  }
  const memory::desc b_md = const_b ? memory::desc(dims(b_logical.begin(), b_logical.end()), compute_t, memory::format_tag::any)
                                    : memory::desc(dims(b_logical.begin(), b_logical.end()), memory::data_type::f32, strides_of(b_logical, trans_b));
  dnnl::matmul::primitive_desc pd;
  try {
    pd = bias.empty() ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_compute, b_md, y_md), attr, cpu_engine())
                      : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_compute, b_md, bias_md, y_md), attr, cpu_engine());
  } catch (const dnnl::error& e) {
    unsupported(b, n, std::string("oneDNN has no matmul for these shapes: ") + e.what());
  }
  const int a_slot = b.plain(b.slot_of(a));
  // The A operand is read through its own (possibly transposed) view of the plain buffer.
  int a_view = b.new_slot(val(b, a).name + "@view", DType::float32, a_logical, a_md);
  b.slots[size_t(a_view)].alias_of = a_slot;
  if (bf16) a_view = b.as_layout(a_view, a_compute, "bf16");
  const Value& ov = val(b, out_value);
  const int out = b.new_slot(ov.name, DType::float32, ov.shape, plain_md(DType::float32, ov.shape));
  int out_view = out;
  if (ov.shape != y_logical) {  // rank-1 operands: the primitive writes a rank-aligned view
    out_view = b.new_slot(ov.name + "@view", DType::float32, y_logical, y_md);
    b.slots[size_t(out_view)].alias_of = out;
  }
  auto step = primitive_step(names, kind);
  step->prim = dnnl::matmul(pd);
  step->slot_args = {{DNNL_ARG_SRC, a_view}, {DNNL_ARG_DST, out_view}};
  if (const_b) {
    auto wf = b.placeholder(bw) ? std::vector<float>() : b.constant_floats(bw);
    if (alpha != 1.f)
      for (auto& x : wf) x *= alpha;
    step->own_args.push_back({DNNL_ARG_WEIGHTS, b.prepack(*step, bw, memory::desc(dims(b_logical.begin(), b_logical.end()), memory::data_type::f32,
                                                                     strides_of(b_logical, trans_b)),
                                                          wf, pd.weights_desc())});
    step->reads = {a_view};
  } else {
    const int b_slot = b.plain(b.slot_of(bw));
    const int b_view = b.new_slot(val(b, bw).name + "@view", DType::float32, b_logical, b_md);
    b.slots[size_t(b_view)].alias_of = b_slot;
    step->slot_args.push_back({DNNL_ARG_WEIGHTS, b_view});
    step->reads = {a_view, b_view};
  }
  if (!bias.empty()) step->own_args.push_back({DNNL_ARG_BIAS, [&] {
    memory m(bias_md, cpu_engine());
    std::memcpy(m.get_data_handle(), bias.data(), bias.size() * sizeof(float));
    return m;
  }()});
  step->writes = {out_view};
  b.add_step(std::move(step));
  b.bind(out_value, out);
}

// ---- pooling, normalisation, eltwise, binary, softmax, concat, reductions -----------------------

void lower_pool(PlanBuilder& b, int index, bool global, bool is_max) {
  const Node& n = node_at(b, index);
  int x = n.inputs.at(0);
  // A zero Pad folded into this pool (see pad_folded_into_pool): read the Pad's input, pad more.
  std::vector<int64_t> folded;
  const int pad_node = val(b, x).producer;
  if (pad_node >= 0 && def_of(b.graph.nodes[size_t(pad_node)]).pads_constant) {
    folded = pad_folded_into_pool(b, pad_node);
    if (!folded.empty()) x = b.graph.nodes[size_t(pad_node)].inputs.at(0);
  }
  const Value& xv = val(b, x);
  const Value& yv = val(b, n.outputs.at(0));
  if (n.outputs.size() > 1 && n.outputs[1] >= 0) unsupported(b, n, "MaxPool's Indices output is not supported");
  // A pool needs (N, C, D1, ...): with no spatial dim oneDNN's descriptor would index empty lists.
  if (xv.shape.size() < 3 || yv.shape.size() != xv.shape.size())
    unsupported(b, n, "pooling needs an input of rank >= 3 (N, C, spatial dims); this one is " + shape_str(xv.shape));
  dims kernel = global ? dims(xv.shape.begin() + 2, xv.shape.end()) : [&] {
    auto k = n.attr_ints("kernel_shape");
    return dims(k.begin(), k.end());
  }();
  if (kernel.size() + 2 != xv.shape.size()) unsupported(b, n, "kernel rank does not match the input");
  Window w = global ? Window{kernel, dims(kernel.size(), 1), dims(kernel.size(), 0), dims(kernel.size(), 0), dims(kernel.size(), 0),
                             dims(kernel.size(), 0)}
                    : make_window(b, n, xv.shape, yv.shape, kernel);
  // make_window derived the end pads from the unpadded input's size, so they already include the
  // Pad's end pads; the begin pads move from the right to the left.
  for (size_t i = 0; !folded.empty() && i < kernel.size(); ++i) {
    w.pad_l[i] += folded[i];
    w.pad_r[i] -= folded[i];
  }
  alg a = alg::pooling_max;
  if (!is_max) {
    const bool include = n.attr_int("count_include_pad", 0) != 0 || !folded.empty();
    // Does ceil_mode add windows that overhang the declared end padding?
    bool extra_pad = false;
    for (size_t i = 0; i < kernel.size(); ++i) extra_pad = extra_pad || w.pad_r[i] > w.pad_r_declared[i];
    extra_pad = extra_pad && n.attr_int("ceil_mode", 0) != 0;
    if (include && extra_pad) {
      // oneDNN would count the ceil_mode overhang as padding; ONNX (and PyTorch) count only the
      // declared pads. A plain kernel with ONNX's divisor.
      if (xv.shape.size() != 4) unsupported(b, n, "AveragePool with ceil_mode and count_include_pad is supported for 2-D pooling only");
      const dims pads = {w.pad_l[0], w.pad_l[1], w.pad_r_declared[0], w.pad_r_declared[1]};  // ONNX's order
      const int src = b.plain(b.slot_of(x));
      const int out = b.new_slot(yv.name, DType::float32, yv.shape, plain_md(DType::float32, yv.shape));
      b.bind(n.outputs[0], out);
      auto step = std::make_unique<FunctionStep>();
      step->nodes = {n.name};
      step->kind = "pool(plain)";
      step->reads = {src};
      step->writes = {out};
      const int64_t NC = xv.shape[0] * xv.shape[1], H = xv.shape[2], W = xv.shape[3], OH = yv.shape[2], OW = yv.shape[3];
      const Window win = w;
      step->fn = [=](Runtime& rt) {
        const float* in = rt.data<float>(src);
        float* o = rt.data<float>(out);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < NC; ++c)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t h0 = oh * win.strides[0] - pads[0], w0 = ow * win.strides[1] - pads[1];
              const int64_t h1 = std::min(h0 + win.kernel[0], H + pads[2]), w1 = std::min(w0 + win.kernel[1], W + pads[3]);
              double acc = 0;
              for (int64_t i = std::max<int64_t>(h0, 0); i < std::min(h1, H); ++i)
                for (int64_t j = std::max<int64_t>(w0, 0); j < std::min(w1, W); ++j) acc += in[(c * H + i) * W + j];
              o[(c * OH + oh) * OW + ow] = float(acc / double((h1 - h0) * (w1 - w0)));
            }
      };
      b.add_step(std::move(step));
      return;
    }
    a = include ? alg::pooling_avg_include_padding : alg::pooling_avg_exclude_padding;
  }
  const int src = b.slot_of(x);
  dnnl::pooling_v2_forward::primitive_desc pd;
  try {
    pd = dnnl::pooling_v2_forward::primitive_desc(
        dnnl::pooling_v2_forward::desc(kInference, a, b.slots[size_t(src)].md,
                                       memory::desc(dims(yv.shape.begin(), yv.shape.end()), memory::data_type::f32, memory::format_tag::any),
                                       w.strides, w.kernel, w.dilation, w.pad_l, w.pad_r),
        cpu_engine());
  } catch (const dnnl::error& e) {
    unsupported(b, n, std::string("oneDNN has no pooling for this configuration: ") + e.what());
  }
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, pd.dst_desc());
  auto step = primitive_step({n.name}, "pool");
  step->prim = dnnl::pooling_v2_forward(pd);
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
  step->reads = {src};
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
}

void lower_batchnorm(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  for (size_t i = 1; i < 5; ++i)
    if (!b.is_constant(input_or_none(n, i))) unsupported(b, n, "BatchNormalization needs constant scale, bias, mean and variance");
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i] >= 0) unsupported(b, n, "training-mode BatchNormalization outputs are not supported");
  const int src = b.slot_of(n.inputs[0]);
  auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  // A ReLU right after (pre-activation blocks, e.g. DenseNet) runs inside the batch norm.
  std::vector<std::string> names = {n.name};
  std::string kind = "batchnorm";
  int out_value = n.outputs[0];
  if (b.options.fusion && b.options.fuse_activation) {
    const int c = b.sole_consumer(out_value);
    if (c >= 0 && !b.done(c) && fn_of(node_at(b, c)) == EltFn::relu) {
      flags = flags | dnnl::normalization_flags::fuse_norm_relu;
      b.mark_done(c);
      names.push_back(node_at(b, c).name);
      kind += "+Relu";
      out_value = node_at(b, c).outputs[0];
    }
  }
  dnnl::batch_normalization_forward::primitive_desc pd(
      dnnl::batch_normalization_forward::desc(kInference, b.slots[size_t(src)].md, float(n.attr_float("epsilon", 1e-5)), flags), cpu_engine());
  const Value& yv = val(b, out_value);
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, pd.dst_desc());
  auto step = primitive_step(names, kind);
  step->prim = dnnl::batch_normalization_forward(pd);
  step->own_args = {{DNNL_ARG_SCALE, vector_memory(b.constant_floats(n.inputs[1]))},
                    {DNNL_ARG_SHIFT, vector_memory(b.constant_floats(n.inputs[2]))},
                    {DNNL_ARG_MEAN, vector_memory(b.constant_floats(n.inputs[3]))},
                    {DNNL_ARG_VARIANCE, vector_memory(b.constant_floats(n.inputs[4]))}};
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
  step->reads = {src};
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(out_value, out);
}

bool lower_eltwise(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  auto ops = eltwise_of(b, n);
  if (ops.empty() || val(b, n.inputs[0]).dtype != DType::float32) return false;
  const int src = b.slot_of(n.inputs[0]);
  std::vector<std::string> names = {n.name};
  std::string kind = n.op;
  dnnl::post_ops po;
  for (size_t i = 1; i < ops.size(); ++i) po.append_eltwise(1.f, ops[i].algorithm, ops[i].alpha, ops[i].beta);
  const int out_value = absorb_activations(b, n.outputs[0], po, names, kind);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  dnnl::eltwise_forward::primitive_desc pd(
      dnnl::eltwise_forward::desc(kInference, ops[0].algorithm, b.slots[size_t(src)].md, ops[0].alpha, ops[0].beta), attr, cpu_engine());
  const Value& yv = val(b, out_value);
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, pd.dst_desc());
  auto step = primitive_step(names, kind);
  step->prim = dnnl::eltwise_forward(pd);
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
  step->reads = {src};
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(out_value, out);
  return true;
}

// A per-(batch, channel) operand applied to a channel-blocked tensor (nChw8c, nChw16c, ...: the
// layout grouped convolutions leave behind) by a plain loop over the blocked storage: oneDNN 2.6
// has no JIT binary kernel for 8-channel blocks on AVX-512, and its reference kernel is ~100x
// slower (the squeeze-excitation scales of RegNet). Returns false when the layout is not one
// channel block over dense spatial dims.
bool lower_channel_broadcast(PlanBuilder& b, const Node& n, int src0, int c, alg op) {
  const memory::desc md = b.slots[size_t(src0)].md;
  const auto& d = md.data;
  if (d.format_kind != dnnl_blocked || d.ndims < 3) return false;
  const auto& blk = d.format_desc.blocking;
  if (blk.inner_nblks != 1 || blk.inner_idxs[0] != 1) return false;
  const int64_t B = blk.inner_blks[0], nd = d.ndims;
  int64_t spatial = 1;
  for (int k = 2; k < nd; ++k) spatial *= d.padded_dims[k];
  // Dense: the last spatial dim has stride B, each outer one the product of the inner ones, the
  // channel-block stride spatial * B; batches may be further apart.
  int64_t expect = B;
  for (int k = int(nd) - 1; k >= 2; --k) {
    if (blk.strides[k] != expect) return false;
    expect *= d.padded_dims[k];
  }
  if (blk.strides[1] != expect || blk.strides[0] < expect * (d.padded_dims[1] / B)) return false;
  if (!(op == alg::binary_mul || op == alg::binary_add || op == alg::binary_sub || op == alg::binary_div)) return false;
  const int64_t N = d.dims[0], C = d.dims[1], CB = d.padded_dims[1] / B, nstride = blk.strides[0];
  const Shape& cshape = val(b, c).shape;
  if (B > 64 || cshape.size() != size_t(nd) || cshape[1] != C || (cshape[0] != 1 && cshape[0] != N)) return false;
  for (int k = 2; k < nd; ++k)
    if (cshape[size_t(k)] != 1) return false;
  const int scale = b.plain(b.slot_of(c));  // [N or 1, C, 1, ...] plain
  const int64_t scale_n = val(b, c).shape.size() == size_t(nd) ? val(b, c).shape[0] : 1;
  const int out = b.new_slot(val(b, n.outputs[0]).name, DType::float32, val(b, n.outputs[0]).shape, md);
  b.bind(n.outputs[0], out);
  add_fn(b, n, n.op + "(channel-broadcast)", {src0, scale}, {out})->fn = [=](Runtime& rt) {
    const float* x = rt.data<float>(src0);
    const float* sc = rt.data<float>(scale);
    float* y = rt.data<float>(out);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < N; ++i)
      for (int64_t cb = 0; cb < CB; ++cb) {
        float v[64];
        for (int64_t k = 0; k < B; ++k) {
          const int64_t ch = cb * B + k;
          v[k] = ch < C ? sc[(scale_n == 1 ? 0 : i) * C + ch] : 0.f;
        }
        const int64_t base = i * nstride + cb * spatial * B;
        const float* xs = x + base;
        float* ys = y + base;
        const int64_t valid = std::min<int64_t>(B, C - cb * B);  // padded channels stay zero
        for (int64_t s = 0; s < spatial; ++s) {
          const float* xp = xs + s * B;
          float* yp = ys + s * B;
          switch (op) {
            case alg::binary_mul: for (int64_t k = 0; k < B; ++k) yp[k] = xp[k] * v[k]; break;
            case alg::binary_add: for (int64_t k = 0; k < B; ++k) yp[k] = k < valid ? xp[k] + v[k] : 0.f; break;
            case alg::binary_sub: for (int64_t k = 0; k < B; ++k) yp[k] = k < valid ? xp[k] - v[k] : 0.f; break;
            default: for (int64_t k = 0; k < B; ++k) yp[k] = k < valid ? xp[k] / v[k] : 0.f; break;
          }
        }
      }
  };
  return true;
}

// y = op(a, c) with `a` of the output's shape and `c` broadcast to it, plain layouts, as a row
// loop: for the broadcast patterns oneDNN 2.6 leaves to its reference kernel (an operand of shape
// [..., 1] as in decomposed LayerNorm, or [1, 1, H, W]), which is 100x slower.
void lower_plain_broadcast(PlanBuilder& b, const Node& n, int a_value, int c_value, alg op) {
  const Shape yshape = val(b, n.outputs[0]).shape;
  Shape cs = val(b, c_value).shape;
  while (cs.size() < yshape.size()) cs.insert(cs.begin(), 1);
  const size_t R = yshape.size();
  std::vector<int64_t> cstride(R, 0);
  for (int64_t k = int64_t(R) - 1, st = 1; k >= 0; --k) {
    cstride[size_t(k)] = cs[size_t(k)] == 1 ? 0 : st;
    st *= cs[size_t(k)];
  }
  const int64_t inner = R ? yshape[R - 1] : 1;
  const int64_t inner_stride = R ? cstride[R - 1] : 0;
  const int64_t rows = inner ? shape_numel(yshape) / inner : 0;
  const int src0 = b.plain(b.slot_of(a_value));
  const int src1 = b.plain(b.slot_of(c_value));
  const int out = b.new_slot(val(b, n.outputs[0]).name, DType::float32, yshape, plain_md(DType::float32, yshape));
  b.bind(n.outputs[0], out);
  add_fn(b, n, n.op + "(broadcast)", {src0, src1}, {out})->fn = [=](Runtime& rt) {
    const float* x = rt.data<float>(src0);
    const float* cv = rt.data<float>(src1);
    float* y = rt.data<float>(out);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t rem = r, off = 0;
      for (int64_t k = int64_t(R) - 2; k >= 0; --k) {
        off += (rem % yshape[size_t(k)]) * cstride[size_t(k)];
        rem /= yshape[size_t(k)];
      }
      const float* xr = x + r * inner;
      const float* cr = cv + off;
      float* yr = y + r * inner;
      auto run = [&](auto f) {
        if (inner_stride == 0) {
          const float cc = cr[0];
          for (int64_t i = 0; i < inner; ++i) yr[i] = f(xr[i], cc);
        } else {
          for (int64_t i = 0; i < inner; ++i) yr[i] = f(xr[i], cr[i]);
        }
      };
      switch (op) {
        case alg::binary_add: run([](float p, float q) { return p + q; }); break;
        case alg::binary_sub: run([](float p, float q) { return p - q; }); break;
        case alg::binary_mul: run([](float p, float q) { return p * q; }); break;
        case alg::binary_div: run([](float p, float q) { return p / q; }); break;
        case alg::binary_max: run([](float p, float q) { return std::max(p, q); }); break;
        default: run([](float p, float q) { return std::min(p, q); }); break;
      }
    }
  };
}

bool lower_binary(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  static const std::map<EltFn, alg> table = {{EltFn::add, alg::binary_add}, {EltFn::sub, alg::binary_sub}, {EltFn::mul, alg::binary_mul},
                                             {EltFn::div, alg::binary_div}, {EltFn::max, alg::binary_max}, {EltFn::min, alg::binary_min}};
  const EltFn f = binary_fn(n);
  auto it = table.find(f);
  if (it == table.end()) return false;
  int a = -1, c = -1;
  for (int v : n.inputs)
    if (v >= 0) (a < 0 ? a : c) = v;
  const Value& yv = val(b, n.outputs[0]);
  if (val(b, a).dtype != DType::float32 || val(b, c).dtype != DType::float32) return false;
  const bool commutative = f == EltFn::add || f == EltFn::mul || f == EltFn::max || f == EltFn::min;
  if (val(b, a).shape != yv.shape) {
    if (!commutative || val(b, c).shape != yv.shape) return false;  // both broadcast, or src0 broadcast: plain kernel
    std::swap(a, c);
  }
  Shape cs = val(b, c).shape;
  while (cs.size() < yv.shape.size()) cs.insert(cs.begin(), 1);
  int src0 = b.slot_of(a);
  int src1;
  if (val(b, c).shape == yv.shape) {
    src1 = b.as_layout(b.slot_of(c), b.slots[size_t(src0)].md, "binary");
  } else if (b.slots[size_t(src0)].blocked && cs.size() == yv.shape.size() && cs.size() >= 3 && !b.is_constant(c) &&
             val(b, c).shape == cs) {
    // A per-(batch, channel) operand of a blocked tensor (squeeze-excitation scales): give it the
    // same blocked layout, so oneDNN uses its vectorised broadcast kernel instead of the reference one.
    const memory::desc src0_md = b.slots[size_t(src0)].md;
    const dims full = src0_md.dims();
    using tag = memory::format_tag;
    const std::vector<tag> tags = cs.size() == 4 ? std::vector<tag>{tag::nChw16c, tag::nChw8c, tag::nhwc}
                                                 : cs.size() == 5 ? std::vector<tag>{tag::nCdhw16c, tag::nCdhw8c, tag::ndhwc}
                                                                  : std::vector<tag>{tag::nCw16c, tag::nCw8c, tag::nwc};
    src1 = -1;
    for (tag t : tags)
      if (memory::desc(full, memory::data_type::f32, t) == src0_md) {
        const memory::desc bmd(dims(cs.begin(), cs.end()), memory::data_type::f32, t);
        // Only where oneDNN has a JIT kernel for it; otherwise the plain channel loop below.
        const dnnl::binary::primitive_desc probe(dnnl::binary::desc(it->second, src0_md, bmd, src0_md), cpu_engine());
        if (std::string(probe.impl_info_str()).find("ref") == std::string::npos) src1 = b.as_layout(b.slot_of(c), bmd, "bcast");
        break;
      }
    if (src1 < 0 && lower_channel_broadcast(b, n, src0, c, it->second)) return true;
    if (src1 < 0) src1 = b.plain(b.slot_of(c));
  } else {
    // A broadcast operand is read as a plain tensor of the aligned rank.
    const int p = b.plain(b.slot_of(c));
    src1 = b.new_slot(val(b, c).name + "@bcast", DType::float32, cs, plain_md(DType::float32, cs));
    b.slots[size_t(src1)].alias_of = p;
  }
  auto only_reference = [&] {
    try {
      const dnnl::binary::primitive_desc probe(
          dnnl::binary::desc(it->second, b.slots[size_t(src0)].md, b.slots[size_t(src1)].md, b.slots[size_t(src0)].md), cpu_engine());
      return std::string(probe.impl_info_str()).find("ref") != std::string::npos;
    } catch (const dnnl::error&) {
      return true;
    }
  };
  if (val(b, c).shape != yv.shape) {
    // A broadcast oneDNN has only its reference kernel for: the plain row loop instead.
    if (only_reference()) {
      lower_plain_broadcast(b, n, a, c, it->second);
      return true;
    }
  } else if (only_reference()) {
    // Same shapes in a layout oneDNN's JIT kernels do not take (e.g. a transposed view such as
    // ViT's [L, N, E] -> [N, L, E] attention output): both operands plain, so its JIT kernel runs.
    // Operands oneDNN produced may carry a descriptor that compares equal to the plain one but
    // is written with other strides for size-1 dims ("bac" for 1 x L x E): give them the
    // canonical plain descriptor (same bytes, an alias), which the JIT kernel accepts.
    auto canonical = [&](int s) {
      if (b.slots[size_t(s)].blocked) return b.plain(s);
      const Slot sl = b.slots[size_t(s)];
      const int v = b.new_slot(sl.name + "@plain", sl.dtype, sl.shape, plain_md(sl.dtype, sl.shape));
      b.slots[size_t(v)].alias_of = s;
      return v;
    };
    src0 = canonical(src0);
    src1 = canonical(src1);
  }
  std::vector<std::string> names = {n.name};
  std::string kind = n.op;
  dnnl::post_ops po;
  const int out_value = absorb_activations(b, n.outputs[0], po, names, kind);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  dnnl::binary::primitive_desc pd;
  try {
    pd = dnnl::binary::primitive_desc(dnnl::binary::desc(it->second, b.slots[size_t(src0)].md, b.slots[size_t(src1)].md, b.slots[size_t(src0)].md),
                                      attr, cpu_engine());
  } catch (const dnnl::error&) {
    src0 = b.plain(src0);  // some blocked + broadcast combinations have no kernel: use plain
    pd = dnnl::binary::primitive_desc(dnnl::binary::desc(it->second, b.slots[size_t(src0)].md, b.slots[size_t(src1)].md, b.slots[size_t(src0)].md),
                                      attr, cpu_engine());
  }
  const Value& ov = val(b, out_value);
  const int out = b.new_slot(ov.name, DType::float32, ov.shape, pd.dst_desc());
  auto step = primitive_step(names, kind);
  step->prim = dnnl::binary(pd);
  step->slot_args = {{DNNL_ARG_SRC_0, src0}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, out}};
  step->reads = {src0, src1};
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(out_value, out);
  return true;
}

// Softmax / LayerNormalization over trailing axes of a plain tensor viewed as [outer, inner].
template <bool log>
void lower_softmax(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const Value& xv = val(b, n.inputs.at(0));
  const Value& yv = val(b, n.outputs.at(0));
  const int64_t rank = int64_t(xv.shape.size());
  int64_t axis = NodeAttrs(b.graph, n).integer("axis");  // the table's default depends on the opset
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1))
    throw ShapeError(b.where(n), "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  if (axis < 0) axis += rank;
  // Opset 13 on: along one axis. Before: over the input flattened to 2-D at `axis`.
  int64_t outer = 1, len = 1, inner = 1;
  for (int64_t i = 0; i < rank; ++i) {
    const int64_t d = xv.shape[size_t(i)];
    if (i < axis) outer *= d;
    else if (i == axis || n.opset < 13) len *= d;
    else inner *= d;
  }
  if (xv.dtype != DType::float32) return lower_softmax_plain(b, n, log, outer, len, inner);
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const memory::desc md3({outer, len, inner}, memory::data_type::f32, memory::format_tag::abc);
  const int view = b.new_slot(xv.name + "@3d", DType::float32, {outer, len, inner}, md3);
  b.slots[size_t(view)].alias_of = src;
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, plain_md(DType::float32, yv.shape));
  const int out3 = b.new_slot(yv.name + "@3d", DType::float32, {outer, len, inner}, md3);
  b.slots[size_t(out3)].alias_of = out;
  auto step = primitive_step({n.name}, n.op);
  if (log) {
    dnnl::logsoftmax_forward::primitive_desc pd(dnnl::logsoftmax_forward::desc(kInference, md3, 1), cpu_engine());
    step->prim = dnnl::logsoftmax_forward(pd);
  } else {
    dnnl::softmax_forward::primitive_desc pd(dnnl::softmax_forward::desc(kInference, md3, 1), cpu_engine());
    step->prim = dnnl::softmax_forward(pd);
  }
  step->slot_args = {{DNNL_ARG_SRC, view}, {DNNL_ARG_DST, out3}};
  step->reads = {view};
  step->writes = {out3};
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
}

// LayerNormalization over the trailing axes from `axis`: oneDNN's primitive on the input viewed
// as [outer, inner], with constant scale and bias.
void lower_layernorm(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const Value& xv = val(b, n.inputs.at(0));
  const Value& yv = val(b, n.outputs.at(0));
  if (xv.dtype != DType::float32) unsupported(b, n, "only float32 LayerNormalization is supported");
  const NodeAttrs attrs(b.graph, n);
  const int64_t rank = int64_t(xv.shape.size());
  const int64_t axis = checked_axis(b, n, attrs.integer("axis"), rank);
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i] >= 0) unsupported(b, n, "LayerNormalization's Mean / InvStdDev outputs are not supported");
  const int gamma = input_or_none(n, 1), beta = input_or_none(n, 2);
  if (gamma < 0 || !b.is_constant(gamma) || (beta >= 0 && !b.is_constant(beta)))
    unsupported(b, n, "LayerNormalization needs constant scale and bias");
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < rank; ++i) (i < axis ? outer : inner) *= xv.shape[size_t(i)];
  auto scale = b.constant_floats(gamma);
  auto shift = beta >= 0 ? b.constant_floats(beta) : std::vector<float>(size_t(inner), 0.f);
  if (int64_t(scale.size()) != inner || int64_t(shift.size()) != inner) unsupported(b, n, "scale/bias must cover exactly the normalised axes");
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const memory::desc md2({outer, inner}, memory::data_type::f32, memory::format_tag::ab);
  const int view = b.new_slot(xv.name + "@2d", DType::float32, {outer, inner}, md2);
  b.slots[size_t(view)].alias_of = src;
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, plain_md(DType::float32, yv.shape));
  const int out2 = b.new_slot(yv.name + "@2d", DType::float32, {outer, inner}, md2);
  b.slots[size_t(out2)].alias_of = out;
  auto step = primitive_step({n.name}, n.op);
  dnnl::layer_normalization_forward::primitive_desc pd(
      dnnl::layer_normalization_forward::desc(kInference, md2, float(attrs.real("epsilon")),
                                              dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift),
      cpu_engine());
  step->prim = dnnl::layer_normalization_forward(pd);
  step->own_args = {{DNNL_ARG_SCALE, vector_memory(scale)}, {DNNL_ARG_SHIFT, vector_memory(shift)}};
  step->slot_args = {{DNNL_ARG_SRC, view}, {DNNL_ARG_DST, out2}};
  step->reads = {view};
  step->writes = {out2};
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
}

void lower_lrn(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const int src = b.slot_of(n.inputs[0]);
  dnnl::lrn_forward::primitive_desc pd(
      dnnl::lrn_forward::desc(kInference, alg::lrn_across_channels, b.slots[size_t(src)].md, n.attr_int("size", 1),
                              float(n.attr_float("alpha", 1e-4)), float(n.attr_float("beta", 0.75)), float(n.attr_float("bias", 1.0))),
      cpu_engine());
  const Value& yv = val(b, n.outputs[0]);
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, pd.dst_desc());
  auto step = primitive_step({n.name}, "lrn");
  step->prim = dnnl::lrn_forward(pd);
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
  step->reads = {src};
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
}

// Channel block of a layout over dense spatial dims: 1 for plain NC..., B for nC...Bc, -1 for
// channels-last (N...C); 0 when the layout is anything else.
int64_t channel_block(const memory::desc& md) {
  const auto& d = md.data;
  if (d.format_kind != dnnl_blocked || d.ndims < 3) return 0;
  const auto& blk = d.format_desc.blocking;
  if (blk.inner_nblks == 0 && blk.strides[1] == 1) {
    // Channels-last (NHWC, NDHWC, NWC): -1.
    int64_t expect = d.dims[1];
    for (int k = d.ndims - 1; k >= 2; --k) {
      if (blk.strides[k] != expect) return 0;
      expect *= d.dims[k];
    }
    return blk.strides[0] == expect ? -1 : 0;
  }
  int64_t B = 1;
  if (blk.inner_nblks == 1 && blk.inner_idxs[0] == 1) B = blk.inner_blks[0];
  else if (blk.inner_nblks != 0) return 0;
  int64_t expect = B;
  for (int k = d.ndims - 1; k >= 2; --k) {
    if (blk.strides[k] != expect) return 0;
    expect *= d.padded_dims[k];
  }
  if (blk.strides[1] != expect || blk.strides[0] < expect * (d.padded_dims[1] / B)) return 0;
  return B;
}

// Concat along channels whose output feeds only a BatchNormalization (and maybe a ReLU): DenseNet's
// pre-activation layers. One pass writes relu(scale * x + shift) for every input channel into
// the output, instead of a concat copy plus a batch-norm pass over the copy. The inputs must share
// one channel-blocked (or plain) layout with channel counts that are multiples of the block.
bool lower_concat_batchnorm(PlanBuilder& b, int index, const std::vector<int>& srcs) {
  const Node& n = node_at(b, index);
  if (!b.options.fusion || !b.options.fuse_batchnorm || srcs.empty()) return false;
  const Value& yv = val(b, n.outputs[0]);
  const size_t rank = yv.shape.size();
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += int64_t(rank);
  if (axis != 1 || rank < 3 || rank > 5) return false;
  const int bn = b.sole_consumer(n.outputs[0]);
  if (bn < 0 || b.done(bn) || !per_channel_affine(node_at(b, bn))) return false;
  const Node& bnn = node_at(b, bn);
  for (size_t i = 1; i < 5; ++i)
    if (!b.is_constant(input_or_none(bnn, i))) return false;
  for (size_t i = 1; i < bnn.outputs.size(); ++i)
    if (bnn.outputs[i] >= 0) return false;
  const int64_t B = channel_block(b.slots[size_t(srcs[0])].md);
  if (B != 1 && B != 8 && B != 16 && B != -1) return false;
  std::vector<int64_t> channels;
  for (int sidx : srcs) {
    const memory::desc& md = b.slots[size_t(sidx)].md;
    if (channel_block(md) != B || md.data.ndims != int(rank)) return false;
    const int64_t c = md.data.dims[1];
    if (B > 0 && c % B) return false;
    channels.push_back(c);
  }
  using tag = memory::format_tag;
  tag t = tag::undef;
  if (B == -1) t = rank == 3 ? tag::nwc : rank == 4 ? tag::nhwc : tag::ndhwc;
  else if (B == 1) t = rank == 3 ? tag::ncw : rank == 4 ? tag::nchw : tag::ncdhw;
  else if (B == 8) t = rank == 3 ? tag::nCw8c : rank == 4 ? tag::nChw8c : tag::nCdhw8c;
  else t = rank == 3 ? tag::nCw16c : rank == 4 ? tag::nChw16c : tag::nCdhw16c;
  std::vector<std::string> names = {n.name, bnn.name};
  std::string kind = "concat+BatchNormalization";
  int out_value = bnn.outputs[0];
  bool relu = false;
  if (b.options.fuse_activation) {
    const int r = b.sole_consumer(out_value);
    if (r >= 0 && !b.done(r) && fn_of(node_at(b, r)) == EltFn::relu) {
      relu = true;
      b.mark_done(r);
      names.push_back(node_at(b, r).name);
      kind += "+Relu";
      out_value = node_at(b, r).outputs[0];
    }
  }
  b.mark_done(bn);
  const auto gamma = b.constant_floats(bnn.inputs[1]), beta = b.constant_floats(bnn.inputs[2]);
  const auto mean = b.constant_floats(bnn.inputs[3]), var = b.constant_floats(bnn.inputs[4]);
  const double eps = bnn.attr_float("epsilon", 1e-5);
  const int64_t C = yv.shape[1];
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double sc = double(gamma[size_t(c)]) / std::sqrt(double(var[size_t(c)]) + eps);
    scale[size_t(c)] = float(sc);
    shift[size_t(c)] = float(double(beta[size_t(c)]) - double(mean[size_t(c)]) * sc);
  }
  const memory::desc out_md(dims(yv.shape.begin(), yv.shape.end()), memory::data_type::f32, t);
  const int out = b.new_slot(val(b, out_value).name, DType::float32, yv.shape, out_md);
  b.bind(out_value, out);
  int64_t spatial = 1;
  for (size_t k = 2; k < rank; ++k) spatial *= yv.shape[k];
  const int64_t N = yv.shape[0], out_nstride = out_md.data.format_desc.blocking.strides[0];
  // Work items: (input, channel block within it, channel block in the output).
  struct Item {
    int input;
    int64_t src_block, dst_block;
  };
  FunctionStep* step = add_fn(b, n, kind, srcs, {out});
  step->nodes = names;
  if (B == -1) {
    // Channels-last: every (batch, pixel) row holds all channels; each input fills its slice.
    std::vector<int64_t> offsets;
    int64_t off = 0;
    for (int64_t c : channels) {
      offsets.push_back(off);
      off += c;
    }
    step->fn = [=](Runtime& rt) {
      std::vector<const float*> in(srcs.size());
      for (size_t k = 0; k < srcs.size(); ++k) in[k] = rt.data<float>(srcs[k]);
      float* y = rt.data<float>(out);
      const int64_t rows = N * spatial;
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r)
        for (size_t k = 0; k < in.size(); ++k) {
          const int64_t ck = channels[k], o = offsets[k];
          const float* xp = in[k] + r * ck;
          float* yp = y + r * C + o;
          const float* sc = scale.data() + o;
          const float* sh = shift.data() + o;
          if (relu)
            for (int64_t c = 0; c < ck; ++c) yp[c] = std::max(xp[c] * sc[c] + sh[c], 0.f);
          else
            for (int64_t c = 0; c < ck; ++c) yp[c] = xp[c] * sc[c] + sh[c];
        }
    };
    return true;
  }
  std::vector<Item> items;
  std::vector<int64_t> nstrides;
  int64_t offset = 0;
  for (size_t k = 0; k < srcs.size(); ++k) {
    for (int64_t cb = 0; cb < channels[k] / B; ++cb) items.push_back({int(k), cb, offset / B + cb});
    offset += channels[k];
    nstrides.push_back(b.slots[size_t(srcs[k])].md.data.format_desc.blocking.strides[0]);
  }
  step->fn = [=](Runtime& rt) {
    std::vector<const float*> in(srcs.size());
    for (size_t k = 0; k < srcs.size(); ++k) in[k] = rt.data<float>(srcs[k]);
    float* y = rt.data<float>(out);
    const int64_t count = int64_t(items.size());
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < N; ++i)
      for (int64_t w = 0; w < count; ++w) {
        const Item& it = items[size_t(w)];
        const float* xs = in[size_t(it.input)] + i * nstrides[size_t(it.input)] + it.src_block * spatial * B;
        float* ys = y + i * out_nstride + it.dst_block * spatial * B;
        const float* sc = scale.data() + it.dst_block * B;
        const float* sh = shift.data() + it.dst_block * B;
        if (B == 1) {
          const float a = sc[0], c0 = sh[0];
          if (relu)
            for (int64_t s2 = 0; s2 < spatial; ++s2) ys[s2] = std::max(xs[s2] * a + c0, 0.f);
          else
            for (int64_t s2 = 0; s2 < spatial; ++s2) ys[s2] = xs[s2] * a + c0;
          continue;
        }
        for (int64_t s2 = 0; s2 < spatial; ++s2) {
          const float* xp = xs + s2 * B;
          float* yp = ys + s2 * B;
          if (relu)
            for (int64_t k = 0; k < B; ++k) yp[k] = std::max(xp[k] * sc[k] + sh[k], 0.f);
          else
            for (int64_t k = 0; k < B; ++k) yp[k] = xp[k] * sc[k] + sh[k];
        }
      }
  };
  return true;
}

bool lower_concat(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const Value& yv = val(b, n.outputs[0]);
  if (yv.dtype != DType::float32 || yv.shape.empty()) return false;
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += int64_t(yv.shape.size());
  std::vector<memory::desc> mds;
  std::vector<int> srcs;
  for (int v : n.inputs) {
    if (v < 0 || val(b, v).numel() == 0) continue;
    int s = b.slot_of(v);
    if (b.slots[size_t(s)].blocked && b.slots[size_t(s)].md.dims().size() != yv.shape.size()) s = b.plain(s);
    srcs.push_back(s);
    mds.push_back(b.slots[size_t(s)].md);
  }
  if (lower_concat_batchnorm(b, index, srcs)) return true;
  dnnl::concat::primitive_desc pd;
  try {
    pd = dnnl::concat::primitive_desc(int(axis), mds, cpu_engine());
  } catch (const dnnl::error&) {
    return false;
  }
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, pd.dst_desc());
  auto step = primitive_step({n.name}, "concat");
  step->prim = dnnl::concat(pd);
  for (size_t i = 0; i < srcs.size(); ++i) step->slot_args.push_back({DNNL_ARG_MULTIPLE_SRC + int(i), srcs[i]});
  step->slot_args.push_back({DNNL_ARG_DST, out});
  step->reads = srcs;
  step->writes = {out};
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
  return true;
}

bool lower_reduce(PlanBuilder& b, int index, alg algorithm) {
  const Node& n = node_at(b, index);
  const Value& xv = val(b, n.inputs[0]);
  if (xv.dtype != DType::float32) return false;
  // oneDNN's reduction reads an empty input as garbage; the plain kernel gives ONNX's identities.
  if (std::any_of(xv.shape.begin(), xv.shape.end(), [](int64_t d) { return d == 0; })) return false;
  std::vector<int64_t> axes = n.attr_ints("axes");
  if (n.inputs.size() > 1 && n.inputs[1] >= 0) axes = const_ints(b, n, n.inputs[1], "axes");
  const int64_t rank = int64_t(xv.shape.size());
  Shape kept = xv.shape;
  if (axes.empty()) {
    if (n.attr_int("noop_with_empty_axes", 0)) return false;
    for (auto& d : kept) d = 1;
  }
  for (auto a : axes) kept[size_t(a < 0 ? a + rank : a)] = 1;
  const int src = b.plain(b.slot_of(n.inputs[0]));
  const Value& yv = val(b, n.outputs[0]);
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, plain_md(DType::float32, yv.shape));
  const int out_kept = b.new_slot(yv.name + "@keepdims", DType::float32, kept, plain_md(DType::float32, kept));
  b.slots[size_t(out_kept)].alias_of = out;
  dnnl::reduction::primitive_desc pd(dnnl::reduction::desc(algorithm, b.slots[size_t(src)].md, b.slots[size_t(out_kept)].md, 0.f, 0.f),
                                     cpu_engine());
  auto step = primitive_step({n.name}, "reduce");
  step->prim = dnnl::reduction(pd);
  step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out_kept}};
  step->reads = {src};
  step->writes = {out_kept};
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
  return true;
}

// Einsum: batched matrix products ("...ik,...kj->...ij", either operand transposed) run as a
// oneDNN matmul on strided views; any other equation runs as a plain summation loop.
void lower_einsum(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const std::string eq = n.attr_string("equation", "");
  if (eq.find("...") != std::string::npos || eq.find("->") == std::string::npos)
    unsupported(b, n, "Einsum needs an explicit output and no ellipsis (equation '" + eq + "')");
  std::vector<std::string> terms(1);
  std::string out_term;
  bool rhs = false;
  for (size_t i = 0; i < eq.size(); ++i) {
    const char c = eq[i];
    if (c == ' ') continue;
    if (c == ',') terms.emplace_back();
    else if (c == '-' && i + 1 < eq.size() && eq[i + 1] == '>') { rhs = true; ++i; }
    else (rhs ? out_term : terms.back()) += c;
  }
  if (terms.size() != n.inputs.size()) unsupported(b, n, "equation terms do not match the inputs");
  for (size_t t = 0; t < terms.size(); ++t)
    if (terms[t].size() != val(b, n.inputs[t]).shape.size() || val(b, n.inputs[t]).dtype != DType::float32)
      unsupported(b, n, "equation term '" + terms[t] + "' does not match input " + std::to_string(t));
  const Value& yv = val(b, n.outputs[0]);
  // Batched matmul?
  if (terms.size() == 2 && terms[0].size() == terms[1].size() && terms[0].size() == out_term.size() && out_term.size() >= 2) {
    const size_t r = out_term.size();
    const std::string batch = out_term.substr(0, r - 2);
    const char i = out_term[r - 2], j = out_term[r - 1];
    const std::string& A = terms[0];
    const std::string& B = terms[1];
    if (A.substr(0, r - 2) == batch && B.substr(0, r - 2) == batch) {
      const char a0 = A[r - 2], a1 = A[r - 1], b0 = B[r - 2], b1 = B[r - 1];
      const bool a_ok = (a0 == i && a1 != j) || (a1 == i && a0 != j);
      const char k = a0 == i ? a1 : a0;
      const bool b_ok = (b0 == k && b1 == j) || (b1 == k && b0 == j);
      if (a_ok && b_ok && k != i && k != j) {
        const Shape as = val(b, n.inputs[0]).shape, bs = val(b, n.inputs[1]).shape;
        auto view = [&](int value, const Shape& s, bool transposed, const std::string& tag) {
          const int slot = b.plain(b.slot_of(value));
          dims st(s.size(), 1);
          for (size_t d = s.size() - 1; d-- > 0;) st[d] = st[d + 1] * s[d + 1];
          Shape logical = s;
          if (transposed) {
            std::swap(logical[r - 1], logical[r - 2]);
            std::swap(st[r - 1], st[r - 2]);
          }
          const int v = b.new_slot(val(b, value).name + tag, DType::float32, logical,
                                   memory::desc(dims(logical.begin(), logical.end()), memory::data_type::f32, st));
          b.slots[size_t(v)].alias_of = slot;
          return v;
        };
        const int av = view(n.inputs[0], as, a0 != i, "@einsumA");
        const int bv = view(n.inputs[1], bs, b0 != k, "@einsumB");
        const int out = b.new_slot(yv.name, DType::float32, yv.shape, plain_md(DType::float32, yv.shape));
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(b.slots[size_t(av)].md, b.slots[size_t(bv)].md, b.slots[size_t(out)].md),
                                        cpu_engine());
        auto step = primitive_step({n.name}, "einsum-matmul");
        step->prim = dnnl::matmul(pd);
        step->slot_args = {{DNNL_ARG_SRC, av}, {DNNL_ARG_WEIGHTS, bv}, {DNNL_ARG_DST, out}};
        step->reads = {av, bv};
        step->writes = {out};
        b.add_step(std::move(step));
        b.bind(n.outputs[0], out);
        return;
      }
    }
  }
  // General summation: every combination of the distinct letters.
  std::string letters;
  std::map<char, int64_t> size;
  for (size_t t = 0; t < terms.size(); ++t)
    for (size_t d = 0; d < terms[t].size(); ++d) {
      const char c = terms[t][d];
      const int64_t len = val(b, n.inputs[t]).shape[d];
      if (!size.count(c)) {
        letters += c;
        size[c] = len;
      } else if (size[c] != len) {
        unsupported(b, n, std::string("index '") + c + "' has different sizes");
      }
    }
  std::vector<std::vector<int64_t>> strides(terms.size() + 1, std::vector<int64_t>(letters.size(), 0));
  auto fill = [&](const std::string& term, const Shape& shape, std::vector<int64_t>& st) {
    int64_t s = 1;
    for (size_t d = term.size(); d-- > 0;) {
      st[letters.find(term[d])] += s;
      s *= shape[d];
    }
  };
  std::vector<int> srcs;
  for (size_t t = 0; t < terms.size(); ++t) {
    fill(terms[t], val(b, n.inputs[t]).shape, strides[t]);
    srcs.push_back(b.plain(b.slot_of(n.inputs[t])));
  }
  fill(out_term, yv.shape, strides.back());
  std::vector<int64_t> extent;
  for (char c : letters) extent.push_back(size[c]);
  const int out = b.new_slot(yv.name, DType::float32, yv.shape, plain_md(DType::float32, yv.shape));
  auto step = std::make_unique<FunctionStep>();
  step->nodes = {n.name};
  step->kind = "einsum";
  step->reads = srcs;
  step->writes = {out};
  const int64_t total = shape_numel(Shape(extent.begin(), extent.end()));
  const int64_t out_n = yv.numel();
  step->fn = [=](Runtime& rt) {
    float* y = rt.data<float>(out);
    std::fill(y, y + out_n, 0.f);
    std::vector<int64_t> idx(extent.size(), 0);
    for (int64_t flat = 0; flat < total; ++flat) {
      double prod = 1;
      for (size_t t = 0; t < srcs.size(); ++t) {
        int64_t off = 0;
        for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[t][d];
        prod *= rt.data<float>(srcs[t])[off];
      }
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides.back()[d];
      y[off] += float(prod);
      for (size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < extent[d]) break;
        idx[d] = 0;
      }
    }
  };
  b.add_step(std::move(step));
  b.bind(n.outputs[0], out);
}

// Elementwise operators: oneDNN's eltwise (float32 activations, with the activations after
// them as post-ops) or binary primitive (float32 Add ... Min, a two-input Sum, Max or Min), else
// the plain typed kernels. A GELU pattern starting at a Div or Mul whose input comes from a
// step that could not absorb it becomes one oneDNN GELU.
void lower_elementwise_node(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  const EltFn f = binary_fn(n);
  if (b.options.fusion && b.options.fuse_activation && (f == EltFn::div || f == EltFn::mul)) {
    int gelu_out = -1;
    const int x = n.inputs.at(0);
    std::vector<int> gelu;
    for (int candidate : {x, n.inputs.size() > 1 ? n.inputs[1] : -1}) {
      if (candidate < 0 || !gelu.empty() || b.is_constant(candidate)) continue;
      b.unmark_done(index);
      gelu = match_gelu(b, candidate, gelu_out);
      b.mark_done(index);
      if (!gelu.empty()) {
        const int src = b.slot_of(candidate);
        std::vector<std::string> names;
        for (int g : gelu) {
          b.mark_done(g);
          names.push_back(node_at(b, g).name);
        }
        dnnl::eltwise_forward::primitive_desc pd(
            dnnl::eltwise_forward::desc(kInference, alg::eltwise_gelu_erf, b.slots[size_t(src)].md, 0.f, 0.f), cpu_engine());
        const Value& yv = val(b, gelu_out);
        const int out = b.new_slot(yv.name, DType::float32, yv.shape, pd.dst_desc());
        auto step = primitive_step(names, "GELU");
        step->prim = dnnl::eltwise_forward(pd);
        step->slot_args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}};
        step->reads = {src};
        step->writes = {out};
        b.add_step(std::move(step));
        b.bind(gelu_out, out);
        return;
      }
    }
  }
  if (lower_eltwise(b, index)) return;
  if (lower_binary(b, index)) return;
  lower_elementwise(b, n);
}

CpuLowerings build_lowerings() {
  CpuLowerings t("cpu");
  t.add({"Conv"}, lower_conv);
  t.add({"ConvTranspose"}, lower_conv_transpose);
  t.add({"Gemm"}, [](PlanBuilder& b, int i) { lower_matmul(b, i, true); });
  t.add({"MatMul"}, [](PlanBuilder& b, int i) { lower_matmul(b, i, false); });
  t.add({"MaxPool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, false, true); });
  t.add({"AveragePool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, false, false); });
  t.add({"GlobalMaxPool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, true, true); });
  t.add({"GlobalAveragePool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, true, false); });
  t.add({"BatchNormalization"}, lower_batchnorm);
  t.add({"Softmax"}, lower_softmax<false>);
  t.add({"LogSoftmax"}, lower_softmax<true>);
  t.add({"LayerNormalization"}, lower_layernorm);
  t.add({"LRN"}, lower_lrn);
  t.add({"Einsum"}, lower_einsum);
  t.add({"Concat"}, [](PlanBuilder& b, int i) {
    if (!lower_concat(b, i)) lower_concat_plain(b, i);
  });
  // Every elementwise entry of the table.
  for (const OpDef& def : OpRegistry::instance().all())
    if (def.elementwise != EltFn::none) t.add({def.name.c_str()}, lower_elementwise_node);
  register_plain_lowerings(t);
  register_reduction_lowerings(t);
  register_movement_lowerings(t);
  return t;
}

}  // namespace

const CpuLowerings& lowerings() {
  static const CpuLowerings table = build_lowerings();
  return table;
}

// The four reductions oneDNN has a primitive for, float32 (reduction_kernels.cpp falls back to
// its own kernel otherwise).
bool lower_reduce_dnnl(PlanBuilder& b, int index, dnnl::algorithm algorithm) { return lower_reduce(b, index, algorithm); }

void lower_node(PlanBuilder& b, int index) {
  const Node& n = node_at(b, index);
  b.mark_done(index);
  const LowerFn lower = lowerings().find(n);
  if (!lower) throw UnsupportedError(b.where(n), "operator '" + n.op + "' is not supported on the CPU backend (see `bricklab ops`)");
  try {
    lower(b, index);
  } catch (const dnnl::error& e) {
    throw UnsupportedError(b.where(n), std::string("oneDNN rejected the node: ") + e.what());
  }
}

// True when the node alone (inputs plain) lowers with that variant: oneDNN has a kernel for it
// on this CPU and for these shapes.
static bool lowers_with(const Graph& graph, int index, const std::string& variant) {
  CompileOptions probe;
  probe.fusion = false;
  probe.variants[graph.nodes.at(size_t(index)).name] = variant;
  try {
    Graph sub = extract_subgraph(graph, {index});
    PlanBuilder b(sub, probe);
    for (int v : sub.inputs) {
      const Value& value = sub.values[size_t(v)];
      b.bind(v, b.new_slot(value.name, value.dtype, value.shape, plain_md(value.dtype, value.shape)));
    }
    lower_node(b, 0);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::vector<Variant> node_variants(const Graph& graph, int index) {
  const Node& n = graph.nodes.at(size_t(index));
  std::vector<Variant> out;
  const OpDef* def = OpRegistry::instance().of(n);
  const bool conv = def && def->variant_anchor && def->sets_layout;  // Conv
  if (conv) {
    // Offer each algorithm / precision oneDNN accepts for this exact convolution.
    const std::vector<Variant> candidates = {
        {"auto", "oneDNN's own choice (direct or Winograd), float32", true, Precision::fp32, "auto", ""},
        {"direct", "direct convolution, float32", false, Precision::fp32, "direct", ""},
        {"winograd", "Winograd convolution, float32", false, Precision::fp32, "winograd", ""},
        {"bf16", "direct convolution in bfloat16 (float32 in and out)", false, Precision::bf16, "direct", ""},
        {"nhwc", "direct convolution, float32, activations channels-last (NHWC)", false, Precision::fp32, "direct", "nhwc"},
        {"nchw", "direct convolution, float32, activations plain channels-first (NCHW)", false, Precision::fp32, "direct", "nchw"}};
    for (const Variant& v : candidates)
      if (lowers_with(graph, index, v.name)) out.push_back(v);
  } else if (def && def->variant_anchor) {  // MatMul, Gemm
    out.push_back({"fp32", "oneDNN matmul in float32", true, Precision::fp32, "matmul", ""});
    // Needs a constant B, and a bf16 matmul on this CPU.
    if (lowers_with(graph, index, "bf16"))
      out.push_back({"bf16", "oneDNN matmul in bfloat16 (float32 accumulation, in and out)", false, Precision::bf16, "matmul", ""});
  } else {
    out.push_back({"default", "the only implementation", true, Precision::fp32, "", ""});
  }
  return out;
}

std::vector<int64_t> pad_folded_into_pool(PlanBuilder& b, int pad) {
  const Node& n = b.graph.nodes.at(size_t(pad));
  if (!b.options.fusion || !def_of(n).pads_constant || n.attr_string("mode", "constant") != "constant") return {};
  const Value& xv = val(b, n.inputs.at(0));
  const size_t rank = xv.shape.size();
  if (xv.dtype != DType::float32 || rank < 3 || rank > 5) return {};
  std::vector<int64_t> pads;
  if (n.opset < 11) {
    pads = n.attr_ints("pads");
    if (n.attr_float("value", 0.0) != 0.0) return {};
  } else {
    if (!b.is_constant(n.inputs.at(1))) return {};
    pads = val(b, n.inputs[1]).data->as_int64();
    if (n.inputs.size() > 2 && n.inputs[2] >= 0) {
      if (!b.is_constant(n.inputs[2]) || val(b, n.inputs[2]).data->as_double().at(0) != 0.0) return {};
    }
    if (n.inputs.size() > 3 && n.inputs[3] >= 0) return {};  // axes (opset 18)
  }
  if (pads.size() != 2 * rank || pads[0] || pads[1] || pads[rank] || pads[rank + 1]) return {};
  for (int64_t p : pads)
    if (p < 0) return {};
  const int c = b.sole_consumer(n.outputs.at(0));
  if (c < 0) return {};
  const Node& pool = b.graph.nodes[size_t(c)];
  if (!def_of(pool).absorbs_zero_pad || pool.attr_int("ceil_mode", 0) != 0 || pool.attr_string("auto_pad", "NOTSET") != "NOTSET") return {};
  const auto own = pool.attr_ints("pads", std::vector<int64_t>(2 * (rank - 2), 0));
  const bool own_zero = std::all_of(own.begin(), own.end(), [](int64_t p) { return p == 0; });
  if (!own_zero && pool.attr_int("count_include_pad", 0) == 0) return {};
  std::vector<int64_t> out;
  for (size_t i = 2; i < rank; ++i) out.push_back(pads[i]);
  for (size_t i = 2; i < rank; ++i) out.push_back(pads[rank + i]);
  return out;
}

}  // namespace bricklab::cpu
