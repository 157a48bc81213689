// Internals of the CUDA backend (cuDNN + cuBLAS): status checks that turn every failure into a
// bricklab error naming the node, operator and library status; RAII owners of handles,
// descriptors and device memory; the plan (steps) the lowering in cuda_ops.cpp builds and
// cuda_backend.cpp runs. Private to cuda/: no public header includes this.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bricklab/backend/devices.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/engine/backend.hpp"
#include "bricklab/graph/graph.hpp"
#include "bricklab/ops/lowering.hpp"

namespace bricklab::cuda {

// ---- status checks --------------------------------------------------------------------------
// `call` is the library call as written (only its name, up to '(', goes into the message).
// cuDNN's NOT_SUPPORTED becomes UnsupportedError; every other failure an Error.
void check(cudaError_t status, const ErrorContext& where, const char* call);
void check(cudnnStatus_t status, const ErrorContext& where, const char* call);
void check(cublasStatus_t status, const ErrorContext& where, const char* call);
#define BL_CHECK(where, expr) ::bricklab::cuda::check((expr), (where), #expr)

// ---- RAII owners ------------------------------------------------------------------------------

// Device memory (cudaMalloc'd), freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, const ErrorContext& where);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const noexcept { return ptr_; }
  size_t bytes() const noexcept { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A cuDNN descriptor created on construction and destroyed on destruction.
template <typename T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class Descriptor {
 public:
  explicit Descriptor(const ErrorContext& where) { check(Create(&d_), where, "cudnnCreate*Descriptor"); }
  ~Descriptor() {
    if (d_) Destroy(d_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  T get() const noexcept { return d_; }

 private:
  T d_ = nullptr;
};
using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using ActDesc = Descriptor<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor, cudnnDestroyActivationDescriptor>;
using PoolDesc = Descriptor<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;
using OpTensorDesc = Descriptor<cudnnOpTensorDescriptor_t, cudnnCreateOpTensorDescriptor, cudnnDestroyOpTensorDescriptor>;

// The handles one executable runs with: cuDNN, cuBLAS, one stream, on device 0.
class Gpu {
 public:
  Gpu();  // throws UnsupportedError with unavailable_reason() when no GPU is usable
  ~Gpu();
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;
  cudnnHandle_t dnn = nullptr;
  cublasHandle_t blas = nullptr;
  cudaStream_t stream = nullptr;
};

// float32 <-> float16 conversion on the device (a small PTX kernel JIT-compiled by the driver on
// first use; cuDNN's cudnnTransformTensor does not change data types).
void convert_f32_to_f16(const void* src, void* dst, size_t n, cudaStream_t stream, const ErrorContext& where);
void convert_f16_to_f32(const void* src, void* dst, size_t n, cudaStream_t stream, const ErrorContext& where);

// ---- the plan -----------------------------------------------------------------------------------

// One step of the plan: a node or a fused group of nodes, launched on the executable's stream.
struct Step {
  std::string kind;                // "conv", "conv+bias+relu", "bn", "pool", "gemm", "copy", ...
  std::vector<std::string> nodes;  // node names
  std::string detail;              // variant / algorithm / layout, for describe()
  std::function<void(Gpu&)> launch;
};

// Builds the plan: device memory of every float32 value (weights uploaded once), and steps.
class PlanBuilder {
 public:
  PlanBuilder(const Graph& g, const CompileOptions& o, Gpu& gpu);

  const Graph& graph;
  const CompileOptions& options;
  Gpu& gpu;
  std::vector<Step> steps;
  bool random_weights = false;

  ErrorContext where(const Node& n) const { return {graph.path, n.name, n.op}; }
  const Value& value(int v) const { return graph.values.at(size_t(v)); }
  bool done(int node) const { return done_.at(size_t(node)); }
  void mark_done(int node) { done_.at(size_t(node)) = true; }
  // The only node reading `value` (reading it once), or -1; never for graph outputs.
  int sole_consumer(int value) const;
  // Host float values of a constant (random stand-ins for stripped weights).
  std::vector<float> constant_floats(int value);
  // Device pointer of a float32 value: a constant is uploaded on first use; an activation must
  // have been produced by an earlier step (or be a graph input).
  float* device(int value, const ErrorContext& where);
  // Allocates the device memory of a value produced by a step.
  float* output(int value, const ErrorContext& where);
  // The value `alias` shares the memory of `of` (Reshape and friends).
  void alias(int alias, int of, const ErrorContext& where);
  // Scratch device memory owned by the plan (workspaces, converted copies).
  void* scratch(size_t bytes, const ErrorContext& where);
  // Uploads host data into plan-owned device memory.
  void* upload(const void* host, size_t bytes, const ErrorContext& where);
  // The variant the options ask for this node ("" when none).
  std::string variant_for(const Node& n) const;

  std::map<int, std::shared_ptr<DeviceBuffer>> memory;  // value -> device memory
  std::vector<std::shared_ptr<DeviceBuffer>> owned;     // scratch, weights in other layouts

 private:
  std::vector<bool> done_;
};

// Lowers node `index` (and any nodes it fuses) into steps through the CUDA lowering table;
// UnsupportedError when it cannot.
void lower_node(PlanBuilder& b, int index);
// The CUDA backend's lowerings, one per operator-table entry it supports (cuda_ops.cpp).
using CudaLowerFn = void (*)(PlanBuilder&, int);
using CudaLowerings = LoweringTable<CudaLowerFn>;
const CudaLowerings& lowerings();

// Variants of a node; `gpu` null: no device, the unfiltered candidate list (see cuda_ops.cpp).
std::vector<Variant> node_variants(const Graph& graph, int index, Gpu* gpu);

// Status string helpers (also used in messages built outside check()).
std::string status_name(cudnnStatus_t s);
std::string status_name(cublasStatus_t s);

}  // namespace bricklab::cuda
