"""The results database under careless and hostile use: a foreign or non-SQLite file is refused
with its bytes unchanged, reading never writes, a read-only database still serves predictions,
and tampered rows are named instead of used."""
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile

import pytest

from conftest import BUNDLED

MODEL = str(BUNDLED / "tiny_cnn.onnx")
QUICK = ["--tolerance", "0.5", "--budget", "0.2"]


def run(cli, *args, user=None):
    cmd = [cli, *map(str, args)]
    if user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]  # nobody
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def files(folder):
    return sorted(os.listdir(folder))


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(cli, tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'ada')")
    con.commit()
    con.close()
    before = digest(db)
    for command in ("predict", "benchmark", "lowerbound"):
        r = run(cli, command, MODEL, "--db", db, *QUICK)
        assert r.returncode == 1, (command, r.stderr)
        assert "not a bricklab results database" in r.stderr and "users" in r.stderr, r.stderr
        assert digest(db) == before and files(tmp_path) == ["app.db"], (command, files(tmp_path))


def test_a_file_that_is_not_sqlite_is_refused_and_left_unchanged(cli, tmp_path):
    db = tmp_path / "notes.txt"
    db.write_text("my notes, not a database\n" * 20)
    before = digest(db)
    for command in ("predict", "benchmark"):
        r = run(cli, command, MODEL, "--db", db, *QUICK)
        assert r.returncode == 1 and "not a" in r.stderr, (command, r.stderr)
        assert digest(db) == before and files(tmp_path) == ["notes.txt"]


def test_reading_never_writes(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    assert run(cli, "benchmark", MODEL, "--db", db, *QUICK).returncode == 0
    state = (digest(db), files(tmp_path), os.stat(db).st_mtime_ns)
    r = run(cli, "predict", MODEL, "--db", db, *QUICK)
    assert r.returncode == 0, r.stderr
    assert (digest(db), files(tmp_path), os.stat(db).st_mtime_ns) == state
    # predict on a missing file says so and creates nothing.
    r = run(cli, "predict", MODEL, "--db", tmp_path / "none.sqlite", *QUICK)
    assert r.returncode == 1 and "no results database" in r.stderr and files(tmp_path) == state[1]


def test_a_read_only_database_serves_predictions(cli, tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file permissions cannot make a database read-only")
    folder = pathlib_folder = tempfile.mkdtemp(prefix="bricklab-ro-")  # outside root's private pytest folder
    try:
        os.chmod(folder, 0o755)
        db = os.path.join(folder, "r.sqlite")
        assert run(cli, "benchmark", MODEL, "--db", db, *QUICK).returncode == 0
        os.chmod(db, 0o444)
        os.chmod(folder, 0o555)
        user = "nobody" if os.geteuid() == 0 else None  # root ignores permissions
        before = digest(db)
        r = run(cli, "predict", MODEL, "--db", db, *QUICK, user=user)
        assert r.returncode == 0 and "predicted" in r.stdout, r.stderr
        # benchmark of what is all stored: nothing to write, so it works too
        r = run(cli, "benchmark", MODEL, "--db", db, *QUICK, user=user)
        assert r.returncode == 0 and "0 measured now" in r.stdout, r.stderr
        # new bricks would need storing: a clear error, not a crash or a silent skip
        r = run(cli, "benchmark", BUNDLED / "squeezenet1_1.onnx", "--db", db, *QUICK, user=user)
        assert r.returncode == 1 and "read-only" in r.stderr, r.stderr
        assert digest(db) == before
    finally:
        os.chmod(pathlib_folder, 0o755)
        shutil.rmtree(pathlib_folder)


@pytest.mark.parametrize("column, value", [("median_ms", -5.0), ("median_ms", 1e308), ("p90_ms", float("nan")),
                                           ("ci_rel", -1.0), ("reps", 0)])
def test_tampered_rows_are_named_not_used(cli, tmp_path, column, value):
    db = tmp_path / "r.sqlite"
    assert run(cli, "benchmark", MODEL, "--db", db, *QUICK).returncode == 0
    con = sqlite3.connect(db)
    key = con.execute("SELECT brick_key FROM results WHERE brick_key NOT LIKE 'runtime%' LIMIT 1").fetchone()[0]
    con.execute(f"UPDATE results SET {column} = ? WHERE brick_key = ?", (value, key))
    con.commit()
    con.close()
    r = run(cli, "predict", MODEL, "--db", db, *QUICK)
    assert r.returncode == 1, r.stdout
    assert column in r.stderr and key[:20] in r.stderr and "predicted" not in r.stdout, r.stderr
