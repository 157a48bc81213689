// The .npy reader/writer (include/bricklab/core/npy.hpp) of `run --input` and `recover`: round trips,
// hand-built files in other dtypes, byte orders, Fortran order and format versions (the bytes
// follow the published NEP 1 layout), and malformed files.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bricklab/core/error.hpp"
#include "bricklab/core/npy.hpp"

using namespace bricklab;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "bricklab_tensor_npy";
  fs::create_directories(dir);
  return (dir / name).string();
}

// A .npy file written byte by byte: magic, version, header length, dict, padding, payload.
std::string write_manual(const std::string& name, int major, const std::string& dict, const std::string& payload) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 16 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += char(major);
  bytes += char(0);
  const uint32_t len = uint32_t(header.size());
  bytes += char(len & 0xff);
  bytes += char((len >> 8) & 0xff);
  if (major != 1) {
    bytes += char((len >> 16) & 0xff);
    bytes += char((len >> 24) & 0xff);
  }
  bytes += header + payload;
  const std::string path = temp_path(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

template <class T>
std::string le_bytes(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;  // the test machine is little-endian (x86-64)
}

}  // namespace

TEST_CASE("npy: float64 and int64 round trips", "[npy]") {
  const std::vector<double> x = {1.5, -2.25, 3e-300, 4.0, 5.0, 6.125};
  const std::string p = temp_path("x.npy");
  write_npy(p, {2, 3}, x.data());
  const NpyArray a = read_npy_array(p);
  CHECK(a.shape == std::vector<int64_t>{2, 3});
  CHECK(a.kind == 'f');
  CHECK(a.as_double() == x);
  // The payload starts at a multiple of 64 bytes, as numpy writes it.
  CHECK((fs::file_size(p) - x.size() * 8) % 64 == 0);

  const std::vector<int64_t> i = {0, 7, -3, 1234567890123LL};
  const std::string q = temp_path("i.npy");
  write_npy(q, {4}, i.data());
  const NpyArray b = read_npy_array(q);
  CHECK(b.shape == std::vector<int64_t>{4});
  CHECK(b.as_int64("i") == i);
}

TEST_CASE("npy: other dtypes, big-endian, Fortran order and version 2", "[npy]") {
  const std::string i32 =
      write_manual("i32.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", le_bytes<int32_t>({1, 2, 3, 4}));
  CHECK(read_npy_array(i32).as_int64("i32") == std::vector<int64_t>{1, 2, 3, 4});

  std::string be = {0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0};  // >i8 values 5 and 256
  const std::string big = write_manual("be.npy", 1, "{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", be);
  CHECK(read_npy_array(big).as_int64("be") == std::vector<int64_t>{5, 256});

  // Fortran order: storage column by column; values come back in C order.
  const std::string f = write_manual("f.npy", 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                                     le_bytes<double>({1, 4, 2, 5, 3, 6}));
  CHECK(read_npy_array(f).as_double() == std::vector<double>{1, 2, 3, 4, 5, 6});

  const std::string v2 = write_manual("v2.npy", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                                      le_bytes<float>({0.5f, -1.0f, 2.0f}));
  CHECK(read_npy_array(v2).as_double() == std::vector<double>{0.5, -1.0, 2.0});

  const std::string u8 = write_manual("u8.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
                                      std::string("\x01\x02\xff", 3));
  CHECK(read_npy_array(u8).as_int64("u8") == std::vector<int64_t>{1, 2, 255});
}

TEST_CASE("npy: float indices must be finite integers; malformed files are refused", "[npy]") {
  using bricklab::InvalidArgument;
  const std::vector<double> bad = {1.0, std::nan("")};
  const std::string p = temp_path("nan.npy");
  write_npy(p, {2}, bad.data());
  CHECK_THROWS_AS(read_npy_array(p).as_int64("levels"), InvalidArgument);
  const std::vector<double> frac = {1.0, 2.5};
  write_npy(p, {2}, frac.data());
  CHECK_THROWS_WITH(read_npy_array(p).as_int64("levels"), Catch::Contains("not an integer"));

  CHECK_THROWS_AS(read_npy_array(temp_path("missing.npy")), bricklab::FileError);
  const std::string garbage = temp_path("garbage.npy");
  std::ofstream(garbage, std::ios::binary) << "not numpy at all";
  CHECK_THROWS_AS(read_npy_array(garbage), InvalidArgument);
  const std::string trunc = write_manual("trunc.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
                                         le_bytes<double>({1, 2}));
  CHECK_THROWS_WITH(read_npy_array(trunc), Catch::Contains("truncated"));
  const std::string obj = write_manual("obj.npy", 1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "xxxxxxxx");
  CHECK_THROWS_AS(read_npy_array(obj), InvalidArgument);
  const std::string cplx = write_manual("c.npy", 1, "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }",
                                        std::string(16, '\0'));
  CHECK_THROWS_AS(read_npy_array(cplx), InvalidArgument);
}

TEST_CASE("npy: read_npy gives a native C-order tensor of the file's dtype", "[npy]") {
  // float32, Fortran order (2 x 3): storage is column by column.
  const std::string f = write_manual("t_f.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                                     le_bytes<float>({1, 4, 2, 5, 3, 6}));
  const Tensor t = read_npy(f);
  REQUIRE(t.dtype() == DType::float32);
  REQUIRE(t.shape() == Shape{2, 3});
  const float* v = static_cast<const float*>(t.data());
  CHECK(std::vector<float>(v, v + 6) == std::vector<float>{1, 2, 3, 4, 5, 6});

  // Big-endian float32 1.0 (0x3f800000) and -2.0 (0xc0000000).
  const std::string be = write_manual("t_be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                                      std::string("\x3f\x80\x00\x00\xc0\x00\x00\x00", 8));
  const Tensor b = read_npy(be);
  CHECK(static_cast<const float*>(b.data())[0] == 1.0f);
  CHECK(static_cast<const float*>(b.data())[1] == -2.0f);

  // float16 1.0 (0x3c00), -0.5 (0xb800), 65504 (0x7bff) and the smallest subnormal (0x0001).
  const std::string h = write_manual("t_h.npy", 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (4,), }",
                                     std::string("\x00\x3c\x00\xb8\xff\x7b\x01\x00", 8));
  CHECK(read_npy(h).dtype() == DType::float16);
  CHECK(read_npy_array(h).as_double() == std::vector<double>{1.0, -0.5, 65504.0, std::ldexp(1.0, -24)});

  // Round trip through write_npy(Tensor).
  Tensor x(DType::int32, Shape{3});
  int32_t* xi = static_cast<int32_t*>(x.data());
  xi[0] = -7, xi[1] = 0, xi[2] = 1 << 30;
  const std::string p = temp_path("t_i32.npy");
  write_npy(p, x);
  const Tensor y = read_npy(p);
  REQUIRE(y.dtype() == DType::int32);
  CHECK(std::memcmp(y.data(), x.data(), 12) == 0);

  // A header that claims more data than the file has is refused before allocating it.
  const std::string huge = write_manual("t_huge.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000,), }", "");
  CHECK_THROWS_WITH(read_npy(huge), Catch::Contains("truncated"));
}
