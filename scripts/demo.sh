#!/usr/bin/env bash
# Quick start, step 1: set up this machine, build, and run the main job on a bundled model
# (inspect ResNet-18 at batch 8: per-layer table with shapes, FLOPs and bytes, and totals).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
./scripts/build.sh
model="${1:-models/bundled/resnet18.onnx}"
echo
echo "== bricklab inspect $model --batch 8 =="
.venv/bin/bricklab inspect "$model" --batch 8
