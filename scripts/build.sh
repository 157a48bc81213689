#!/usr/bin/env bash
# Builds bricklab (C++ library, CLI, tests, benchmarks) in build/ and installs the Python package
# into .venv. Assumes scripts/setup.sh has run. Incremental: a second run rebuilds only changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="$(nproc)"

# One build tree (build/) for everything: the C++ library, CLI, tests, benchmarks and the Python
# extension. pip then reuses it (scikit-build-core reconfigures build/ with the same options, finds
# nothing to compile and installs the "python" component), so the library is compiled once.
# Typical times on 2 cores: a fresh build ~5 min; the pip step ~20 s.
py="$root/.venv/bin/python"
echo "[build] C++ library, CLI, tests, benchmarks, Python extension: build/ (fresh: ~5 min on 2 cores)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBRICKLAB_BUILD_PYTHON=ON -DPython_EXECUTABLE="$py" >/dev/null
cmake --build build -j "$jobs"

echo "[build] Python package: pip install . into .venv, reusing build/"
"$py" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps \
  --config-settings=build-dir=build --config-settings=cmake.define.BRICKLAB_BUILD_TESTS=ON --config-settings=cmake.define.BRICKLAB_BUILD_BENCHMARKS=ON \
  --config-settings=cmake.define.BRICKLAB_BUILD_EXAMPLES=ON --config-settings=cmake.define.BRICKLAB_BUILD_PYTHON=ON .
echo "[build] done"
