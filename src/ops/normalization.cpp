// Operator-table entries: normalisations, softmax and reductions. Per-element FLOP factors are
// documented in docs/cost-model.md.
#include "op_helpers.hpp"

namespace bricklab::ops {
namespace {

// Inference batch norm is a per-channel scale and shift: 2 FLOPs per element.
Cost batch_norm_cost(const Graph& g, const Node& n) {
  return Cost{2 * double(output(g, n, 0).numel()), input_bytes(g, n), output(g, n, 0).nbytes()};
}

// Mean, subtract, square, sum, rsqrt-scale, gamma, beta: ~8 FLOPs per element.
template <int FlopsPerElement>
Cost per_output_element(const Graph& g, const Node& n) {
  return streaming_cost(g, n, FlopsPerElement * double(output(g, n, 0).numel()));
}

// Reductions touch each input element once.
Cost reduce_cost(const Graph& g, const Node& n) {
  return streaming_cost(g, n, double(required_input(g, n, 0).numel()));
}

// ONNX defines every reduction over an empty set but the mean ("yields undefined"): refuse it
// where the reduced dims are known (axes from the attribute or a constant input).
void refuse_empty_mean(const Graph& g, const Node& n) {
  const Value& x = required_input(g, n, 0);
  std::vector<int64_t> axes = n.attr_ints("axes");
  if (const Value* a = input(g, n, 1)) {
    if (!a->data) return;  // axes computed at run time: the kernel refuses those
    axes = a->data->as_int64();
  }
  const int64_t rank = int64_t(x.shape.size());
  const bool all = axes.empty() && n.attr_int("noop_with_empty_axes", 0) == 0;
  for (int64_t d = 0; d < rank; ++d) {
    const bool reduced = all || std::any_of(axes.begin(), axes.end(), [&](int64_t a) { return a == d || a + rank == d; });
    if (reduced && x.shape[size_t(d)] == 0)
      invalid(n, "ReduceMean over an empty set of values (input shape " + shape_str(x.shape) + ", axis " + std::to_string(d) +
                     " has size 0) is undefined in ONNX");
  }
}

}  // namespace

void register_normalization_ops(OpRegistry& r) {
  OpDef bn{"BatchNormalization", OpClass::reduction, batch_norm_cost, "batch normalisation (inference: per-channel affine)",
            nullptr, [](const Graph&, const Node&, Attrs& a) {
              set_default(a, "epsilon", 1e-5);
              a.erase("momentum");  // training only
              a.erase("training_mode");
            }};
  // Scale, bias, mean and variance: one value per channel (input 0's dim 1).
  bn.validate = [](const Graph& g, const Node& n) {
    const Value& x = required_input(g, n, 0);
    require_rank(n, x, 2, "input");
    for (size_t i = 1; i <= 4; ++i) require_input_shape(g, n, i, {x.shape[1]}, i == 1 ? "scale" : i == 2 ? "bias" : i == 3 ? "mean" : "variance");
  };
  bn.per_channel_affine = true;
  bn.positive_inputs = (1u << 1) | (1u << 4);  // scale, variance
  bn.check_attributes = [](const Node& n) { require_finite_non_negative(n, "epsilon"); };
  r.add(std::move(bn));
  OpDef layer{"LayerNormalization", OpClass::reduction, per_output_element<8>, "layer normalisation over trailing axes", nullptr,
              [](const Graph&, const Node&, Attrs& a) {
                set_default(a, "axis", int64_t(-1));
                set_default(a, "epsilon", 1e-5);
              }};
  // Scale and bias broadcast to the normalised (trailing) dims.
  layer.validate = [](const Graph& g, const Node& n) {
    const Value& x = required_input(g, n, 0);
    const int64_t rank = int64_t(x.shape.size());
    int64_t axis = n.attr_int("axis", -1);
    if (axis < -rank || axis >= rank)
      invalid(n, "axis " + std::to_string(axis) + " is outside the input's rank " + std::to_string(rank));
    if (axis < 0) axis += rank;
    const Shape normalised(x.shape.begin() + axis, x.shape.end());
    for (size_t i = 1; i <= 2; ++i)
      if (const Value* p = input(g, n, i); p && !broadcasts_to(p->shape, normalised))
        invalid(n, std::string(i == 1 ? "scale" : "bias") + " '" + p->name + "' has shape " + shape_str(p->shape) +
                       ", which does not broadcast to the normalised dims " + shape_str(normalised));
  };
  layer.positive_inputs = 1u << 1;  // scale
  layer.check_attributes = [](const Node& n) { require_finite_non_negative(n, "epsilon"); };
  r.add(std::move(layer));
  OpDef instance{"InstanceNormalization", OpClass::reduction, per_output_element<8>, "instance normalisation", nullptr,
                  [](const Graph&, const Node&, Attrs& a) { set_default(a, "epsilon", 1e-5); }};
  instance.validate = [](const Graph& g, const Node& n) {
    const Value& x = required_input(g, n, 0);
    require_rank(n, x, 3, "input");
    require_input_shape(g, n, 1, {x.shape[1]}, "scale");
    require_input_shape(g, n, 2, {x.shape[1]}, "bias");
  };
  instance.positive_inputs = 1u << 1;  // scale
  instance.check_attributes = [](const Node& n) { require_finite_non_negative(n, "epsilon"); };
  r.add(std::move(instance));
  // Softmax's default axis moved from 1 to -1 in opset 13 (with a different meaning before: the
  // input flattened to 2-D at that axis).
  const NormaliseFn softmax_axis = [](const Graph&, const Node& n, Attrs& a) {
    set_default(a, "axis", int64_t(n.opset >= 13 ? -1 : 1));
  };
  r.add({"Softmax", OpClass::reduction, per_output_element<5>, "softmax along an axis", nullptr, softmax_axis});
  r.add({"LogSoftmax", OpClass::reduction, per_output_element<5>, "log-softmax along an axis", nullptr, softmax_axis});
  const NormaliseFn reduce_defaults = [](const Graph&, const Node&, Attrs& a) {
    set_default(a, "keepdims", int64_t(1));
    set_default(a, "noop_with_empty_axes", int64_t(0));
  };
  for (const char* name : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                           "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"}) {
    OpDef def{name, OpClass::reduction, reduce_cost, "reduction over axes", nullptr, reduce_defaults};
    def.check_attributes = [](const Node& n) {
      require_flag(n, "keepdims");
      require_flag(n, "noop_with_empty_axes");
    };
    def.validate = [](const Graph& g, const Node& n) {
      require_index_lists(g, n, 1);  // ReduceSum-13's axes
      if (n.op == "ReduceMean") refuse_empty_mean(g, n);
    };
    r.add(std::move(def));
  }
  const NormaliseFn arg_defaults = [](const Graph&, const Node&, Attrs& a) {
    set_default(a, "axis", int64_t(0));
    set_default(a, "keepdims", int64_t(1));
    set_default(a, "select_last_index", int64_t(0));
  };
  for (const char* name : {"ArgMax", "ArgMin"}) r.add({name, OpClass::reduction, reduce_cost, "index of the max / min along an axis", nullptr, arg_defaults});
  OpDef cumsum{"CumSum", OpClass::reduction, reduce_cost, "cumulative sum along an axis", nullptr, [](const Graph&, const Node&, Attrs& a) {
                 set_default(a, "exclusive", int64_t(0));
                 set_default(a, "reverse", int64_t(0));
               }};
  cumsum.check_attributes = [](const Node& n) {
    require_flag(n, "exclusive");
    require_flag(n, "reverse");
  };
  cumsum.validate = [](const Graph& g, const Node& n) {  // "A 0-D tensor" (ORT also takes one entry in 1-D)
    const Value* axis = input(g, n, 1);
    if (axis && (axis->shape.size() > 1 || axis->numel() != 1))
      invalid(n, "input 1 ('" + axis->name + "') has shape " + shape_str(axis->shape) + "; the axis must be one value (a 0-D tensor)");
  };
  r.add(std::move(cumsum));
}

}  // namespace bricklab::ops
