// `bricklab decompose`, `bricklab benchmark` and `bricklab predict`: the DLBricks workflow on
// the command line. Bad flags throw UsageError (exit 2); bad models, databases
// or servers throw other bricklab::Error types (exit 1); main() prints the one-line message.
#include <unistd.h>

#include <cmath>
#include <functional>
#include <memory>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bricklab/bricks/database.hpp"
#include "bricklab/bricks/decompose.hpp"
#include "bricklab/bricks/emit.hpp"
#include "bricklab/bricks/predict.hpp"
#include "bricklab/bricks/runner.hpp"
#include "bricklab/core/error.hpp"
#include "bricklab/core/threads.hpp"
#include "cli_args.hpp"

namespace {

namespace bb = bricklab::bricks;



}  // namespace

BricksArgs parse_bricks_args(const std::string& command, const std::vector<std::string>& argv) {
  BricksArgs a;
  a.runner.threads = 1;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argv.size()) throw UsageError(s + " needs a value");
      return argv[++i];
    };
    if (s == "--help" || s == "-h") {
      std::cout << command_help(command);
      std::exit(0);
    } else if (s == "--json") a.json = true;
    else if (s == "--batch") a.decompose.load.batch = parse_count(s, next());
    else if (s == "--granularity") a.decompose.granularity = bb::Granularity::parse(next());
    else if (s == "--threads") a.runner.threads = bricklab::resolve_threads(int(std::min<int64_t>(parse_count(s, next()), INT32_MAX)), s);
    else if (s == "--no-fusion") a.runner.fusion = false;
    else if (s == "--tolerance") a.runner.tolerance = parse_real(s, next(), true);
    else if (s == "--budget") a.runner.budget_s = parse_real(s, next(), true);
    else if (s == "--warmup") a.runner.warmup = parse_int32(s, next(), 0);
    else if (s == "--min-reps") a.runner.min_reps = parse_int32(s, next(), 1);
    else if (s == "--max-reps") a.runner.max_reps = parse_int32(s, next(), 1);
    else if (s == "--pin") a.runner.pin = true;
    else if (s == "--cold-weights") a.runner.cold_weights = true;
    else if (s == "--hot-weights") a.runner.evict_weights = false;
    else if (s == "--evict-outputs") a.runner.evict_outputs_bytes = -1;
    else if (s == "--per-brick-tolerance") a.runner.per_model_tolerance = false;
    else if (s == "--clock") {
      const std::string c = next();
      if (c != "wall" && c != "cpu") throw UsageError("--clock expects wall or cpu, got '" + c + "'");
      a.runner.cpu_clock = c == "cpu";
    }
    else if (s == "--progress") a.progress = 1;
    else if (s == "--no-progress") a.progress = 0;
    else if (s == "--db") a.db = next();
    else if (s == "--emit" && command == "decompose") a.emit_dir = next();
    else if (s == "--force" && command == "decompose") a.force = true;
    else if (s == "--queue" && command == "benchmark") a.queue = next();
    else if (s == "--remeasure" && command == "benchmark") a.remeasure = true;
    else if (s == "--accept-noisy" && command == "predict") a.accept_noisy = true;
    else if (s == "--backend") {
      a.runner.backend = next();
      if (a.runner.backend != "cpu" && a.runner.backend != "cuda") throw UsageError("--backend expects cpu or cuda, got '" + a.runner.backend + "'");
    }
    else if (s == "--no-measure" && (command == "lowerbound" || command == "report")) a.measure = false;
    else if (s == "--no-apply" && (command == "lowerbound" || command == "report")) a.apply = false;
    else if ((s == "-o" || s == "--output") && command == "report") a.output = next();
    else if (s == "--peers" && (command == "lowerbound" || command == "report"))
      throw UsageError("--peers: ONNX Runtime, OpenVINO and PyTorch are measured from Python, so use the bricklab "
                       "command installed with the Python package (e.g. .venv/bin/bricklab " + command + " ... --peers)");
    else if (s.size() > 1 && s[0] == '-') throw UsageError("unknown option '" + s + "' (see `bricklab " + command + " --help`)");
    else a.models.push_back(s);
  }
  if (a.models.empty() && command != "roofline") throw UsageError(command + " expects at least one MODEL");
  if ((command == "predict" || command == "lowerbound" || command == "report") && a.models.size() != 1)
    throw UsageError(command + " expects exactly one MODEL");
  if (command == "roofline" && !a.models.empty()) throw UsageError("roofline takes no MODEL");
  if (a.runner.max_reps < a.runner.min_reps) throw UsageError("--max-reps must be >= --min-reps");
  if (a.runner.cpu_clock && a.runner.threads != 1) throw UsageError("--clock cpu needs --threads 1");
  a.decompose.compile = bb::compile_options(a.runner);
  a.decompose.backend = a.runner.backend;
  if (!a.db.empty() && a.db.find("://") == std::string::npos) require_parent_folder(a.db, "--db");  // a file, not a URL
  if (!a.emit_dir.empty()) require_parent_folder(a.emit_dir, "--emit");
  if (command == "report") require_parent_folder(a.output, "-o");
  if (a.db.empty()) a.db = bb::default_db_path();
  return a;
}

std::function<void(int, int, double, const std::string&)> progress_bar(const BricksArgs& a, const std::string& unit) {
  const bool bar = a.progress == 1 || (a.progress == -1 && isatty(2));
  auto first_elapsed = std::make_shared<double>(-1);
  auto first_done = std::make_shared<int>(0);
  return [=](int done, int total, double elapsed, const std::string& label) {
    if (!bar) return;
    if (total == 0) {  // a single long step (e.g. timing a whole model)
      std::cerr << fmt::format("\r{:<90.90}", label) << "\n";
      return;
    }
    if (*first_elapsed < 0) {
      *first_elapsed = elapsed;
      *first_done = done;
    }
    const int width = 30;
    const int filled = total ? done * width / total : width;
    std::string eta = "--";
    if (done > *first_done) {
      const double per = (elapsed - *first_elapsed) / double(done - *first_done);
      eta = fmt::format("{:.0f}s", per * double(total - done));
    }
    std::cerr << fmt::format("\r[{}{}] {}/{} {}  {:.0f}s elapsed  ETA {}  {:<28.28}", std::string(size_t(filled), '#'),
                             std::string(size_t(width - filled), '.'), done, total, unit, elapsed, eta, label)
              << std::flush;
    if (done == total) std::cerr << "\n";
  };
}

namespace {

nlohmann::json decomposition_json(const bb::Decomposition& d) {
  nlohmann::json j;
  j["granularity"] = d.granularity.str();
  j["batch"] = d.batch;
  j["instances"] = d.instances();
  j["unique"] = d.bricks.size();
  j["repetition"] = d.bricks.empty() ? 0.0 : double(d.instances()) / double(d.bricks.size());
  for (const auto& m : d.models) {
    std::set<std::string> unique;
    for (const auto& u : m.uses) unique.insert(u.key);
    j["models"].push_back({{"model", m.path}, {"instances", m.uses.size()}, {"unique", unique.size()}, {"reorders", m.reorders.size()}});
  }
  j["bricks"] = nlohmann::json::array();
  for (const auto& b : d.bricks) {
    nlohmann::json per_model = nlohmann::json::object();
    for (const auto& [m, n] : b.per_model) per_model[m] = n;
    j["bricks"].push_back({{"id", b.id}, {"key", b.key}, {"label", b.label}, {"multiplicity", b.multiplicity},
                           {"models", b.per_model.size()}, {"per_model", per_model}, {"flops", b.flops}});
  }
  return j;
}

int cmd_decompose(const BricksArgs& a) {
  const bb::Decomposition d = bb::decompose(a.models, a.decompose);
  nlohmann::json j = decomposition_json(d);
  if (!a.emit_dir.empty()) {
    const double bytes = bb::emit_size_estimate(d);
    const std::string size = bytes >= 1e9   ? fmt::format("{:.2f} GB", bytes / 1e9)
                             : bytes >= 1e6 ? fmt::format("{:.1f} MB", bytes / 1e6)
                                            : fmt::format("{:.0f} kB", bytes / 1e3);
    if (bytes > kEmitLimitBytes && !a.force)
      throw UsageError(fmt::format("--emit {}: the {} bricks would take about {} (over the 1 GiB limit); "
                                   "emit fewer models, or add --force", a.emit_dir, d.bricks.size(), size));
    std::cerr << fmt::format("writing {} ONNX bricks (about {}) to {}\n", d.bricks.size(), size, a.emit_dir);
    std::error_code ec;
    std::filesystem::create_directories(a.emit_dir, ec);
    if (ec) throw bricklab::FileError({a.emit_dir, "", ""}, "cannot create the folder: " + ec.message());
    nlohmann::json index = nlohmann::json::array();
    for (const auto& b : d.bricks) {
      const std::string file = (std::filesystem::path(a.emit_dir) / (b.id + ".onnx")).string();
      bb::write_onnx(bb::brick_graph(d, b), file);
      nlohmann::json nodes = nlohmann::json::array();
      for (int n : b.nodes) nodes.push_back(d.models[size_t(b.model)].graph->nodes[size_t(n)].name);
      index.push_back({{"id", b.id}, {"file", b.id + ".onnx"}, {"key", b.key}, {"label", b.label},
                       {"multiplicity", b.multiplicity}, {"source_model", d.models[size_t(b.model)].path}, {"nodes", nodes}});
    }
    std::ofstream f(std::filesystem::path(a.emit_dir) / "index.json");
    if (!f) throw bricklab::FileError({a.emit_dir, "", ""}, "cannot write index.json");
    f << index.dump(1) << "\n";
    j["emitted"] = {{"dir", a.emit_dir}, {"files", d.bricks.size()}};
  }
  if (a.json) {
    std::cout << j.dump(1) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<18} {:<28} {:>6} {:>6} {:>12}\n", "brick", "operators", "uses", "models", "GFLOP");
  for (const auto& b : d.bricks) {
    std::string label = b.label.size() > 28 ? b.label.substr(0, 27) + "~" : b.label;
    std::cout << fmt::format("{:<18} {:<28} {:>6} {:>6} {:>12.4f}\n", b.id, label, b.multiplicity, b.per_model.size(), b.flops / 1e9);
  }
  for (const auto& m : j["models"])
    std::cout << fmt::format("model {}: {} layer instances, {} unique bricks\n", m["model"].get<std::string>(),
                             m["instances"].get<int64_t>(), m["unique"].get<int64_t>());
  std::cout << fmt::format("suite: {} models, {} layer instances, {} unique bricks ({:.2f}x repetition), granularity {}, batch {}\n",
                           d.models.size(), d.instances(), d.bricks.size(), j["repetition"].get<double>(), d.granularity.str(), d.batch);
  if (!a.emit_dir.empty()) std::cout << "emitted " << d.bricks.size() << " ONNX bricks to " << a.emit_dir << "\n";
  return 0;
}

int cmd_benchmark(const BricksArgs& a) {
  const bb::Decomposition d = bb::decompose(a.models, a.decompose);
  auto db = bb::open_database(a.db, true);
  const bb::Progress progress = progress_bar(a, "bricks");
  const bb::BenchmarkSummary s = bb::benchmark(d, *db, a.runner, progress, a.queue, a.remeasure);
  const bb::Fingerprint fp = bb::system_fingerprint(a.runner);
  if (a.json) {
    nlohmann::json j = {{"db", db->location()}, {"fingerprint", fp.id()}, {"fingerprint_json", nlohmann::json::parse(fp.json())},
                        {"bricks", s.bricks}, {"already_stored", s.already}, {"measured", s.measured},
                        {"reorders_stored", s.reorders_stored}, {"remeasured", s.remeasured}, {"noisy", s.noisy},
                        {"wall_s", s.wall_s}};
    if (!a.queue.empty()) j["queue"] = {{"suite", a.queue}, {"pending", db->pending(a.queue, fp.id())}};
    std::cout << j.dump(1) << "\n";
  } else {
    // The count includes each model's per-run overhead brick beside its unique layer bricks.
    const int overhead = s.bricks - int(d.bricks.size());
    const std::string what = overhead > 0 ? fmt::format("{} bricks ({} unique layers + {} per-run overhead)", s.bricks,
                                                        d.bricks.size(), overhead)
                                          : fmt::format("{} bricks", s.bricks);
    std::cout << fmt::format("{}: {} already in {}, {} measured now ({} boundary reorders stored) in {:.1f} s; fingerprint {}\n",
                             what, s.already, db->location(), s.measured, s.reorders_stored, s.wall_s, fp.id());
    if (s.remeasured) std::cout << s.remeasured << " of them replaced stored results (noisy ones, or --remeasure)\n";
  }
  if (s.noisy)
    std::cerr << fmt::format("bricklab: warning: {} measurement(s) stayed noisy: the machine was busy (CPU pressure, steal, other "
                             "runnable tasks) through {} attempts each; they are stored marked noisy, `predict` will not use "
                             "them without --accept-noisy, and `benchmark` measures them again next time\n",
                             s.noisy, a.runner.busy_retries + 1);
  return 0;
}

int cmd_predict(const BricksArgs& a) {
  const bb::Decomposition d = bb::decompose(a.models, a.decompose);
  auto db = bb::open_database(a.db, false);
  const bb::Fingerprint fp = bb::system_fingerprint(a.runner);
  const bb::Prediction p = bb::predict(d.models.at(0), *db, fp.id(), a.accept_noisy);
  if (a.json) {
    nlohmann::json j = {{"model", p.model}, {"batch", d.batch}, {"granularity", d.granularity.str()}, {"db", db->location()},
                        {"fingerprint", p.fingerprint}, {"sum_ms", p.sum_ms}, {"ci_ms", p.ci_ms}, {"critical_path_ms", p.critical_path_ms},
                        {"steps_ms", p.steps_ms}, {"reorders_ms", p.reorders_ms}, {"overhead_ms", p.overhead_ms},
                        {"reorders_estimated", p.reorders_estimated}, {"complete", p.complete()}, {"missing", p.missing},
                        {"noisy", p.noisy}, {"noisy_accepted", p.noisy_accepted}};
    j["bricks"] = nlohmann::json::array();
    for (const auto& u : p.uses)
      j["bricks"].push_back({{"id", u.id}, {"label", u.label}, {"nodes", u.nodes}, {"ms", u.ms}, {"missing", u.missing}, {"noisy", u.noisy}});
    std::cout << j.dump(1) << "\n";
  } else {
    std::cout << fmt::format("{:<18} {:<28} {:>10}  {}\n", "brick", "operators", "ms", "nodes");
    for (const auto& u : p.uses) {
      std::string label = u.label.size() > 28 ? u.label.substr(0, 27) + "~" : u.label;
      std::cout << fmt::format("{:<18} {:<28} {:>10}  {}\n", u.id, label,
                               u.missing ? "MISSING" : fmt::format("{:.4f}{}", u.ms, u.noisy ? "~" : ""),
                               u.nodes.empty() ? "" : u.nodes.front() + (u.nodes.size() > 1 ? " ..." : ""));
    }
    std::cout << fmt::format("predicted: sum {:.3f} ms +- {:.3f} (95% CI from the bricks' CIs; steps {:.3f} + reorders {:.3f} + run overhead {:.3f}), critical path {:.3f} ms\n",
                             p.sum_ms, p.ci_ms, p.steps_ms, p.reorders_ms, p.overhead_ms, p.critical_path_ms);
    if (!p.missing.empty()) {
      std::cout << p.missing.size() << " brick(s) missing from " << db->location() << " for fingerprint " << p.fingerprint
                << " (run `bricklab benchmark` with the same settings):\n";
      for (const auto& k : p.missing) std::cout << "  " << bb::key_id(k) << "  " << k.substr(0, 160) << "\n";
    }
  }
  if (!p.noisy.empty()) {  // on stderr, so that it shows with --json too
    std::cerr << fmt::format("bricklab: warning: {} stored measurement(s) used here are marked noisy (taken on a busy machine, "
                             "marked ~ above){}:\n", p.noisy.size(),
                             p.noisy_accepted ? "; used as --accept-noisy asks"
                                              : "; the prediction is incomplete without them: re-measure on a quiet machine "
                                                "(`bricklab benchmark MODEL --remeasure`, or plain `benchmark`, which measures "
                                                "noisy ones again) or pass --accept-noisy");
    for (const auto& k : p.noisy) std::cerr << "  " << bb::key_id(k) << "  " << k.substr(0, 160) << "\n";
  }
  return p.complete() ? 0 : 1;
}

}  // namespace

int cmd_bricks(const std::string& command, const std::vector<std::string>& args) {
  const BricksArgs a = parse_bricks_args(command, args);
  if (command == "decompose") return cmd_decompose(a);
  if (command == "benchmark") return cmd_benchmark(a);
  return cmd_predict(a);
}
