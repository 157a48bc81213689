"""The Python API as a new user meets it: submodules, paths, error types, dtypes, reprs, names
that match the CLI, progress on long calls, and a docstring on everything public."""
import importlib
import inspect
import io
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import bricklab

from conftest import BUNDLED

TINY = BUNDLED / "tiny_cnn.onnx"


def test_every_submodule_is_reachable_after_import_bricklab():
    code = ("import bricklab; bricklab.lowerbound.analyze; bricklab.tensor.recover; bricklab.bricks.decompose; "
            "bricklab.soft.profile; print(sorted(m for m in ('lowerbound', 'soft', 'tensor', 'bricks') if m in dir(bricklab)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['bricks', 'lowerbound', 'soft', 'tensor']"
    # Lazily: importing bricklab alone does not import PyTorch (soft) or the report code.
    r = subprocess.run([sys.executable, "-c", "import sys, bricklab; print('torch' in sys.modules, 'bricklab.lowerbound' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        bricklab.nonsense


def test_paths_may_be_pathlike(tmp_path):
    path = pathlib.Path(TINY)
    m = bricklab.load(path)
    assert m.path == str(path)
    assert bricklab.Session(path, threads=1).run  # a path works wherever a model does
    d = bricklab.bricks.decompose(path)
    files = bricklab.bricks.emit(d, tmp_path / "bricks")
    assert files and all(pathlib.Path(f).exists() for f in files)
    db = tmp_path / "r.sqlite"
    bricklab.bricks.benchmark(d, db=db, budget=0.2, tolerance=0.5, progress=False)
    assert bricklab.predict(path, db=db, budget=0.2, tolerance=0.5)["complete"]
    with pytest.raises(TypeError, match="str or os.PathLike, got int"):
        bricklab.load(42)
    with pytest.raises(TypeError, match="str or os.PathLike"):
        bricklab.Session(3.5)


@pytest.mark.parametrize("call", [
    lambda: bricklab.variants(None, "x"), lambda: bricklab.bricks.node_key(None, "x"),
    lambda: bricklab.bricks.subgraph(None, ["x"]), lambda: bricklab.bricks.to_onnx(None),
    lambda: bricklab.bricks.decompose(None), lambda: bricklab.bricks.measure_model(None), lambda: bricklab.Session(None),
    lambda: bricklab.lowerbound.analyze(None),
])
def test_none_where_a_model_belongs_is_a_type_error(call):
    # These dereferenced a null model (a segmentation fault) before.
    with pytest.raises(TypeError):
        call()


def test_the_readme_outputs_are_ignored_by_git():
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["bricks/x.onnx", "bricks.sqlite", "lb.sqlite", "lb.sqlite-wal", "report.html", "r50.html"]
    r = subprocess.run(["git", "check-ignore", *paths], cwd=root, capture_output=True, text=True)
    assert sorted(r.stdout.split()) == sorted(paths)


def test_errors_subclass_the_matching_builtins(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        bricklab.load(tmp_path / "missing.onnx")
    assert isinstance(e.value, bricklab.MissingFileError) and isinstance(e.value, bricklab.FileError)
    assert isinstance(e.value, bricklab.Error) and "missing.onnx" in str(e.value)
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(OSError) as e:
        bricklab.load(tmp_path / "dir.onnx")
    assert isinstance(e.value, bricklab.FileError) and not isinstance(e.value, FileNotFoundError)
    with pytest.raises(ValueError):
        bricklab.load(TINY, batch=0)
    with pytest.raises(ValueError):
        bricklab.bricks.decompose(TINY, granularity="bogus")


def test_dtypes_are_numpy_dtypes():
    m = bricklab.load(TINY)
    v = m.inputs[0]
    assert isinstance(v.dtype, np.dtype) and v.dtype == np.float32 and v.dtype_name == "float32"
    w = m.nodes[0].inputs[1]
    assert w.data is None or w.data.dtype == w.dtype


def test_reprs_say_what_the_object_is():
    m = bricklab.load(TINY)
    s = bricklab.Session(m, threads=1)
    assert re.fullmatch(r"<bricklab\.Session '.*tiny_cnn\.onnx' on the CPU: \d+ steps, 1 thread>", repr(s)), repr(s)
    d = bricklab.bricks.decompose(m)
    assert re.fullmatch(r"<bricklab\.bricks\.Decomposition 1 model, \d+ layer instances, \d+ unique bricks, "
                        r"granularity fused, batch 1>", repr(d)), repr(d)
    for obj in (m, m.nodes[0], m.inputs[0], s, d):
        assert " object at 0x" not in repr(obj)


def test_names_match_the_cli():
    s = bricklab.Session(bricklab.load(TINY), threads=1)
    t = s.time(repeat=3, warmup=1)  # bricklab run --repeat 3 --warmup 1
    assert t["repeats"] == 3 and len(t["samples_ms"]) == 3
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert s.time(repeats=2, warmup=0)["repeats"] == 2
    assert any(issubclass(x.category, DeprecationWarning) and "repeat=" in str(x.message) for x in w)
    # --budget / budget_s: both spellings are the same runner option.
    assert bricklab.bricks.fingerprint(budget=3)["id"] == bricklab.bricks.fingerprint(budget_s=3)["id"]


def test_progress_on_long_calls(tmp_path, monkeypatch):
    d = bricklab.bricks.decompose(TINY)
    seen = []
    bricklab.bricks.benchmark(d, db=tmp_path / "a.sqlite", budget=0.2, tolerance=0.5,
                              progress=lambda done, total, elapsed, what: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] > 0
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
    # progress=True: one line on stderr, updated in place, with counts and elapsed time.
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bricklab.bricks.benchmark(d, db=tmp_path / "b.sqlite", budget=0.2, tolerance=0.5, progress=True)
    text = err.getvalue()
    assert re.search(r"\rbricks \d+/\d+ \[0:\d\d elapsed", text) and text.endswith("\n"), repr(text)
    with pytest.raises(TypeError, match="progress"):
        bricklab.bricks.benchmark(d, db=tmp_path / "c.sqlite", progress="yes")


def _documented(obj) -> bool:
    doc = inspect.getdoc(obj) if not isinstance(obj, property) else obj.__doc__
    if not doc or not doc.strip():
        return False
    lines = doc.strip().splitlines()
    # pybind11 puts the signature first ("name(self: ...) -> T"); the documentation follows it.
    if re.match(r"^\w+\(.*\)( -> .*)?$", lines[0]):
        return bool("\n".join(lines[1:]).strip())
    return True


def _public_api():
    mods = [bricklab] + [importlib.import_module("bricklab." + m) for m in ("bricks", "lowerbound", "tensor", "soft")]
    seen = set()
    for mod in mods:
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or isinstance(obj, (str, int, float)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{mod.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, (staticmethod, classmethod)):
                        value = value.__func__
                    if isinstance(value, property) or callable(value):
                        yield f"{mod.__name__}.{name}.{attr}", value


def test_every_public_function_class_and_method_has_a_docstring():
    api = list(_public_api())
    assert len(api) > 150  # the walk really covers the API
    missing = [name for name, obj in api if not _documented(obj)]
    assert not missing, f"{len(missing)} public names without a docstring: {missing}"
