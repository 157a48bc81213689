#!/usr/bin/env bash
# Quick start, step 1: set up this machine, build, and run the main job on a bundled model:
# inspect it (per-layer shapes, FLOPs, bytes), run it on the CPU engine (latency), then
# benchmark its unique layers ("bricks") into a scratch database and predict its latency from them,
# then its lower bounds and optimisation advice (every variant of every layer) and the HTML report.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
./scripts/build.sh
model="${1:-models/bundled/resnet18.onnx}"
bl=.venv/bin/bricklab
db="$(mktemp -d)/bricks.sqlite"
echo
echo "== bricklab inspect $model --batch 8 =="
$bl inspect "$model" --batch 8
echo
echo "== bricklab run $model --batch 8 (CPU engine, random inputs) =="
$bl run "$model" --batch 8 --repeat 20
echo
echo "== bricklab decompose / benchmark / predict (bricks, scratch database $db) =="
$bl decompose "$model" | tail -n 3
$bl benchmark "$model" --db "$db" --threads 1 --tolerance 0.05 --budget 2
$bl predict "$model" --db "$db" --threads 1 --tolerance 0.05 --budget 2 | tail -n 1
$bl run "$model" --threads 1 --repeat 20 | tail -n 1
echo
echo "== bricklab lowerbound $model (every variant of every layer; bounds, advice applied and measured) =="
$bl lowerbound "$model" --db "$db" --threads 1 --tolerance 0.05 --budget 1
$bl report "$model" --db "$db" --threads 1 --tolerance 0.05 --budget 1 -o "$(dirname "$db")/report.html"
echo "open $(dirname "$db")/report.html in a browser"
