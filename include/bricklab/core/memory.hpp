// The memory budget: the most bytes bricklab will allocate for one tensor or one compiled plan.
//
// Every size is computed with checked arithmetic (an element count or byte count that would
// overflow 64 bits is refused, never wrapped), and checked against the budget before anything
// is allocated: graph inputs once their dimensions are bound, initializers and constants,
// every inferred intermediate value, a compiled plan's activation arena and workspace, and host
// tensors. Too large is a ShapeError (at load) or InvalidArgument (tensors) naming the value, its
// shape and element type, the bytes it needs, and the limit.
//
// The limit: BRICKLAB_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix, powers of 1024) where set;
// set_memory_limit() from code (Python: bricklab.set_memory_limit); otherwise the memory this
// process may use: physical memory, capped by the cgroup's memory.max (v2) or
// memory.limit_in_bytes (v1). 0 restores the default.
#pragma once

#include <cstdint>
#include <string>

#include "bricklab/core/dtype.hpp"
#include "bricklab/graph/tensor.hpp"

namespace bricklab {

// The budget in bytes (see above), at least 1 MiB.
int64_t memory_limit();
// Overrides the budget for this process (0: back to BRICKLAB_MEMORY_LIMIT or the machine's).
// Throws InvalidArgument for a negative value.
void set_memory_limit(int64_t bytes);
// Where the budget comes from, for messages: "BRICKLAB_MEMORY_LIMIT", "set_memory_limit", "physical memory", "cgroup memory.max".
std::string memory_limit_source();

// Bytes of a tensor of `dtype` and `shape`, or -1 when the count overflows int64 (or a dim is negative).
int64_t checked_bytes(DType dtype, const Shape& shape) noexcept;

// "value 'x' (float32 [1024x1024x1024x1024]) needs 4.0 TiB (4398046511104 bytes), above bricklab's
// memory limit of 23.4 GiB (physical memory; set BRICKLAB_MEMORY_LIMIT to change it)", or "" when it fits.
std::string over_budget(const std::string& what, DType dtype, const Shape& shape);
// The same for a byte count that is not one tensor (a plan's arena): "" when it fits.
std::string over_budget_bytes(const std::string& what, int64_t bytes);

// Human-readable bytes ("4.0 TiB").
std::string format_bytes(double bytes);

}  // namespace bricklab
