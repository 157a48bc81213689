// Element types of tensors, mirroring ONNX's TensorProto.DataType numbering.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace bricklab {

enum class DType : int {
  undefined = 0,
  float32 = 1,
  uint8 = 2,
  int8 = 3,
  uint16 = 4,
  int16 = 5,
  int32 = 6,
  int64 = 7,
  string = 8,
  boolean = 9,
  float16 = 10,
  float64 = 11,
  uint32 = 12,
  uint64 = 13,
  complex64 = 14,
  complex128 = 15,
  bfloat16 = 16,
};

// Bytes per element; 0 for types without a fixed size (undefined, string).
constexpr int64_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::uint8: case DType::int8: case DType::boolean: return 1;
    case DType::uint16: case DType::int16: case DType::float16: case DType::bfloat16: return 2;
    case DType::float32: case DType::int32: case DType::uint32: return 4;
    case DType::float64: case DType::int64: case DType::uint64: case DType::complex64: return 8;
    case DType::complex128: return 16;
    default: return 0;
  }
}

constexpr bool dtype_is_float(DType t) noexcept {
  return t == DType::float32 || t == DType::float16 || t == DType::bfloat16 || t == DType::float64;
}

inline std::string dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::uint8: return "uint8";
    case DType::int8: return "int8";
    case DType::uint16: return "uint16";
    case DType::int16: return "int16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::string: return "string";
    case DType::boolean: return "bool";
    case DType::float16: return "float16";
    case DType::float64: return "float64";
    case DType::uint32: return "uint32";
    case DType::uint64: return "uint64";
    case DType::complex64: return "complex64";
    case DType::complex128: return "complex128";
    case DType::bfloat16: return "bfloat16";
    default: return "undefined";
  }
}

// True for the ONNX element-type numbers this enum knows (1..16).
constexpr bool dtype_known(int onnx_elem_type) noexcept { return onnx_elem_type >= 1 && onnx_elem_type <= 16; }

// IEEE half (bits) to float, exactly: normals, subnormals, infinities, NaN.
inline float half_to_float(uint16_t h) noexcept {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (m & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace bricklab
