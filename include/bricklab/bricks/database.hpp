// The results database: SQLite (default, a file in the user's cache directory) with a
// versioned schema, WAL while writers are open (the last one to close returns the file to
// rollback mode, so readers need no side files) and a busy timeout so several processes can
// benchmark at once; each
// result is committed in its own transaction (a killed run keeps everything it committed) and
// (brick key, fingerprint) is unique, so nothing is stored twice.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bricklab/bricks/runner.hpp"

namespace bricklab::bricks {

struct StoredResult {
  std::string key, fingerprint;
  double median_ms = 0, p10_ms = 0, p90_ms = 0, cv = 0, ci_rel = 0, wall_s = 0, bytes = 0;
  int reps = 0;
  bool converged = false;
  // Quality (schema 2; docs/measurement-quality.md): the machine's load during the measurement
  // (-1: unknown) and the verdict. noisy: 1 noisy, 0 clean, -1 unknown (a row stored before
  // schema 2, migrated). Noisy rows are not used for conclusions unless accepted explicitly.
  double cpu_wait = -1, cpu_pressure = -1, steal = -1, others = -1;
  int attempts = 1;
  int noisy = 0;
  bool is_noisy() const { return noisy == 1; }
};

class Database {
 public:
  virtual ~Database() = default;
  virtual std::string location() const = 0;
  virtual int schema_version() = 0;
  virtual void register_fingerprint(const Fingerprint& fp) = 0;
  virtual std::optional<StoredResult> find(const std::string& key, const std::string& fingerprint) = 0;
  virtual std::map<std::string, StoredResult> all(const std::string& fingerprint) = 0;
  // Stores a result unless (key, fingerprint) is already there; true when inserted.
  virtual bool insert(const StoredResult& r) = 0;
  // Stores a result, replacing the one of (key, fingerprint) if there is one (--remeasure).
  virtual void replace(const StoredResult& r) = 0;

  // Work queue (PostgreSQL): several machines on one suite claim disjoint bricks. A claim is a
  // lease; a worker that dies leaves it to expire and another worker takes the brick.
  virtual bool has_queue() const { return false; }
  // Adds the suite's keys not yet queued (idempotent).
  virtual void enqueue(const std::string& suite, const std::string& fingerprint, const std::vector<std::string>& keys) {
    (void)suite, (void)fingerprint, (void)keys;
  }
  // Claims one unfinished, unleased brick of the suite; nullopt when none is left to claim.
  virtual std::optional<std::string> claim(const std::string& suite, const std::string& fingerprint, const std::string& worker,
                                           int lease_s) {
    (void)suite, (void)fingerprint, (void)worker, (void)lease_s;
    return std::nullopt;
  }
  // Stores the results of a claimed brick and marks it done, in one transaction.
  virtual void complete(const std::string& suite, const std::string& key, const std::vector<StoredResult>& results) {
    (void)suite, (void)key;
    for (const auto& r : results) insert(r);
  }
  // Bricks of the suite not done yet (queued or leased).
  virtual int pending(const std::string& suite, const std::string& fingerprint) {
    (void)suite, (void)fingerprint;
    return 0;
  }
};

// A measurement as a database row (`bytes`: the data a reorder or stream moved, else 0).
StoredResult to_stored(const std::string& key, const std::string& fingerprint, const Measurement& m, double bytes = 0);

// Current schema version written by this library. Version 1 (no quality columns) is migrated
// when opened for writing (its rows' quality is unknown), and read as it is when read-only.
constexpr int kSchemaVersion = 2;

// The default database path: $BRICKLAB_DB, else $XDG_CACHE_HOME/bricklab/bricks.sqlite,
// else ~/.cache/bricklab/bricks.sqlite.
std::string default_db_path();
// Opens a database: a file path for SQLite, or a postgresql:// URL. Errors name the location.
// `create` (the commands that store results): the file is created when missing and results may
// be written; a file that is read-only is opened read-only (reading works, storing a new result
// is an error saying so). Otherwise (predict) it is opened read-only and must exist. Either way
// nothing is written before the file is known to be a bricklab database: a foreign SQLite file
// (other tables) or a file that is not SQLite is refused with its bytes unchanged.
std::unique_ptr<Database> open_database(const std::string& location, bool create = true);
// Checks a row read back from a database (finite, non-negative, at most 1e9 ms, p10 <= p90,
// reps >= 1, quality fields in range): a tampered or corrupt row is an Error naming the brick, its fingerprint, the
// column and the value, never a number in a prediction.
void check_stored(const StoredResult& r, const std::string& location);
// PostgreSQL (libpq, prepared statements only); defined in postgres.cpp.
std::unique_ptr<Database> open_postgres(const std::string& url);

}  // namespace bricklab::bricks
