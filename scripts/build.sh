#!/usr/bin/env bash
# Builds bricklab (C++ library, CLI, tests, benchmarks) in build/ and installs the Python package
# into .venv. Assumes scripts/setup.sh has run. Incremental: a second run rebuilds only changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="$(nproc)"

echo "[build] C++: configure + build (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"

echo "[build] Python package: pip install . into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps .
echo "[build] done"
