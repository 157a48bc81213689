// Options shared by the database-backed commands (decompose, benchmark, predict, lowerbound,
// report, roofline): parsed once in bricks_cmds.cpp, used by lowerbound_cmds.cpp too.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bricklab/bricks/decompose.hpp"
#include "bricklab/bricks/runner.hpp"
#include "bricklab/core/error.hpp"

struct BricksArgs {
  std::vector<std::string> models;
  bricklab::bricks::DecomposeOptions decompose;
  bricklab::bricks::RunnerOptions runner;
  std::string db, emit_dir, queue;
  std::string output = "report.html";  // report
  bool measure = true, apply = true;   // lowerbound, report
  bool json = false;
  int progress = -1;  // -1: when stderr is a TTY
};

// Parses the options of `command`; throws bricklab::InvalidArgument naming a bad flag.
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
    throw bricklab::InvalidArgument(flag + " " + path + ": the folder '" + parent.string() +
                                    "' does not exist (create it first, e.g. mkdir -p " + parent.string() + ")");
}
