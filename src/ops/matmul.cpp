// Operator-table entries: matrix products. A multiply-add counts as two FLOPs.
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

// Y = alpha * op(A) op(B) + beta * C: 2*M*N*K, plus M*N for the C term.
Cost gemm_cost(const Graph& g, const Node& n) {
  const Value& a = required_input(g, n, 0);
  const Value& y = output(g, n);
  if (a.shape.size() != 2) throw ShapeError({"", n.name, n.op}, "input A must be 2-D, got " + shape_str(a.shape));
  const double k = double(n.attr_int("transA", 0) ? a.shape[0] : a.shape[1]);
  const double c_term = input(g, n, 2) ? double(y.numel()) : 0.0;
  return streaming_cost(g, n, 2 * double(y.numel()) * k + c_term);
}

// numpy matmul semantics with broadcasting: every output element is a K-long dot product.
Cost matmul_cost(const Graph& g, const Node& n) {
  const Value& a = required_input(g, n, 0);
  const Value& y = output(g, n);
  require_rank(n, a, 1, "input A");
  const double k = double(a.shape.back());
  return streaming_cost(g, n, 2 * double(y.numel()) * k);
}

}  // namespace

void register_matmul_ops(OpRegistry& r) {
  r.add({"Gemm", OpClass::compute, gemm_cost, "general matrix multiply (transA, transB, alpha, beta)"});
  r.add({"MatMul", OpClass::compute, matmul_cost, "batched matrix product with numpy broadcasting"});
}

}  // namespace bricklab::ops
