// Constant tensor contents held by the graph: weights, Constant-node values, and fills.
// Data is shared and immutable, so copies of a Graph and Python views never copy weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bricklab/core/dtype.hpp"

namespace bricklab {

using Shape = std::vector<int64_t>;

// Number of elements of a shape (1 for a scalar). Saturates instead of overflowing.
inline int64_t shape_numel(const Shape& s) noexcept {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return -1;
    if (d != 0 && n > INT64_MAX / d) return INT64_MAX;
    n *= d;
  }
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out + "]";
}

class TensorData {
 public:
  enum class Kind {
    absent,  // shape and type known, values not stored (a stripped model's weights)
    bytes,   // dense little-endian buffer of numel * dtype_size bytes
    fill,    // every element equals one scalar (ConstantOfShape); never materialised
  };

  TensorData() = default;
  static TensorData make_absent(DType t, Shape s) { return TensorData(Kind::absent, t, std::move(s)); }
  static TensorData make_bytes(DType t, Shape s, std::shared_ptr<const std::string> buf) {
    TensorData d(Kind::bytes, t, std::move(s));
    d.bytes_ = std::move(buf);
    return d;
  }
  static TensorData make_fill(DType t, Shape s, double value) {
    TensorData d(Kind::fill, t, std::move(s));
    d.fill_ = value;
    return d;
  }

  Kind kind() const noexcept { return kind_; }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  int64_t numel() const noexcept { return shape_numel(shape_); }
  bool has_values() const noexcept { return kind_ != Kind::absent; }
  double fill_value() const noexcept { return fill_; }
  // Raw buffer (kind == bytes), nullptr otherwise.
  const std::string* buffer() const noexcept { return bytes_.get(); }
  std::shared_ptr<const std::string> shared_buffer() const noexcept { return bytes_; }

  // Values as int64 (for int32/int64/uint8/bool tensors: shapes, axes, pads). Throws if absent.
  std::vector<int64_t> as_int64() const;
  // Values as double (any numeric type). Throws if absent.
  std::vector<double> as_double() const;

 private:
  TensorData(Kind k, DType t, Shape s) : kind_(k), dtype_(t), shape_(std::move(s)) {}
  Kind kind_ = Kind::absent;
  DType dtype_ = DType::undefined;
  Shape shape_;
  std::shared_ptr<const std::string> bytes_;
  double fill_ = 0.0;
};

}  // namespace bricklab
