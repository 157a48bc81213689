// Latency prediction from stored brick times, and the suite benchmark loop (see predict.hpp).
#include "bricklab/bricks/predict.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <set>

#include "bricklab/core/error.hpp"

namespace bricklab::bricks {


Prediction predict(const ModelBricks& m, Database& db, const std::string& fp, bool accept_noisy) {
  const auto results = db.all(fp);
  const Graph& g = *m.graph;
  Prediction p;
  p.model = m.path;
  p.fingerprint = fp;
  p.noisy_accepted = accept_noisy;
  std::set<std::string> missing, noisy;
  auto note = [&](const std::string& key) {
    auto it = results.find(key);
    if (it != results.end() && it->second.is_noisy()) noisy.insert(key);
  };
  std::vector<double> weights(g.nodes.size(), 0.0);
  std::map<std::string, double> ci_by_key;  // brick key -> summed half-widths of its uses
  for (const auto& use : m.uses) {
    PredictedUse u;
    u.key = use.key;
    u.id = key_id(use.key);
    for (int n : use.nodes) {
      u.nodes.push_back(g.nodes[size_t(n)].name);
      u.label += (u.label.empty() ? "" : "+") + g.nodes[size_t(n)].op;
    }
    auto it = results.find(use.key);
    if (it == results.end()) {
      u.missing = true;
      missing.insert(use.key);
    } else {
      u.ms = it->second.median_ms;
      u.noisy = it->second.is_noisy();
      note(use.key);
      ci_by_key[use.key] += it->second.ci_rel * it->second.median_ms;
    }
    p.steps_ms += u.ms;
    weights[size_t(use.nodes.back())] += u.ms;
    p.uses.push_back(std::move(u));
  }
  // Reorders between units: the measured twin (same reason, type and shape) when a brick did
  // one at its boundary, else priced at the median measured reorder rate (ms per byte).
  std::vector<double> rates;
  for (const auto& [key, r] : results)
    if (key.rfind("reorder|", 0) == 0 && r.bytes > 0) rates.push_back(r.median_ms / r.bytes);
  std::sort(rates.begin(), rates.end());
  const double rate = rates.empty() ? -1 : rates[rates.size() / 2];
  for (const auto& r : m.reorders) {
    double ms = 0;
    auto it = results.find(r.key);
    if (it != results.end()) {
      ms = it->second.median_ms;
      note(r.key);
    } else if (rate >= 0) {
      ms = rate * r.bytes;
      p.reorders_estimated++;
    } else {
      missing.insert(r.key);
    }
    p.reorders_ms += ms;
    if (it != results.end()) ci_by_key[r.key] += it->second.ci_rel * ms;
    const int v = g.find_value(r.value);
    int attach = v >= 0 ? g.values[size_t(v)].producer : -1;
    if (attach < 0 && v >= 0 && !g.values[size_t(v)].consumers.empty()) attach = g.values[size_t(v)].consumers.front();
    if (attach >= 0) weights[size_t(attach)] += ms;
  }
  if (!m.runtime_key.empty()) {
    auto it = results.find(m.runtime_key);
    if (it == results.end()) missing.insert(m.runtime_key);
    else {
      note(m.runtime_key);
      p.overhead_ms = it->second.median_ms;
      ci_by_key[m.runtime_key] += it->second.ci_rel * p.overhead_ms;
    }
  }
  double var = 0;
  for (const auto& [key, h] : ci_by_key) var += h * h;
  p.ci_ms = std::sqrt(var);
  p.missing.assign(missing.begin(), missing.end());
  p.noisy.assign(noisy.begin(), noisy.end());
  p.sum_ms = p.steps_ms + p.reorders_ms + p.overhead_ms;
  p.critical_path_ms = g.critical_path(weights).length + p.overhead_ms;
  return p;
}

std::vector<double> brick_tolerances(const Decomposition& d, const RunnerOptions& o) {
  std::vector<double> tol(d.bricks.size(), o.tolerance);
  if (!o.per_model_tolerance) return tol;
  // Estimated time of a brick: a plain roofline with nominal per-thread rates plus a fixed cost
  // per step. Only the ratios between bricks of a model matter here.
  const double flops_per_s = 20e9 * std::max(1, o.threads), bytes_per_s = 10e9, fixed_s = 5e-6;
  std::vector<double> est(d.bricks.size(), 0.0);
  for (size_t i = 0; i < d.bricks.size(); ++i) {
    const Brick& b = d.bricks[i];
    const Graph& g = *d.models.at(size_t(b.model)).graph;
    double flops = 0, bytes = 0;
    for (int n : b.nodes) {
      flops += g.nodes[size_t(n)].cost.flops;
      bytes += g.nodes[size_t(n)].cost.bytes_read + g.nodes[size_t(n)].cost.bytes_written;
    }
    est[i] = std::max(flops / flops_per_s, bytes / bytes_per_s) + fixed_s;
  }
  std::vector<double> max_share(d.bricks.size(), 0.0);
  for (const auto& m : d.models) {
    std::map<size_t, int> uses;
    double total = 0;
    for (const auto& u : m.uses) {
      const size_t i = d.index.at(u.key);
      uses[i]++;
      total += est[i];
    }
    if (total <= 0) continue;
    for (const auto& [i, count] : uses) max_share[i] = std::max(max_share[i], count * est[i] / total);
  }
  for (size_t i = 0; i < tol.size(); ++i)
    if (max_share[i] > 0)
      tol[i] = std::clamp(o.tolerance / std::sqrt(max_share[i]), o.tolerance, std::max(o.tolerance, o.brick_tolerance_cap));
  return tol;
}

namespace {
struct Job {
  std::string key, label;
  const Brick* brick = nullptr;  // null: runtime brick of `model`
  const ModelBricks* model = nullptr;
  double tolerance = 0;  // relative CI this brick is measured to
};
}  // namespace

BenchmarkSummary benchmark(const Decomposition& d, Database& db, const RunnerOptions& o, const Progress& progress,
                           const std::string& queue_suite, bool remeasure) {
  const auto t0 = std::chrono::steady_clock::now();
  const Fingerprint fp = system_fingerprint(o);
  const std::string fid = fp.id();
  db.register_fingerprint(fp);
  std::vector<Job> jobs;
  std::map<std::string, size_t> by_key;
  const std::vector<double> tolerances = brick_tolerances(d, o);
  for (size_t i = 0; i < d.bricks.size(); ++i) {
    const Brick& b = d.bricks[i];
    by_key[b.key] = jobs.size();
    jobs.push_back({b.key, b.label, &b, nullptr, tolerances[i]});
  }
  for (const auto& m : d.models)
    if (!by_key.count(m.runtime_key)) {
      by_key[m.runtime_key] = jobs.size();
      jobs.push_back({m.runtime_key, "runtime", nullptr, &m, o.tolerance});
    }
  BenchmarkSummary s;
  s.bricks = int(jobs.size());
  const auto stored = db.all(fid);
  // What counts as measured already: stored and clean (noisy rows are measured again), and
  // nothing with `remeasure`.
  std::map<std::string, StoredResult> done_keys;
  for (const auto& [k, r] : stored)
    if (!remeasure && !r.is_noisy()) done_keys.emplace(k, r);
  // Reorder bricks measured already (stored, or by an earlier brick of this run): later bricks
  // leave those reorders out instead of timing them again.
  std::set<std::string> known_reorders;
  for (const auto& [k, r] : done_keys)
    if (k.rfind("reorder|", 0) == 0) known_reorders.insert(k);
  auto run_job = [&](const Job& job) {
    std::vector<StoredResult> rows;
    RunnerOptions o_job = o;
    o_job.tolerance = job.tolerance;
    if (job.brick) {
      std::set<std::string> own;
      const Graph g = timing_graph(d, *job.brick, own);
      BrickTiming t = time_brick(g, o_job, own, known_reorders);
      rows.push_back(to_stored(job.key, fid, t.steps));
      for (const auto& [k, m] : t.reorders) rows.push_back(to_stored(k, fid, m, t.reorder_bytes[k]));
    } else {
      const Graph g = runtime_graph(*job.model->graph);
      rows.push_back(to_stored(job.key, fid, time_whole(g, o_job)));
    }
    for (const auto& r : rows)
      if (r.key.rfind("reorder|", 0) == 0) known_reorders.insert(r.key);
    return rows;
  };
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  int done = 0;
  for (const auto& j : jobs)
    if (done_keys.count(j.key)) ++done;
  s.already = done;
  if (progress) progress(done, s.bricks, elapsed(), "");
  if (!queue_suite.empty()) {
    if (!db.has_queue())
      throw InvalidArgument("work-queue mode needs a PostgreSQL database (--db postgresql://...), not " + db.location());
    if (remeasure) throw InvalidArgument("--remeasure re-measures on one machine; it does not combine with the work queue");
    std::vector<std::string> todo;
    for (const auto& j : jobs)
      if (!done_keys.count(j.key)) todo.push_back(j.key);
    db.enqueue(queue_suite, fid, todo);
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    const std::string worker = std::string(host) + ":" + std::to_string(getpid());
    while (auto key = db.claim(queue_suite, fid, worker, 600)) {
      auto it = by_key.find(*key);
      if (it == by_key.end()) continue;  // queued by a run on another suite version: leave it
      auto rows = run_job(jobs[it->second]);
      db.complete(queue_suite, *key, rows);
      s.measured++;
      s.reorders_stored += int(rows.size()) - 1;
      if (progress) progress(++done, s.bricks, elapsed(), jobs[it->second].label);
    }
  } else {
    for (const auto& j : jobs) {
      if (done_keys.count(j.key)) continue;
      const bool replacing = stored.count(j.key) > 0;
      if (!replacing) {
        if (auto row = db.find(j.key, fid); row && !row->is_noisy()) {  // another process measured it meanwhile
          s.already++;
          ++done;
          continue;
        }
      }
      auto rows = run_job(j);
      for (const auto& r : rows) {
        const bool first = &r == &rows.front();
        // Replace what this run re-measures (the brick; reorders stored noisy or --remeasure);
        // keep a clean row another process stored meanwhile.
        const auto old = stored.find(r.key);
        const bool replace = old != stored.end() && (remeasure || old->second.is_noisy());
        bool added = true;
        if (replace) db.replace(r);
        else added = db.insert(r);
        if (!first) s.reorders_stored += added;
      }
      s.measured++;
      s.remeasured += replacing;
      s.noisy += rows.front().is_noisy();
      if (progress) progress(++done, s.bricks, elapsed(), j.label);
    }
  }
  s.wall_s = elapsed();
  return s;
}

}  // namespace bricklab::bricks
