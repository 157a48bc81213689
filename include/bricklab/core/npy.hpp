// Reading and writing NumPy .npy files (format versions 1.0-3.0): the one .npy reader of the
// project, used by `bricklab run --input` and `bricklab recover`. Reads numeric dtypes (bool,
// int8..int64, uint8..uint64, float16/32/64) in either byte order and C or Fortran order; writes
// little-endian C order with the payload aligned to 64 bytes, as numpy does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bricklab/engine/tensor.hpp"

namespace bricklab {

// An .npy file as stored: dtype, shape, order and the raw payload.
struct NpyArray {
  std::vector<int64_t> shape;
  char kind = 'f';          // 'f' float, 'i' signed, 'u' unsigned, 'b' bool
  int itemsize = 8;
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<unsigned char> bytes;  // raw payload

  size_t size() const;
  // Values in C order. as_int64 refuses non-integral or non-finite floats (names `what` in the
  // error); as_double converts any numeric dtype.
  std::vector<double> as_double() const;
  std::vector<int64_t> as_int64(const std::string& what) const;
};

// Throws FileError when the file cannot be opened, InvalidArgument (naming the file) when it is
// not a valid .npy file, is truncated, or holds an unsupported dtype.
NpyArray read_npy_array(const std::string& path);
// The file as a host tensor of the same dtype, native byte order, C order.
Tensor read_npy(const std::string& path);

void write_npy(const std::string& path, const Tensor& tensor);
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const double* data);
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const int64_t* data);

}  // namespace bricklab
