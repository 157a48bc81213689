// Masked weighted aggregation (include/bricklab/soft/aggregate.hpp). One pass over the data:
// the work is cut into chunks across all tensors, each chunk is processed in small tiles whose
// numerator, denominator and finiteness check stay in L1, clients are streamed through the tile, and the tile is
// written once. Non-finite trained values are detected branch-free in the same pass (x - x is
// NaN exactly when x is NaN or infinite); the rare failing chunk is rescanned to name the first
// offending client, tensor and element.
#include "bricklab/soft/aggregate.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>

#include "bricklab/core/error.hpp"

namespace bricklab::soft {

namespace {

constexpr size_t kTile = 1024;

struct WorkItem {
  size_t tensor;
  size_t begin;
  size_t end;
};

struct Failure {
  size_t tensor = std::numeric_limits<size_t>::max();
  size_t element = 0;
  size_t client = 0;
  bool operator<(const Failure& o) const {
    return tensor != o.tensor ? tensor < o.tensor : element != o.element ? element < o.element : client < o.client;
  }
};

// The three inner kernels, compiled for AVX2 and for the baseline, picked at load time (the
// library is built for generic x86-64). All are branch-free so that GCC vectorises them under
// the default -ftrapping-math: untrained elements are zeroed and outputs selected with integer
// masks, never with float selects.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define BRICKLAB_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BRICKLAB_SIMD_CLONES
#endif

BRICKLAB_SIMD_CLONES
void accumulate_masked(size_t n, const float* __restrict v, const uint8_t* __restrict m, float p, float* __restrict num, float* __restrict den, float* __restrict chk) {
  for (size_t j = 0; j < n; ++j) {
    const uint32_t keep = 0u - uint32_t(m[j] != 0);
    uint32_t bits;
    std::memcpy(&bits, v + j, 4);
    bits &= keep;
    float x;
    std::memcpy(&x, &bits, 4);
    const uint32_t one_bits = 0x3f800000u & keep;  // 1.0f or 0.0f
    float one;
    std::memcpy(&one, &one_bits, 4);
    chk[j] += x - x;  // NaN exactly when x is NaN or infinite
    num[j] += p * x;
    den[j] += p * one;
  }
}

// Two clients in one sweep: half the traffic to the L1 accumulators. A full update passes an
// all-ones mask (a tile-sized buffer that stays in L1).
BRICKLAB_SIMD_CLONES
void accumulate_pair(size_t n, const float* __restrict v1, const uint8_t* __restrict m1, float p1, const float* __restrict v2, const uint8_t* __restrict m2,
                     float p2, float* __restrict num, float* __restrict den, float* __restrict chk) {
  for (size_t j = 0; j < n; ++j) {
    const uint32_t k1 = 0u - uint32_t(m1[j] != 0), k2 = 0u - uint32_t(m2[j] != 0);
    uint32_t b1, b2;
    std::memcpy(&b1, v1 + j, 4);
    std::memcpy(&b2, v2 + j, 4);
    b1 &= k1;
    b2 &= k2;
    float x1, x2, o1, o2;
    std::memcpy(&x1, &b1, 4);
    std::memcpy(&x2, &b2, 4);
    const uint32_t ob1 = 0x3f800000u & k1, ob2 = 0x3f800000u & k2;
    std::memcpy(&o1, &ob1, 4);
    std::memcpy(&o2, &ob2, 4);
    chk[j] += (x1 - x1) + (x2 - x2);
    num[j] += p1 * x1 + p2 * x2;
    den[j] += p1 * o1 + p2 * o2;
  }
}

BRICKLAB_SIMD_CLONES
void accumulate_full(size_t n, const float* __restrict v, float p, float* __restrict num, float* __restrict den, float* __restrict chk) {
  for (size_t j = 0; j < n; ++j) {
    const float x = v[j];
    chk[j] += x - x;
    num[j] += p * x;
    den[j] += p;
  }
}

// Writes the averages (or the global value where nobody trained); returns how many were trained.
BRICKLAB_SIMD_CLONES
size_t finish(size_t n, const float* __restrict num, const float* __restrict den, const float* __restrict g, float* __restrict o) {
  size_t trained = 0;
  for (size_t j = 0; j < n; ++j) {
    const uint32_t any = 0u - uint32_t(den[j] > 0.0f);
    const float avg = num[j] / den[j];  // 0/0 = NaN where nobody trained: replaced below
    uint32_t avg_bits, g_bits;
    std::memcpy(&avg_bits, &avg, 4);
    std::memcpy(&g_bits, g + j, 4);
    const uint32_t out_bits = (avg_bits & any) | (g_bits & ~any);
    std::memcpy(o + j, &out_bits, 4);
    trained += any & 1u;
  }
  return trained;
}

void validate(const std::vector<TensorSlot>& tensors, const std::vector<ClientUpdate>& clients,
              const AggregateOptions& options) {
  if (clients.empty()) throw InvalidArgument("aggregate: no client updates (at least one client must report)");
  if (!(options.soft_factor > 0) || !std::isfinite(options.soft_factor))
    throw InvalidArgument("aggregate: soft_factor must be finite and > 0, got " + std::to_string(options.soft_factor));
  if (options.chunk == 0) throw InvalidArgument("aggregate: chunk must be > 0");
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorSlot& s = tensors[t];
    if (s.size > 0 && (!s.global || !s.out))
      throw InvalidArgument("aggregate: tensor '" + s.name + "' has no global or output buffer");
  }
  for (size_t i = 0; i < clients.size(); ++i) {
    const ClientUpdate& c = clients[i];
    const std::string who = "client '" + c.id + "' (index " + std::to_string(i) + ")";
    if (!(c.samples > 0) || !std::isfinite(c.samples))
      throw InvalidArgument("aggregate: " + who + " has weight " + std::to_string(c.samples) +
                            "; the number of samples must be finite and > 0");
    if (c.values.size() != tensors.size() || c.masks.size() != tensors.size())
      throw InvalidArgument("aggregate: " + who + " lists " + std::to_string(c.values.size()) + " value and " +
                            std::to_string(c.masks.size()) + " mask buffers for " + std::to_string(tensors.size()) +
                            " tensors");
    for (size_t t = 0; t < tensors.size(); ++t)
      if (!c.values[t] && c.masks[t])
        throw InvalidArgument("aggregate: " + who + " has a mask but no values for tensor '" + tensors[t].name + "'");
  }
}

}  // namespace

AggregateStats aggregate(const std::vector<TensorSlot>& tensors, const std::vector<ClientUpdate>& clients,
                         const AggregateOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  validate(tensors, clients, options);

  // Normalised weights keep the float accumulators in a safe range whatever the sample counts.
  std::vector<float> weight(clients.size());
  double total = 0;
  for (const ClientUpdate& c : clients) total += c.samples * (c.soft ? options.soft_factor : 1.0);
  for (size_t i = 0; i < clients.size(); ++i)
    weight[i] = float(clients[i].samples * (clients[i].soft ? options.soft_factor : 1.0) / total);

  std::vector<WorkItem> work;
  AggregateStats stats;
  for (size_t t = 0; t < tensors.size(); ++t) {
    stats.elements += tensors[t].size;
    for (size_t b = 0; b < tensors[t].size; b += options.chunk)
      work.push_back({t, b, std::min(tensors[t].size, b + options.chunk)});
    double bytes = 8.0 * double(tensors[t].size);  // global read + out write
    for (const ClientUpdate& c : clients) {
      if (c.values[t]) bytes += 4.0 * double(tensors[t].size);
      if (c.masks[t]) bytes += 1.0 * double(tensors[t].size);
    }
    stats.bytes_moved += bytes;
  }

  Failure failure;
  std::mutex failure_mutex;
  size_t untouched = 0;
  const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
  const long long items = static_cast<long long>(work.size());

#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : untouched)
  for (long long w = 0; w < items; ++w) {
    const WorkItem& item = work[size_t(w)];
    const TensorSlot& slot = tensors[item.tensor];
    alignas(64) float num[kTile];
    alignas(64) float den[kTile];
    alignas(64) float chk[kTile];  // sum of (x - x) over trained values: 0, or NaN for inf/NaN
    alignas(64) uint8_t ones[kTile];
    std::fill(ones, ones + kTile, uint8_t(1));
    bool bad = false;
    for (size_t b = item.begin; b < item.end; b += kTile) {
      const size_t n = std::min(kTile, item.end - b);
      std::fill(num, num + n, 0.0f);
      std::fill(den, den + n, 0.0f);
      std::fill(chk, chk + n, 0.0f);
      // Clients that trained this tensor, taken two at a time.
      size_t pending = SIZE_MAX;
      for (size_t i = 0; i < clients.size(); ++i) {
        if (!clients[i].values[item.tensor]) continue;
        if (pending == SIZE_MAX) {
          pending = i;
          continue;
        }
        const uint8_t* m1 = clients[pending].masks[item.tensor];
        const uint8_t* m2 = clients[i].masks[item.tensor];
        accumulate_pair(n, clients[pending].values[item.tensor] + b, m1 ? m1 + b : ones, weight[pending],
                        clients[i].values[item.tensor] + b, m2 ? m2 + b : ones, weight[i], num, den, chk);
        pending = SIZE_MAX;
      }
      if (pending != SIZE_MAX) {
        const float* v = clients[pending].values[item.tensor] + b;
        const uint8_t* m = clients[pending].masks[item.tensor];
        if (m)
          accumulate_masked(n, v, m + b, weight[pending], num, den, chk);
        else
          accumulate_full(n, v, weight[pending], num, den, chk);
      }
      // Element-wise accumulators and an integer OR keep every loop vectorisable (a float sum
      // reduction would not be without -ffast-math).
      unsigned flagged = 0;
      for (size_t j = 0; j < n; ++j) flagged |= chk[j] != 0.0f;  // NaN != 0 is true
      if (flagged) {
        bad = true;
        break;
      }
      const float* g = slot.global + b;
      float* o = slot.out + b;
      const size_t trained_count = finish(n, num, den, g, o);
      untouched += n - trained_count;
    }
    if (bad) {
      // Slow path: find the first non-finite trained element of this chunk.
      Failure f;
      for (size_t j = item.begin; j < item.end && f.tensor == std::numeric_limits<size_t>::max(); ++j)
        for (size_t i = 0; i < clients.size(); ++i) {
          const float* v = clients[i].values[item.tensor];
          const uint8_t* m = clients[i].masks[item.tensor];
          if (v && (!m || m[j]) && !std::isfinite(v[j])) {
            f = {item.tensor, j, i};
            break;
          }
        }
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (f < failure) failure = f;
    }
  }

  if (failure.tensor != std::numeric_limits<size_t>::max()) {
    const ClientUpdate& c = clients[failure.client];
    const float x = c.values[failure.tensor][failure.element];
    throw InvalidArgument("aggregate: client '" + c.id + "' (index " + std::to_string(failure.client) +
                          ") sent a non-finite value (" + (std::isnan(x) ? "nan" : x > 0 ? "inf" : "-inf") +
                          ") in tensor '" + tensors[failure.tensor].name + "' at element " +
                          std::to_string(failure.element) + "; the update is rejected");
  }
  stats.untouched = untouched;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace bricklab::soft
