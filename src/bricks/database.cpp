// The SQLite results database (see database.hpp). Every statement is prepared with bound
// parameters; each insert is its own transaction.
#include "bricklab/bricks/database.hpp"

#include <sqlite3.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "bricklab/core/error.hpp"

namespace bricklab::bricks {

StoredResult to_stored(const std::string& key, const std::string& fingerprint, const Measurement& m, double bytes) {
  StoredResult r;
  r.key = key;
  r.fingerprint = fingerprint;
  r.median_ms = m.median_ms;
  r.p10_ms = m.p10_ms;
  r.p90_ms = m.p90_ms;
  r.cv = m.cv;
  r.ci_rel = m.ci_rel;
  r.reps = m.reps;
  r.converged = m.converged;
  r.wall_s = m.wall_s;
  r.bytes = bytes;
  r.cpu_wait = m.load.cpu_wait;
  r.cpu_pressure = m.load.cpu_pressure;
  r.steal = m.load.steal;
  r.others = m.load.others;
  r.attempts = m.attempts;
  r.noisy = m.noisy ? 1 : 0;
  return r;
}

void check_stored(const StoredResult& r, const std::string& location) {
  auto bad = [&](const char* column, double v, const char* rule) {
    throw Error({location, "", ""}, "the stored result of brick '" + r.key + "' (fingerprint " + r.fingerprint + ") has " +
                                        column + " = " + std::to_string(v) + ", " + rule +
                                        "; the row is corrupt or was edited: delete it, or benchmark into a fresh database");
  };
  constexpr double kMaxMs = 1e9;
  for (auto [column, v] : {std::pair<const char*, double>{"median_ms", r.median_ms}, {"p10_ms", r.p10_ms}, {"p90_ms", r.p90_ms}})
    if (!std::isfinite(v) || v < 0 || v > kMaxMs) bad(column, v, "not a time (it must be finite, >= 0 and <= 1e9 ms)");
  if (r.p10_ms > r.p90_ms * (1 + 1e-9) + 1e-12) bad("p10_ms", r.p10_ms, "above p90_ms");
  if (!std::isfinite(r.ci_rel) || r.ci_rel < 0) bad("ci_rel", r.ci_rel, "not a relative interval (finite, >= 0)");
  if (!std::isfinite(r.cv) || r.cv < 0) bad("cv", r.cv, "not a coefficient of variation (finite, >= 0)");
  if (r.reps < 1) bad("reps", r.reps, "not a repetition count (>= 1)");
  for (auto [column, v] : {std::pair<const char*, double>{"cpu_wait", r.cpu_wait}, {"cpu_pressure", r.cpu_pressure}, {"steal", r.steal}})
    if (!std::isfinite(v) || (v != -1 && (v < 0 || v > 1))) bad(column, v, "not a fraction (0..1, or -1 for unknown)");
  if (!std::isfinite(r.others) || r.others < -1 || r.others > 1e6) bad("others", r.others, "not a task count (or -1 for unknown)");
  if (r.attempts < 1 || r.attempts > 1000) bad("attempts", r.attempts, "not an attempt count (1..1000)");
  if (r.noisy < -1 || r.noisy > 1) bad("noisy", r.noisy, "not a verdict (1 noisy, 0 clean, -1 unknown)");
}

std::string default_db_path() {
  if (const char* p = std::getenv("BRICKLAB_DB"); p && *p) return p;
  std::filesystem::path base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = x;
  else if (const char* h = std::getenv("HOME"); h && *h) base = std::filesystem::path(h) / ".cache";
  else base = std::filesystem::temp_directory_path();
  return (base / "bricklab" / "bricks.sqlite").string();
}

namespace {

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql, const std::string& where) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), int(sql.size()), &stmt_, nullptr) != SQLITE_OK)
      throw Error(where + ": " + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.c_str(), int(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Statement& bind(int i, int v) {
    sqlite3_bind_int(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW / SQLITE_DONE; throws on errors.
  int step(const std::string& where) {
    const int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw Error(where + ": " + sqlite3_errmsg(db_));
    return rc;
  }
  double real(int c) const { return sqlite3_column_double(stmt_, c); }
  int integer(int c) const { return sqlite3_column_int(stmt_, c); }
  std::string text(int c) const {
    const auto* p = sqlite3_column_text(stmt_, c);
    return p ? reinterpret_cast<const char*>(p) : "";
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

const char* kResultColumns = "brick_key, fingerprint, median_ms, p10_ms, p90_ms, cv, ci_rel, reps, converged, wall_s, bytes, "
                             "cpu_wait, cpu_pressure, steal, others, attempts, noisy";
// Schema 1 lacks the quality columns: read as unknown.
const char* kResultColumnsV1 = "brick_key, fingerprint, median_ms, p10_ms, p90_ms, cv, ci_rel, reps, converged, wall_s, bytes, "
                               "-1, -1, -1, -1, 1, -1";
// What schema 2 added to schema 1's results table.
const char* kQualityColumns[] = {"cpu_wait REAL NOT NULL DEFAULT -1", "cpu_pressure REAL NOT NULL DEFAULT -1", "steal REAL NOT NULL DEFAULT -1",
                                 "others REAL NOT NULL DEFAULT -1", "attempts INTEGER NOT NULL DEFAULT 1",
                                 "noisy INTEGER NOT NULL DEFAULT -1"};

class SqliteDatabase : public Database {
 public:
  SqliteDatabase(const std::string& path, bool create) : path_(path) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    if (!create && !exists)
      throw FileError({path, "", ""}, "no results database here (run `bricklab benchmark ... --db " + path + "` first)");
    if (exists && std::filesystem::is_directory(path, ec))
      throw FileError({path, "", ""}, "is a directory, not a results database");
    // Read-only when nothing is stored, or when the file cannot be written (results are still read).
    read_only_ = !create || (exists && ::access(path.c_str(), W_OK) != 0);
    if (create && !exists) {
      const auto parent = std::filesystem::path(path).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    }
    const int flags = (read_only_ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      throw FileError({path, "", ""}, "cannot open the results database: " + msg);
    }
    try {
      sqlite3_busy_timeout(db_, 60000);
      // What is in the file, before anything is written to it.
      std::vector<std::string> tables;
      {
        Statement s(db_, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", where());
        while (s.step(where()) == SQLITE_ROW) tables.push_back(s.text(0));
      }
      const bool ours = std::find(tables.begin(), tables.end(), "meta") != tables.end() &&
                        std::find(tables.begin(), tables.end(), "results") != tables.end();
      if (!tables.empty() && !ours) {
        std::string list;
        for (size_t i = 0; i < tables.size() && i < 5; ++i) list += (i ? ", " : "") + tables[i];
        if (tables.size() > 5) list += ", ...";
        throw UnsupportedError({path, "", ""}, "not a bricklab results database (it holds other tables: " + list +
                                                   "); it was left unchanged. Use another file for --db");
      }
      if (tables.empty() && read_only_)
        throw UnsupportedError({path, "", ""}, exists && std::filesystem::file_size(path, ec) > 0
                                                   ? "not a bricklab results database (an SQLite file without its tables)"
                                                   : "an empty file, not a results database");
      if (!read_only_) {
        exec("PRAGMA journal_mode=WAL");
        exec("PRAGMA synchronous=NORMAL");
        exec("BEGIN IMMEDIATE");
        exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
        exec("CREATE TABLE IF NOT EXISTS fingerprints (id TEXT PRIMARY KEY, json TEXT NOT NULL)");
        std::string quality;
        for (const char* c : kQualityColumns) quality += std::string(", ") + c;
        exec("CREATE TABLE IF NOT EXISTS results (brick_key TEXT NOT NULL, fingerprint TEXT NOT NULL, median_ms REAL NOT NULL,"
             " p10_ms REAL, p90_ms REAL, cv REAL, ci_rel REAL, reps INTEGER, converged INTEGER, wall_s REAL, bytes REAL,"
             " created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP" + quality + ", UNIQUE (brick_key, fingerprint))");
        {
          Statement s(db_, "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", where());
          s.bind(1, std::to_string(kSchemaVersion)).step(where());
        }
        // Schema 1 -> 2: the quality columns, its rows' quality unknown (-1). In the same
        // transaction: a failure leaves the file as it was.
        if (schema_version() == 1) {
          for (const char* c : kQualityColumns) exec(std::string("ALTER TABLE results ADD COLUMN ") + c);
          exec("UPDATE meta SET value = '2' WHERE key = 'schema_version'");
        }
        exec("COMMIT");
      }
    } catch (const UnsupportedError&) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw;
    } catch (const Error& e) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw Error({path, "", ""}, std::string("not a usable bricklab results database: ") + e.problem());
    }
    const int v = schema_version();
    columns_ = v == 1 ? kResultColumnsV1 : kResultColumns;
    if (v != kSchemaVersion && !(v == 1 && read_only_)) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw UnsupportedError({path, "", ""}, "results database has schema version " + std::to_string(v) +
                                                 "; this bricklab reads versions 1 and " + std::to_string(kSchemaVersion));
    }
  }
  ~SqliteDatabase() override {
    if (!db_) return;
    // The last writer to close leaves the file in rollback-journal mode, so that a later reader
    // (predict, report) on a read-only copy or folder needs no -wal/-shm files and writes
    // nothing. With other connections open this fails at once (no wait), and WAL stays.
    if (!read_only_) {
      sqlite3_busy_timeout(db_, 0);
      sqlite3_exec(db_, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr);
    }
    sqlite3_close(db_);
  }

  std::string location() const override { return path_; }

  int schema_version() override {
    Statement s(db_, "SELECT value FROM meta WHERE key = 'schema_version'", where());
    if (s.step(where()) != SQLITE_ROW) return 0;
    return std::atoi(s.text(0).c_str());
  }

  void register_fingerprint(const Fingerprint& fp) override {
    if (read_only_) {  // fine when it is there already: nothing new would be stored
      Statement q(db_, "SELECT 1 FROM fingerprints WHERE id = ?", where());
      q.bind(1, fp.id());
      if (q.step(where()) == SQLITE_ROW) return;
      refuse_write();
    }
    Statement s(db_, "INSERT OR IGNORE INTO fingerprints (id, json) VALUES (?, ?)", where());
    s.bind(1, fp.id()).bind(2, fp.json()).step(where());
  }

  std::optional<StoredResult> find(const std::string& key, const std::string& fingerprint) override {
    Statement s(db_, std::string("SELECT ") + columns_ + " FROM results WHERE brick_key = ? AND fingerprint = ?", where());
    s.bind(1, key).bind(2, fingerprint);
    if (s.step(where()) != SQLITE_ROW) return std::nullopt;
    return checked(row(s));
  }

  std::map<std::string, StoredResult> all(const std::string& fingerprint) override {
    Statement s(db_, std::string("SELECT ") + columns_ + " FROM results WHERE fingerprint = ?", where());
    s.bind(1, fingerprint);
    std::map<std::string, StoredResult> out;
    while (s.step(where()) == SQLITE_ROW) {
      StoredResult r = checked(row(s));
      out[r.key] = r;
    }
    return out;
  }

  bool insert(const StoredResult& r) override { return write(r, "INSERT OR IGNORE"); }
  void replace(const StoredResult& r) override { write(r, "INSERT OR REPLACE"); }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  bool read_only_ = false;
  const char* columns_ = kResultColumns;

  bool write(const StoredResult& r, const char* verb) {
    if (read_only_) refuse_write();
    Statement s(db_, std::string(verb) + " INTO results (" + kResultColumns + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", where());
    s.bind(1, r.key).bind(2, r.fingerprint).bind(3, r.median_ms).bind(4, r.p10_ms).bind(5, r.p90_ms).bind(6, r.cv);
    s.bind(7, r.ci_rel).bind(8, r.reps).bind(9, r.converged ? 1 : 0).bind(10, r.wall_s).bind(11, r.bytes);
    s.bind(12, r.cpu_wait).bind(13, r.cpu_pressure).bind(14, r.steal).bind(15, r.others).bind(16, r.attempts).bind(17, r.noisy);
    s.step(where());
    return sqlite3_changes(db_) > 0;
  }

  std::string where() const { return path_; }
  StoredResult checked(StoredResult r) const {
    check_stored(r, path_);
    return r;
  }
  [[noreturn]] void refuse_write() const {
    throw FileError({path_, "", ""}, "the results database is read-only here, and new results would have to be stored "
                                     "(benchmark into a writable copy, or give another --db)");
  }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      throw Error(msg);
    }
  }
  static StoredResult row(const Statement& s) {
    StoredResult r;
    r.key = s.text(0);
    r.fingerprint = s.text(1);
    r.median_ms = s.real(2);
    r.p10_ms = s.real(3);
    r.p90_ms = s.real(4);
    r.cv = s.real(5);
    r.ci_rel = s.real(6);
    r.reps = s.integer(7);
    r.converged = s.integer(8) != 0;
    r.wall_s = s.real(9);
    r.bytes = s.real(10);
    r.cpu_wait = s.real(11);
    r.cpu_pressure = s.real(12);
    r.steal = s.real(13);
    r.others = s.real(14);
    r.attempts = s.integer(15);
    r.noisy = s.integer(16);
    return r;
  }
};

}  // namespace

std::unique_ptr<Database> open_database(const std::string& location, bool create) {
  if (location.empty()) throw InvalidArgument("empty database location");
  if (location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0)
    return open_postgres(location);
  if (location.find("://") != std::string::npos)
    throw Error({location, "", ""}, "unknown database URL scheme (use a file path or postgresql://...)");
  return std::make_unique<SqliteDatabase>(location, create);
}

}  // namespace bricklab::bricks
