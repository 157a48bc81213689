// Host tensors for running models: dense, row-major, 64-byte aligned, shared ownership so that
// Python can view them without copies and caller buffers can be wrapped without copies.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "bricklab/core/dtype.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/core/memory.hpp"
#include "bricklab/graph/tensor.hpp"

namespace bricklab {

class Tensor {
 public:
  Tensor() = default;
  // Allocates a zero-initialised tensor.
  Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
    if (dtype_size(dtype_) == 0) throw InvalidArgument("Tensor: unsupported element type " + dtype_name(dtype_));
    const int64_t n = shape_numel(shape_);
    if (n < 0) throw InvalidArgument("Tensor: negative dimension in " + shape_str(shape_));
    if (auto e = over_budget("Tensor", dtype_, shape_); !e.empty()) throw InvalidArgument(e);
    const size_t bytes = size_t(n) * size_t(dtype_size(dtype_));
    const size_t rounded = (bytes + 63) / 64 * 64 + 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw Error("Tensor: out of memory allocating " + std::to_string(bytes) + " bytes");
    std::memset(p, 0, rounded);
    owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    data_ = p;
  }
  // Wraps memory owned elsewhere; `owner` keeps it alive (may be null for borrowed memory).
  static Tensor wrap(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner) {
    Tensor t;
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
    t.data_ = data;
    t.owner_ = std::move(owner);
    return t;
  }

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  int64_t numel() const noexcept { return shape_numel(shape_); }
  size_t nbytes() const noexcept { return size_t(numel()) * size_t(dtype_size(dtype_)); }
  bool empty() const noexcept { return data_ == nullptr; }
  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }
  template <typename T> T* data_as() noexcept { return static_cast<T*>(data_); }
  template <typename T> const T* data_as() const noexcept { return static_cast<const T*>(data_); }
  const std::shared_ptr<void>& owner() const noexcept { return owner_; }

 private:
  DType dtype_ = DType::undefined;
  Shape shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

}  // namespace bricklab
