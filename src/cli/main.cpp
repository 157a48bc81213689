// The `bricklab` command-line tool. Subcommands: inspect (layer table and totals), ops (the
// operator table), info (build and machine). Errors print one line and exit non-zero:
// 1 for a problem with the model or data, 2 for a usage error.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bricklab/bricklab.hpp"

int cmd_recover(const std::vector<std::string>& args);  // recover.cpp
std::string recover_help();                              // recover.cpp
int cmd_bricks(const std::string& command, const std::vector<std::string>& args);  // bricks_cmds.cpp
int cmd_lowerbound_family(const std::string& command, const std::vector<std::string>& args);  // lowerbound_cmds.cpp
#include "bricklab/core/npy.hpp"
#include "bricklab/core/threads.hpp"
#include "cli_args.hpp"

namespace {

using bricklab::Graph;

const char* kUsage = R"(usage: bricklab <command> [options]

commands:
  inspect MODEL [--batch N] [--dim NAME=N ...] [--json]
                      per-node table (name, op, output shape, FLOPs, bytes) and totals
  run MODEL [--batch N] [--threads N] [--input NAME=FILE.npy ...] [--output-dir DIR]
            [--repeat N] [--warmup N] [--no-fusion] [--variant NODE=NAME ...] [--branch-workers N] [--profile] [--json]
                      run on the CPU (random inputs unless given), write outputs as
                      DIR/<output>.npy, print latency median / p10 / p90
  recover (--obs FILE | --indices FILE --levels FILE) --rank R --out EST.npy [...]
                      tensor recovery from quantized observations (.npy/.csv); writes
                      the estimate as .npy (`bricklab recover --help` for the options)
  decompose MODEL... [--batch N] [--granularity op|fused|seq:K] [--emit DIR] [--json]
                      split models into bricks (unique layers), multiplicities, ONNX bricks
  benchmark MODEL... [--db PATH|URL] [--queue SUITE] [...]
                      time every unique brick not yet in the results database
  predict MODEL [--db PATH|URL] [--json]
                      model latency from its bricks (sum and critical path)
                      (`bricklab decompose --help` for the options of all these)
  lowerbound MODEL [--db PATH|URL] [--backend cpu|cuda] [--json]
                      Benanza lower bounds: every variant of every layer benchmarked;
                      sequential, parallel and roofline bounds; advice, applied and measured
  report MODEL [--db PATH|URL] -o report.html
                      the same analysis as a self-contained HTML page
  roofline [--db PATH|URL] [--backend cpu|cuda]
                      measure this machine's peak GFLOP/s and bandwidth (stored in the db)
  ops [--json]        the operators bricklab supports and how it counts their cost
  info [--json]       version, backends and this machine
  help [COMMAND]      this text, or a command's own options, defaults and an example
                      (also `bricklab COMMAND --help`)
  completion bash     a bash completion script: source <(bricklab completion bash)

Exit status: 0 on success, 1 when the model or data is bad, 2 on a usage error.
)";

struct Args {
  std::vector<std::string> positional;
  bool json = false;
  bricklab::LoadOptions load;
  int threads = 0;
  int repeat = 20;
  int warmup = 3;
  bool fusion = true;
  bool profile = false;
  std::string output_dir;
  std::map<std::string, std::string> input_files;
  std::map<std::string, std::string> variants;  // node -> variant (run --variant)
  int branch_workers = 1;
};

Args parse_args(const std::vector<std::string>& argv) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    auto next = [&](const std::string& flag) -> std::string {
      if (i + 1 >= argv.size()) throw UsageError(flag + " needs a value");
      return argv[++i];
    };
    if (s == "--json") a.json = true;
    else if (s == "--threads") a.threads = bricklab::resolve_threads(int(std::min<int64_t>(parse_count("--threads", next("--threads")), INT32_MAX)), "--threads");
    else if (s == "--repeat") a.repeat = parse_int32("--repeat", next("--repeat"), 1);
    else if (s == "--warmup") {
      const std::string w = next("--warmup");
      a.warmup = parse_int32("--warmup", w, 0);
    } else if (s == "--no-fusion") a.fusion = false;
    else if (s == "--profile") a.profile = true;
    else if (s == "--output-dir") a.output_dir = next("--output-dir");
    else if (s == "--input") {
      const std::string spec = next("--input");
      const auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) throw UsageError("--input expects NAME=FILE.npy, got '" + spec + "'");
      a.input_files[spec.substr(0, eq)] = spec.substr(eq + 1);
    }
    else if (s == "--branch-workers") a.branch_workers = parse_int32("--branch-workers", next("--branch-workers"), 1);
    else if (s == "--variant") {
      const std::string spec = next("--variant");
      const auto eq = spec.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) throw UsageError("--variant expects NODE=VARIANT, got '" + spec + "'");
      a.variants[spec.substr(0, eq)] = spec.substr(eq + 1);
    }
    else if (s == "--batch") a.load.batch = parse_count("--batch", next("--batch"));
    else if (s.rfind("--batch=", 0) == 0) a.load.batch = parse_count("--batch", s.substr(8));
    else if (s == "--dim" || s.rfind("--dim=", 0) == 0) {
      std::string spec = s == "--dim" ? next("--dim") : s.substr(6);
      auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("--dim expects NAME=N, got '" + spec + "'");
      a.load.dims[spec.substr(0, eq)] = parse_count("--dim " + spec.substr(0, eq), spec.substr(eq + 1));
    } else if (s.size() > 1 && s[0] == '-') throw UsageError("unknown option '" + s + "'");
    else a.positional.push_back(s);
  }
  return a;
}

std::string human(double v, const char* unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T", "P"};
  int p = 0;
  while (v >= 1000 && p < 5) v /= 1000, ++p;
  return fmt::format("{:.3g} {}{}", v, prefixes[p], unit);
}

std::string ellipsize(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  return "…" + s.substr(s.size() - (width - 1));
}

std::string output_shapes(const Graph& g, const bricklab::Node& n) {
  std::string out;
  for (int v : n.outputs)
    if (v >= 0) out += (out.empty() ? "" : " ") + bricklab::shape_str(g.values[size_t(v)].shape);
  return out;
}

nlohmann::json graph_json(const Graph& g, int64_t batch) {
  nlohmann::json j;
  j["model"] = g.path;
  j["graph_name"] = g.name;
  j["opset"] = g.opset;
  j["ir_version"] = g.ir_version;
  j["batch"] = batch;
  j["weights_stripped"] = g.weights_stripped;
  for (int v : g.inputs) {
    const auto& val = g.values[size_t(v)];
    j["inputs"].push_back({{"name", val.name}, {"shape", val.shape}, {"dtype", bricklab::dtype_name(val.dtype)}});
  }
  for (int v : g.outputs) {
    const auto& val = g.values[size_t(v)];
    j["outputs"].push_back({{"name", val.name}, {"shape", val.shape}, {"dtype", bricklab::dtype_name(val.dtype)}});
  }
  j["nodes"] = nlohmann::json::array();
  for (const auto& n : g.nodes) {
    std::vector<bricklab::Shape> shapes;
    for (int v : n.outputs)
      if (v >= 0) shapes.push_back(g.values[size_t(v)].shape);
    j["nodes"].push_back({{"name", n.name},
                          {"op", n.op},
                          {"output_shapes", shapes},
                          {"flops", n.cost.flops},
                          {"bytes_read", n.cost.bytes_read},
                          {"bytes_written", n.cost.bytes_written}});
  }
  const auto total = g.total_cost();
  j["totals"] = {{"nodes", g.nodes.size()},
                 {"flops", total.flops},
                 {"bytes_read", total.bytes_read},
                 {"bytes_written", total.bytes_written},
                 {"parameters", g.parameter_count()},
                 {"parameter_bytes", g.parameter_bytes()}};
  return j;
}

int cmd_inspect(const Args& a) {
  if (a.positional.size() != 1) throw UsageError("inspect expects exactly one MODEL");
  const Graph g = bricklab::load_onnx(a.positional[0], a.load);
  const int64_t batch = a.load.batch > 0 ? a.load.batch : 1;
  if (a.json) {
    std::cout << graph_json(g, batch).dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("model {}  (opset {}, IR {}, batch {}{})\n", g.path, g.opset, g.ir_version, batch,
                           g.weights_stripped ? ", weights stripped" : "");
  for (int v : g.inputs)
    std::cout << fmt::format("  input  {} {} {}\n", g.values[size_t(v)].name, bricklab::dtype_name(g.values[size_t(v)].dtype),
                             bricklab::shape_str(g.values[size_t(v)].shape));
  for (int v : g.outputs)
    std::cout << fmt::format("  output {} {} {}\n", g.values[size_t(v)].name, bricklab::dtype_name(g.values[size_t(v)].dtype),
                             bricklab::shape_str(g.values[size_t(v)].shape));
  std::cout << fmt::format("\n{:>4}  {:<32} {:<20} {:<22} {:>11} {:>11} {:>11}\n", "#", "node", "op", "output shape",
                           "MFLOP", "read MB", "write MB");
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto& n = g.nodes[i];
    std::cout << fmt::format("{:>4}  {:<32} {:<20} {:<22} {:>11.3f} {:>11.3f} {:>11.3f}\n", i, ellipsize(n.name, 32),
                             ellipsize(n.op, 20), ellipsize(output_shapes(g, n), 22), n.cost.flops / 1e6,
                             n.cost.bytes_read / 1e6, n.cost.bytes_written / 1e6);
  }
  // Per-operator summary, heaviest first.
  struct Sum { int count = 0; bricklab::Cost cost; };
  std::map<std::string, Sum> by_op;
  for (const auto& n : g.nodes) {
    auto& s = by_op[n.op];
    s.count++;
    s.cost.flops += n.cost.flops;
    s.cost.bytes_read += n.cost.bytes_read;
    s.cost.bytes_written += n.cost.bytes_written;
  }
  std::vector<std::pair<std::string, Sum>> ops(by_op.begin(), by_op.end());
  std::sort(ops.begin(), ops.end(), [](const auto& x, const auto& y) { return x.second.cost.flops > y.second.cost.flops; });
  const auto total = g.total_cost();
  std::cout << fmt::format("\n{:<20} {:>6} {:>12} {:>7} {:>12}\n", "op", "nodes", "GFLOP", "share", "MB moved");
  for (const auto& [op, s] : ops)
    std::cout << fmt::format("{:<20} {:>6} {:>12.4f} {:>6.1f}% {:>12.3f}\n", op, s.count, s.cost.flops / 1e9,
                             total.flops > 0 ? 100 * s.cost.flops / total.flops : 0.0, s.cost.bytes() / 1e6);
  std::cout << fmt::format("\ntotals: {} nodes, {} ({} MAC-equivalent), {} read, {} written, {:.1f} FLOP/byte\n",
                           g.nodes.size(), human(total.flops, "FLOP"), human(total.flops / 2, "MAC"),
                           human(total.bytes_read, "B"), human(total.bytes_written, "B"), total.intensity());
  std::cout << fmt::format("parameters: {} ({}){}\n", human(double(g.parameter_count()), ""),
                           human(g.parameter_bytes(), "B"), g.weights_stripped ? ", values stripped" : "");
  return 0;
}

int cmd_run(const Args& a) {
  if (a.positional.size() != 1) throw UsageError("run expects exactly one MODEL");
  if (!a.output_dir.empty()) require_parent_folder(a.output_dir, "--output-dir");
  const Graph g = bricklab::load_onnx(a.positional[0], a.load);
  bricklab::CompileOptions options;
  options.threads = bricklab::resolve_threads(a.threads, "--threads");
  options.fusion = a.fusion;
  for (const auto& [node, v] : a.variants)
    if (g.find_node(node) < 0) throw bricklab::InvalidArgument("--variant: the model has no node named '" + node + "'");
  options.variants = a.variants;
  options.branch_workers = a.branch_workers;
  auto exe = bricklab::get_backend("cpu").compile(g, options);
  std::map<std::string, bricklab::Tensor> inputs = bricklab::random_inputs(g, 0);
  for (const auto& [name, file] : a.input_files) {
    if (!inputs.count(name)) throw bricklab::InvalidArgument("--input: the model has no input named '" + name + "'");
    inputs[name] = bricklab::read_npy(file);
  }
  auto outputs = exe->run(inputs);
  if (!a.output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(a.output_dir, ec);
    if (ec) throw bricklab::FileError({a.output_dir, "", ""}, "cannot create output directory: " + ec.message());
    // One file per output, never two outputs in one file: names that sanitise alike ("a/b",
    // "a_b") get a numbered suffix, and every name that changed is said.
    std::set<std::string> used;
    for (const auto& [name, t] : outputs) {
      std::string file = name;
      for (char& c : file)
        if (c == '/' || c == '\\' || c == ':' || c == '\0') c = '_';
      if (file.empty() || file[0] == '.') file = "output_" + file;
      std::string unique = file;
      for (int k = 2; used.count(unique); ++k) unique = file + "_" + std::to_string(k);
      used.insert(unique);
      if (unique != name) std::cerr << "output '" << name << "' -> " << unique << ".npy\n";
      bricklab::write_npy((std::filesystem::path(a.output_dir) / (unique + ".npy")).string(), t);
    }
  }
  const auto stats = bricklab::time_runs(*exe, inputs, a.warmup, a.repeat);
  std::vector<bricklab::StepTime> profile;
  if (a.profile) profile = exe->run_profiled(inputs);
  if (a.json) {
    nlohmann::json j;
    j["model"] = g.path;
    j["batch"] = a.load.batch > 0 ? a.load.batch : 1;
    j["threads"] = options.threads;
    j["fusion"] = a.fusion;
    j["random_weights"] = exe->uses_random_weights();
    j["latency_ms"] = {{"median", stats.median_ms}, {"p10", stats.p10_ms}, {"p90", stats.p90_ms}, {"mean", stats.mean_ms},
                       {"min", stats.min_ms}, {"repeats", stats.repeats}, {"samples", stats.samples_ms}};
    for (const auto& [name, t] : outputs) j["outputs"][name] = {{"shape", t.shape()}, {"dtype", bricklab::dtype_name(t.dtype())}};
    for (const auto& p : profile) j["profile"].push_back({{"step", p.name}, {"kind", p.kind}, {"ms", p.ms}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("model {}  (batch {}, threads {}, fusion {}{})\n", g.path, a.load.batch > 0 ? a.load.batch : 1,
                           options.threads, a.fusion ? "on" : "off",
                           exe->uses_random_weights() ? ", random weights: the model's weights are stripped" : "");
  for (const auto& [name, t] : outputs)
    std::cout << fmt::format("  output {} {} {}{}\n", name, bricklab::dtype_name(t.dtype()), bricklab::shape_str(t.shape()),
                             a.output_dir.empty() ? "" : " -> " + a.output_dir);
  if (!profile.empty()) {
    std::cout << fmt::format("\n{:<48} {:<28} {:>9}\n", "step", "kind", "ms");
    for (const auto& p : profile) std::cout << fmt::format("{:<48} {:<28} {:>9.3f}\n", ellipsize(p.name, 48), ellipsize(p.kind, 28), p.ms);
  }
  std::cout << fmt::format("\nlatency over {} runs after {} warm-up: median {:.3f} ms, p10 {:.3f} ms, p90 {:.3f} ms\n", stats.repeats,
                           a.warmup, stats.median_ms, stats.p10_ms, stats.p90_ms);
  return 0;
}

int cmd_ops(const Args& a) {
  const auto& all = bricklab::OpRegistry::instance().all();
  const auto names = bricklab::backend_names();
  auto lowered = [&](const std::string& backend, const bricklab::OpDef& d) { return bricklab::get_backend(backend).lowers(d); };
  if (a.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& d : all) {
      nlohmann::json backends = nlohmann::json::object();
      for (const auto& b : names) backends[b] = lowered(b, d) ? "lowered" : "unsupported";
      j.push_back({{"op", d.name}, {"class", bricklab::op_class_name(d.cls)}, {"summary", d.summary}, {"backends", backends}});
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::string head = fmt::format("{:<24} {:<12}", "operator", "class");
  for (const auto& b : names) head += fmt::format(" {:<5}", b);
  std::cout << head << " summary\n";
  std::map<std::string, int> count;
  for (const auto& d : all) {
    std::string line = fmt::format("{:<24} {:<12}", d.name, bricklab::op_class_name(d.cls));
    for (const auto& b : names) {
      const bool yes = lowered(b, d);
      count[b] += yes;
      line += fmt::format(" {:<5}", yes ? "yes" : "-");
    }
    std::cout << line << " " << d.summary << "\n";
  }
  std::cout << fmt::format("\n{} operators (default ONNX domain, opsets {} to {}); lowered:", all.size(), bricklab::kMinOpset,
                           bricklab::kMaxOpset);
  for (const auto& b : names) std::cout << fmt::format(" {} {}", b, count[b]);
  std::cout << " ('-': the backend refuses the operator)\n";
  return 0;
}

// The OpenMP wait policy in force (libgomp reads it from the environment when it loads).
std::string wait_policy() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (policy) return std::string("OMP_WAIT_POLICY=") + policy;
  if (spin) return std::string("GOMP_SPINCOUNT=") + spin;
  return "libgomp's default";
}

int cmd_info(const Args& a) {
  const auto list = bricklab::backends();
  if (a.json) {
    nlohmann::json j;
    j["version"] = bricklab::version();
    j["threads"] = {{"default", bricklab::usable_cpus()}, {"max", bricklab::max_threads()}, {"wait_policy", wait_policy()}};
    for (const auto& b : list)
      j["backends"].push_back({{"name", b.name}, {"compiled", b.compiled}, {"available", b.available},
                               {"library", b.library}, {"device", b.device}, {"reason", b.reason}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "bricklab " << bricklab::version() << "\n";
  std::cout << fmt::format("  threads: {} by default (the CPUs this process may use), at most {}; OpenMP wait: {}\n",
                           bricklab::usable_cpus(), bricklab::max_threads(), wait_policy());
  for (const auto& b : list)
    std::cout << fmt::format("  {:<5} {:<14} {} {}\n", b.name, b.available ? "available" : "not available",
                             b.available ? b.library : b.reason, b.available ? "on " + b.device : "");
  return 0;
}

// ---- completion ----------------------------------------------------------------------------

const std::vector<std::string> kCommands = {"inspect", "run", "recover", "decompose", "benchmark", "predict", "lowerbound",
                                            "report", "roofline", "ops", "info", "help", "completion"};

const char* kCompletionHelp = R"(usage: bricklab completion bash

Prints a bash completion script for bricklab: commands, and each command's options (taken from
its --help text, so they never go out of date); file names elsewhere.

Example:
  source <(bricklab completion bash)                       # this shell
  bricklab completion bash > /etc/bash_completion.d/bricklab   # every new shell
)";

// The options a command's help text names: every "--word" (and -o, -h where listed).
std::vector<std::string> options_in(const std::string& help) {
  std::set<std::string> out;
  for (size_t i = 0; i + 2 < help.size(); ++i) {
    const bool start = i == 0 || !(std::isalnum(static_cast<unsigned char>(help[i - 1])) || help[i - 1] == '-');
    if (!start || help[i] != '-') continue;
    size_t j = i + 1;
    if (help[j] == '-') ++j;
    size_t k = j;
    while (k < help.size() && (std::isalnum(static_cast<unsigned char>(help[k])) || help[k] == '-')) ++k;
    if (k == j || !std::isalpha(static_cast<unsigned char>(help[j]))) continue;
    if (j == i + 1 && k - j != 1) continue;  // short options are single letters (-o, -h)
    out.insert(help.substr(i, k - i));
  }
  out.insert("--help");
  return {out.begin(), out.end()};
}

int cmd_completion(const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0] != "bash")
    throw UsageError("completion expects the shell name: bricklab completion bash");
  std::string commands, cases;
  for (const std::string& c : kCommands) {
    commands += (commands.empty() ? "" : " ") + c;
    if (c == "help") continue;  // completes command names (below)
    const std::string help = c == "recover" ? recover_help() : c == "completion" ? kCompletionHelp : command_help(c);
    std::string opts;
    for (const std::string& o : options_in(help)) opts += (opts.empty() ? "" : " ") + o;
    cases += "    " + c + ") opts=\"" + opts + "\" ;;\n";
  }
  std::cout << "# bash completion for bricklab (generated by `bricklab completion bash`)\n"
               "_bricklab() {\n"
               "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" opts=\"\"\n"
               "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
               "    COMPREPLY=($(compgen -W \"" << commands << " --help --version\" -- \"$cur\"))\n"
               "    return\n"
               "  fi\n"
               "  case \"${COMP_WORDS[1]}\" in\n"
               "    help) COMPREPLY=($(compgen -W \"" << commands << "\" -- \"$cur\")); return ;;\n"
            << cases <<
               "  esac\n"
               "  if [[ \"$cur\" == -* ]]; then\n"
               "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
               "  else\n"
               "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
               "  fi\n"
               "}\n"
               "complete -o filenames -F _bricklab bricklab\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "help") {
    if (args[1] == "recover") args = {"recover", "--help"};
    else if (args[1] == "completion") args = {"completion", "--help"};
    else if (const std::string help = command_help(args[1]); !help.empty()) {
      std::cout << help;
      return 0;
    }
  }
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "bricklab " << bricklab::version() << "\n";
    return 0;
  }
  const std::string command = args[0];
  // `bricklab COMMAND --help` / `-h` and `bricklab help COMMAND`: that command's own text.
  if (command != "recover") {
    const bool asks = std::any_of(args.begin() + 1, args.end(), [](const std::string& s) { return s == "--help" || s == "-h"; });
    if (asks)
      if (const std::string help = command_help(command); !help.empty()) {
        std::cout << help;
        return 0;
      }
  }
  if (command == "completion" && std::any_of(args.begin() + 1, args.end(), [](const std::string& s) { return s == "--help" || s == "-h"; })) {
    std::cout << kCompletionHelp;
    return 0;
  }
  try {
    if (command == "recover") return cmd_recover({args.begin() + 1, args.end()});
    if (command == "completion") return cmd_completion({args.begin() + 1, args.end()});
    if (command == "decompose" || command == "benchmark" || command == "predict")
      return cmd_bricks(command, {args.begin() + 1, args.end()});
    if (command == "lowerbound" || command == "report" || command == "roofline")
      return cmd_lowerbound_family(command, {args.begin() + 1, args.end()});
    const Args a = parse_args({args.begin() + 1, args.end()});
    if (command == "inspect") return cmd_inspect(a);
    if (command == "run") return cmd_run(a);
    if (command == "ops") return cmd_ops(a);
    if (command == "info") return cmd_info(a);
    throw UsageError("unknown command '" + command + "' (see `bricklab help`)");
  } catch (const UsageError& e) {
    std::cerr << "bricklab " << command << ": usage error: " << e.what() << "\n";
    return 2;
  } catch (const bricklab::InvalidArgument& e) {  // an option value the library refused
    std::cerr << "bricklab " << command << ": usage error: " << e.what() << "\n";
    return 2;
  } catch (const bricklab::Error& e) {
    std::cerr << "bricklab " << command << ": error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "bricklab " << command << ": error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "bricklab " << command << ": internal error: " << e.what() << "\n";
    return 1;
  }
}
