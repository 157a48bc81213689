// Example: load a model with bricklab and print its heaviest layers and its critical path
// weighted by FLOPs. Build against an installed bricklab: see CMakeLists.txt beside this file.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

#include <bricklab/bricklab.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: model_summary MODEL.onnx [BATCH]\n";
    return 2;
  }
  try {
    bricklab::LoadOptions options;
    if (argc > 2) options.batch = std::stoll(argv[2]);
    const bricklab::Graph graph = bricklab::load_onnx(argv[1], options);

    std::vector<int> order(graph.nodes.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return graph.nodes[size_t(a)].cost.flops > graph.nodes[size_t(b)].cost.flops; });
    std::printf("%s: %zu nodes, %.3f GFLOP at batch %lld\n", argv[1], graph.nodes.size(),
                graph.total_cost().flops / 1e9, static_cast<long long>(options.batch ? options.batch : 1));
    for (size_t k = 0; k < std::min<size_t>(5, order.size()); ++k) {
      const auto& n = graph.nodes[size_t(order[k])];
      std::printf("  %-28s %-12s %10.2f MFLOP\n", n.name.c_str(), n.op.c_str(), n.cost.flops / 1e6);
    }
    std::vector<double> weights;
    for (const auto& n : graph.nodes) weights.push_back(n.cost.flops);
    const auto path = graph.critical_path(weights);
    std::printf("critical path: %zu nodes, %.3f GFLOP (%.1f%% of all work)\n", path.nodes.size(), path.length / 1e9,
                100.0 * path.length / graph.total_cost().flops);
    std::printf("example app OK\n");
    return 0;
  } catch (const bricklab::Error& e) {
    std::cerr << "model_summary: " << e.what() << "\n";
    return 1;
  }
}
