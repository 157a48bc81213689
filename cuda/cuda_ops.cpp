// Lowering of graph nodes to cuDNN / cuBLAS steps (Benanza's mapping of ONNX layers to library
// calls) and the per-node variants. Every lowering keeps ONNX semantics or refuses the node
// with an UnsupportedError naming it; every library status is checked where it is returned.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>

#include "bricklab/ops/registry.hpp"
#include "cuda_internal.hpp"

namespace bricklab::cuda {
namespace {

// What an elementwise node computes (EltFn::none for other operators), from its table entry.
EltFn fn_of(const Node& n) {
  const OpDef* def = OpRegistry::instance().of(n);
  return def ? def->elementwise : EltFn::none;
}


using Dims = std::vector<int>;

[[noreturn]] void unsupported(PlanBuilder& b, const Node& n, const std::string& why) { throw UnsupportedError(b.where(n), why); }

int input_or_none(const Node& n, size_t i) { return i < n.inputs.size() ? n.inputs[i] : -1; }

int to_int(int64_t x, const ErrorContext& where) {
  if (x < 0 || x > INT_MAX) throw UnsupportedError(where, "dimension " + std::to_string(x) + " does not fit cuDNN's int sizes");
  return int(x);
}

int64_t product(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

Dims packed_strides(const Dims& d) {
  Dims s(d.size(), 1);
  for (size_t i = d.size() - 1; i-- > 0;) s[i] = s[i + 1] * d[i + 1];
  return s;
}

// Channels-last strides of logical NC(D)HW dims.
Dims nhwc_strides(const Dims& d) {
  Dims s(d.size(), 1);
  int64_t acc = d[1];  // C is innermost
  for (size_t i = d.size() - 1; i >= 2; --i) {
    s[i] = int(acc);
    acc *= d[i];
  }
  s[0] = int(acc);
  return s;
}

std::shared_ptr<TensorDesc> tensor_desc(const Dims& dims, cudnnDataType_t type, bool nhwc, const ErrorContext& where) {
  Dims d = dims;
  while (d.size() < 4) d.push_back(1);
  auto t = std::make_shared<TensorDesc>(where);
  const Dims s = nhwc ? nhwc_strides(d) : packed_strides(d);
  BL_CHECK(where, cudnnSetTensorNdDescriptor(t->get(), type, int(d.size()), d.data(), s.data()));
  return t;
}

// A flat [1, n, 1, 1] view for elementwise work.
std::shared_ptr<TensorDesc> flat_desc(int64_t n, const ErrorContext& where) {
  return tensor_desc({1, to_int(n, where), 1, 1}, CUDNN_DATA_FLOAT, false, where);
}

Dims int_dims(const Shape& s, const ErrorContext& where) {
  Dims d;
  for (int64_t x : s) d.push_back(to_int(x, where));
  return d;
}

void require_float(PlanBuilder& b, const Node& n, int v) {
  if (b.value(v).dtype != DType::float32)
    unsupported(b, n, "the CUDA backend computes in float32 only; '" + b.value(v).name + "' is " + dtype_name(b.value(v).dtype));
}

Step make_step(const std::string& kind, std::vector<std::string> nodes, std::string detail, std::function<void(Gpu&)> f) {
  Step s;
  s.kind = kind;
  s.nodes = std::move(nodes);
  s.detail = std::move(detail);
  s.launch = std::move(f);
  return s;
}

// ---- Conv geometry and variants -----------------------------------------------------------------

const char* const kAlgoNames[] = {"implicit_gemm", "implicit_precomp_gemm", "gemm",      "direct",
                                  "fft",           "fft_tiling",            "winograd", "winograd_nonfused"};
const char* const kMathNames[] = {"fp32", "tf32", "fp16"};

struct ConvVariant {
  int algo = 0;  // cudnnConvolutionFwdAlgo_t
  int math = 0;  // index into kMathNames
  bool nhwc = false;
  std::string name() const { return std::string(kAlgoNames[algo]) + "/" + kMathNames[math] + "/" + (nhwc ? "nhwc" : "nchw"); }
  // The typed variant (kMathNames: fp32, tf32, fp16).
  Variant variant(const std::string& description, bool is_default) const {
    const Precision p = math == 1 ? Precision::tf32 : math == 2 ? Precision::fp16 : Precision::fp32;
    return {name(), description, is_default, p, kAlgoNames[algo], nhwc ? "nhwc" : "nchw"};
  }
};

// A Conv as cuDNN sees it: 1-D convolutions get a trailing spatial dim of 1; padding symmetric.
struct ConvGeometry {
  Dims x, w, y;  // NC..., KC/g..., NK...
  Dims pad, stride, dilation;
  int group = 1;
};

ConvGeometry conv_geometry(const Graph& g, const Node& n, const ErrorContext& where) {
  const Value& xv = g.values.at(size_t(n.inputs.at(0)));
  const Value& wv = g.values.at(size_t(n.inputs.at(1)));
  const Value& yv = g.values.at(size_t(n.outputs.at(0)));
  const size_t rank = xv.shape.size();
  if (rank < 3 || rank > 5 || wv.shape.size() != rank || yv.shape.size() != rank)
    throw UnsupportedError(where, "cuDNN convolutions are 1-D, 2-D or 3-D (input rank 3 to 5), got input " + shape_str(xv.shape));
  const size_t sp = rank - 2;
  ConvGeometry c;
  c.group = int(n.attr_int("group", 1));
  WindowGeometry win;
  try {
    win = window_geometry(n, xv.shape, yv.shape, std::vector<int64_t>(wv.shape.begin() + 2, wv.shape.end()));
  } catch (const ShapeError& e) {
    throw UnsupportedError(where, e.problem());
  }
  c.x = int_dims(xv.shape, where);
  c.w = int_dims(wv.shape, where);
  c.y = int_dims(yv.shape, where);
  for (size_t i = 0; i < sp; ++i) {
    const int64_t in = xv.shape[2 + i], out = yv.shape[2 + i];
    const int64_t eff = (win.kernel[i] - 1) * win.dilations[i] + 1;
    const int64_t l = win.pad_begin[i], r = win.pad_end[i];
    // cuDNN pads both sides by the same amount. With pad l on both sides the windows start where
    // ONNX's do; when cuDNN's output size then matches, no window reaches the other side's
    // extra padding and the result is exact.
    const int64_t cudnn_out = (in + 2 * l - eff) / win.strides[i] + 1;
    if (cudnn_out != out)
      throw UnsupportedError(where, "asymmetric padding (" + std::to_string(l) + ", " + std::to_string(r) +
                                        ") that cuDNN's symmetric padding cannot express");
    c.pad.push_back(int(l));
    c.stride.push_back(int(win.strides[i]));
    c.dilation.push_back(int(win.dilations[i]));
  }
  if (sp == 1) {
    c.x.push_back(1);
    c.w.push_back(1);
    c.y.push_back(1);
    c.pad.push_back(0);
    c.stride.push_back(1);
    c.dilation.push_back(1);
  }
  return c;
}

std::vector<ConvVariant> conv_candidates(size_t cudnn_rank) {
  std::vector<ConvVariant> out;
  for (int algo = 0; algo < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++algo)
    for (int math = 0; math < 3; ++math)
      for (bool nhwc : {false, true}) {
        if (nhwc && cudnn_rank != 4) continue;  // channels-last variants for 1-D / 2-D convolutions
        out.push_back({algo, math, nhwc});
      }
  return out;
}

// cuDNN's descriptors for one variant of a convolution.
struct ConvDescs {
  std::shared_ptr<TensorDesc> x, y;
  std::shared_ptr<FilterDesc> w;
  std::shared_ptr<ConvDesc> conv;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
};

ConvDescs conv_descs(const ConvGeometry& g, const ConvVariant& v, const ErrorContext& where) {
  ConvDescs d;
  d.type = v.math == 2 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
  d.x = tensor_desc(g.x, d.type, v.nhwc, where);
  d.y = tensor_desc(g.y, d.type, v.nhwc, where);
  d.w = std::make_shared<FilterDesc>(where);
  BL_CHECK(where, cudnnSetFilterNdDescriptor(d.w->get(), d.type, v.nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, int(g.w.size()),
                                             g.w.data()));
  d.conv = std::make_shared<ConvDesc>(where);
  // fp16 stores half and accumulates in float (cuDNN's PSEUDO_HALF configuration).
  BL_CHECK(where, cudnnSetConvolutionNdDescriptor(d.conv->get(), int(g.pad.size()), g.pad.data(), g.stride.data(),
                                                  g.dilation.data(), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  BL_CHECK(where, cudnnSetConvolutionGroupCount(d.conv->get(), g.group));
  const cudnnMathType_t math = v.math == 0 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
  BL_CHECK(where, cudnnSetConvolutionMathType(d.conv->get(), math));
  return d;
}

// Workspace bytes of a variant, or -1 when cuDNN does not accept it for this convolution.
long long conv_workspace(Gpu& gpu, const ConvGeometry& g, const ConvVariant& v, const ErrorContext& where) {
  ConvDescs d = conv_descs(g, v, where);
  size_t bytes = 0;
  if (cudnnGetConvolutionForwardWorkspaceSize(gpu.dnn, d.x->get(), d.w->get(), d.conv->get(), d.y->get(),
                                              cudnnConvolutionFwdAlgo_t(v.algo), &bytes) != CUDNN_STATUS_SUCCESS)
    return -1;
  return (long long)bytes;
}

// The algorithm cudnnGetConvolutionForwardAlgorithm_v7 ranks first for float32 NCHW with strict
// float32 math (bricklab's default semantics), among those with a workspace size.
ConvVariant heuristic_conv(Gpu& gpu, const ConvGeometry& g, const ErrorContext& where) {
  ConvVariant v{0, 0, false};
  ConvDescs d = conv_descs(g, v, where);
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int returned = 0;
  BL_CHECK(where, cudnnGetConvolutionForwardAlgorithm_v7(gpu.dnn, d.x->get(), d.w->get(), d.conv->get(), d.y->get(),
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
  for (int i = 0; i < returned; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    ConvVariant c{int(perf[i].algo), 0, false};
    if (conv_workspace(gpu, g, c, where) >= 0) return c;
  }
  throw UnsupportedError(where, "cuDNN's heuristic offers no float32 algorithm for this convolution");
}

std::vector<std::string> names_of(const std::vector<Variant>& vs) {
  std::vector<std::string> out;
  for (const auto& v : vs) out.push_back(v.name);
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// ---- Conv -------------------------------------------------------------------------------------------

void lower_conv(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const int x = n.inputs.at(0), w = n.inputs.at(1), bias_v = input_or_none(n, 2);
  if (!b.value(w).is_constant() || (bias_v >= 0 && !b.value(bias_v).is_constant()))
    unsupported(b, n, "Conv needs constant weights and bias on the CUDA backend");
  require_float(b, n, x);
  const ConvGeometry g = conv_geometry(b.graph, n, where);

  // The variant: asked for by name, or cuDNN's heuristic pick.
  ConvVariant v;
  const std::string asked = b.variant_for(n);
  if (asked.empty()) {
    v = heuristic_conv(b.gpu, g, where);
  } else {
    bool found = false;
    for (const auto& c : conv_candidates(g.x.size()))
      if (c.name() == asked) {
        v = c;
        found = true;
      }
    if (!found) {
      std::vector<std::string> valid;
      for (const auto& c : conv_candidates(g.x.size())) valid.push_back(c.name());
      throw InvalidArgument(where, "unknown variant '" + asked + "'; valid Conv variants: " + join(valid));
    }
  }
  const bool half = v.math == 2;
  ConvDescs d = conv_descs(g, v, where);
  size_t ws_bytes = 0;
  {
    const cudnnStatus_t s = cudnnGetConvolutionForwardWorkspaceSize(b.gpu.dnn, d.x->get(), d.w->get(), d.conv->get(), d.y->get(),
                                                                     cudnnConvolutionFwdAlgo_t(v.algo), &ws_bytes);
    if (s != CUDNN_STATUS_SUCCESS)
      throw UnsupportedError(where, "cuDNN does not run variant '" + v.name() + "' for this convolution: " +
                                        "cudnnGetConvolutionForwardWorkspaceSize failed: " + status_name(s));
  }
  void* workspace = ws_bytes ? b.scratch(ws_bytes, where) : nullptr;

  // Weights: KC(D)HW floats, permuted to K(D)HWC for channels-last, converted to half for fp16.
  std::vector<float> wh = b.constant_floats(w);
  if (v.nhwc) {
    const int64_t K = g.w[0], C = g.w[1];
    const int64_t spatial = int64_t(wh.size()) / (K * C);
    std::vector<float> p(wh.size());
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t s = 0; s < spatial; ++s) p[size_t((k * spatial + s) * C + c)] = wh[size_t((k * C + c) * spatial + s)];
    wh.swap(p);
  }
  void* w_dev = b.upload(wh.data(), wh.size() * sizeof(float), where);
  if (half) {
    void* w_half = b.scratch(wh.size() * 2, where);
    convert_f32_to_f16(w_dev, w_half, wh.size(), b.gpu.stream, where);
    BL_CHECK(where, cudaStreamSynchronize(b.gpu.stream));
    w_dev = w_half;
  }

  // Fusions: conv + bias + ReLU (or + bias alone) in one cudnnConvolutionBiasActivationForward.
  // cuDNN runs the IDENTITY activation only with IMPLICIT_PRECOMP_GEMM; fp16 is not fused.
  std::vector<std::string> names{n.name};
  int out_value = n.outputs.at(0);
  bool relu = false;
  if (b.options.fusion && b.options.fuse_activation && !half) {
    const int c = b.sole_consumer(out_value);
    if (c >= 0 && !b.done(c) && fn_of(b.graph.nodes[size_t(c)]) == EltFn::relu) relu = true;
  }
  const bool fused = relu || (b.options.fusion && b.options.fuse_activation && !half && bias_v >= 0 &&
                              v.algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
  if (relu) {
    const int c = b.sole_consumer(out_value);
    b.mark_done(c);
    names.push_back(b.graph.nodes[size_t(c)].name);
    out_value = b.graph.nodes[size_t(c)].outputs.at(0);
  }
  const int K = g.w[0];
  std::vector<float> bias_h = bias_v >= 0 ? b.constant_floats(bias_v) : std::vector<float>(size_t(K), 0.f);
  float* bias_dev = (bias_v >= 0 || fused) ? static_cast<float*>(b.upload(bias_h.data(), bias_h.size() * sizeof(float), where)) : nullptr;
  Dims bias_dims(g.y.size(), 1);
  bias_dims[1] = K;
  auto bias_desc = tensor_desc(bias_dims, CUDNN_DATA_FLOAT, false, where);
  std::shared_ptr<ActDesc> act;
  if (fused) {
    act = std::make_shared<ActDesc>(where);
    BL_CHECK(where, cudnnSetActivationDescriptor(act->get(), relu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                                                 CUDNN_NOT_PROPAGATE_NAN, 0.0));
  }

  const float* x_dev = b.device(x, where);
  float* y_dev = b.output(out_value, where);
  const size_t x_n = size_t(b.value(x).numel()), y_n = size_t(b.value(n.outputs[0]).numel());
  // Buffers in the variant's type and layout, when that is not float32 NCHW.
  const size_t elem = half ? 2 : 4;
  void* x_half = half && v.nhwc ? b.scratch(x_n * 2, where) : nullptr;  // half NCHW before the layout change
  void* x_t = (half || v.nhwc) ? b.scratch(x_n * elem, where) : nullptr;
  void* y_t = (half || v.nhwc) ? b.scratch(y_n * elem, where) : nullptr;
  void* y_half = half && v.nhwc ? b.scratch(y_n * 2, where) : nullptr;  // half NCHW after the layout change
  auto x_plain = tensor_desc(g.x, d.type, false, where);
  auto y_plain = tensor_desc(g.y, d.type, false, where);
  auto y_float = tensor_desc(g.y, CUDNN_DATA_FLOAT, false, where);
  const cudnnConvolutionFwdAlgo_t algo = cudnnConvolutionFwdAlgo_t(v.algo);
  const bool nhwc = v.nhwc;

  std::string kind = fused ? (relu ? "conv+bias+relu" : "conv+bias") : "conv";
  std::string detail = v.name() + (asked.empty() ? " (cuDNN heuristic)" : "") + ", workspace " + std::to_string(ws_bytes) + " B" +
                       (fused ? ", cudnnConvolutionBiasActivationForward" : bias_v >= 0 ? ", bias via cudnnAddTensor" : "");
  b.steps.push_back(make_step(kind, names, detail, [=](Gpu& gpu) {
    const float one = 1.f, zero = 0.f;
    const void* xin = x_dev;
    if (half) {
      convert_f32_to_f16(x_dev, nhwc ? x_half : x_t, x_n, gpu.stream, where);
      xin = nhwc ? x_half : x_t;
    }
    if (nhwc) {
      BL_CHECK(where, cudnnTransformTensor(gpu.dnn, &one, x_plain->get(), xin, &zero, d.x->get(), x_t));
      xin = x_t;
    }
    void* yout = (half || nhwc) ? y_t : static_cast<void*>(y_dev);
    if (fused) {
      BL_CHECK(where, cudnnConvolutionBiasActivationForward(gpu.dnn, &one, d.x->get(), xin, d.w->get(), w_dev, d.conv->get(), algo,
                                                            workspace, ws_bytes, &zero, d.y->get(), yout, bias_desc->get(),
                                                            bias_dev, act->get(), d.y->get(), yout));
    } else {
      BL_CHECK(where, cudnnConvolutionForward(gpu.dnn, &one, d.x->get(), xin, d.w->get(), w_dev, d.conv->get(), algo, workspace,
                                              ws_bytes, &zero, d.y->get(), yout));
    }
    if (nhwc) {
      void* back = half ? y_half : static_cast<void*>(y_dev);
      BL_CHECK(where, cudnnTransformTensor(gpu.dnn, &one, d.y->get(), y_t, &zero, y_plain->get(), back));
    }
    if (half) convert_f16_to_f32(nhwc ? y_half : y_t, y_dev, y_n, gpu.stream, where);
    if (!fused && bias_dev) BL_CHECK(where, cudnnAddTensor(gpu.dnn, &one, bias_desc->get(), bias_dev, &one, y_float->get(), y_dev));
  }));
  b.mark_done(index);
}

// ---- BatchNormalization ----------------------------------------------------------------------------

void lower_batchnorm(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  if (n.attr_int("training_mode", 0) != 0) unsupported(b, n, "training-mode BatchNormalization is not supported");
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i] >= 0 && !b.value(n.outputs[i]).consumers.empty()) unsupported(b, n, "the running-statistics outputs are not supported");
  if (n.inputs.size() < 5) unsupported(b, n, "BatchNormalization needs 5 inputs");
  for (size_t i = 1; i < 5; ++i)
    if (!b.value(n.inputs[i]).is_constant()) unsupported(b, n, "scale, bias, mean and variance must be constants");
  const int x = n.inputs[0];
  require_float(b, n, x);
  const Shape& xs = b.value(x).shape;
  if (xs.size() < 2) unsupported(b, n, "BatchNormalization input must have a channel dimension");
  const double eps = n.attr_float("epsilon", 1e-5);
  if (eps < CUDNN_BN_MIN_EPSILON) unsupported(b, n, "epsilon below cuDNN's minimum");
  const std::string asked = b.variant_for(n);
  if (!asked.empty() && asked != "default") throw InvalidArgument(where, "unknown variant '" + asked + "'; valid: default");
  // Spatial dims folded into one: [N, C, prod(spatial), 1].
  const Dims dims{to_int(xs[0], where), to_int(xs[1], where), to_int(product(xs, 2, xs.size()), where), 1};
  auto xdesc = tensor_desc(dims, CUDNN_DATA_FLOAT, false, where);
  auto pdesc = tensor_desc({1, dims[1], 1, 1}, CUDNN_DATA_FLOAT, false, where);
  const float* p[4];
  for (int i = 0; i < 4; ++i) p[i] = b.device(n.inputs[size_t(i) + 1], where);
  const float* x_dev = b.device(x, where);
  float* y_dev = b.output(n.outputs.at(0), where);
  b.steps.push_back(make_step("bn", {n.name}, "cudnnBatchNormalizationForwardInference, spatial", [=](Gpu& gpu) {
    const float one = 1.f, zero = 0.f;
    BL_CHECK(where, cudnnBatchNormalizationForwardInference(gpu.dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, xdesc->get(), x_dev,
                                                            xdesc->get(), y_dev, pdesc->get(), p[0], p[1], p[2], p[3], eps));
  }));
  b.mark_done(index);
}

// ---- activations -----------------------------------------------------------------------------------

// Clip's bounds: attributes before opset 11, constant inputs after.
void clip_bounds(PlanBuilder& b, const Node& n, double& lo, double& hi) {
  lo = -DBL_MAX;
  hi = DBL_MAX;
  if (n.opset < 11) {
    lo = n.attr_float("min", -FLT_MAX);
    hi = n.attr_float("max", FLT_MAX);
    return;
  }
  for (size_t i = 1; i <= 2; ++i) {
    const int v = input_or_none(n, i);
    if (v < 0) continue;
    if (!b.value(v).is_constant() || !b.value(v).data->has_values()) unsupported(b, n, "Clip bounds must be constants with values");
    (i == 1 ? lo : hi) = b.value(v).data->as_double().at(0);
  }
}

void lower_activation(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const int x = n.inputs.at(0);
  require_float(b, n, x);
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_RELU;
  double coef = 0;
  std::string kind = "relu";
  const EltFn f = fn_of(n);
  if (f == EltFn::sigmoid) mode = CUDNN_ACTIVATION_SIGMOID, kind = "sigmoid";
  else if (f == EltFn::tanh) mode = CUDNN_ACTIVATION_TANH, kind = "tanh";
  else if (f == EltFn::elu) mode = CUDNN_ACTIVATION_ELU, coef = NodeAttrs(b.graph, n).real("alpha"), kind = "elu";
  else if (f == EltFn::clip) {
    double lo, hi;
    clip_bounds(b, n, lo, hi);
    if (lo != 0.0) unsupported(b, n, "cuDNN clips at 0 only (CLIPPED_RELU); Clip min is " + std::to_string(lo));
    if (hi < FLT_MAX) mode = CUDNN_ACTIVATION_CLIPPED_RELU, coef = hi, kind = "clipped_relu";
  }
  const std::string asked = b.variant_for(n);
  if (!asked.empty() && asked != "default") throw InvalidArgument(where, "unknown variant '" + asked + "'; valid: default");
  auto act = std::make_shared<ActDesc>(where);
  BL_CHECK(where, cudnnSetActivationDescriptor(act->get(), mode, CUDNN_NOT_PROPAGATE_NAN, coef));
  auto desc = flat_desc(b.value(x).numel(), where);
  const float* x_dev = b.device(x, where);
  float* y_dev = b.output(n.outputs.at(0), where);
  b.steps.push_back(make_step(kind, {n.name}, "cudnnActivationForward", [=](Gpu& gpu) {
    const float one = 1.f, zero = 0.f;
    BL_CHECK(where, cudnnActivationForward(gpu.dnn, act->get(), &one, desc->get(), x_dev, &zero, desc->get(), y_dev));
  }));
  b.mark_done(index);
}

// ---- pooling ---------------------------------------------------------------------------------------

void lower_pool(PlanBuilder& b, int index, bool global, bool is_max) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const int x = n.inputs.at(0);
  require_float(b, n, x);
  if (n.outputs.size() > 1 && n.outputs[1] >= 0) unsupported(b, n, "MaxPool's Indices output is not supported");
  const Shape& xs = b.value(x).shape;
  const Shape& ys = b.value(n.outputs.at(0)).shape;
  if (xs.size() < 3 || xs.size() > 5 || ys.size() != xs.size()) unsupported(b, n, "cuDNN pools 1-D, 2-D or 3-D inputs (rank 3 to 5)");
  const size_t sp = xs.size() - 2;
  Dims window, pad, stride;
  if (global) {
    for (size_t i = 0; i < sp; ++i) {
      window.push_back(to_int(xs[2 + i], where));
      pad.push_back(0);
      stride.push_back(1);
    }
  } else {
    WindowGeometry win;
    try {
      win = window_geometry(n, xs, ys, n.attr_ints("kernel_shape"));
    } catch (const ShapeError& e) {
      unsupported(b, n, e.problem());
    }
    for (int64_t d : win.dilations)
      if (d != 1) unsupported(b, n, "cuDNN pooling has no dilation");
    if (n.attr_int("storage_order", 0) != 0) unsupported(b, n, "storage_order = 1 is not supported");
    for (size_t i = 0; i < sp; ++i) {
      const int64_t in = xs[2 + i], out = ys[2 + i], k = win.kernel[i], l = win.pad_begin[i];
      // Symmetric padding and floor rounding, as for Conv (see conv_geometry).
      if ((in + 2 * l - k) / win.strides[i] + 1 != out || l >= k)
        unsupported(b, n, "padding / ceil_mode that cuDNN's symmetric, floor-rounded pooling cannot express");
      window.push_back(int(k));
      pad.push_back(int(l));
      stride.push_back(int(win.strides[i]));
    }
  }
  Dims xd = int_dims(xs, where), yd = int_dims(ys, where);
  if (sp == 1) {
    xd.push_back(1);
    yd.push_back(1);
    window.push_back(1);
    pad.push_back(0);
    stride.push_back(1);
  }
  const std::string asked = b.variant_for(n);
  if (!asked.empty() && asked != "default") throw InvalidArgument(where, "unknown variant '" + asked + "'; valid: default");
  cudnnPoolingMode_t mode = CUDNN_POOLING_MAX;
  if (!is_max)
    mode = !global && n.attr_int("count_include_pad", 0) ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                                          : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  auto pool = std::make_shared<PoolDesc>(where);
  BL_CHECK(where, cudnnSetPoolingNdDescriptor(pool->get(), mode, CUDNN_NOT_PROPAGATE_NAN, int(window.size()), window.data(),
                                              pad.data(), stride.data()));
  auto xdesc = tensor_desc(xd, CUDNN_DATA_FLOAT, false, where);
  auto ydesc = tensor_desc(yd, CUDNN_DATA_FLOAT, false, where);
  const float* x_dev = b.device(x, where);
  float* y_dev = b.output(n.outputs.at(0), where);
  b.steps.push_back(make_step("pool", {n.name}, "cudnnPoolingForward", [=](Gpu& gpu) {
    const float one = 1.f, zero = 0.f;
    BL_CHECK(where, cudnnPoolingForward(gpu.dnn, pool->get(), &one, xdesc->get(), x_dev, &zero, ydesc->get(), y_dev));
  }));
  b.mark_done(index);
}

// ---- Softmax -----------------------------------------------------------------------------------------

void lower_softmax(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const int x = n.inputs.at(0);
  require_float(b, n, x);
  const Shape& xs = b.value(x).shape;
  const int64_t rank = int64_t(xs.size());
  int64_t axis = n.attr_int("axis", n.opset < 13 ? 1 : -1);
  if (axis < 0) axis += rank;
  if (rank == 0 || axis < 0 || axis >= rank) unsupported(b, n, "axis out of range");
  Dims dims;
  cudnnSoftmaxMode_t mode;
  if (n.opset < 13) {
    // Opset < 13: the input is flattened to 2-D at `axis` and each row normalised.
    dims = {to_int(product(xs, 0, size_t(axis)), where), to_int(product(xs, size_t(axis), xs.size()), where), 1, 1};
    mode = CUDNN_SOFTMAX_MODE_INSTANCE;
  } else {
    // Along one axis: [outer, axis, inner, 1], normalised over the channel dim.
    dims = {to_int(product(xs, 0, size_t(axis)), where), to_int(xs[size_t(axis)], where),
            to_int(product(xs, size_t(axis) + 1, xs.size()), where), 1};
    mode = CUDNN_SOFTMAX_MODE_CHANNEL;
  }
  const std::string asked = b.variant_for(n);
  if (!asked.empty() && asked != "default") throw InvalidArgument(where, "unknown variant '" + asked + "'; valid: default");
  auto desc = tensor_desc(dims, CUDNN_DATA_FLOAT, false, where);
  const float* x_dev = b.device(x, where);
  float* y_dev = b.output(n.outputs.at(0), where);
  b.steps.push_back(make_step("softmax", {n.name}, "cudnnSoftmaxForward, accurate", [=](Gpu& gpu) {
    const float one = 1.f, zero = 0.f;
    BL_CHECK(where, cudnnSoftmaxForward(gpu.dnn, CUDNN_SOFTMAX_ACCURATE, mode, &one, desc->get(), x_dev, &zero, desc->get(), y_dev));
  }));
  b.mark_done(index);
}

// ---- Add / Sub / Mul -----------------------------------------------------------------------------

void lower_binary(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const EltFn f = binary_fn(n);
  if (f != EltFn::add && f != EltFn::sub && f != EltFn::mul) unsupported(b, n, "cudnnOpTensor takes two inputs (add, sub or mul)");
  int a = -1, c = -1;
  for (int v : n.inputs)
    if (v >= 0) (a < 0 ? a : c) = v;
  require_float(b, n, a);
  require_float(b, n, c);
  const Shape& ys = b.value(n.outputs.at(0)).shape;
  auto padded = [&](const Shape& s) {
    Shape p(ys.size() - std::min(ys.size(), s.size()), 1);
    p.insert(p.end(), s.begin(), s.end());
    return p;
  };
  Shape as = padded(b.value(a).shape), cs = padded(b.value(c).shape);
  float alpha_a = 1.f, alpha_c = f == EltFn::sub ? -1.f : 1.f;
  if (as != ys) {
    // cudnnOpTensor broadcasts its second operand only: swap (Sub: negate the other side).
    std::swap(a, c);
    std::swap(as, cs);
    std::swap(alpha_a, alpha_c);
  }
  bool ok = as == ys && cs.size() == ys.size();
  for (size_t i = 0; ok && i < ys.size(); ++i) ok = cs[i] == ys[i] || cs[i] == 1;
  if (!ok)
    unsupported(b, n, "broadcasting " + shape_str(b.value(n.inputs[0]).shape) + " with " + shape_str(b.value(n.inputs[1]).shape) +
                          ": cudnnOpTensor needs one operand of the output's shape and the other equal or 1 in each dim");
  // Merge neighbouring dims that broadcast alike (cuDNN takes at most 5 dims); size-1 dims vanish.
  Dims yd, cd;
  bool group_bc = false;
  for (size_t i = 0; i < ys.size(); ++i) {
    if (ys[i] == 1) continue;
    const bool bc = cs[i] == 1;
    if (!yd.empty() && bc == group_bc) {
      yd.back() = to_int(int64_t(yd.back()) * ys[i], where);
      cd.back() = to_int(int64_t(cd.back()) * cs[i], where);
      continue;
    }
    yd.push_back(to_int(ys[i], where));
    cd.push_back(to_int(cs[i], where));
    group_bc = bc;
  }
  while (yd.size() < 4) {
    yd.insert(yd.begin(), 1);
    cd.insert(cd.begin(), 1);
  }
  if (yd.size() > 5) unsupported(b, n, "broadcast pattern needs more than 5 dims");
  const std::string asked = b.variant_for(n);
  if (!asked.empty() && asked != "default") throw InvalidArgument(where, "unknown variant '" + asked + "'; valid: default");
  auto op = std::make_shared<OpTensorDesc>(where);
  BL_CHECK(where, cudnnSetOpTensorDescriptor(op->get(), f == EltFn::mul ? CUDNN_OP_TENSOR_MUL : CUDNN_OP_TENSOR_ADD, CUDNN_DATA_FLOAT,
                                             CUDNN_NOT_PROPAGATE_NAN));
  auto ydesc = tensor_desc(yd, CUDNN_DATA_FLOAT, false, where);
  auto cdesc = tensor_desc(cd, CUDNN_DATA_FLOAT, false, where);
  const float* a_dev = b.device(a, where);
  const float* c_dev = b.device(c, where);
  float* y_dev = b.output(n.outputs.at(0), where);
  std::string kind = f == EltFn::mul ? "mul" : f == EltFn::sub ? "sub" : "add";
  b.steps.push_back(make_step(kind, {n.name}, "cudnnOpTensor", [=](Gpu& gpu) {
    const float zero = 0.f;
    BL_CHECK(where, cudnnOpTensor(gpu.dnn, op->get(), &alpha_a, ydesc->get(), a_dev, &alpha_c, cdesc->get(), c_dev, &zero,
                                  ydesc->get(), y_dev));
  }));
  b.mark_done(index);
}

// ---- Gemm / MatMul ---------------------------------------------------------------------------------

const char* const kGemmVariants[] = {"fp32", "tf32", "fp16"};

void lower_gemm(PlanBuilder& b, int index, bool gemm) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const int a = n.inputs.at(0), bm = n.inputs.at(1);
  const int cv = gemm ? input_or_none(n, 2) : -1;
  require_float(b, n, a);
  require_float(b, n, bm);
  const Shape& as = b.value(a).shape;
  const Shape& bs = b.value(bm).shape;
  bool trans_a = false, trans_b = false;
  float alpha = 1.f, beta = 0.f;
  int64_t M, N, K, batch = 1, stride_a = 0, stride_b = 0;
  bool vector_side = false;  // MatMul with a 1-D operand
  if (gemm) {
    if (as.size() != 2 || bs.size() != 2) unsupported(b, n, "Gemm operands must be 2-D");
    trans_a = n.attr_int("transA", 0) != 0;
    trans_b = n.attr_int("transB", 0) != 0;
    alpha = float(n.attr_float("alpha", 1.0));
    beta = float(n.attr_float("beta", 1.0));
    M = trans_a ? as[1] : as[0];
    K = trans_a ? as[0] : as[1];
    N = trans_b ? bs[0] : bs[1];
  } else {
    if (as.empty() || bs.empty()) unsupported(b, n, "MatMul operands must have rank >= 1");
    vector_side = as.size() == 1 || bs.size() == 1;
    M = as.size() == 1 ? 1 : as[as.size() - 2];
    K = as.back();
    N = bs.size() == 1 ? 1 : bs.back();
    const Shape a_batch(as.begin(), as.end() - std::min<size_t>(as.size(), 2));
    const Shape b_batch(bs.begin(), bs.end() - std::min<size_t>(bs.size(), 2));
    const int64_t na = product(a_batch, 0, a_batch.size()), nb = product(b_batch, 0, b_batch.size());
    auto strip = [](Shape s) {
      while (!s.empty() && s.front() == 1) s.erase(s.begin());
      return s;
    };
    if (na > 1 && nb > 1 && strip(a_batch) != strip(b_batch))
      unsupported(b, n, "MatMul batch broadcasting between " + shape_str(as) + " and " + shape_str(bs) +
                            " (only equal batch dims, or one side without batch)");
    batch = std::max(na, nb);
    stride_a = na > 1 ? M * K : 0;
    stride_b = nb > 1 ? K * N : 0;
  }
  if ((bs.size() == 1 ? bs[0] : (trans_b ? bs[1] : bs[bs.size() - 2])) != K) unsupported(b, n, "inner dimensions differ");
  if (b.value(n.outputs.at(0)).numel() != batch * M * N) unsupported(b, n, "output size does not match the product");
  std::string variant = b.variant_for(n);
  if (variant.empty()) variant = "fp32";
  int vi = -1;
  for (int i = 0; i < 3; ++i)
    if (variant == kGemmVariants[i]) vi = i;
  if (vi < 0) throw InvalidArgument(where, "unknown variant '" + variant + "'; valid " + n.op + " variants: fp32, tf32, fp16");

  const int m = to_int(M, where), nn = to_int(N, where), k = to_int(K, where), nbatch = to_int(batch, where);
  // Row-major Y = A' B' is column-major Y^T = B'^T A'^T: cuBLAS gets B first.
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int lda = trans_a ? m : k, ldb = trans_b ? k : nn;
  const float* a_dev = b.device(a, where);
  const float* b_dev = b.device(bm, where);
  float* y_dev = b.output(n.outputs.at(0), where);

  // Gemm's C, broadcast into Y first (cudnnAddTensor: each dim equal or 1), then beta = 1.
  const float* c_dev = nullptr;
  std::shared_ptr<TensorDesc> c_desc, y_desc;
  if (cv >= 0 && beta != 0.f) {
    require_float(b, n, cv);
    Shape cs = b.value(cv).shape;
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    if (cs.size() != 2 || (cs[0] != 1 && cs[0] != M) || (cs[1] != 1 && cs[1] != N)) unsupported(b, n, "C does not broadcast to [M, N]");
    c_dev = b.device(cv, where);
    c_desc = tensor_desc({1, 1, to_int(cs[0], where), to_int(cs[1], where)}, CUDNN_DATA_FLOAT, false, where);
    y_desc = tensor_desc({1, 1, m, nn}, CUDNN_DATA_FLOAT, false, where);
  }

  // fp16: half copies of A and B (constants converted once here, activations in the step).
  const bool half = vi == 2;
  const size_t a_n = size_t(b.value(a).numel()), b_n = size_t(b.value(bm).numel());
  const void* a_in = a_dev;
  const void* b_in = b_dev;
  void* a_half = nullptr;
  void* b_half = nullptr;
  bool convert_a = false, convert_b = false;
  if (half) {
    a_half = b.scratch(a_n * 2, where);
    b_half = b.scratch(b_n * 2, where);
    convert_a = !b.value(a).is_constant();
    convert_b = !b.value(bm).is_constant();
    if (!convert_a) convert_f32_to_f16(a_dev, a_half, a_n, b.gpu.stream, where);
    if (!convert_b) convert_f32_to_f16(b_dev, b_half, b_n, b.gpu.stream, where);
    BL_CHECK(where, cudaStreamSynchronize(b.gpu.stream));
    a_in = a_half;
    b_in = b_half;
  }
  const bool use_gemv = vi == 0 && batch == 1 && (M == 1 || N == 1);
  const bool batched = batch > 1;
  std::string call = vi == 0 ? (use_gemv ? "cublasSgemv" : batched ? "cublasSgemmStridedBatched" : "cublasSgemm")
                             : "cublasGemmStridedBatchedEx";
  (void)vector_side;
  b.steps.push_back(make_step("gemm", {n.name}, variant + ", " + call, [=](Gpu& gpu) {
    float beta_blas = 0.f;
    if (c_dev) {
      const float zero = 0.f;
      BL_CHECK(where, cudnnAddTensor(gpu.dnn, &beta, c_desc->get(), c_dev, &zero, y_desc->get(), y_dev));
      beta_blas = 1.f;
    }
    if (convert_a) convert_f32_to_f16(a_dev, a_half, a_n, gpu.stream, where);
    if (convert_b) convert_f32_to_f16(b_dev, b_half, b_n, gpu.stream, where);
    if (use_gemv) {
      if (M == 1) {
        // y(1xN) = a(K) B': y^T = B'^T a.
        BL_CHECK(where, cublasSgemv(gpu.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_b ? k : nn, trans_b ? nn : k, &alpha, b_dev,
                                    ldb, a_dev, 1, &beta_blas, y_dev, 1));
      } else {
        // y(Mx1) = A' b.
        BL_CHECK(where, cublasSgemv(gpu.blas, trans_a ? CUBLAS_OP_N : CUBLAS_OP_T, trans_a ? m : k, trans_a ? k : m, &alpha, a_dev,
                                    lda, b_dev, 1, &beta_blas, y_dev, 1));
      }
    } else if (vi == 0 && !batched) {
      BL_CHECK(where, cublasSgemm(gpu.blas, op_b, op_a, nn, m, k, &alpha, b_dev, ldb, a_dev, lda, &beta_blas, y_dev, nn));
    } else if (vi == 0) {
      BL_CHECK(where, cublasSgemmStridedBatched(gpu.blas, op_b, op_a, nn, m, k, &alpha, b_dev, ldb, stride_b, a_dev, lda, stride_a,
                                                &beta_blas, y_dev, nn, int64_t(m) * nn, nbatch));
    } else {
      const cudaDataType in_type = half ? CUDA_R_16F : CUDA_R_32F;
      const cublasComputeType_t compute = half ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
      BL_CHECK(where, cublasGemmStridedBatchedEx(gpu.blas, op_b, op_a, nn, m, k, &alpha, b_in, in_type, ldb, stride_b, a_in, in_type,
                                                 lda, stride_a, &beta_blas, y_dev, CUDA_R_32F, nn, int64_t(m) * nn, nbatch, compute,
                                                 CUBLAS_GEMM_DEFAULT));
    }
  }));
  b.mark_done(index);
}

// ---- Concat and views ------------------------------------------------------------------------------

void lower_concat(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  const Shape& ys = b.value(n.outputs.at(0)).shape;
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += int64_t(ys.size());
  if (axis < 0 || axis >= int64_t(ys.size())) unsupported(b, n, "axis out of range");
  const int64_t outer = product(ys, 0, size_t(axis)), inner = product(ys, size_t(axis) + 1, ys.size());
  struct Piece {
    const float* src;
    size_t offset_bytes, width_bytes;
  };
  std::vector<Piece> pieces;
  int64_t offset = 0;
  for (int v : n.inputs) {
    if (v < 0) continue;
    require_float(b, n, v);
    const Shape& s = b.value(v).shape;
    if (s.size() != ys.size()) unsupported(b, n, "inputs of different ranks");
    const int64_t width = s[size_t(axis)] * inner;
    if (width > 0 && outer > 0) pieces.push_back({b.device(v, where), size_t(offset * inner) * 4, size_t(width) * 4});
    offset += s[size_t(axis)];
  }
  if (offset != ys[size_t(axis)]) unsupported(b, n, "input sizes along the axis do not add up to the output's");
  float* y_dev = b.output(n.outputs.at(0), where);
  const size_t pitch = size_t(ys[size_t(axis)] * inner) * 4, rows = size_t(outer);
  b.steps.push_back(make_step("copy", {n.name}, "cudaMemcpy2DAsync per input", [=](Gpu& gpu) {
    for (const Piece& p : pieces)
      BL_CHECK(where, cudaMemcpy2DAsync(reinterpret_cast<char*>(y_dev) + p.offset_bytes, pitch, p.src, p.width_bytes, p.width_bytes,
                                        rows, cudaMemcpyDeviceToDevice, gpu.stream));
  }));
  b.mark_done(index);
}

void lower_constant(PlanBuilder& b, int index) {
  b.mark_done(index);  // its value is a constant, uploaded where it is read
}

void lower_clip_or_activation(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  if (fn_of(n) == EltFn::clip) {
    double lo, hi;
    clip_bounds(b, n, lo, hi);
    if (lo <= -FLT_MAX && hi >= FLT_MAX) {  // no bounds: a view
      b.alias(n.outputs.at(0), n.inputs.at(0), b.where(n));
      b.mark_done(index);
      return;
    }
  }
  lower_activation(b, index);
}

void lower_view(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  // Dropout's mask (any second output that someone reads) is not a view of the input.
  if (n.outputs.size() > 1 && n.outputs[1] >= 0 && !b.value(n.outputs[1]).consumers.empty())
    unsupported(b, n, "Dropout's mask output is not supported");
  b.alias(n.outputs.at(0), n.inputs.at(0), b.where(n));
  b.mark_done(index);
}

CudaLowerings build_lowerings() {
  CudaLowerings t("cuda");
  t.add({"Constant"}, lower_constant);
  t.add({"Conv"}, lower_conv);
  t.add({"BatchNormalization"}, lower_batchnorm);
  t.add({"Relu", "Sigmoid", "Tanh", "Elu", "Clip"}, lower_clip_or_activation);
  t.add({"MaxPool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, false, true); });
  t.add({"AveragePool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, false, false); });
  t.add({"GlobalMaxPool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, true, true); });
  t.add({"GlobalAveragePool"}, [](PlanBuilder& b, int i) { lower_pool(b, i, true, false); });
  t.add({"Softmax"}, lower_softmax);
  t.add({"Add", "Sub", "Mul", "Sum"}, lower_binary);  // a Sum of two inputs is an Add
  t.add({"Gemm"}, [](PlanBuilder& b, int i) { lower_gemm(b, i, true); });
  t.add({"MatMul"}, [](PlanBuilder& b, int i) { lower_gemm(b, i, false); });
  t.add({"Concat"}, lower_concat);
  t.add({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"}, lower_view);
  return t;
}

// Operators whose lowering takes variants other than "default".
bool has_variants(const Node& n) {
  const OpDef* def = OpRegistry::instance().of(n);
  return def && def->variant_anchor;  // the same test node_variants uses
}

}  // namespace

const CudaLowerings& lowerings() {
  static const CudaLowerings table = build_lowerings();
  return table;
}

void lower_node(PlanBuilder& b, int index) {
  const Node& n = b.graph.nodes[size_t(index)];
  const ErrorContext where = b.where(n);
  if (!n.domain.empty() && n.domain != "ai.onnx")
    unsupported(b, n, "operator domain '" + n.domain + "' is not supported by the CUDA backend");
  if (!has_variants(n)) {
    const std::string asked = b.variant_for(n);
    if (!asked.empty() && asked != "default") throw InvalidArgument(where, "unknown variant '" + asked + "'; valid: default");
  }
  const CudaLowerFn lower = lowerings().find(n);
  if (!lower) unsupported(b, n, "operator " + n.op + " is not supported by the CUDA backend (see `bricklab ops`)");
  lower(b, index);
}

std::vector<Variant> node_variants(const Graph& graph, int index, Gpu* gpu) {
  const Node& n = graph.nodes.at(size_t(index));
  const ErrorContext where{graph.path, n.name, n.op};
  std::vector<Variant> out;
  const OpDef* def = OpRegistry::instance().of(n);
  if (def && def->variant_anchor && def->sets_layout) {  // Conv
    const size_t rank = graph.values.at(size_t(n.inputs.at(0))).shape.size();
    const size_t cudnn_rank = rank == 3 ? 4 : rank;
    auto describe = [](const ConvVariant& v) {
      return std::string("cuDNN forward algorithm ") + kAlgoNames[v.algo] + ", " +
             (v.math == 0 ? "float32 math" : v.math == 1 ? "TF32 tensor-op math" : "float16 data, float32 accumulation, tensor ops") +
             ", activations " + (v.nhwc ? "channels-last" : "channels-first") + " (float32 in and out)";
    };
    if (!gpu) {
      // No device to ask: every candidate, the first (implicit GEMM, float32, NCHW: the algorithm
      // cuDNN implements for every configuration) marked default.
      for (const auto& v : conv_candidates(cudnn_rank)) out.push_back(v.variant(describe(v), out.empty()));
      return out;
    }
    ConvGeometry g;
    try {
      g = conv_geometry(graph, n, where);
    } catch (const UnsupportedError&) {
      return out;  // the backend cannot run this Conv at all
    }
    const ConvVariant best = heuristic_conv(*gpu, g, where);
    out.push_back(best.variant(describe(best) + "; cuDNN's heuristic choice", true));
    for (const auto& v : conv_candidates(g.x.size()))
      if (v.name() != best.name() && conv_workspace(*gpu, g, v, where) >= 0) out.push_back(v.variant(describe(v), false));
    return out;
  }
  if (def && def->variant_anchor) {  // Gemm, MatMul
    out.push_back({"fp32", "cuBLAS float32 (cublasSgemm / cublasSgemv / strided batched)", true, Precision::fp32, "cublas", ""});
    out.push_back({"tf32", "cuBLAS TF32 tensor ops (CUBLAS_COMPUTE_32F_FAST_TF32)", false, Precision::tf32, "cublas", ""});
    out.push_back({"fp16", "cuBLAS float16 inputs, float32 accumulation and output (cublasGemmEx)", false, Precision::fp16, "cublas", ""});
    return out;
  }
  out.push_back({"default", "the only implementation", true, Precision::fp32, "", ""});
  return out;
}

}  // namespace bricklab::cuda
