// Masked weighted aggregation for soft-training in federated learning (ELFISH / Helios).
//
// Each client trains a subset of each parameter tensor (its mask). The server averages every
// parameter element over the clients that trained it, weighted by their sample counts, with an
// optional factor that scales the weight of soft-trained (partial) updates:
//
//     p_i   = samples_i * (soft_i ? soft_factor : 1)
//     w[j]  = sum_{i trained j} p_i * w_i[j] / sum_{i trained j} p_i      (some client trained j)
//     w[j]  = global[j]                                                   (no client trained j)
//
// All buffers are borrowed (zero-copy views of numpy / torch CPU memory); the work is one pass
// over the data, parallel (OpenMP) over fixed-size chunks of all tensors together. Trained
// values that are NaN or infinite are rejected with bricklab::InvalidArgument naming the client
// and the tensor. The output may share memory with the inputs (in place, e.g. out == global):
// then every trained value is checked in a read pass first, so a rejected update leaves all the
// caller's arrays unchanged; otherwise the output arrays' contents are unspecified after a
// rejection (the inputs are never written). A client that dropped out is simply not listed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bricklab::soft {

// One parameter tensor of the model (flattened; the shape is the caller's business).
struct TensorSlot {
  std::string name;
  size_t size = 0;             // number of float32 elements
  const float* global = nullptr;  // current global values (read)
  float* out = nullptr;           // aggregated values (written; may equal global)
};

// One client's update: per tensor, its trained values and which elements it trained.
struct ClientUpdate {
  std::string id;       // shown in error messages
  double samples = 0;   // weight (number of local samples), must be > 0 and finite
  bool soft = false;    // a soft-trained (partial) update: its weight is scaled by soft_factor
  // One entry per TensorSlot (same order). values[t] == nullptr: the client did not train
  // tensor t at all. masks[t] == nullptr with values[t] set: every element was trained; else
  // masks[t][j] != 0 marks the trained elements. Both have TensorSlot::size elements.
  std::vector<const float*> values;
  std::vector<const uint8_t*> masks;
};

struct AggregateOptions {
  double soft_factor = 1.0;  // weight multiplier of soft updates (> 0)
  int threads = 0;           // 0: OpenMP default
  size_t chunk = 1 << 15;    // elements per parallel work item
};

// Per-call statistics (for benchmarks and logs).
struct AggregateStats {
  size_t elements = 0;        // total parameter elements
  size_t untouched = 0;       // elements no client trained (kept their global value)
  double bytes_moved = 0;     // bytes read + written by the pass
  double seconds = 0;
};

// Runs the masked weighted average. Throws bricklab::InvalidArgument on: no clients, a weight
// <= 0 or not finite, soft_factor <= 0, mismatched vector lengths, null buffers, or a non-finite
// trained value (the message names the client id, the tensor and the element index).
AggregateStats aggregate(const std::vector<TensorSlot>& tensors, const std::vector<ClientUpdate>& clients,
                         const AggregateOptions& options = {});

}  // namespace bricklab::soft
