// `bricklab COMMAND --help`: each command's own usage, options with their defaults, an example
// and the exit status. Option blocks shared by several commands are written once and composed.
#include <string>

#include "bricklab/bricks/database.hpp"
#include "cli_args.hpp"

namespace {

const char* kExit = "\nExit status: 0 on success, 1 when the model, data or database is bad, 2 on a usage error.\n";

const char* kLoad = R"(  --batch N            batch size bound to the model's batch dimension             [1]
)";
const char* kDims = R"(  --dim NAME=N         bind a symbolic input dimension (repeatable)
)";
const char* kThreadsEngine = R"(  --threads N          engine threads                  [the CPUs this process may use]
)";
const char* kThreadsBricks = R"(  --threads N          engine threads (bricks and models alike)                    [1]
  --no-fusion          engine fusions off
  --backend B          cpu (oneDNN) or cuda (cuDNN / cuBLAS)                       [cpu]
)";
const char* kGranularity = R"(  --granularity G      op | fused (what the engine runs) | seq:K                   [fused]
)";
// The database option, with the default this environment resolves to.
std::string db_option() {
  return "  --db PATH|URL        results database: a SQLite file or postgresql://USER@HOST:PORT/DB\n"
         "                       [$BRICKLAB_DB, else the user's cache folder: " +
         bricklab::bricks::default_db_path() + "]\n";
}
const char* kRunner = R"(Runner options (how each measurement is taken; predict, lowerbound and report use them to
pick the stored results of the same fingerprint):
  --tolerance F        stop when the median's 95% CI half-width <= F x median      [0.02]
                       (benchmark: the target for each model's prediction; a brick with share
                       s of a model's time is measured to F / sqrt(s), at most 0.25)
  --per-brick-tolerance  every brick to F itself
  --budget S           seconds per measurement before stopping unconverged         [10]
  --warmup N  --min-reps N  --max-reps N                                           [3, 7, 1000]
  --pin                pin engine threads to cores
  --cold-weights       evict all caches before every repetition
  --hot-weights        bricks: keep their weights in cache between repetitions (default: evict)
  --evict-outputs      bricks: also evict their large output buffers before each repetition
  --clock wall|cpu     wall clock, or the thread's CPU time (needs --threads 1)    [wall]
  --progress / --no-progress   progress bar on stderr              [when stderr is a terminal]
)";
const char* kJson = R"(  --json               machine-readable output on stdout
)";

std::string text(const std::string& usage, const std::string& what, const std::string& options, const std::string& example) {
  return "usage: " + usage + "\n\n" + what + "\n\nOptions:\n" + options + "\nExample:\n  " + example + "\n" + kExit;
}

}  // namespace

std::string command_help(const std::string& command) {
  if (command == "inspect")
    return text("bricklab inspect MODEL [--batch N] [--dim NAME=N ...] [--json]",
                "Loads an ONNX model, infers every shape and prints one row per node: name, operator,\n"
                "output shape, FLOPs and bytes, then the totals.",
                std::string(kLoad) + kDims + kJson, "bricklab inspect models/bundled/resnet18.onnx --batch 8");
  if (command == "run")
    return text("bricklab run MODEL [--batch N] [--threads N] [--input NAME=FILE.npy ...] [--output-dir DIR]\n"
                "                    [--repeat N] [--warmup N] [--no-fusion] [--variant NODE=NAME ...]\n"
                "                    [--branch-workers N] [--profile] [--json]",
                "Runs the model on the CPU engine (random inputs unless given; random weights where the\n"
                "model's are stripped) and prints the latency median, p10 and p90 and the outputs.",
                std::string(kLoad) + kDims + kThreadsEngine +
                    "  --input NAME=FILE.npy  an input from a .npy file (repeatable)\n"
                    "  --output-dir DIR     write each output as DIR/<output>.npy\n"
                    "  --repeat N           timed runs                                                  [20]\n"
                    "  --warmup N           untimed runs first                                          [3]\n"
                    "  --no-fusion          engine fusions off\n"
                    "  --variant NODE=NAME  run node NODE with variant NAME (see bricklab.variants())\n"
                    "  --branch-workers N   run independent branches concurrently on N workers          [1]\n"
                    "  --profile            one more run with each step timed; prints every step\n" +
                    kJson,
                "bricklab run models/bundled/resnet18.onnx --threads 2 --repeat 50");
  if (command == "decompose")
    return text("bricklab decompose MODEL... [--batch N] [--granularity op|fused|seq:K] [--emit DIR [--force]] [--json]",
                "Splits models into bricks (their unique layers, keyed by operator, shapes and attributes)\n"
                "and prints each brick's multiplicity per model.",
                std::string(kLoad) + kGranularity + kThreadsBricks +
                    "  --emit DIR           also write each brick as a runnable ONNX model into DIR; says the\n"
                    "                       size first and refuses above 1 GiB (weights included)\n"
                    "  --force              emit even above 1 GiB\n" + kJson,
                "bricklab decompose models/zoo/resnet18.onnx models/zoo/resnet34.onnx --emit bricks/");
  if (command == "benchmark")
    return text("bricklab benchmark MODEL... [--db PATH|URL] [--queue SUITE] [runner options] [--json]",
                "Times every unique brick of the models that the results database does not hold yet for\n"
                "this machine's fingerprint (or holds marked noisy), and stores the results. A measurement\n"
                "taken while the machine is busy is retried; one that stays busy is stored marked noisy.",
                std::string(kLoad) + kGranularity + kThreadsBricks + db_option() +
                    "  --queue SUITE        share the work with other machines through a PostgreSQL queue\n"
                    "  --remeasure          measure every brick again and replace its stored result\n" + kJson +
                    "\n" + kRunner,
                "bricklab benchmark models/zoo/resnet18.onnx models/zoo/resnet34.onnx --db bricks.sqlite");
  if (command == "predict")
    return text("bricklab predict MODEL [--db PATH|URL] [runner options] [--json]",
                "Predicts the model's latency from the stored brick times: the sum over its steps, the\n"
                "reorders between them and the per-run overhead, with a 95% interval, and the critical path.\n"
                "Bricks stored marked noisy are named on stderr and leave the prediction incomplete (exit 1).",
                std::string(kLoad) + kGranularity + kThreadsBricks + db_option() +
                    "  --accept-noisy       use bricks stored marked noisy (still named as such)\n" + kJson + "\n" + kRunner,
                "bricklab predict models/zoo/resnet50.onnx --db bricks.sqlite");
  if (command == "lowerbound" || command == "report") {
    const bool report = command == "report";
    std::string options = std::string(kLoad) + kThreadsBricks + db_option() +
                          "  --no-measure         do not time the whole model (bounds and advice from the database)\n"
                          "  --no-apply           do not apply the advice in the engine to measure realised savings\n"
                          "  --peers              first measure ONNX Runtime, OpenVINO (when installed) and PyTorch\n"
                          "                       (zoo models) with the same threads, to show them beside bricklab\n"
                          "                       (the `bricklab` installed with the Python package does this)\n";
    if (report) options += "  -o, --output FILE    the HTML page to write                                      [report.html]\n";
    options += std::string(kJson) + "\n" + kRunner;
    return report ? text("bricklab report MODEL [-o report.html] [--db PATH|URL] [lower-bound options] [--json]",
                         "Runs the lower-bound analysis (see `bricklab lowerbound --help`) and writes it as one\n"
                         "self-contained HTML page: bounds, time by operator, top layers, timeline, advice.",
                         options, "bricklab report models/zoo/resnet50.onnx --db lb.sqlite --threads 2 --peers -o r50.html")
                  : text("bricklab lowerbound MODEL [--db PATH|URL] [--backend cpu|cuda] [--no-measure] [--no-apply]\n"
                         "                           [runner options] [--json]",
                         "Benanza lower bounds: benchmarks every variant of every unique layer, computes the\n"
                         "sequential, parallel (critical-path) and roofline bounds, and says what each\n"
                         "optimisation is worth, then applies it and measures the realised saving.",
                         options, "bricklab lowerbound models/zoo/resnet50.onnx --db lb.sqlite --threads 2");
  }
  if (command == "roofline")
    return text("bricklab roofline [--db PATH|URL] [--backend cpu|cuda] [--threads N] [--json]",
                "Measures this machine's peak GFLOP/s per precision (a large MatMul per variant) and its\n"
                "memory bandwidth, and stores them in the database under the machine's fingerprint.",
                std::string(kThreadsBricks) + db_option() + kJson, "bricklab roofline --db lb.sqlite --threads 2");
  if (command == "ops")
    return text("bricklab ops [--json]",
                "Lists the operators of bricklab's operator table: how each one's cost is counted and, per\n"
                "backend, whether it is lowered or unsupported.",
                kJson, "bricklab ops --json");
  if (command == "info")
    return text("bricklab info [--json]",
                "Prints the version, the backends (compiled, available, library, device), the default and\n"
                "maximum thread counts and the OpenMP wait policy in force.",
                kJson, "bricklab info --json");
  return "";
}
