// .npy reader/writer: header parsing is strict (dtype, fortran_order, shape) and every size is
// checked against the file before reading, so a corrupt file gives an error, not a crash.
#include "bricklab/core/npy.hpp"

#include <cctype>
#include <cstring>
#include <fstream>

namespace bricklab {
namespace {

struct NpyType {
  const char* descr;
  DType dtype;
};
const NpyType kTypes[] = {{"<f4", DType::float32}, {"<f8", DType::float64}, {"<f2", DType::float16}, {"<i8", DType::int64},
                          {"<i4", DType::int32},   {"<i2", DType::int16},   {"|i1", DType::int8},    {"|u1", DType::uint8},
                          {"<u2", DType::uint16},  {"<u4", DType::uint32},  {"<u8", DType::uint64},  {"|b1", DType::boolean}};

std::string field(const std::string& header, const std::string& key, const std::string& path) {
  const auto at = header.find("'" + key + "'");
  if (at == std::string::npos) throw InvalidArgument({path, "", ""}, "not a valid .npy file: header has no '" + key + "'");
  auto colon = header.find(':', at);
  if (colon == std::string::npos) throw InvalidArgument({path, "", ""}, "not a valid .npy file: malformed header");
  size_t start = colon + 1;
  while (start < header.size() && header[start] == ' ') ++start;
  size_t end = start;
  if (start < header.size() && (header[start] == '\'' || header[start] == '(')) {
    const char close = header[start] == '\'' ? '\'' : ')';
    end = header.find(close, start + 1);
    if (end == std::string::npos) throw InvalidArgument({path, "", ""}, "not a valid .npy file: malformed header");
    return header.substr(start + 1, end - start - 1);
  }
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(start, end - start);
}

}  // namespace

Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError({path, "", ""}, "cannot open .npy file");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw InvalidArgument({path, "", ""}, "not a .npy file (bad magic)");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t h;
    if (!in.read(reinterpret_cast<char*>(&h), 2)) throw InvalidArgument({path, "", ""}, "truncated .npy header");
    header_len = h;
  } else if (!in.read(reinterpret_cast<char*>(&header_len), 4)) {
    throw InvalidArgument({path, "", ""}, "truncated .npy header");
  }
  if (header_len > (1u << 20)) throw InvalidArgument({path, "", ""}, ".npy header is implausibly long");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw InvalidArgument({path, "", ""}, "truncated .npy header");
  const std::string descr = field(header, "descr", path);
  if (field(header, "fortran_order", path).find("True") != std::string::npos)
    throw InvalidArgument({path, "", ""}, "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
  DType dtype = DType::undefined;
  for (const auto& t : kTypes)
    if (descr == t.descr || (descr.size() == 3 && descr[0] == '=' && descr.substr(1) == std::string(t.descr).substr(1))) dtype = t.dtype;
  if (dtype == DType::undefined) throw InvalidArgument({path, "", ""}, "unsupported .npy dtype '" + descr + "'");
  Shape shape;
  const std::string dims = field(header, "shape", path);
  size_t i = 0;
  while (i < dims.size()) {
    while (i < dims.size() && !std::isdigit(static_cast<unsigned char>(dims[i]))) ++i;
    if (i >= dims.size()) break;
    size_t j = i;
    while (j < dims.size() && std::isdigit(static_cast<unsigned char>(dims[j]))) ++j;
    if (j - i > 15) throw InvalidArgument({path, "", ""}, ".npy shape is implausible");
    shape.push_back(std::stoll(dims.substr(i, j - i)));
    i = j;
  }
  const auto data_start = in.tellg();
  in.seekg(0, std::ios::end);
  const int64_t available = int64_t(in.tellg()) - int64_t(data_start);
  const int64_t n = shape_numel(shape);
  if (n < 0 || n == INT64_MAX || n * dtype_size(dtype) > available)
    throw InvalidArgument({path, "", ""}, ".npy data is shorter than its shape " + shape_str(shape) + " needs");
  Tensor t(dtype, shape);
  in.seekg(data_start);
  if (t.nbytes() && !in.read(static_cast<char*>(t.data()), std::streamsize(t.nbytes())))
    throw InvalidArgument({path, "", ""}, "reading .npy data failed");
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  const char* descr = nullptr;
  for (const auto& k : kTypes)
    if (k.dtype == t.dtype()) descr = k.descr;
  if (!descr) throw InvalidArgument({path, "", ""}, "cannot write a " + dtype_name(t.dtype()) + " tensor as .npy");
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + (t.shape().size() == 1 ? "," : i + 1 < t.shape().size() ? ", " : "");
  shape += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw FileError({path, "", ""}, "cannot open for writing");
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = uint16_t(header.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(t.data()), std::streamsize(t.nbytes()));
  if (!out) throw FileError({path, "", ""}, "writing failed (disk full?)");
}

}  // namespace bricklab
