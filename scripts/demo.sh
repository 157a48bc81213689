#!/usr/bin/env bash
# Quick start, step 1: set up this machine, build, and run the main job on a bundled model:
#   1. inspect it (per-layer shapes, FLOPs, bytes), at batch 8;
#   2. run it on the CPU engine (latency), at batch 8;
#   3. bricks: benchmark its unique layers into a scratch database and predict its latency from
#      them, then measure the whole model the same way (batch 1, 1 thread, so the two compare);
#   4. lower bound: every variant of every layer, the bounds, the advice, and the HTML report.
# Typical time on 2 cores: set-up and build ~8 min on a fresh machine (seconds once built), then
# ~2 min for the demo itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
./scripts/build.sh
echo "[demo] set-up and build took $((SECONDS / 60)) min $((SECONDS % 60)) s"
model="${1:-models/bundled/resnet18.onnx}"
bl=.venv/bin/bricklab
scratch="$(mktemp -d)"
db="$scratch/bricks.sqlite"
quick=(--threads 1 --tolerance 0.05 --budget 2)   # quick settings; the defaults measure more tightly
section() { printf '\n== %s ==\n' "$*"; }

section "1. bricklab inspect $model --batch 8   (first layers, then the totals)"
$bl inspect "$model" --batch 8 | head -n 16
echo "   ..."
$bl inspect "$model" --batch 8 | tail -n 2

section "2. bricklab run $model --batch 8   (CPU engine, random inputs, 2 threads)"
$bl run "$model" --batch 8 --repeat 20 | tail -n 1

section "3. bricks, batch 1, 1 thread   (scratch database $db)"
echo "-- decompose: the model's layers and its unique bricks"
$bl decompose "$model" | tail -n 1
echo "-- benchmark: time each unique brick once"
$bl benchmark "$model" --db "$db" "${quick[@]}"
echo "-- predict: the model's latency from its bricks"
$bl predict "$model" --db "$db" "${quick[@]}" | tail -n 1
echo "-- measured: the whole model, same batch and threads"
$bl run "$model" --threads 1 --repeat 20 | tail -n 1

section "4. bricklab lowerbound $model   (batch 1, 1 thread: every variant of every layer; bounds; advice, applied and measured)"
$bl lowerbound "$model" --db "$db" --threads 1 --tolerance 0.05 --budget 1
$bl report "$model" --db "$db" --threads 1 --tolerance 0.05 --budget 1 -o "$scratch/report.html"
echo
echo "open $scratch/report.html in a browser   (demo done in $((SECONDS / 60)) min $((SECONDS % 60)) s)"
