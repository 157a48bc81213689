// The memory budget (see include/bricklab/core/memory.hpp).
#include "bricklab/core/memory.hpp"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "bricklab/core/error.hpp"

namespace bricklab {
namespace {

std::atomic<int64_t> g_override{0};

// "64G", "512M", "1048576" -> bytes; -1 when it does not parse.
int64_t parse_size(const std::string& s) {
  if (s.empty()) return -1;
  size_t end = 0;
  double v = 0;
  try {
    v = std::stod(s, &end);
  } catch (const std::exception&) {
    return -1;
  }
  std::string suffix = s.substr(end);
  while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.back()))) suffix.pop_back();
  double scale = 1;
  if (!suffix.empty()) {
    const char c = char(std::toupper(static_cast<unsigned char>(suffix[0])));
    const std::string units = "KMGT";
    const auto at = units.find(c);
    if (at == std::string::npos) return -1;
    scale = std::pow(1024.0, double(at + 1));
    const std::string rest = suffix.substr(1);
    if (!rest.empty() && rest != "B" && rest != "iB" && rest != "b") return -1;
  }
  const double bytes = v * scale;
  if (!(bytes >= 0) || bytes > 9.0e18) return -1;
  return int64_t(bytes);
}

int64_t read_number(const char* path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return -1;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return -1;
  }
}

struct Machine {
  int64_t bytes = 0;
  std::string source;
};

const Machine& machine_memory() {
  static const Machine m = [] {
    Machine out;
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    out.bytes = pages > 0 && page > 0 ? int64_t(pages) * int64_t(page) : int64_t(1) << 40;
    out.source = "physical memory";
    for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
      const int64_t v = read_number(path);
      if (v > 0 && v < out.bytes) {
        out.bytes = v;
        out.source = path[15] == 'm' && path[21] == '.' ? "cgroup memory.max" : "cgroup memory.limit_in_bytes";
      }
    }
    return out;
  }();
  return m;
}

int64_t env_limit() {
  const char* e = std::getenv("BRICKLAB_MEMORY_LIMIT");
  if (!e || !*e) return 0;
  const int64_t v = parse_size(e);
  if (v < 0) throw InvalidArgument(std::string("BRICKLAB_MEMORY_LIMIT is '") + e + "'; give bytes, or a number with K, M, G or T");
  return v;
}

}  // namespace

int64_t memory_limit() {
  int64_t v = g_override.load();
  if (v == 0) v = env_limit();
  if (v == 0) v = machine_memory().bytes;
  return std::max<int64_t>(v, int64_t(1) << 20);
}

void set_memory_limit(int64_t bytes) {
  if (bytes < 0) throw InvalidArgument("memory limit " + std::to_string(bytes) + " is negative (0 restores the default)");
  g_override = bytes;
}

std::string memory_limit_source() {
  if (g_override.load() != 0) return "set_memory_limit";
  if (env_limit() != 0) return "BRICKLAB_MEMORY_LIMIT";
  return machine_memory().source;
}

int64_t checked_bytes(DType dtype, const Shape& shape) noexcept {
  int64_t n = std::max<int64_t>(dtype_size(dtype), 1);
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::string format_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (b >= 1024.0 && u < 6) b /= 1024.0, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string over_budget_bytes(const std::string& what, int64_t bytes) {
  const int64_t limit = memory_limit();
  if (bytes >= 0 && bytes <= limit) return "";
  const std::string need = bytes < 0 ? "more than 2^63 bytes (the size overflows 64 bits)"
                                     : format_bytes(double(bytes)) + " (" + std::to_string(bytes) + " bytes)";
  return what + " needs " + need + ", above bricklab's memory limit of " + format_bytes(double(limit)) + " (" +
         memory_limit_source() + "; set BRICKLAB_MEMORY_LIMIT to change it)";
}

std::string over_budget(const std::string& what, DType dtype, const Shape& shape) {
  return over_budget_bytes(what + " (" + dtype_name(dtype) + " " + shape_str(shape) + ")", checked_bytes(dtype, shape));
}

}  // namespace bricklab
