// Operator-table entries: matrix products. A multiply-add counts as two FLOPs.
#include <cctype>
#include <map>

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

// A parsed Einsum equation: each input term's letters (with the ellipsis position) and sizes.
struct EinsumSpec {
  std::vector<std::string> terms;  // input terms as written ("...ij")
  std::string output;              // output term; implicit form: sorted letters seen once
  std::map<char, int64_t> sizes;
  Shape ellipsis;                  // broadcast shape of the ellipsis dims
};

EinsumSpec parse_einsum(const std::vector<Shape>& inputs, const Node& n) {
  EinsumSpec spec;
  const std::string equation = n.attr_string("equation", "");
  std::string lhs = equation;
  const auto arrow = equation.find("->");
  if (arrow != std::string::npos) lhs = equation.substr(0, arrow);
  size_t start = 0;
  while (true) {
    const size_t comma = lhs.find(',', start);
    std::string term;
    for (char c : lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start))
      if (c != ' ') term += c;
    spec.terms.push_back(term);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (spec.terms.size() != inputs.size())
    throw ShapeError({"", n.name, n.op}, "equation '" + equation + "' has " + std::to_string(spec.terms.size()) +
                                             " terms for " + std::to_string(inputs.size()) + " inputs");
  std::map<char, int> count;
  for (size_t t = 0; t < spec.terms.size(); ++t) {
    const std::string& term = spec.terms[t];
    const Shape& shape = inputs[t];
    const size_t dots = term.find("...");
    std::string letters;
    for (char c : term)
      if (std::isalpha(static_cast<unsigned char>(c))) letters += c;
    if (dots == std::string::npos ? letters.size() != shape.size() : letters.size() > shape.size())
      throw ShapeError({"", n.name, n.op}, "equation term '" + term + "' does not match input rank " + std::to_string(shape.size()));
    const size_t n_ell = shape.size() - letters.size();
    size_t dim = 0;
    for (size_t i = 0; i < term.size(); ++i) {
      if (term.compare(i, 3, "...") == 0) {
        Shape ell(shape.begin() + long(dim), shape.begin() + long(dim + n_ell));
        // numpy-style broadcast with what other terms' ellipses gave
        Shape merged(std::max(ell.size(), spec.ellipsis.size()), 1);
        for (size_t k = 0; k < merged.size(); ++k) {
          const int64_t a = k < merged.size() - ell.size() ? 1 : ell[k - (merged.size() - ell.size())];
          const int64_t b = k < merged.size() - spec.ellipsis.size() ? 1 : spec.ellipsis[k - (merged.size() - spec.ellipsis.size())];
          if (a != b && a != 1 && b != 1) throw ShapeError({"", n.name, n.op}, "ellipsis dimensions do not broadcast");
          merged[k] = a == 1 ? b : a;
        }
        spec.ellipsis = merged;
        dim += n_ell;
        i += 2;
        continue;
      }
      const char c = term[i];
      if (!std::isalpha(static_cast<unsigned char>(c))) throw ShapeError({"", n.name, n.op}, "bad equation '" + equation + "'");
      const int64_t size = shape[dim++];
      auto it = spec.sizes.find(c);
      if (it != spec.sizes.end() && it->second != size && it->second != 1 && size != 1)
        throw ShapeError({"", n.name, n.op}, std::string("index '") + c + "' has sizes " + std::to_string(it->second) +
                                                 " and " + std::to_string(size));
      spec.sizes[c] = it == spec.sizes.end() ? size : std::max(it->second, size);
      count[c]++;
    }
  }
  if (arrow != std::string::npos) {
    for (char c : equation.substr(arrow + 2))
      if (c != ' ') spec.output += c;
  } else {
    spec.output = spec.ellipsis.empty() ? "" : "...";
    for (const auto& [c, k] : count)
      if (k == 1) spec.output += c;
  }
  return spec;
}

std::vector<Shape> einsum_shapes(const std::vector<Shape>& inputs, const Node& n) {
  const EinsumSpec spec = parse_einsum(inputs, n);
  Shape out;
  for (size_t i = 0; i < spec.output.size(); ++i) {
    if (spec.output.compare(i, 3, "...") == 0) {
      out.insert(out.end(), spec.ellipsis.begin(), spec.ellipsis.end());
      i += 2;
      continue;
    }
    auto it = spec.sizes.find(spec.output[i]);
    if (it == spec.sizes.end())
      throw ShapeError({"", n.name, n.op}, std::string("output index '") + spec.output[i] + "' appears in no input");
    out.push_back(it->second);
  }
  return {out};
}

// Einsum: one multiply-add per combination of all distinct indices and ellipsis positions.
Cost einsum_cost(const Graph& g, const Node& n) {
  std::vector<Shape> shapes;
  for (size_t i = 0; i < n.inputs.size(); ++i) shapes.push_back(required_input(g, n, i).shape);
  const EinsumSpec spec = parse_einsum(shapes, n);
  double combos = double(std::max<int64_t>(1, shape_numel(spec.ellipsis)));
  for (const auto& [c, size] : spec.sizes) combos *= double(size);
  return streaming_cost(g, n, (shapes.size() > 1 ? 2.0 : 1.0) * combos);
}

}  // namespace

void register_matmul_ops(OpRegistry& r) {
  OpDef gemm{"Gemm", OpClass::compute, gemm_cost, "general matrix multiply (transA, transB, alpha, beta)", nullptr,
             [](const Graph&, const Node&, Attrs& a) {
               set_default(a, "alpha", 1.0);
               set_default(a, "beta", 1.0);
               set_default(a, "transA", int64_t(0));
               set_default(a, "transB", int64_t(0));
             }};
  // C broadcasts to the [M, N] result (one direction only).
  gemm.validate = [](const Graph& g, const Node& n) {
    const Value* c = input(g, n, 2);
    const Value& y = output(g, n);
    if (c && !broadcasts_to(c->shape, y.shape))
      invalid(n, "C '" + c->name + "' of shape " + shape_str(c->shape) + " does not broadcast to the result's " + shape_str(y.shape));
  };
  gemm.variant_anchor = true;
  r.add(std::move(gemm));
  OpDef matmul{"MatMul", OpClass::compute, matmul_cost, "batched matrix product with numpy broadcasting"};
  matmul.variant_anchor = true;
  r.add(std::move(matmul));
  OpDef einsum{"Einsum", OpClass::compute, einsum_cost, "Einstein summation (contractions, batched products)", einsum_shapes};
  // An output subscript must appear once, and in some input ("ij->ii" has no defined meaning).
  einsum.check_attributes = [](const Node& n) {
    const std::string eq = n.attr_string("equation", "");
    const size_t arrow = eq.find("->");
    if (arrow == std::string::npos) return;
    const std::string lhs = eq.substr(0, arrow), rhs = eq.substr(arrow + 2);
    std::set<char> seen;
    for (char c : rhs) {
      if (!std::isalpha(static_cast<unsigned char>(c))) continue;
      if (!seen.insert(c).second) invalid(n, "equation '" + eq + "' repeats the output subscript '" + std::string(1, c) + "'");
      if (lhs.find(c) == std::string::npos) invalid(n, "equation '" + eq + "': output subscript '" + std::string(1, c) + "' is in no input");
    }
  };
  r.add(std::move(einsum));
}

}  // namespace bricklab::ops
