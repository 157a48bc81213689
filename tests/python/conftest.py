"""Shared fixtures for bricklab's Python tests (the package must be pip-installed into the venv)."""
import json
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUNDLED = REPO / "models" / "bundled"
ZOO = REPO / "models" / "zoo"


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def manifest():
    return json.loads((ZOO / "MANIFEST.json").read_text())


@pytest.fixture(scope="session")
def cli():
    exe = shutil.which("bricklab") or str(pathlib.Path(__import__("sys").executable).parent / "bricklab")
    return exe
