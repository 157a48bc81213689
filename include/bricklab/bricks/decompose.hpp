// DLBricks decomposition: split models into bricks (the units whose run time is measured once
// and reused), each identified by a canonical key of what determines its run time: operators,
// normalised attributes, input/output shapes and dtypes (batch included), data layout and the
// wiring inside the brick. Weight values never enter a key; weight shapes do.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bricklab/engine/backend.hpp"
#include "bricklab/graph/graph.hpp"
#include "bricklab/graph/onnx_import.hpp"

namespace bricklab::bricks {

// How a model is cut: single operators, the fused units the engine actually runs, or
// sequences of K consecutive fused units (captures effects between neighbours).
struct Granularity {
  enum class Kind { op, fused, seq } kind = Kind::fused;
  int k = 1;  // units per brick for seq
  // "op", "fused" or "seq:K" (K >= 1); throws InvalidArgument naming what is accepted.
  static Granularity parse(const std::string& text);
  std::string str() const;
};

// Canonical key of one node in its graph (operator, normalised attributes, input/output
// shapes and dtypes, small integer constants such as Reshape shapes or Pad pads).
std::string node_key(const Graph& graph, int node);
// Canonical key of a group of nodes (order-independent, wiring included).
std::string group_key(const Graph& graph, const std::vector<int>& nodes);
// Short stable id of a key (16 hex digits of a 64-bit FNV-1a hash).
std::string key_id(const std::string& key);

// A layout conversion the engine inserts between steps (not a graph node).
struct Reorder {
  std::string value;  // the value converted
  std::string why;    // "plain", "conv", "binary", ... (the engine's reason)
  std::string src;    // layout it starts from ("plain", or oneDNN's tag such as "aBcd16b")
  std::string dst;    // layout it produces
  std::string key;    // "reorder|why|dtype[shape]|src>dst"
  double bytes = 0;   // bytes of the value
};

// The reorders of a compiled plan (the text of Executable::describe() for `graph`), in
// execution order, each with its source and destination layouts; `steps` (if given) gets the
// node indices of every other step. The reorders of two plans with the same key are the same
// memory-layout conversion, so one measured in a brick prices the other in a model.
std::vector<Reorder> plan_reorders(const Graph& graph, const std::vector<PlanStep>& plan, std::vector<std::vector<int>>* steps = nullptr);
// The same from the text of a CPU plan (Executable::describe()), for plans saved as text.
std::vector<Reorder> plan_reorders(const Graph& graph, const std::string& plan, std::vector<std::vector<int>>* steps = nullptr);

// The units of one plan: groups of node indices in execution order, plus the reorders.
struct PlanUnits {
  std::vector<std::vector<int>> units;
  std::vector<Reorder> reorders;
};

// The engine's fused groups for `graph` compiled with `options` (nodes that run as one step,
// or steps that share nodes, form one unit; nodes with no step, i.e. views, are left out).
// The plan is the one of `backend` (its fusions, not another backend's).
PlanUnits fused_units(const Graph& graph, const CompileOptions& options, const std::string& backend = "cpu");

// One use of a brick in a model.
struct BrickUse {
  std::string key;
  std::vector<int> nodes;    // node indices in the model
  std::vector<int> context;  // the units producing its inputs (see Brick::context)
};

struct ModelBricks {
  std::string path;
  std::shared_ptr<const Graph> graph;
  std::vector<BrickUse> uses;        // in execution order
  std::vector<Reorder> reorders;     // engine reorders between units (fused / seq only)
  std::string runtime_key;           // per-run overhead brick (input binding, output copies)
};

struct Brick {
  std::string key;
  std::string id;                 // key_id(key)
  std::string label;              // operators joined by '+'
  double flops = 0;
  int multiplicity = 0;           // uses across all models
  std::map<std::string, int> per_model;  // model path -> uses
  int model = 0;                  // representative: index into Decomposition::models
  std::vector<int> nodes;         // representative node indices in that model
  // The units that produce the brick's inputs in the model. They run before the brick when it
  // is timed (and are not counted) so that its inputs arrive in the layout and cache state they
  // have in the model: oneDNN picks a different kernel for a plain input than for a blocked one.
  std::vector<int> context;
};

struct DecomposeOptions {
  Granularity granularity;
  LoadOptions load;
  CompileOptions compile;  // fused / seq: the plan whose groups are followed
  std::string backend = "cpu";  // ... of this backend
};

struct Decomposition {
  Granularity granularity;
  int64_t batch = 1;
  std::vector<ModelBricks> models;
  std::vector<Brick> bricks;  // unique, in first-seen order
  std::map<std::string, size_t> index;  // key -> position in bricks
  int64_t instances() const;  // layer instances (brick uses) across all models
};

// Loads each model and decomposes it. Throws the loader's errors (naming the file).
Decomposition decompose(const std::vector<std::string>& model_paths, const DecomposeOptions& options);
// Same for graphs already loaded (path used as the model's name).
Decomposition decompose_graphs(const std::vector<std::shared_ptr<const Graph>>& graphs, const DecomposeOptions& options);

// The runnable graph of a brick: extract_subgraph of its representative nodes (what is emitted).
Graph brick_graph(const Decomposition& d, const Brick& brick);
// The graph timed for a brick: its nodes plus its context units; `own` gets the brick's node names.
Graph timing_graph(const Decomposition& d, const Brick& brick, std::set<std::string>& own);
// The graph that measures the per-run overhead of a model: one Identity per model output
// (input binding + output copies of that size, no compute).
Graph runtime_graph(const Graph& model);

}  // namespace bricklab::bricks
