#!/usr/bin/env bash
# Quick start, step 2: set up, build, and run every test: the C++ suite (Catch2 via ctest) in a
# release build and again under AddressSanitizer (including the mutation fuzzer), then pytest.
# Exits non-zero if anything fails, including pytest collecting no tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="$(nproc)"
./scripts/setup.sh
./scripts/build.sh
echo "[test] set-up and build took $((SECONDS / 60)) min $((SECONDS % 60)) s"

echo "[test] PostgreSQL server on loopback for the bricks work-queue tests"
eval "$(./scripts/pg_test_server.sh start)"
trap './scripts/pg_test_server.sh stop "$BRICKLAB_TEST_PG_DIR"' EXIT

echo "[test] C++ tests (release)"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "[test] C++ tests under AddressSanitizer (build-asan/)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBRICKLAB_SANITIZE=address \
  -DBRICKLAB_WITH_CUDA=OFF -DBRICKLAB_BUILD_BENCHMARKS=OFF -DBRICKLAB_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "[test] Python tests (pytest)"
set +e
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider
rc=$?
set -e
echo "[test] all done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
if [ "$rc" -eq 5 ]; then
  echo "[test] error: pytest collected no tests: the Python test set-up is broken" >&2
  exit 1
fi
exit "$rc"
