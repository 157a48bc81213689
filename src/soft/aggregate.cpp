// Masked weighted aggregation (include/bricklab/soft/aggregate.hpp). One pass over the data:
// the work is cut into chunks across all tensors, each chunk is processed in small tiles whose
// numerator and denominator stay in L1, clients are streamed through the tile, and the tile is
// written once. Non-finite trained values are detected branch-free in the same pass (x - x is
// NaN exactly when x is NaN or infinite); the rare failing chunk is rescanned to name the first
// offending client, tensor and element.
#include "bricklab/soft/aggregate.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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
    bool bad = false;
    for (size_t b = item.begin; b < item.end; b += kTile) {
      const size_t n = std::min(kTile, item.end - b);
      std::fill(num, num + n, 0.0f);
      std::fill(den, den + n, 0.0f);
      float nonfinite = 0.0f;
      for (size_t i = 0; i < clients.size(); ++i) {
        const float* v = clients[i].values[item.tensor];
        if (!v) continue;
        v += b;
        const uint8_t* m = clients[i].masks[item.tensor];
        const float p = weight[i];
        if (m) {
          m += b;
          for (size_t j = 0; j < n; ++j) {
            const bool trained = m[j] != 0;
            const float x = v[j];
            nonfinite += trained ? (x - x) : 0.0f;
            num[j] += trained ? p * x : 0.0f;
            den[j] += trained ? p : 0.0f;
          }
        } else {
          for (size_t j = 0; j < n; ++j) {
            const float x = v[j];
            nonfinite += x - x;
            num[j] += p * x;
            den[j] += p;
          }
        }
      }
      if (nonfinite != 0.0f || std::isnan(nonfinite)) {
        bad = true;
        break;
      }
      const float* g = slot.global + b;
      float* o = slot.out + b;
      size_t none = 0;
      for (size_t j = 0; j < n; ++j) {
        const bool any = den[j] > 0.0f;
        none += any ? 0 : 1;
        o[j] = any ? num[j] / den[j] : g[j];
      }
      untouched += none;
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
