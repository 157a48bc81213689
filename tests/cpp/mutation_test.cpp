// Mutation fuzzing of the ONNX importer: thousands of randomly corrupted copies of real models
// (byte flips, byte runs, insertions, deletions, truncations, varint overwrites). Every mutant
// must either load or raise a bricklab::Error; anything else (another exception type, a crash,
// a sanitizer report) fails. Run under AddressSanitizer in CI (build-asan).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bricklab/bricklab.hpp"

namespace {

std::string mutate(const std::string& original, std::mt19937_64& rng) {
  std::string s = original;
  auto pick = [&](size_t n) { return n == 0 ? size_t(0) : size_t(rng() % n); };
  const int edits = 1 + int(rng() % 4);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    switch (rng() % 7) {
      case 0: s[pick(s.size())] ^= char(1u << (rng() % 8)); break;                       // bit flip
      case 1: s[pick(s.size())] = char(rng() & 0xff); break;                             // random byte
      case 2: { size_t at = pick(s.size()); s.insert(at, 1 + pick(8), char(rng() & 0xff)); break; }  // insert run
      case 3: { size_t at = pick(s.size()); s.erase(at, 1 + pick(16)); break; }          // delete run
      case 4: s.resize(pick(s.size())); break;                                          // truncate
      case 5: { size_t at = pick(s.size()); for (int k = 0; k < 5 && at + k < s.size(); ++k) s[at + k] = char(0xff); break; }  // huge varint
      case 6: { size_t a = pick(s.size()), b = pick(s.size()); std::swap(s[a], s[b]); break; }  // swap
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  int mutants = 2000;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mutants" && i + 1 < argc) mutants = std::stoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else paths.push_back(a);
  }
  if (paths.empty()) {
    std::cerr << "usage: bricklab_mutation_test MODEL.onnx... [--mutants N] [--seed S]\n";
    return 2;
  }
  std::mt19937_64 rng(seed);
  std::map<std::string, int> outcomes;
  int failures = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    const std::string original((std::istreambuf_iterator<char>(in)), {});
    if (original.empty()) {
      std::cerr << "cannot read " << path << "\n";
      return 2;
    }
    bricklab::load_onnx_bytes(original);  // the unmutated model must load
    for (int m = 0; m < mutants; ++m) {
      const std::string bytes = mutate(original, rng);
      try {
        bricklab::Graph g = bricklab::load_onnx_bytes(bytes, {}, "", "mutant");
        (void)g.total_cost();
        outcomes["loaded"]++;
      } catch (const bricklab::FileError&) { outcomes["FileError"]++;
      } catch (const bricklab::ModelFormatError&) { outcomes["ModelFormatError"]++;
      } catch (const bricklab::UnsupportedError&) { outcomes["UnsupportedError"]++;
      } catch (const bricklab::ShapeError&) { outcomes["ShapeError"]++;
      } catch (const bricklab::ExternalDataError&) { outcomes["ExternalDataError"]++;
      } catch (const bricklab::Error&) { outcomes["Error"]++;
      } catch (const std::exception& e) {
        ++failures;
        std::cerr << "FAIL: mutant " << m << " of " << path << " raised a non-bricklab exception: " << e.what() << "\n";
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "mutants: " << mutants * int(paths.size()) << " in " << secs << " s\n";
  for (const auto& [k, v] : outcomes) std::cout << "  " << k << ": " << v << "\n";
  const int total = mutants * int(paths.size());
  std::cout << (total - failures) << " passed, " << failures << " failed\n";
  return failures == 0 ? 0 : 1;
}
