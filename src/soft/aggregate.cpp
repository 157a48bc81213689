// Masked weighted aggregation (include/bricklab/soft/aggregate.hpp). One pass over the data:
// the work is cut into chunks across all tensors, each chunk is processed in small tiles whose
// numerator and denominator stay in L1, clients are streamed through the tile, and the tile is
// written once (non-temporal stores). Non-finite trained values are detected branch-free in the
// same pass (a NaN or infinite trained value leaves its weighted sum non-finite); the rare failing
// chunk is rescanned to name the first offending client, tensor and element.
#include "bricklab/core/threads.hpp"
#include "bricklab/soft/aggregate.hpp"

#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

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

// All-ones bits where mask byte m is set, zero bits otherwise; x with those bits kept (x where
// trained, +0.0 where not: NaN garbage in untrained elements vanishes).
inline uint32_t keep_bits(uint8_t m) { return 0u - uint32_t(m != 0); }
inline float and_bits(float x, uint32_t keep) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  bits &= keep;
  std::memcpy(&x, &bits, 4);
  return x;
}

BRICKLAB_SIMD_CLONES
void accumulate_masked(size_t n, const float* __restrict v, const uint8_t* __restrict m, float p, float* __restrict num, float* __restrict den) {
  for (size_t j = 0; j < n; ++j) {
    const uint32_t keep = keep_bits(m[j]);
    num[j] += p * and_bits(v[j], keep);
    den[j] += p * and_bits(1.0f, keep);
  }
}

// Two clients in one sweep: half the traffic to the L1 accumulators. A full update passes an
// all-ones mask (a tile-sized buffer that stays in L1).
BRICKLAB_SIMD_CLONES
void accumulate_pair(size_t n, const float* __restrict v1, const uint8_t* __restrict m1, float p1, const float* __restrict v2, const uint8_t* __restrict m2,
                     float p2, float* __restrict num, float* __restrict den) {
  for (size_t j = 0; j < n; ++j) {
    const uint32_t k1 = keep_bits(m1[j]), k2 = keep_bits(m2[j]);
    num[j] += p1 * and_bits(v1[j], k1) + p2 * and_bits(v2[j], k2);
    den[j] += p1 * and_bits(1.0f, k1) + p2 * and_bits(1.0f, k2);
  }
}

// Two whole (unmasked) updates in one sweep: no masks to read or widen.
BRICKLAB_SIMD_CLONES
void accumulate_full_pair(size_t n, const float* __restrict v1, float p1, const float* __restrict v2, float p2,
                          float* __restrict num, float* __restrict den) {
  const float p = p1 + p2;
  for (size_t j = 0; j < n; ++j) {
    num[j] += p1 * v1[j] + p2 * v2[j];
    den[j] += p;
  }
}

BRICKLAB_SIMD_CLONES
void accumulate_full(size_t n, const float* __restrict v, float p, float* __restrict num, float* __restrict den) {
  for (size_t j = 0; j < n; ++j) {
    const float x = v[j];
    num[j] += p * x;
    den[j] += p;
  }
}

// Copies a finished tile to the output with non-temporal stores where the output is 16-byte
// aligned: the output is written once and not read again by this pass, so it need not be read
// into the cache first (a plain store reads every line before overwriting it).
void write_out(float* __restrict o, const float* __restrict res, size_t n) {
#if defined(__SSE2__)
  if ((reinterpret_cast<uintptr_t>(o) & 15) == 0) {
    size_t j = 0;
    for (; j + 4 <= n; j += 4) _mm_stream_ps(o + j, _mm_load_ps(res + j));
    for (; j < n; ++j) o[j] = res[j];
    return;
  }
#endif
  std::memcpy(o, res, n * sizeof(float));
}

// The averages of a tile that some client trained whole (every element has a weight), in place
// of the sums: the global values are not needed, and not read. Returns non-zero when a sum was
// not finite: a NaN or infinite trained value leaves its element's weighted sum non-finite
// (weights > 0; inf + -inf is NaN), and x - x is NaN exactly then. An integer OR keeps the loop
// vectorisable (a float reduction would not be without -ffast-math).
BRICKLAB_SIMD_CLONES
unsigned finish_covered(size_t n, float* __restrict num, const float* __restrict den) {
  unsigned flagged = 0;
  for (size_t j = 0; j < n; ++j) {
    flagged |= (num[j] - num[j]) != 0.0f;  // NaN != 0 is true
    num[j] /= den[j];
  }
  return flagged;
}

// Check-only pass (in-place aggregation): non-finite trained values, nothing else.
BRICKLAB_SIMD_CLONES
void check_values(size_t n, const float* __restrict v, const uint8_t* __restrict m, float* __restrict chk) {
  for (size_t j = 0; j < n; ++j) {
    const float x = and_bits(v[j], keep_bits(m[j]));
    chk[j] += x - x;  // NaN exactly when x is NaN or infinite
  }
}

// Writes the averages (or the global value where nobody trained) in place of the sums; returns
// how many were trained, and sets `flagged` as finish_covered does (an untrained sum is 0).
BRICKLAB_SIMD_CLONES
size_t finish(size_t n, float* __restrict num, const float* __restrict den, const float* __restrict g, unsigned& flagged) {
  size_t trained = 0;
  unsigned bad = 0;
  for (size_t j = 0; j < n; ++j) {
    bad |= (num[j] - num[j]) != 0.0f;
    const uint32_t any = 0u - uint32_t(den[j] > 0.0f);
    const float avg = num[j] / den[j];  // 0/0 = NaN where nobody trained: replaced below
    uint32_t avg_bits, g_bits;
    std::memcpy(&avg_bits, &avg, 4);
    std::memcpy(&g_bits, g + j, 4);
    const uint32_t out_bits = (avg_bits & any) | (g_bits & ~any);
    std::memcpy(num + j, &out_bits, 4);
    trained += any & 1u;
  }
  flagged = bad;
  return trained;
}

// The first non-finite trained element of a chunk (slow path, after a tile was flagged).
Failure first_failure(const WorkItem& item, const std::vector<ClientUpdate>& clients) {
  Failure f;
  for (size_t j = item.begin; j < item.end; ++j)
    for (size_t i = 0; i < clients.size(); ++i) {
      const float* v = clients[i].values[item.tensor];
      const uint8_t* m = clients[i].masks[item.tensor];
      if (v && (!m || m[j]) && !std::isfinite(v[j])) return {item.tensor, j, i};
    }
  return f;
}

// True when some output buffer shares memory with an input (global values, client values or
// masks): the aggregation then runs in place, and a rejected update must not have written it.
// The inputs sorted by start with a running maximum of their ends: an output [a, b) overlaps
// one exactly when the largest end among the inputs starting before b exceeds a.
bool writes_over_inputs(const std::vector<TensorSlot>& tensors, const std::vector<ClientUpdate>& clients) {
  std::vector<std::pair<uintptr_t, uintptr_t>> in;  // [start, end)
  auto add = [&](const void* p, size_t bytes) {
    if (p && bytes) in.emplace_back(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + bytes);
  };
  for (size_t t = 0; t < tensors.size(); ++t) {
    const size_t n = tensors[t].size;
    add(tensors[t].global, n * sizeof(float));
    for (const ClientUpdate& c : clients) {
      add(c.values[t], n * sizeof(float));
      add(c.masks[t], n);
    }
  }
  std::sort(in.begin(), in.end());
  std::vector<uintptr_t> max_end(in.size());
  for (size_t i = 0; i < in.size(); ++i) max_end[i] = std::max(in[i].second, i ? max_end[i - 1] : 0);
  for (const TensorSlot& o : tensors) {
    if (!o.out || o.size == 0) continue;
    const auto a = reinterpret_cast<uintptr_t>(o.out), b = a + o.size * sizeof(float);
    const size_t k = size_t(std::lower_bound(in.begin(), in.end(), std::make_pair(b, uintptr_t(0))) - in.begin());
    if (k > 0 && max_end[k - 1] > a) return true;
  }
  return false;
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
  // Sample counts and factors are first scaled by their largest values, so that neither their
  // products nor their sum can overflow (two finite counts of 1e308 would sum to inf).
  std::vector<float> weight(clients.size());
  double max_samples = 0, max_factor = 1.0;
  for (const ClientUpdate& c : clients) max_samples = std::max(max_samples, c.samples);
  if (options.soft_factor > max_factor) max_factor = options.soft_factor;
  auto share = [&](const ClientUpdate& c) {
    return (c.samples / max_samples) * ((c.soft ? options.soft_factor : 1.0) / max_factor);
  };
  double total = 0;
  for (const ClientUpdate& c : clients) total += share(c);
  for (size_t i = 0; i < clients.size(); ++i) weight[i] = float(share(clients[i]) / total);

  std::vector<WorkItem> work;
  AggregateStats stats;
  // Per tensor, the clients that trained it: whole updates first (n_whole of them), then masked.
  // A tensor some client trained whole (n_whole > 0) gets an average in every element, so its
  // global values are never read.
  std::vector<std::vector<size_t>> by_kind(tensors.size());
  std::vector<size_t> n_whole(tensors.size(), 0);
  for (size_t t = 0; t < tensors.size(); ++t) {
    for (size_t i = 0; i < clients.size(); ++i)
      if (clients[i].values[t] && !clients[i].masks[t]) by_kind[t].push_back(i);
    n_whole[t] = by_kind[t].size();
    for (size_t i = 0; i < clients.size(); ++i)
      if (clients[i].values[t] && clients[i].masks[t]) by_kind[t].push_back(i);
  }
  for (size_t t = 0; t < tensors.size(); ++t) {
    stats.elements += tensors[t].size;
    for (size_t b = 0; b < tensors[t].size; b += options.chunk)
      work.push_back({t, b, std::min(tensors[t].size, b + options.chunk)});
    double bytes = (n_whole[t] > 0 ? 4.0 : 8.0) * double(tensors[t].size);  // out write (+ global read)
    for (const ClientUpdate& c : clients) {
      if (c.values[t]) bytes += 4.0 * double(tensors[t].size);
      if (c.masks[t]) bytes += 1.0 * double(tensors[t].size);
    }
    stats.bytes_moved += bytes;
  }

  Failure failure;
  std::mutex failure_mutex;
  auto reject = [&](const Failure& f) {
    if (f.client >= clients.size())
      throw InvalidArgument("aggregate: the weighted average of tensor '" + tensors[f.tensor].name +
                            "' is not finite in the chunk starting at element " + std::to_string(f.element) +
                            " (trained values at the limit of float32); the update is rejected");
    const ClientUpdate& c = clients[f.client];
    const float x = c.values[f.tensor][f.element];
    throw InvalidArgument("aggregate: client '" + c.id + "' (index " + std::to_string(f.client) +
                          ") sent a non-finite value (" + (std::isnan(x) ? "nan" : x > 0 ? "inf" : "-inf") +
                          ") in tensor '" + tensors[f.tensor].name + "' at element " + std::to_string(f.element) +
                          "; the update is rejected");
  };
  size_t untouched = 0;
  const int threads = resolve_threads(options.threads, "aggregate: threads");
  const long long items = static_cast<long long>(work.size());

  // In place (an output shares memory with an input): check every trained value first, so that
  // a rejected update leaves the caller's arrays as they were. Costs one read pass of the updates.
  if (writes_over_inputs(tensors, clients)) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (long long w = 0; w < items; ++w) {
      const WorkItem& item = work[size_t(w)];
      alignas(64) float chk[kTile];
      alignas(64) uint8_t ones[kTile];
      std::fill(ones, ones + kTile, uint8_t(1));
      bool bad = false;
      for (size_t b = item.begin; b < item.end && !bad; b += kTile) {
        const size_t n = std::min(kTile, item.end - b);
        std::fill(chk, chk + n, 0.0f);
        for (const ClientUpdate& c : clients)
          if (const float* v = c.values[item.tensor]) {
            const uint8_t* m = c.masks[item.tensor];
            check_values(n, v + b, m ? m + b : ones, chk);
          }
        unsigned flagged = 0;
        for (size_t j = 0; j < n; ++j) flagged |= chk[j] != 0.0f;
        bad = flagged != 0;
      }
      if (bad) {
        const Failure f = first_failure(item, clients);
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (f < failure) failure = f;
      }
    }
    if (failure.tensor != std::numeric_limits<size_t>::max()) reject(failure);
  }

#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : untouched)
  for (long long w = 0; w < items; ++w) {
    const WorkItem& item = work[size_t(w)];
    const TensorSlot& slot = tensors[item.tensor];
    alignas(64) float num[kTile];
    alignas(64) float den[kTile];
    alignas(64) uint8_t ones[kTile];
    std::fill(ones, ones + kTile, uint8_t(1));
    bool bad = false;
    for (size_t b = item.begin; b < item.end; b += kTile) {
      const size_t n = std::min(kTile, item.end - b);
      std::fill(num, num + n, 0.0f);
      std::fill(den, den + n, 0.0f);
      // Clients that trained this tensor, two at a time: whole updates together (no masks),
      // then masked ones (a leftover whole update pairs with a masked one through `ones`).
      const std::vector<size_t>& order = by_kind[item.tensor];
      size_t k = 0;
      const size_t whole = n_whole[item.tensor];
      for (; k + 1 < whole; k += 2) {
        const size_t i1 = order[k], i2 = order[k + 1];
        accumulate_full_pair(n, clients[i1].values[item.tensor] + b, weight[i1], clients[i2].values[item.tensor] + b,
                             weight[i2], num, den);
      }
      for (; k + 1 < order.size(); k += 2) {
        const size_t i1 = order[k], i2 = order[k + 1];
        const uint8_t* m1 = clients[i1].masks[item.tensor];
        const uint8_t* m2 = clients[i2].masks[item.tensor];
        accumulate_pair(n, clients[i1].values[item.tensor] + b, m1 ? m1 + b : ones, weight[i1],
                        clients[i2].values[item.tensor] + b, m2 ? m2 + b : ones, weight[i2], num, den);
      }
      if (k < order.size()) {
        const size_t i = order[k];
        const float* v = clients[i].values[item.tensor] + b;
        const uint8_t* m = clients[i].masks[item.tensor];
        if (m)
          accumulate_masked(n, v, m + b, weight[i], num, den);
        else
          accumulate_full(n, v, weight[i], num, den);
      }
      // The averages replace the sums in num; a non-finite sum (masked-out values were zeroed)
      // stops the chunk before anything of the tile is written.
      unsigned flagged = 0;
      size_t trained_count = n;
      if (n_whole[item.tensor] > 0)
        flagged = finish_covered(n, num, den);
      else
        trained_count = finish(n, num, den, slot.global + b, flagged);
      if (flagged) {
        bad = true;
        break;
      }
      untouched += n - trained_count;
      write_out(slot.out + b, num, n);
    }
#if defined(__SSE2__)
    _mm_sfence();  // this item's non-temporal stores are visible when the pass returns
#endif
    if (bad) {
      // Slow path: find the first non-finite trained element of this chunk. None: every trained
      // value is finite and the weighted sum rounded past the float32 range (values within
      // rounding of FLT_MAX): reported with client = SIZE_MAX.
      Failure f = first_failure(item, clients);
      if (f.tensor == std::numeric_limits<size_t>::max()) f = {item.tensor, item.begin, SIZE_MAX};
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (f < failure) failure = f;
    }
  }

  if (failure.tensor != std::numeric_limits<size_t>::max()) reject(failure);
  stats.untouched = untouched;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace bricklab::soft
