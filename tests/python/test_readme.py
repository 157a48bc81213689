"""The README's Python snippets run exactly as written (each in a fresh interpreter, in a scratch
folder that sees the repository's models/), so the first thing a user copies works."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def snippets():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_snippets():
    assert len(snippets()) >= 4


@pytest.mark.parametrize("index", range(len(snippets())))
def test_readme_snippet_runs_as_written(index, tmp_path):
    code = snippets()[index]
    (tmp_path / "models").symlink_to(ROOT / "models")
    env = dict(os.environ, BRICKLAB_DB=str(tmp_path / "default.sqlite"))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"README snippet {index + 1} failed:\n{code}\n--- stderr ---\n{r.stderr[-3000:]}"
