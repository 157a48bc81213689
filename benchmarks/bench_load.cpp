// Benchmark: model import time (parse + checks + shape inference + cost) per model, median of
// repeats. Usage: bench_load [--repeat N] MODEL.onnx...  (e.g. models/zoo/*.onnx)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bricklab/bricklab.hpp"

int main(int argc, char** argv) {
  int repeat = 5;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--repeat" && i + 1 < argc) repeat = std::max(1, std::atoi(argv[++i]));
    else paths.push_back(a);
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: bench_load [--repeat N] MODEL.onnx...\n");
    return 2;
  }
  fmt::print("{:<36} {:>7} {:>12} {:>12} {:>12}\n", "model", "nodes", "GFLOP@1", "load ms", "us/node");
  std::vector<double> per_node;
  for (const auto& p : paths) {
    std::vector<double> ms;
    size_t nodes = 0;
    double flops = 0;
    try {
      for (int r = 0; r < repeat; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        auto g = bricklab::load_onnx(p);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        nodes = g.nodes.size();
        flops = g.total_cost().flops;
      }
    } catch (const bricklab::Error& e) {
      fmt::print("{:<36} error: {}\n", p, e.what());
      continue;
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    per_node.push_back(1000 * median / double(std::max<size_t>(nodes, 1)));
    auto name = p.substr(p.find_last_of('/') + 1);
    fmt::print("{:<36} {:>7} {:>12.3f} {:>12.2f} {:>12.1f}\n", name, nodes, flops / 1e9, median, per_node.back());
  }
  if (!per_node.empty()) {
    std::sort(per_node.begin(), per_node.end());
    fmt::print("\nmedian import cost: {:.1f} us per node over {} models\n", per_node[per_node.size() / 2], per_node.size());
  }
  return 0;
}
