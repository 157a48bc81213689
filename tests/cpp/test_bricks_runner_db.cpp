// Bricks: the runner's stopping rule and confidence interval, the SQLite results database
// (versioned schema, WAL, no duplicates, several processes at once, bad files), and PostgreSQL
// when BRICKLAB_TEST_PG_URL names a server (scripts/test.sh starts one).
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "bricklab/bricks/database.hpp"
#include "bricklab/bricks/runner.hpp"
#include "bricklab/core/error.hpp"
#include "model_builder.hpp"

using namespace bricklab;
namespace bb = bricklab::bricks;

namespace {
double binomial_coverage(int n, int j, int k) {
  // P(x_(j) <= median <= x_(k)) for a continuous distribution = P(j <= B < k), B ~ Bin(n, 1/2).
  double p = 0;
  for (int i = j; i < k; ++i) p += std::exp(std::lgamma(n + 1) - std::lgamma(i + 1) - std::lgamma(n - i + 1) - n * std::log(2.0));
  return p;
}

bb::StoredResult result(const std::string& key, const std::string& fp, double ms) {
  bb::StoredResult r;
  r.key = key;
  r.fingerprint = fp;
  r.median_ms = ms;
  r.reps = 10;
  r.converged = true;
  return r;
}
}  // namespace

TEST_CASE("median CI from order statistics covers the median with >= 95% probability", "[bricks]") {
  for (int n : {10, 20, 50, 100, 333}) {
    std::vector<double> sorted(static_cast<size_t>(n), 0.0);
    for (int i = 0; i < n; ++i) sorted[size_t(i)] = i + 1;  // value == rank
    double lo = 0, hi = 0;
    bb::median_ci(sorted, lo, hi);
    CHECK(lo <= hi);
    CHECK(lo <= (n + 1) / 2.0);
    CHECK(hi >= (n + 1) / 2.0);
    CHECK(binomial_coverage(n, int(lo), int(hi)) >= 0.95);
    if (n >= 50) CHECK(binomial_coverage(n, int(lo), int(hi)) < 0.99);  // and not needlessly wide
  }
}

TEST_CASE("runner stops when the CI is tight, and at max_reps when it never is", "[bricks]") {
  bb::RunnerOptions o;
  o.warmup = 2;
  o.min_reps = 7;
  o.max_reps = 40;
  o.budget_s = 1e9;
  o.tolerance = 0.02;
  int calls = 0;
  auto constant = bb::measure([&] { ++calls; return 1.0; }, o);
  CHECK(constant.converged);
  CHECK(constant.reps == 7);
  CHECK(calls == 9);  // warm-up included
  CHECK(constant.median_ms == 1.0);
  CHECK(constant.cv == 0.0);
  int i = 0;
  auto noisy = bb::measure([&] { return (i++ % 2) ? 1.0 : 2.0; }, o);
  CHECK_FALSE(noisy.converged);
  CHECK(noisy.reps == 40);
  CHECK(noisy.p10_ms == 1.0);
  CHECK(noisy.p90_ms == 2.0);
  CHECK(noisy.ci_rel > 0.02);
  int flushes = 0;
  bb::measure([] { return 1.0; }, o, [&] { ++flushes; });
  CHECK(flushes == 9);
  o.tolerance = 0;
  CHECK_THROWS_AS(bb::measure([] { return 1.0; }, o), InvalidArgument);
}

TEST_CASE("fingerprint names the machine and the settings", "[bricks]") {
  bb::RunnerOptions o;
  o.threads = 1;
  auto f1 = bb::system_fingerprint(o);
  CHECK(f1.cores >= 1);
  CHECK(f1.threads == 1);
  CHECK(f1.json().find("\"onednn\"") != std::string::npos);
  o.threads = 2;
  CHECK(bb::system_fingerprint(o).id() != f1.id());
  o.threads = 1;
  o.cold_weights = true;
  CHECK(bb::system_fingerprint(o).id() != f1.id());
  o.cold_weights = false;
  CHECK(f1.json().find("\"evict_weights\":true") != std::string::npos);  // the default
  o.evict_weights = false;
  CHECK(bb::system_fingerprint(o).id() != f1.id());
  o.evict_weights = true;
  // Output eviction is off by default; when on, its threshold (-1: a core's private cache) is
  // part of the settings.
  CHECK(f1.json().find("evict_outputs") == std::string::npos);
  const size_t l2 = bb::private_cache_bytes();
  CHECK(l2 >= 64 * 1024);
  o.evict_outputs_bytes = -1;
  const auto f2 = bb::system_fingerprint(o);
  CHECK(f2.json().find("\"evict_outputs\":" + std::to_string(l2)) != std::string::npos);
  CHECK(f2.id() != f1.id());
  o.evict_outputs_bytes = int64_t(l2);
  CHECK(bb::system_fingerprint(o).id() == f2.id());
  o.evict_outputs_bytes = int64_t(l2) * 2;
  CHECK(bb::system_fingerprint(o).id() != f2.id());
  o.cold_weights = true;  // caches flushed whole: no separate output eviction
  CHECK(bb::system_fingerprint(o).json().find("evict_outputs") == std::string::npos);
}

namespace {
std::string journal_mode(const std::string& path) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, nullptr);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const std::string mode = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(raw);
  return mode;
}
}  // namespace

TEST_CASE("SQLite results database: schema, WAL, no duplicates, reopen", "[bricks]") {
  const auto dir = testutil::temp_dir("bricks_db");
  const std::string path = (dir / "sub" / "r.sqlite").string();
  {
    auto db = bb::open_database(path, true);
    CHECK(db->schema_version() == bb::kSchemaVersion);
    CHECK(db->insert(result("k1", "fp", 1.5)));
    CHECK_FALSE(db->insert(result("k1", "fp", 9.0)));  // (key, fingerprint) is unique: first result kept
    CHECK(db->insert(result("k1", "other", 2.0)));
    CHECK(db->find("k1", "fp")->median_ms == 1.5);
    CHECK_FALSE(db->find("k2", "fp"));
    CHECK(db->all("fp").size() == 1);
    CHECK(journal_mode(path) == "wal");  // while a writer is open
  }
  // The last writer closed: back to rollback mode, so a read-only reader needs no side files.
  CHECK(journal_mode(path) == "delete");
  auto db = bb::open_database(path, false);
  CHECK(db->all("other").at("k1").median_ms == 2.0);
  CHECK_THROWS_WITH(db->insert(result("k2", "fp", 1.0)), Catch::Contains("read-only"));
}

TEST_CASE("SQLite results database: several processes inserting at once lose and duplicate nothing", "[bricks]") {
  const auto dir = testutil::temp_dir("bricks_db_mp");
  const std::string path = (dir / "r.sqlite").string();
  bb::open_database(path, true);
  const int workers = 4, keys = 150;
  std::vector<pid_t> pids;
  for (int w = 0; w < workers; ++w) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      try {
        auto db = bb::open_database(path, true);
        // Overlapping key ranges: every key is written by two workers.
        for (int k = 0; k < keys; ++k)
          if ((k + w) % 2 == 0) db->insert(result("key" + std::to_string(k), "fp", double(w)));
          else if ((k + w + 1) % 4 == 0) db->insert(result("key" + std::to_string(k), "fp", double(w)));
      } catch (...) {
        rc = 1;
      }
      _exit(rc);
    }
    pids.push_back(pid);
  }
  for (pid_t p : pids) {
    int status = 0;
    waitpid(p, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  auto db = bb::open_database(path, false);
  CHECK(db->all("fp").size() == size_t(keys));
}

TEST_CASE("results database: bad locations give clear errors and keep the data", "[bricks]") {
  const auto dir = testutil::temp_dir("bricks_db_bad");
  const std::string missing = (dir / "none.sqlite").string();
  try {
    bb::open_database(missing, false);
    FAIL("opened a missing database");
  } catch (const FileError& e) {
    CHECK(std::string(e.what()).find(missing) != std::string::npos);
  }
  const std::string junk = (dir / "junk.sqlite").string();
  const std::string content(4096, 'x');
  std::ofstream(junk) << content;
  try {
    bb::open_database(junk, true);
    FAIL("opened a corrupt database");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(junk) != std::string::npos);
  }
  std::ifstream in(junk);
  std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(back == content);  // untouched
  try {
    bb::open_database("mysql://host/db");
    FAIL("accepted an unknown URL scheme");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("mysql://host/db") != std::string::npos);
  }
  try {
    bb::open_database("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2");
    FAIL("connected to a closed port");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("cannot connect") != std::string::npos);
    CHECK(msg.find("secret") == std::string::npos);  // password redacted
  }
}

TEST_CASE("PostgreSQL results database and work queue", "[bricks][postgres]") {
  const char* url = std::getenv("BRICKLAB_TEST_PG_URL");
  if (!url || !*url) {
    WARN("BRICKLAB_TEST_PG_URL is not set: PostgreSQL tests skipped (scripts/test.sh starts a server)");
    return;
  }
  auto db = bb::open_database(url);
  CHECK(db->schema_version() == bb::kSchemaVersion);
  const std::string fp = "cpp-test-" + std::to_string(getpid());
  CHECK(db->insert(result("a", fp, 1.0)));
  CHECK_FALSE(db->insert(result("a", fp, 2.0)));
  CHECK(db->find("a", fp)->median_ms == 1.0);
  const std::string suite = "suite-" + fp;
  db->enqueue(suite, fp, {"a", "b", "c"});  // "a" is done already: not queued
  CHECK(db->pending(suite, fp) == 2);
  auto other = bb::open_database(url);
  auto c1 = db->claim(suite, fp, "w1", 600);
  auto c2 = other->claim(suite, fp, "w2", 600);
  REQUIRE(c1);
  REQUIRE(c2);
  CHECK(*c1 != *c2);
  CHECK_FALSE(db->claim(suite, fp, "w1", 600));  // both leased
  other->complete(suite, *c2, {result(*c2, fp, 3.0)});
  CHECK(db->pending(suite, fp) == 1);
  CHECK_FALSE(other->claim(suite, fp, "w3", 600));  // the other one is still leased by w1
  // A lease that expired (its worker died) is claimed again.
  const std::string suite2 = suite + "-expiry";
  db->enqueue(suite2, fp, {"z"});
  auto dead = db->claim(suite2, fp, "dead-worker", 0);
  REQUIRE(dead);
  usleep(20000);
  auto again = other->claim(suite2, fp, "w4", 600);
  REQUIRE(again);
  CHECK(*again == *dead);
}

TEST_CASE("machine load: the threads' run-queue wait, PSI and steal between two readings", "[bricks][quality]") {
  using bricklab::LoadReading;
  const std::string psi0 = "some avg10=1.00 avg60=0.00 avg300=0.00 total=1000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
  const std::string psi1 = "some avg10=30.00 avg60=0.00 avg300=0.00 total=2000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
  const std::string stat0 = "cpu  100 0 100 1000 0 0 0 10 0 0\ncpu0 1 2 3\nprocs_running 3\n";
  const std::string stat1 = "cpu  200 0 200 1200 0 0 0 60 0 0\ncpu0 1 2 3\nprocs_running 1\n";
  const LoadReading a = bricklab::parse_load_reading(psi0, stat0, {"5 1000000 1\n", "5 0 1\n"}, 10.0);
  CHECK(a.wait_ns == 1000000);
  CHECK(a.psi_some_us == 1000000);
  CHECK(a.psi_some_avg10 == Approx(0.01));
  CHECK(a.steal_ticks == 10);
  CHECK(a.procs_running == 3);
  // 1 s later, 2 threads: 0.4 s of waiting in all = 20% of their time; 50 of 450 ticks stolen.
  const LoadReading b = bricklab::parse_load_reading(psi1, stat1, {"9 301000000 4\n", "9 100000000 2\n"}, 11.0);
  auto l = bricklab::load_between(a, b, 2, 2);
  CHECK(l.cpu_wait == Approx(0.2));
  CHECK(l.cpu_pressure == Approx(0.30));  // under 2.5 s: PSI's 10-second average
  CHECK(l.steal == Approx(50.0 / 450));
  CHECK(l.others == Approx(0.0));
  CHECK(l.busy);
  CHECK_THAT(l.why, Catch::Matchers::Contains("waited 20.0%"));
  // Quiet: no wait. A short wake-up wait (under 2 ms in all) is not contention either.
  const LoadReading c = bricklab::parse_load_reading(psi0, stat0, {"9 1500000 4\n"}, 10.001);
  CHECK_FALSE(bricklab::load_between(a, c, 1, 2).busy);
  // No schedstat, no PSI: other runnable tasks wanting the cores decide.
  const LoadReading d0 = bricklab::parse_load_reading("", "cpu  1 0 0 0 0 0 0 0\nprocs_running 4\n", {}, 0);
  const LoadReading d1 = bricklab::parse_load_reading("", "cpu  1 0 0 0 0 0 0 0\nprocs_running 4\n", {}, 1);
  l = bricklab::load_between(d0, d1, 2, 2);
  CHECK(l.cpu_wait == -1);
  CHECK(l.cpu_pressure == -1);
  CHECK(l.busy);
  CHECK_THAT(l.why, Catch::Matchers::Contains("other runnable"));
}
