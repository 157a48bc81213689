// A backend's lowerings, one per operator-table entry (the shape folder registers its folding
// rules the same way). A backend builds one LoweringTable of its
// own function type, registering each lowering under the entry's ONNX name once; nodes are then
// dispatched by their entry (Node::def), never by comparing operator names. Registering a name
// the operator table does not have is an error at start-up, so a typo cannot silently leave an
// operator unlowered. An entry without a lowering is unsupported on that backend, which
// `bricklab ops` reports per backend.
#pragma once

#include <string>
#include <vector>

#include "bricklab/core/error.hpp"
#include "bricklab/ops/registry.hpp"

namespace bricklab {

template <typename Fn>
class LoweringTable {
 public:
  explicit LoweringTable(std::string backend) : backend_(std::move(backend)), fns_(OpRegistry::instance().all().size()) {}

  // Registers `fn` for the operators named (each must be an entry of the operator table, and
  // have no lowering yet).
  LoweringTable& add(std::initializer_list<const char*> ops, Fn fn) {
    for (const char* op : ops) {
      const OpDef* def = OpRegistry::instance().find(op);
      if (!def) throw Error("backend '" + backend_ + "' registers a lowering for '" + op + "', which the operator table lacks");
      if (fns_[def->index]) throw Error("backend '" + backend_ + "' registers two lowerings for '" + std::string(op) + "'");
      fns_[def->index] = fn;
    }
    return *this;
  }

  // The lowering of a node's operator, or nullptr when the backend has none.
  Fn find(const Node& node) const {
    const OpDef* def = OpRegistry::instance().of(node);
    return def ? fns_[def->index] : Fn{};
  }
  Fn find(const OpDef& def) const { return def.index < fns_.size() ? fns_[def.index] : Fn{}; }
  bool lowers(const OpDef& def) const { return def.index < fns_.size() && fns_[def.index]; }
  const std::string& backend() const { return backend_; }

 private:
  std::string backend_;
  std::vector<Fn> fns_;
};

}  // namespace bricklab
