// Minimal reader/writer of NumPy .npy files (format versions 1.0-3.0) for the `recover` CLI:
// numeric dtypes (bool, int8..int64, uint8..uint64, float32, float64) in either byte order and
// C or Fortran order on read; float64 or int64, little-endian, C order on write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bricklab::tensor {

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

// Throws FileError when the file cannot be opened, InvalidArgument when it is not a valid .npy.
NpyArray read_npy(const std::string& path);
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const double* data);
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const int64_t* data);

}  // namespace bricklab::tensor
