// .npy reading and writing (see include/bricklab/core/npy.hpp). The header is a Python dict
// literal; only the three keys numpy writes ('descr', 'fortran_order', 'shape') are parsed, and
// every size is checked against the file before reading, so a corrupt file is an error, not a crash.
#include "bricklab/core/npy.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "bricklab/core/error.hpp"

namespace bricklab {

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& why) {
  throw InvalidArgument(ErrorContext{path, "", ""}, "not a valid .npy file: " + why);
}

std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::string k1 = "'" + key + "'";
  size_t at = header.find(k1);
  if (at == std::string::npos) bad(path, "header has no '" + key + "'");
  at = header.find(':', at + k1.size());
  if (at == std::string::npos) bad(path, "malformed header");
  ++at;
  while (at < header.size() && header[at] == ' ') ++at;
  if (at >= header.size()) bad(path, "malformed header");
  size_t end;
  if (header[at] == '\'') {
    end = header.find('\'', at + 1);
    if (end == std::string::npos) bad(path, "malformed header");
    return header.substr(at + 1, end - at - 1);
  }
  if (header[at] == '(') {
    end = header.find(')', at);
    if (end == std::string::npos) bad(path, "malformed shape");
    return header.substr(at, end - at + 1);
  }
  end = header.find_first_of(",}", at);
  if (end == std::string::npos) bad(path, "malformed header");
  return header.substr(at, end - at);
}

template <class T>
T load(const unsigned char* p, bool swap) {
  unsigned char tmp[sizeof(T)];
  std::memcpy(tmp, p, sizeof(T));
  if (swap)
    for (size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(tmp[i], tmp[sizeof(T) - 1 - i]);
  T v;
  std::memcpy(&v, tmp, sizeof(T));
  return v;
}

bool host_big_endian() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 0;
}

// Storage index of element j (C order).
size_t storage_index(const NpyArray& a, size_t j) {
  size_t s = j;
  if (a.fortran_order && a.shape.size() > 1) {
    size_t rem = j, stride = 1;
    s = 0;
    std::vector<size_t> idx(a.shape.size());
    for (size_t k = a.shape.size(); k-- > 0;) {
      idx[k] = rem % size_t(a.shape[k]);
      rem /= size_t(a.shape[k]);
    }
    for (size_t k = 0; k < a.shape.size(); ++k) {
      s += idx[k] * stride;
      stride *= size_t(a.shape[k]);
    }
  }
  return s;
}

// Element j (C order) as double.
double element(const NpyArray& a, size_t j) {
  const unsigned char* p = a.bytes.data() + storage_index(a, j) * size_t(a.itemsize);
  const bool swap = a.big_endian != host_big_endian();
  switch (a.kind) {
    case 'b': return p[0] ? 1.0 : 0.0;
    case 'f':
      if (a.itemsize == 2) return double(half_to_float(load<uint16_t>(p, swap)));
      return a.itemsize == 4 ? double(load<float>(p, swap)) : load<double>(p, swap);
    case 'i':
      switch (a.itemsize) {
        case 1: return double(int8_t(p[0]));
        case 2: return double(load<int16_t>(p, swap));
        case 4: return double(load<int32_t>(p, swap));
        default: return double(load<int64_t>(p, swap));
      }
    default:
      switch (a.itemsize) {
        case 1: return double(p[0]);
        case 2: return double(load<uint16_t>(p, swap));
        case 4: return double(load<uint32_t>(p, swap));
        default: return double(load<uint64_t>(p, swap));
      }
  }
}

void write_raw(const std::string& path, const std::vector<int64_t>& shape, const char* descr, const void* data,
               size_t bytes) {
  std::string shape_text = "(";
  for (size_t k = 0; k < shape.size(); ++k) shape_text += std::to_string(shape[k]) + (shape.size() == 1 ? "," : (k + 1 < shape.size() ? ", " : ""));
  shape_text += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // Pad with spaces and a newline so that the payload starts at a multiple of 64 bytes.
  const size_t prefix = 10;
  size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw FileError(ErrorContext{path, "", ""}, "cannot open for writing");
  const unsigned char magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(reinterpret_cast<const char*>(magic), 8);
  const uint16_t len = uint16_t(header.size());
  const unsigned char len_bytes[2] = {static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8)};
  out.write(reinterpret_cast<const char*>(len_bytes), 2);
  out.write(header.data(), std::streamsize(header.size()));
  out.write(static_cast<const char*>(data), std::streamsize(bytes));
  if (!out) throw FileError(ErrorContext{path, "", ""}, "write failed");
}

}  // namespace

size_t NpyArray::size() const {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

std::vector<double> NpyArray::as_double() const {
  std::vector<double> out(size());
  for (size_t j = 0; j < out.size(); ++j) out[j] = element(*this, j);
  return out;
}

std::vector<int64_t> NpyArray::as_int64(const std::string& what) const {
  std::vector<int64_t> out(size());
  const bool swap = big_endian != host_big_endian();
  for (size_t j = 0; j < out.size(); ++j) {
    if (kind == 'i' && itemsize == 8 && !fortran_order) {
      out[j] = load<int64_t>(bytes.data() + j * 8, swap);
      continue;
    }
    if (kind == 'u' && itemsize == 8) {
      const uint64_t v = load<uint64_t>(bytes.data() + j * 8, swap);
      if (v > uint64_t(std::numeric_limits<int64_t>::max())) throw InvalidArgument(what + ": value too large for int64");
    }
    const double v = element(*this, j);
    if (!std::isfinite(v)) throw InvalidArgument(what + ": entry " + std::to_string(j) + " is NaN or infinite");
    if (v != std::floor(v)) throw InvalidArgument(what + ": entry " + std::to_string(j) + " is not an integer (" + std::to_string(v) + ")");
    if (std::fabs(v) > 9.2e18) throw InvalidArgument(what + ": entry " + std::to_string(j) + " is out of the int64 range");
    out[j] = int64_t(v);
  }
  return out;
}

NpyArray read_npy_array(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw MissingFileError(ErrorContext{path, "", ""}, "no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(ErrorContext{path, "", ""}, "not readable");
  unsigned char magic[8];
  if (!in.read(reinterpret_cast<char*>(magic), 8)) bad(path, "too short");
  if (magic[0] != 0x93 || std::memcmp(magic + 1, "NUMPY", 5) != 0) bad(path, "missing the \\x93NUMPY magic");
  const int major = magic[6];
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) bad(path, "truncated header");
    header_len = uint32_t(b[0]) | (uint32_t(b[1]) << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) bad(path, "truncated header");
    header_len = uint32_t(b[0]) | (uint32_t(b[1]) << 8) | (uint32_t(b[2]) << 16) | (uint32_t(b[3]) << 24);
  } else {
    bad(path, "unsupported format version " + std::to_string(major));
  }
  if (header_len > (1u << 24)) bad(path, "header too long");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) bad(path, "truncated header");

  NpyArray a;
  const std::string descr = header_value(header, "descr", path);
  if (descr.size() < 3) bad(path, "unsupported dtype '" + descr + "'");
  const char order = descr[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') bad(path, "unsupported dtype '" + descr + "'");
  a.big_endian = order == '>' || (order == '=' && host_big_endian());
  a.kind = descr[1];
  try {
    a.itemsize = std::stoi(descr.substr(2));
  } catch (const std::exception&) {
    bad(path, "unsupported dtype '" + descr + "'");
  }
  const bool ok = (a.kind == 'b' && a.itemsize == 1) || (a.kind == 'f' && (a.itemsize == 2 || a.itemsize == 4 || a.itemsize == 8)) ||
                  ((a.kind == 'i' || a.kind == 'u') && (a.itemsize == 1 || a.itemsize == 2 || a.itemsize == 4 || a.itemsize == 8));
  if (!ok) bad(path, "unsupported dtype '" + descr + "' (need bool, int, uint or float)");
  const std::string fo = header_value(header, "fortran_order", path);
  if (fo.find("True") != std::string::npos) a.fortran_order = true;
  else if (fo.find("False") == std::string::npos) bad(path, "malformed fortran_order");
  const std::string shape = header_value(header, "shape", path);
  size_t at = 1;
  while (at < shape.size()) {
    while (at < shape.size() && (shape[at] == ' ' || shape[at] == ',')) ++at;
    if (at >= shape.size() || shape[at] == ')') break;
    size_t used = 0;
    long long d = 0;
    try {
      d = std::stoll(shape.substr(at), &used);
    } catch (const std::exception&) {
      bad(path, "malformed shape " + shape);
    }
    if (d < 0) bad(path, "negative dimension in shape " + shape);
    a.shape.push_back(d);
    at += used;
  }
  double total = double(a.itemsize);
  for (int64_t d : a.shape) total *= double(d);
  if (total > 1e11) bad(path, "array too large");
  {
    const auto data_start = in.tellg();
    in.seekg(0, std::ios::end);
    const double available = double(in.tellg() - data_start);
    in.seekg(data_start);
    if (total > available)
      bad(path, "truncated data (expected " + std::to_string(size_t(total)) + " bytes, the file has " +
                    std::to_string(size_t(available)) + ")");
  }
  a.bytes.resize(size_t(total));
  if (!a.bytes.empty() && !in.read(reinterpret_cast<char*>(a.bytes.data()), std::streamsize(a.bytes.size())))
    bad(path, "truncated data (expected " + std::to_string(a.bytes.size()) + " bytes)");
  return a;
}

Tensor read_npy(const std::string& path) {
  const NpyArray a = read_npy_array(path);
  DType dtype = DType::undefined;
  switch (a.kind) {
    case 'b': dtype = DType::boolean; break;
    case 'f': dtype = a.itemsize == 2 ? DType::float16 : a.itemsize == 4 ? DType::float32 : DType::float64; break;
    case 'i': dtype = a.itemsize == 1 ? DType::int8 : a.itemsize == 2 ? DType::int16 : a.itemsize == 4 ? DType::int32 : DType::int64; break;
    default: dtype = a.itemsize == 1 ? DType::uint8 : a.itemsize == 2 ? DType::uint16 : a.itemsize == 4 ? DType::uint32 : DType::uint64; break;
  }
  Tensor t(dtype, Shape(a.shape.begin(), a.shape.end()));
  auto* out = static_cast<unsigned char*>(t.data());
  const size_t n = a.size(), w = size_t(a.itemsize);
  const bool swap = w > 1 && a.big_endian != host_big_endian();
  if (!swap && (!a.fortran_order || a.shape.size() < 2)) {
    if (n) std::memcpy(out, a.bytes.data(), n * w);
    return t;
  }
  for (size_t j = 0; j < n; ++j) {
    const unsigned char* src = a.bytes.data() + storage_index(a, j) * w;
    for (size_t b = 0; b < w; ++b) out[j * w + b] = src[swap ? w - 1 - b : b];
  }
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  const char* descr = nullptr;
  switch (t.dtype()) {
    case DType::float32: descr = "<f4"; break;
    case DType::float64: descr = "<f8"; break;
    case DType::float16: descr = "<f2"; break;
    case DType::int64: descr = "<i8"; break;
    case DType::int32: descr = "<i4"; break;
    case DType::int16: descr = "<i2"; break;
    case DType::int8: descr = "|i1"; break;
    case DType::uint8: descr = "|u1"; break;
    case DType::uint16: descr = "<u2"; break;
    case DType::uint32: descr = "<u4"; break;
    case DType::uint64: descr = "<u8"; break;
    case DType::boolean: descr = "|b1"; break;
    default: throw InvalidArgument(ErrorContext{path, "", ""}, "cannot write a " + dtype_name(t.dtype()) + " tensor as .npy");
  }
  if (host_big_endian()) throw Error("write_npy: big-endian hosts are not supported");
  write_raw(path, std::vector<int64_t>(t.shape().begin(), t.shape().end()), descr, t.data(), t.nbytes());
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const double* data) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  if (host_big_endian()) throw Error("write_npy: big-endian hosts are not supported");
  write_raw(path, shape, "<f8", data, n * sizeof(double));
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const int64_t* data) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  if (host_big_endian()) throw Error("write_npy: big-endian hosts are not supported");
  write_raw(path, shape, "<i8", data, n * sizeof(int64_t));
}

}  // namespace bricklab
