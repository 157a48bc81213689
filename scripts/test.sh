#!/usr/bin/env bash
# Quick start, step 2: set up, build, and run every test: the C++ suite (Catch2 via ctest) in a
# release build and again under AddressSanitizer + UBSan (including the byte-mutation fuzzer),
# the structure-aware fuzzer against ONNX Runtime (20,000 cases, under both sanitizers), then pytest.
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

echo "[test] C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBRICKLAB_SANITIZE=address,undefined \
  -DBRICKLAB_WITH_CUDA=OFF -DBRICKLAB_BUILD_BENCHMARKS=OFF -DBRICKLAB_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$jobs"

# Valid protobuf with bad contents (dims, attributes, parameter shapes, element types, names,
# wiring, opsets), each case with ONNX Runtime's verdict (and ONNX's reference implementation's
# where the two differ), replayed under both sanitizers: 0 crashes, 0 hangs, 0 disagreements.
fuzz_cases="${BRICKLAB_FUZZ_CASES:-20000}" fuzz_seed="${BRICKLAB_FUZZ_SEED:-1}"
echo "[test] structure-aware fuzzer: $fuzz_cases cases (seed $fuzz_seed) against ONNX Runtime, replayed under ASan + UBSan"
.venv/bin/python tests/python/structural_fuzz.py --cases "$fuzz_cases" --seed "$fuzz_seed" --out build-asan/structural-fuzz-cases.bin
build-asan/tests/bricklab_structural_fuzz build-asan/structural-fuzz-cases.bin

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
