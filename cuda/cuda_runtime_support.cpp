// Status checks, RAII owners and the float32 <-> float16 conversion kernels of the CUDA backend.
#include <algorithm>
#include <cstring>
#include <mutex>

#include "cuda_internal.hpp"

namespace bricklab::cuda {

namespace {

// "cudnnConvolutionForward(h, ...)" -> "cudnnConvolutionForward".
std::string call_name(const char* call) {
  std::string s(call);
  const size_t paren = s.find('(');
  return paren == std::string::npos ? s : s.substr(0, paren);
}

}  // namespace

std::string status_name(cudnnStatus_t s) { return cudnnGetErrorString(s); }
std::string status_name(cublasStatus_t s) { return cublasGetStatusString(s); }

void check(cudaError_t status, const ErrorContext& where, const char* call) {
  if (status == cudaSuccess) return;
  throw Error(where, call_name(call) + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

void check(cudnnStatus_t status, const ErrorContext& where, const char* call) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const std::string msg = call_name(call) + " failed: " + status_name(status);
  if (status == CUDNN_STATUS_NOT_SUPPORTED) throw UnsupportedError(where, msg);
  throw Error(where, msg);
}

void check(cublasStatus_t status, const ErrorContext& where, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const std::string msg = call_name(call) + " failed: " + status_name(status);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) throw UnsupportedError(where, msg);
  throw Error(where, msg);
}

DeviceBuffer::DeviceBuffer(size_t bytes, const ErrorContext& where) : bytes_(bytes) {
  // Never a zero-byte allocation: cudnn/cublas may still be handed the pointer.
  BL_CHECK(where, cudaMalloc(&ptr_, bytes == 0 ? 256 : bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

Gpu::Gpu() {
  if (!is_available()) throw UnsupportedError("the CUDA backend cannot run here: " + unavailable_reason());
  const ErrorContext where{};
  BL_CHECK(where, cudaSetDevice(0));
  BL_CHECK(where, cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  try {
    BL_CHECK(where, cudnnCreate(&dnn));
    BL_CHECK(where, cudnnSetStream(dnn, stream));
    BL_CHECK(where, cublasCreate(&blas));
    BL_CHECK(where, cublasSetStream(blas, stream));
    // Default math: cublasSgemm stays in float32; TF32 / fp16 only where a variant asks for them
    // through cublasGemmEx's compute type.
    BL_CHECK(where, cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
  } catch (...) {
    if (blas) cublasDestroy(blas);
    if (dnn) cudnnDestroy(dnn);
    cudaStreamDestroy(stream);
    throw;
  }
}

Gpu::~Gpu() {
  if (stream) cudaStreamSynchronize(stream);
  if (blas) cublasDestroy(blas);
  if (dnn) cudnnDestroy(dnn);
  if (stream) cudaStreamDestroy(stream);
}

// ---- float32 <-> float16 ----------------------------------------------------------------------
// Hand-written PTX (grid-stride loops), loaded with cudaLibraryLoadData so that the library needs
// no nvcc at build time; the driver JIT-compiles it for the GPU present (sm_70 and newer).
namespace {

const char* const kConvertPtx = R"PTX(
.version 7.0
.target sm_70
.address_size 64

.visible .entry bricklab_f32_to_f16(.param .u64 p_src, .param .u64 p_dst, .param .u64 p_n)
{
  .reg .pred %p;
  .reg .b16 %h;
  .reg .f32 %f;
  .reg .b32 %r<5>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [p_src];
  ld.param.u64 %rd2, [p_dst];
  ld.param.u64 %rd3, [p_n];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %ctaid.x;
  mov.u32 %r2, %ntid.x;
  mov.u32 %r3, %tid.x;
  mov.u32 %r4, %nctaid.x;
  mul.wide.u32 %rd4, %r1, %r2;
  cvt.u64.u32 %rd5, %r3;
  add.u64 %rd4, %rd4, %rd5;
  mul.wide.u32 %rd6, %r4, %r2;
TO_HALF_LOOP:
  setp.ge.u64 %p, %rd4, %rd3;
  @%p bra TO_HALF_DONE;
  shl.b64 %rd7, %rd4, 2;
  add.u64 %rd8, %rd1, %rd7;
  ld.global.f32 %f, [%rd8];
  cvt.rn.f16.f32 %h, %f;
  shl.b64 %rd7, %rd4, 1;
  add.u64 %rd9, %rd2, %rd7;
  st.global.b16 [%rd9], %h;
  add.u64 %rd4, %rd4, %rd6;
  bra.uni TO_HALF_LOOP;
TO_HALF_DONE:
  ret;
}

.visible .entry bricklab_f16_to_f32(.param .u64 p_src, .param .u64 p_dst, .param .u64 p_n)
{
  .reg .pred %p;
  .reg .b16 %h;
  .reg .f32 %f;
  .reg .b32 %r<5>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [p_src];
  ld.param.u64 %rd2, [p_dst];
  ld.param.u64 %rd3, [p_n];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %ctaid.x;
  mov.u32 %r2, %ntid.x;
  mov.u32 %r3, %tid.x;
  mov.u32 %r4, %nctaid.x;
  mul.wide.u32 %rd4, %r1, %r2;
  cvt.u64.u32 %rd5, %r3;
  add.u64 %rd4, %rd4, %rd5;
  mul.wide.u32 %rd6, %r4, %r2;
TO_FLOAT_LOOP:
  setp.ge.u64 %p, %rd4, %rd3;
  @%p bra TO_FLOAT_DONE;
  shl.b64 %rd7, %rd4, 1;
  add.u64 %rd8, %rd1, %rd7;
  ld.global.b16 %h, [%rd8];
  cvt.f32.f16 %f, %h;
  shl.b64 %rd7, %rd4, 2;
  add.u64 %rd9, %rd2, %rd7;
  st.global.f32 [%rd9], %f;
  add.u64 %rd4, %rd4, %rd6;
  bra.uni TO_FLOAT_LOOP;
TO_FLOAT_DONE:
  ret;
}
)PTX";

struct ConvertKernels {
  cudaLibrary_t library = nullptr;
  cudaKernel_t to_half = nullptr, to_float = nullptr;
  std::string error;  // why loading failed, if it did
};

// Loaded once per process; the library stays loaded until exit (the driver frees it then).
const ConvertKernels& convert_kernels() {
  static ConvertKernels k;
  static std::once_flag once;
  std::call_once(once, [] {
    cudaError_t e = cudaLibraryLoadData(&k.library, kConvertPtx, nullptr, nullptr, 0, nullptr, nullptr, 0);
    if (e == cudaSuccess) e = cudaLibraryGetKernel(&k.to_half, k.library, "bricklab_f32_to_f16");
    if (e == cudaSuccess) e = cudaLibraryGetKernel(&k.to_float, k.library, "bricklab_f16_to_f32");
    if (e != cudaSuccess)
      k.error = std::string("loading the float16 conversion kernels failed: ") + cudaGetErrorName(e) + " (" +
                cudaGetErrorString(e) + ")";
  });
  return k;
}

void launch_convert(bool to_half, const void* src, void* dst, size_t n, cudaStream_t stream, const ErrorContext& where) {
  const ConvertKernels& k = convert_kernels();
  if (!k.error.empty()) throw Error(where, k.error);
  if (n == 0) return;
  unsigned long long count = n;
  const void* s = src;
  void* d = dst;
  void* args[] = {&s, &d, &count};
  const unsigned threads = 256;
  const size_t blocks = std::min<size_t>((n + threads - 1) / threads, 4096);
  BL_CHECK(where, cudaLaunchKernel(reinterpret_cast<const void*>(to_half ? k.to_half : k.to_float), dim3(unsigned(blocks)),
                                   dim3(threads), args, 0, stream));
}

}  // namespace

void convert_f32_to_f16(const void* src, void* dst, size_t n, cudaStream_t stream, const ErrorContext& where) {
  launch_convert(true, src, dst, n, stream, where);
}
void convert_f16_to_f32(const void* src, void* dst, size_t n, cudaStream_t stream, const ErrorContext& where) {
  launch_convert(false, src, dst, n, stream, where);
}

}  // namespace bricklab::cuda
