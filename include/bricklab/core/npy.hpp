// Reading and writing NumPy .npy files (format 1.0/2.0/3.0, little-endian, C order) for the CLI.
#pragma once

#include <string>

#include "bricklab/engine/tensor.hpp"

namespace bricklab {

// Throws FileError / InvalidArgument naming the file and what is wrong with it.
Tensor read_npy(const std::string& path);
void write_npy(const std::string& path, const Tensor& tensor);

}  // namespace bricklab
