// The PostgreSQL results database and work queue (libpq; every statement, DDL included, goes
// through PQprepare / PQexecPrepared with parameters, never string-built SQL with values).
// Claims use FOR UPDATE SKIP LOCKED, so concurrent workers never get the same brick, and a
// lease, so a brick claimed by a worker that died is claimed again after the lease expires.
#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>
#include <set>

#include "bricklab/bricks/database.hpp"
#include "bricklab/core/error.hpp"

namespace bricklab::bricks {

namespace {

// The URL without its password, for messages.
std::string redact(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

// libpq messages span lines ("...refused\n\tIs the server running..."): one line for the CLI.
std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool space = c == '\n' || c == '\t' || c == '\r' || c == ' ';
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  PGresult* get() const { return r_; }
  int rows() const { return PQntuples(r_); }
  std::string text(int row, int col) const { return PQgetvalue(r_, row, col); }
  double real(int row, int col) const { return std::atof(PQgetvalue(r_, row, col)); }

 private:
  PGresult* r_;
};

class PostgresDatabase : public Database {
 public:
  explicit PostgresDatabase(const std::string& url) : url_(url), shown_(redact(url)) {
    conn_ = PQconnectdb(url.c_str());
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      std::string msg = one_line(conn_ ? PQerrorMessage(conn_) : "out of memory");
      if (conn_) PQfinish(conn_);
      conn_ = nullptr;
      throw Error({shown_, "", ""}, "cannot connect to the PostgreSQL results database: " + msg);
    }
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    exec("begin", "BEGIN");
    try {
      exec("lock", "SELECT pg_advisory_xact_lock(7270411)");  // serialises concurrent schema creation
      exec("meta", "CREATE TABLE IF NOT EXISTS bricklab_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
      exec("fps", "CREATE TABLE IF NOT EXISTS bricklab_fingerprints (id TEXT PRIMARY KEY, json TEXT NOT NULL)");
      exec("results",
           "CREATE TABLE IF NOT EXISTS bricklab_results (brick_key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
           " median_ms DOUBLE PRECISION NOT NULL, p10_ms DOUBLE PRECISION, p90_ms DOUBLE PRECISION, cv DOUBLE PRECISION,"
           " ci_rel DOUBLE PRECISION, reps INTEGER, converged BOOLEAN, wall_s DOUBLE PRECISION, bytes DOUBLE PRECISION,"
           " created_at TIMESTAMPTZ NOT NULL DEFAULT now(), UNIQUE (brick_key, fingerprint))");
      // Schema 2's quality columns; rows of schema 1 get "unknown" (-1).
      for (const char* c : {"cpu_wait DOUBLE PRECISION NOT NULL DEFAULT -1", "cpu_pressure DOUBLE PRECISION NOT NULL DEFAULT -1", "steal DOUBLE PRECISION NOT NULL DEFAULT -1",
                            "others DOUBLE PRECISION NOT NULL DEFAULT -1", "attempts INTEGER NOT NULL DEFAULT 1",
                            "noisy INTEGER NOT NULL DEFAULT -1"})
        exec(std::string("quality_") + c, std::string("ALTER TABLE bricklab_results ADD COLUMN IF NOT EXISTS ") + c);
      exec("queue",
           "CREATE TABLE IF NOT EXISTS bricklab_queue (suite TEXT NOT NULL, fingerprint TEXT NOT NULL, brick_key TEXT NOT NULL,"
           " state TEXT NOT NULL DEFAULT 'todo', worker TEXT, leased_until TIMESTAMPTZ, claims INTEGER NOT NULL DEFAULT 0,"
           " PRIMARY KEY (suite, fingerprint, brick_key))");
      exec("version", "INSERT INTO bricklab_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT DO NOTHING",
           {std::to_string(kSchemaVersion)});
      exec("migrate", "UPDATE bricklab_meta SET value = $1 WHERE key = 'schema_version' AND value = '1'", {std::to_string(kSchemaVersion)});
      exec("commit", "COMMIT");
    } catch (...) {
      PQexec(conn_, "ROLLBACK");
      PQfinish(conn_);
      conn_ = nullptr;
      throw;
    }
    const int v = schema_version();
    if (v != kSchemaVersion) {
      PQfinish(conn_);
      conn_ = nullptr;
      throw UnsupportedError({shown_, "", ""}, "results database has schema version " + std::to_string(v) +
                                                   "; this bricklab reads version " + std::to_string(kSchemaVersion));
    }
  }
  ~PostgresDatabase() override {
    if (conn_) PQfinish(conn_);
  }

  std::string location() const override { return shown_; }
  bool has_queue() const override { return true; }

  int schema_version() override {
    Result r = exec("get_version", "SELECT value FROM bricklab_meta WHERE key = 'schema_version'");
    return r.rows() ? std::atoi(r.text(0, 0).c_str()) : 0;
  }

  void register_fingerprint(const Fingerprint& fp) override {
    exec("put_fp", "INSERT INTO bricklab_fingerprints (id, json) VALUES ($1, $2) ON CONFLICT DO NOTHING", {fp.id(), fp.json()});
  }

  std::optional<StoredResult> find(const std::string& key, const std::string& fingerprint) override {
    Result r = exec("find", std::string("SELECT ") + kColumns + " FROM bricklab_results WHERE brick_key = $1 AND fingerprint = $2",
                    {key, fingerprint});
    if (!r.rows()) return std::nullopt;
    StoredResult s = row(r, 0);
    check_stored(s, location());
    return s;
  }

  std::map<std::string, StoredResult> all(const std::string& fingerprint) override {
    Result r = exec("all", std::string("SELECT ") + kColumns + " FROM bricklab_results WHERE fingerprint = $1", {fingerprint});
    std::map<std::string, StoredResult> out;
    for (int i = 0; i < r.rows(); ++i) {
      StoredResult s = row(r, i);
      check_stored(s, location());
      out[s.key] = s;
    }
    return out;
  }

  bool insert(const StoredResult& s) override {
    Result r = exec("insert",
                    std::string("INSERT INTO bricklab_results (") + kColumns +
                        ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) ON CONFLICT DO NOTHING",
                    params(s));
    return std::atoi(PQcmdTuples(r.get())) > 0;
  }

  void replace(const StoredResult& s) override {
    exec("replace",
         std::string("INSERT INTO bricklab_results (") + kColumns +
             ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) ON CONFLICT (brick_key, fingerprint) DO UPDATE SET"
             " median_ms = EXCLUDED.median_ms, p10_ms = EXCLUDED.p10_ms, p90_ms = EXCLUDED.p90_ms, cv = EXCLUDED.cv,"
             " ci_rel = EXCLUDED.ci_rel, reps = EXCLUDED.reps, converged = EXCLUDED.converged, wall_s = EXCLUDED.wall_s,"
             " bytes = EXCLUDED.bytes, cpu_wait = EXCLUDED.cpu_wait, cpu_pressure = EXCLUDED.cpu_pressure, steal = EXCLUDED.steal, others = EXCLUDED.others,"
             " attempts = EXCLUDED.attempts, noisy = EXCLUDED.noisy, created_at = now()",
         params(s));
  }

  void enqueue(const std::string& suite, const std::string& fp, const std::vector<std::string>& keys) override {
    exec("begin", "BEGIN");
    try {
      for (const auto& k : keys)
        exec("enqueue",
             "INSERT INTO bricklab_queue (suite, fingerprint, brick_key) SELECT $1, $2, $3 WHERE NOT EXISTS"
             " (SELECT 1 FROM bricklab_results WHERE brick_key = $3 AND fingerprint = $2) ON CONFLICT DO NOTHING",
             {suite, fp, k});
      exec("commit", "COMMIT");
    } catch (...) {
      PQexec(conn_, "ROLLBACK");
      throw;
    }
  }

  std::optional<std::string> claim(const std::string& suite, const std::string& fp, const std::string& worker, int lease_s) override {
    Result r = exec("claim",
                    "UPDATE bricklab_queue q SET state = 'leased', worker = $3, claims = q.claims + 1,"
                    " leased_until = now() + make_interval(secs => $4::int)"
                    " WHERE (q.suite, q.fingerprint, q.brick_key) = (SELECT suite, fingerprint, brick_key FROM bricklab_queue"
                    "  WHERE suite = $1 AND fingerprint = $2 AND (state = 'todo' OR (state = 'leased' AND leased_until < now()))"
                    "  ORDER BY brick_key LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    " RETURNING q.brick_key",
                    {suite, fp, worker, std::to_string(lease_s)});
    if (!r.rows()) return std::nullopt;
    return r.text(0, 0);
  }

  void complete(const std::string& suite, const std::string& key, const std::vector<StoredResult>& results) override {
    exec("begin", "BEGIN");
    try {
      for (const auto& s : results) insert(s);
      const std::string fp = results.empty() ? std::string() : results.front().fingerprint;
      exec("done", "UPDATE bricklab_queue SET state = 'done', leased_until = NULL WHERE suite = $1 AND fingerprint = $2 AND brick_key = $3",
           {suite, fp, key});
      exec("commit", "COMMIT");
    } catch (...) {
      PQexec(conn_, "ROLLBACK");
      throw;
    }
  }

  int pending(const std::string& suite, const std::string& fp) override {
    Result r = exec("pending", "SELECT count(*) FROM bricklab_queue WHERE suite = $1 AND fingerprint = $2 AND state <> 'done'",
                    {suite, fp});
    return std::atoi(r.text(0, 0).c_str());
  }

 private:
  static constexpr const char* kColumns =
      "brick_key, fingerprint, median_ms, p10_ms, p90_ms, cv, ci_rel, reps, converged, wall_s, bytes, "
      "cpu_wait, cpu_pressure, steal, others, attempts, noisy";
  std::string url_, shown_;
  PGconn* conn_ = nullptr;
  std::set<std::string> prepared_;

  static std::vector<std::string> params(const StoredResult& s) {
    return {s.key, s.fingerprint, num(s.median_ms), num(s.p10_ms), num(s.p90_ms), num(s.cv), num(s.ci_rel),
            std::to_string(s.reps), s.converged ? "true" : "false", num(s.wall_s), num(s.bytes),
            num(s.cpu_wait), num(s.cpu_pressure), num(s.steal), num(s.others), std::to_string(s.attempts), std::to_string(s.noisy)};
  }

  static StoredResult row(const Result& r, int i) {
    StoredResult s;
    s.key = r.text(i, 0);
    s.fingerprint = r.text(i, 1);
    s.median_ms = r.real(i, 2);
    s.p10_ms = r.real(i, 3);
    s.p90_ms = r.real(i, 4);
    s.cv = r.real(i, 5);
    s.ci_rel = r.real(i, 6);
    s.reps = std::atoi(r.text(i, 7).c_str());
    s.converged = r.text(i, 8) == "t";
    s.wall_s = r.real(i, 9);
    s.bytes = r.real(i, 10);
    s.cpu_wait = r.real(i, 11);
    s.cpu_pressure = r.real(i, 12);
    s.steal = r.real(i, 13);
    s.others = r.real(i, 14);
    s.attempts = std::atoi(r.text(i, 15).c_str());
    s.noisy = std::atoi(r.text(i, 16).c_str());
    return s;
  }

  // Prepares `sql` once under `name`, then executes it with text parameters.
  Result exec(const std::string& name, const std::string& sql, const std::vector<std::string>& values = {}) {
    if (!prepared_.count(name)) {
      Result p(PQprepare(conn_, name.c_str(), sql.c_str(), int(values.size()), nullptr));
      if (PQresultStatus(p.get()) != PGRES_COMMAND_OK) fail(name, p.get());
      prepared_.insert(name);
    }
    std::vector<const char*> ptrs;
    for (const auto& v : values) ptrs.push_back(v.c_str());
    Result r(PQexecPrepared(conn_, name.c_str(), int(ptrs.size()), ptrs.data(), nullptr, nullptr, 0));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail(name, r.get());
    return r;
  }

  [[noreturn]] void fail(const std::string& what, PGresult* r) {
    std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
    if (msg.empty()) msg = PQerrorMessage(conn_);
    msg = one_line(msg);
    throw Error({shown_, "", ""}, "PostgreSQL statement '" + what + "' failed: " + msg);
  }
};

}  // namespace

std::unique_ptr<Database> open_postgres(const std::string& url) { return std::make_unique<PostgresDatabase>(url); }

}  // namespace bricklab::bricks
