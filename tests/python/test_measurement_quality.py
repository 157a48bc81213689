"""Measurements that know when they are bad (docs/measurement-quality.md): a brick measured while
another process keeps a core busy is retried, then stored marked noisy; predict refuses to rest on
it unless accept_noisy; a quiet benchmark measures it again and replaces it; --remeasure replaces
every stored result; a schema-1 database (no quality columns) is read as it is and migrated when
written, its rows' quality unknown."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import bricklab
from conftest import BUNDLED

MODEL = str(BUNDLED / "tiny_cnn.onnx")
QUICK = dict(tolerance=0.5, budget_s=0.2)
QUICK_CLI = ["--tolerance", "0.5", "--budget", "0.2"]


def _schedstat_available():
    return os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat")


class Competitor:
    """A busy loop pinned to each of the given CPUs, each in its own process, killed by its process
    id when done (and ended after 120 s in any case)."""

    def __init__(self, cpus):
        self.procs = []
        for cpu in cpus:
            code = ("import os, time\nos.sched_setaffinity(0, {%d})\nt = time.monotonic()\n"
                    "while time.monotonic() - t < 120:\n    pass\n" % cpu)
            self.procs.append(subprocess.Popen([sys.executable, "-c", code]))
        time.sleep(0.3)  # running and pinned

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture
def competitor():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"needs 2 CPUs to keep one busy, this process may use {len(cpus)}")
    if not _schedstat_available():
        pytest.skip("the kernel has no /proc/*/schedstat: run-queue waits cannot be read here")
    # Every CPU this process may use gets a busy loop: then every brick's threads wait, whatever
    # the scheduler does with them (with one busy core, bricks too small to use both threads
    # may not wait at all, and rightly stay clean).
    c = Competitor(cpus)
    yield c
    c.stop()


def test_a_benchmark_under_contention_is_marked_and_a_quiet_one_replaces_it(tmp_path, competitor, cli):
    db = tmp_path / "b.sqlite"
    # Each measurement runs its whole 0.15 s budget (a tolerance it cannot reach): long against the
    # scheduler's time slices, so a busy machine shows in its threads' waits. (A measurement of a
    # few time slices may run uninterrupted beside a busy loop, and then rightly stays clean.)
    runner = dict(tolerance=1e-6, budget_s=0.15, max_reps=100000, threads=2, busy_retries=1, busy_wait_s=0.2)
    with pytest.warns(bricklab.bricks.NoisyMeasurementWarning):
        s = bricklab.bricks.benchmark(MODEL, db=db, **runner)
    assert s["noisy"] >= 1, s
    con = sqlite3.connect(db)
    rows = con.execute("SELECT cpu_wait, attempts FROM results WHERE noisy = 1").fetchall()
    con.close()
    assert len(rows) == s["noisy"] and all(w > 0.05 and a == 2 for w, a in rows), rows
    # predict names them and refuses to conclude from them ...
    with pytest.raises(bricklab.bricks.NoisyBricksError) as e:
        bricklab.bricks.predict(MODEL, db=db, **runner)
    assert len(e.value.noisy) == s["noisy"] and "accept_noisy" in str(e.value)
    r = subprocess.run([cli, "predict", MODEL, "--db", db, "--threads", "2", *QUICK_CLI], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "marked noisy" in r.stderr and "--accept-noisy" in r.stderr, r.stderr
    # ... unless accepted, and then still says so
    with pytest.warns(bricklab.bricks.NoisyMeasurementWarning):
        p = bricklab.bricks.predict(MODEL, db=db, accept_noisy=True, **runner)
    assert p["complete"] and p["noisy_accepted"] and sum(u["noisy"] for u in p["bricks"]) >= 1
    competitor.stop()
    # A quiet benchmark measures the noisy ones again and replaces them (to a tolerance they
    # reach: an unconverged measurement with a wide spread would be marked noisy too).
    time.sleep(1.0)  # the machine settles (seen here: a brick measured at once could still wait 2+ ms)
    runner = dict(QUICK, threads=2, busy_retries=3, busy_wait_s=0.5)
    s2 = bricklab.bricks.benchmark(MODEL, db=db, **runner)
    con = sqlite3.connect(db)
    still = con.execute("SELECT brick_key, cpu_wait, reps, converged, p10_ms, median_ms, p90_ms, attempts FROM results"
                        " WHERE noisy = 1").fetchall()
    con.close()
    assert s2["remeasured"] == s["noisy"] and s2["noisy"] == 0, (s2, still)
    p = bricklab.bricks.predict(MODEL, db=db, **runner)
    assert p["complete"] and not p["noisy"]


def test_remeasure_replaces_every_stored_result(tmp_path, cli):
    db = tmp_path / "b.sqlite"
    r = subprocess.run([cli, "benchmark", MODEL, "--db", db, *QUICK_CLI, "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    con = sqlite3.connect(db)
    before = dict(con.execute("SELECT brick_key, rowid FROM results WHERE brick_key NOT LIKE 'reorder|%'"))
    con.close()
    r = subprocess.run([cli, "benchmark", MODEL, "--db", db, *QUICK_CLI, "--remeasure", "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["measured"] == first["measured"] == again["remeasured"] and again["already_stored"] == 0, again
    con = sqlite3.connect(db)
    after = dict(con.execute("SELECT brick_key, rowid FROM results WHERE brick_key NOT LIKE 'reorder|%'"))
    con.close()
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)  # rows replaced, none added


def test_a_schema_1_database_is_read_then_migrated(tmp_path, cli):
    new = tmp_path / "new.sqlite"
    assert subprocess.run([cli, "benchmark", MODEL, "--db", new, *QUICK_CLI], capture_output=True, timeout=120).returncode == 0
    # The same results as an older bricklab wrote them: schema 1, no quality columns.
    old = tmp_path / "old.sqlite"
    src = sqlite3.connect(new)
    dst = sqlite3.connect(old)
    dst.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE fingerprints (id TEXT PRIMARY KEY, json TEXT NOT NULL);"
        "CREATE TABLE results (brick_key TEXT NOT NULL, fingerprint TEXT NOT NULL, median_ms REAL NOT NULL, p10_ms REAL,"
        " p90_ms REAL, cv REAL, ci_rel REAL, reps INTEGER, converged INTEGER, wall_s REAL, bytes REAL,"
        " created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, UNIQUE (brick_key, fingerprint));"
        "INSERT INTO meta VALUES ('schema_version', '1');")
    dst.executemany("INSERT INTO fingerprints VALUES (?, ?)", src.execute("SELECT id, json FROM fingerprints"))
    cols = "brick_key, fingerprint, median_ms, p10_ms, p90_ms, cv, ci_rel, reps, converged, wall_s, bytes"
    dst.executemany(f"INSERT INTO results ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", src.execute(f"SELECT {cols} FROM results"))
    dst.commit()
    n = dst.execute("SELECT count(*) FROM results").fetchone()[0]
    dst.close()
    src.close()
    # Read as it is (predict opens read-only and writes nothing) ...
    size = old.stat().st_size
    r = subprocess.run([cli, "predict", MODEL, "--db", old, *QUICK_CLI], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "predicted" in r.stdout and "noisy" not in r.stderr, r.stderr
    assert old.stat().st_size == size
    # ... and migrated by a command that stores: every row kept, its quality unknown (-1), not noisy.
    r = subprocess.run([cli, "benchmark", MODEL, "--db", old, *QUICK_CLI], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "0 measured now" in r.stdout, r.stdout + r.stderr
    con = sqlite3.connect(old)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    assert con.execute("SELECT count(*), min(noisy), max(noisy), max(cpu_wait) FROM results").fetchone() == (n, -1, -1, -1)
    con.close()
