// Options shared by the database-backed commands (decompose, benchmark, predict, lowerbound,
// report, roofline): parsed once in bricks_cmds.cpp, used by lowerbound_cmds.cpp too.
#pragma once

#include <cmath>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bricklab/bricks/decompose.hpp"
#include "bricklab/bricks/runner.hpp"
#include "bricklab/core/error.hpp"

// One convention for every command (main.cpp prints them): a bad command line is a UsageError
// ("bricklab CMD: usage error: ...", exit 2); a bad model, data file or database is a
// bricklab::Error ("bricklab CMD: error: ...", exit 1).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The option parsers every command uses, so that a bad value reads the same everywhere:
// "--batch expects an integer >= 1, got 'x'".
inline int64_t parse_integer(const std::string& flag, const std::string& text, int64_t min = INT64_MIN) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + " expects an integer" + (min == INT64_MIN ? std::string() : " >= " + std::to_string(min)) +
                   ", got '" + text + "'");
}
inline int64_t parse_count(const std::string& flag, const std::string& text) { return parse_integer(flag, text, 1); }
// An int option: out-of-range values are errors, never truncated (--repeat 4294967298 is not 2).
inline int parse_int32(const std::string& flag, const std::string& text, int min = INT32_MIN) {
  const int64_t v = parse_integer(flag, text, min);
  if (v > INT32_MAX)
    throw UsageError(flag + " expects an integer from " + std::to_string(min) + " to " + std::to_string(INT32_MAX) + ", got '" +
                     text + "'");
  return int(v);
}

// A finite number; `positive` also requires it to be > 0.
inline double parse_real(const std::string& flag, const std::string& text, bool positive = false) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v) && (!positive || v > 0)) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + (positive ? " expects a positive number" : " expects a finite number") + ", got '" + text + "'");
}

// decompose --emit refuses to write more than this without --force.
constexpr double kEmitLimitBytes = 1024.0 * 1024 * 1024;

struct BricksArgs {
  std::vector<std::string> models;
  bricklab::bricks::DecomposeOptions decompose;
  bricklab::bricks::RunnerOptions runner;
  std::string db, emit_dir, queue;
  std::string output = "report.html";  // report
  bool measure = true, apply = true;   // lowerbound, report
  bool json = false;
  bool force = false;  // decompose --emit above kEmitLimitBytes
  bool remeasure = false;     // benchmark: re-measure stored results of this fingerprint, replacing them
  bool accept_noisy = false;  // predict, lowerbound, report: use measurements marked noisy for conclusions
  int progress = -1;  // -1: when stderr is a TTY
};

// Parses the options of `command`; throws UsageError naming a bad flag.
BricksArgs parse_bricks_args(const std::string& command, const std::vector<std::string>& argv);
// A progress bar on stderr (counts, elapsed, time remaining) when a.progress asks for one.
std::function<void(int, int, double, const std::string&)> progress_bar(const BricksArgs& a, const std::string& unit);

// `bricklab COMMAND --help`: the command's own usage, options with defaults, an example and the
// exit status (help.cpp); empty for a command without one.
std::string command_help(const std::string& command);

// The folder an output path goes into must exist: the CLI creates the last component of an
// output folder (--output-dir, --emit) but no missing parents, so a typo in a path is an error
// naming the missing folder instead of a new directory tree somewhere.
inline void require_parent_folder(std::string path, const std::string& flag) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();  // "out/" is the folder "out"
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  if (!std::filesystem::is_directory(parent, ec))
    throw UsageError(flag + " " + path + ": the folder '" + parent.string() +
                                    "' does not exist (create it first, e.g. mkdir -p " + parent.string() + ")");
}
