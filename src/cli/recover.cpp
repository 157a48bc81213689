// `bricklab recover`: tensor recovery from quantized observations read from .npy/.csv files;
// writes the dense estimate as .npy (and optionally the factors). Bad input throws
// UsageError (exit 2) or bricklab::Error (exit 1), which main() turns into one line.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bricklab/core/error.hpp"
#include "bricklab/core/npy.hpp"
#include "bricklab/tensor/recovery.hpp"
#include "cli_args.hpp"

namespace {

// Malformed observations (a file's contents): bad data (exit 1), not a bad command line.
struct DataError : bricklab::Error {
  using bricklab::Error::Error;
};
namespace bt = bricklab::tensor;

const char* kRecoverUsage = R"(usage: bricklab recover (--obs FILE | --indices FILE --levels FILE) --rank R --out EST.npy [options]

Observations:
  --obs FILE.csv        rows "i1,...,iN,level" (0-based indices, levels 1..K; a header line is allowed)
  --obs FILE.npy        an integer array m x (N+1): indices then level
  --indices FILE.npy    an integer array m x N, with --levels FILE.npy (m levels)
  --shape D1xD2x...     tensor shape (default: largest index + 1 along each mode)
Model and solver:
  --rank R              CP rank (or tubal rank for --method tsvd)       [required]
  --noise probit|logistic                                               [probit]
  --sigma S             noise scale                                     [1]
  --alpha A             bound on |X|                                    [1]
  --boundaries w1,w2,...  known boundaries (default: estimated, K = --levels-count or the largest level)
  --levels-count K      number of levels when the boundaries are estimated
  --method cp|tsvd                                                      [cp]
  --max-iter N  --tol T  --seed S  --threads T  --n-init N (random starts, default 3)
  --step newton|curvature|lipschitz|backtracking (default newton)  --no-extrapolate
Output:
  --out EST.npy         the dense estimate (float64, C order)           [required]
  --factors PREFIX      also write PREFIX0.npy, PREFIX1.npy, ... (the factors)
  --json                print a JSON summary instead of text
)";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Observations from a CSV file: each row i1,...,iN,level.
void read_csv(const std::string& path, std::vector<int64_t>& indices, std::vector<int32_t>& levels, size_t& order) {
  std::ifstream in(path);
  if (!in) throw bricklab::FileError(bricklab::ErrorContext{path, "", ""}, "no such file or not readable");
  std::string line;
  size_t line_no = 0;
  order = 0;
  while (std::getline(in, line)) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> cells = split(line, ',');
    std::vector<int64_t> row;
    bool numeric = true;
    for (const std::string& c : cells) {
      const std::string t = trim(c);
      try {
        size_t used = 0;
        const double v = std::stod(t, &used);
        if (used != t.size()) throw std::invalid_argument(t);
        if (!std::isfinite(v) || v != std::floor(v))
          throw DataError(path + ":" + std::to_string(line_no) + ": '" + t + "' is not a finite integer");
        row.push_back(int64_t(v));
      } catch (const DataError&) {
        throw;
      } catch (const std::exception&) {
        numeric = false;
        break;
      }
    }
    if (!numeric) {
      if (indices.empty() && levels.empty()) continue;  // a header line
      throw DataError(path + ":" + std::to_string(line_no) + ": expected integers, got '" + line + "'");
    }
    if (row.size() < 3) throw DataError(path + ":" + std::to_string(line_no) + ": need at least 2 indices and a level");
    if (order == 0) order = row.size() - 1;
    if (row.size() != order + 1)
      throw DataError(path + ":" + std::to_string(line_no) + ": expected " + std::to_string(order + 1) + " columns, got " +
                            std::to_string(row.size()));
    if (row.back() < std::numeric_limits<int32_t>::min() || row.back() > std::numeric_limits<int32_t>::max())
      throw DataError(path + ":" + std::to_string(line_no) + ": level out of range");
    indices.insert(indices.end(), row.begin(), row.end() - 1);
    levels.push_back(int32_t(row.back()));
  }
}

}  // namespace

std::string recover_help() { return kRecoverUsage; }

int cmd_recover(const std::vector<std::string>& args);

int cmd_recover(const std::vector<std::string>& args) {
  std::string obs_path, indices_path, levels_path, out_path, factors_prefix, shape_text, method = "cp";
  bool json = false;
  bt::RecoverOptions o;
  o.rank = 0;
  // Accept both "--flag value" and "--flag=value".
  std::vector<std::string> argv;
  for (const std::string& a : args) {
    const size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      argv.push_back(a.substr(0, eq));
      argv.push_back(a.substr(eq + 1));
    } else {
      argv.push_back(a);
    }
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argv.size()) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << kRecoverUsage;
      return 0;
    } else if (a == "--obs") obs_path = next();
    else if (a == "--indices") indices_path = next();
    else if (a == "--levels") levels_path = next();
    else if (a == "--shape") shape_text = next();
    else if (a == "--rank") o.rank = parse_int32(a, next());
    else if (a == "--noise") {
      const std::string n = next();
      if (n == "probit") o.loss = bt::Loss::probit;
      else if (n == "logistic") o.loss = bt::Loss::logistic;
      else throw UsageError("--noise must be probit or logistic, got '" + n + "'");
    } else if (a == "--sigma") o.sigma = parse_real(a, next());
    else if (a == "--alpha") o.alpha = parse_real(a, next());
    else if (a == "--boundaries") {
      for (const std::string& s : split(next(), ',')) o.boundaries.push_back(parse_real(a, trim(s)));
    } else if (a == "--levels-count") o.num_levels = parse_int32(a, next());
    else if (a == "--method") method = next();
    else if (a == "--max-iter") o.max_iter = parse_int32(a, next());
    else if (a == "--tol") o.tol = parse_real(a, next());
    else if (a == "--seed") o.seed = uint64_t(parse_integer(a, next(), 0));
    else if (a == "--threads") o.threads = parse_int32(a, next());
    else if (a == "--n-init") o.n_init = parse_int32(a, next());
    else if (a == "--step") {
      const std::string s = next();
      if (s == "newton") o.step = bt::StepRule::newton;
      else if (s == "curvature") o.step = bt::StepRule::curvature;
      else if (s == "lipschitz") o.step = bt::StepRule::lipschitz;
      else if (s == "backtracking") o.step = bt::StepRule::backtracking;
      else throw UsageError("--step must be newton, curvature, lipschitz or backtracking, got '" + s + "'");
    } else if (a == "--extrapolate") o.extrapolate = true;
    else if (a == "--no-extrapolate") o.extrapolate = false;
    else if (a == "--out") out_path = next();
    else if (a == "--factors") factors_prefix = next();
    else if (a == "--json") json = true;
    else throw UsageError("unknown option '" + a + "' (see `bricklab recover --help`)");
  }
  if (method != "cp" && method != "tsvd") throw UsageError("--method must be cp or tsvd, got '" + method + "'");
  if (o.rank <= 0) throw UsageError("--rank must be a positive integer (required)");
  if (out_path.empty()) throw UsageError("--out EST.npy is required");
  if (obs_path.empty() == (indices_path.empty() && levels_path.empty()))
    throw UsageError("give either --obs FILE or --indices FILE --levels FILE");
  if (obs_path.empty() && (indices_path.empty() || levels_path.empty()))
    throw UsageError("--indices and --levels go together");

  std::vector<int64_t> indices;
  std::vector<int32_t> levels;
  size_t order = 0;
  // The files' contents: anything wrong in them is bad data (exit 1), not a bad command line.
  try {
    if (!obs_path.empty() && ends_with(obs_path, ".csv")) {
      read_csv(obs_path, indices, levels, order);
    } else if (!obs_path.empty()) {
      const bricklab::NpyArray arr = bricklab::read_npy_array(obs_path);
      if (arr.shape.size() != 2 || arr.shape[1] < 3)
        throw DataError(obs_path + ": expected an m x (N+1) integer array (indices then level)");
      const std::vector<int64_t> all = arr.as_int64(obs_path);
      order = size_t(arr.shape[1] - 1);
      for (int64_t r = 0; r < arr.shape[0]; ++r) {
        const int64_t* row = all.data() + size_t(r) * (order + 1);
        indices.insert(indices.end(), row, row + order);
        if (row[order] < std::numeric_limits<int32_t>::min() || row[order] > std::numeric_limits<int32_t>::max())
          throw DataError(obs_path + ": level out of range in row " + std::to_string(r));
        levels.push_back(int32_t(row[order]));
      }
    } else {
      const bricklab::NpyArray ia = bricklab::read_npy_array(indices_path);
      const bricklab::NpyArray la = bricklab::read_npy_array(levels_path);
      if (ia.shape.size() != 2) throw DataError(indices_path + ": expected an m x N integer array");
      if (la.shape.size() != 1 || la.shape[0] != ia.shape[0])
        throw DataError(levels_path + ": expected " + std::to_string(ia.shape[0]) + " levels (a 1-D array)");
      indices = ia.as_int64(indices_path);
      for (int64_t l : la.as_int64(levels_path)) {
        if (l < std::numeric_limits<int32_t>::min() || l > std::numeric_limits<int32_t>::max())
          throw DataError(levels_path + ": level out of range");
        levels.push_back(int32_t(l));
      }
      order = size_t(ia.shape[1]);
    }
    if (levels.empty()) throw DataError("no observations in the input");
  } catch (const bricklab::InvalidArgument& e) {  // e.g. a NaN where an index should be
    throw DataError(e.what());
  }

  bt::ObservationView view;
  if (!shape_text.empty()) {
    for (const std::string& s : split(shape_text, shape_text.find('x') != std::string::npos ? 'x' : ','))
      view.shape.push_back(parse_count("--shape", trim(s)));
    if (view.shape.size() != order)
      throw UsageError("--shape has " + std::to_string(view.shape.size()) + " dimensions but the indices have " +
                            std::to_string(order));
  } else {
    view.shape.assign(order, 0);
    for (size_t w = 0; w < levels.size(); ++w)
      for (size_t k = 0; k < order; ++k) view.shape[k] = std::max(view.shape[k], indices[w * order + k] + 1);
  }
  view.indices = indices.data();
  view.count = levels.size();
  view.levels = levels.data();

  const bt::Recovery rec = method == "tsvd" ? bt::recover_tsvd(view, o) : bt::recover_cp(view, o);
  const std::vector<double> dense = bt::recovery_dense(rec);
  bricklab::write_npy(out_path, rec.shape, dense.data());
  std::vector<std::string> written = {out_path};
  if (!factors_prefix.empty()) {
    for (size_t k = 0; k < rec.factors.size(); ++k) {
      std::vector<int64_t> shape;
      if (rec.method == "cp") shape = {rec.shape[k], rec.rank};
      else if (k == 0) shape = {rec.shape[0], rec.rank, rec.shape[2]};
      else shape = {rec.rank, rec.shape[1], rec.shape[2]};
      const std::string p = factors_prefix + std::to_string(k) + ".npy";
      bricklab::write_npy(p, shape, rec.factors[k].data());
      written.push_back(p);
    }
  }
  if (json) {
    nlohmann::json j;
    j["method"] = rec.method;
    j["shape"] = rec.shape;
    j["rank"] = rec.rank;
    j["observations"] = view.count;
    j["iterations"] = rec.iterations;
    j["stop_reason"] = rec.stop_reason;
    j["objective"] = rec.objective;
    j["boundaries"] = rec.boundaries;
    j["setup_seconds"] = rec.setup_seconds;
    j["solve_seconds"] = rec.solve_seconds;
    j["written"] = written;
    std::cout << j.dump(2) << "\n";
  } else {
    std::string shape;
    for (size_t k = 0; k < rec.shape.size(); ++k) shape += (k ? "x" : "") + std::to_string(rec.shape[k]);
    std::string w;
    for (double b : rec.boundaries) w += fmt::format("{}{:.4g}", w.empty() ? "" : ", ", b);
    std::cout << fmt::format("recovered {} tensor {} (rank {}) from {} observations: {} iterations ({}), F {:.6g} -> {:.6g}\n",
                             rec.method, shape, rec.rank, view.count, rec.iterations, rec.stop_reason,
                             rec.objective.front(), rec.objective.back());
    std::cout << fmt::format("boundaries: [{}]\ntime: setup {:.3f} s, solve {:.3f} s\nwrote {}\n", w, rec.setup_seconds,
                             rec.solve_seconds, fmt::format("{}", fmt::join(written, ", ")));
  }
  return 0;
}
