#!/usr/bin/env bash
# Installs everything bricklab needs on a fresh Debian 12 machine: the Debian packages
# (C++ dependencies, PostgreSQL, Debian's CPU PyTorch) and a project venv at .venv with the
# pinned Python packages of requirements.txt. Idempotent: a second run installs nothing new.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev libdnnl-dev ocl-icd-opencl-dev libonnx-dev libprotobuf-dev protobuf-compiler
  pybind11-dev catch2 libfmt-dev nlohmann-json3-dev
  libsqlite3-dev libpq-dev postgresql
  python3 python3-dev python3-venv python3-pip python3-numpy python3-torch python3-torchvision
  dataset-fashion-mnist
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "[setup] Debian packages: all present"
fi

# The venv must come from Debian's interpreter, which is the one python3-torch is built for.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import sys; sys.exit(0 if sys.base_prefix == '/usr' else 1)" 2>/dev/null; then
  echo "[setup] creating .venv (Debian python, --system-site-packages)"
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.requirements.sha
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing pinned Python packages (requirements.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
else
  echo "[setup] Python packages: up to date"
fi
# Flower (soft-training): its pinned dependencies are in requirements.txt; flwr itself without them.
.venv/bin/python -c "import flwr" 2>/dev/null \
  || .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-flwr.txt
.venv/bin/python -c "import torch, torchvision, onnx, onnxruntime, numpy; assert numpy.__version__.startswith('1.'), numpy.__version__" \
  || { echo "[setup] error: the venv cannot import torch/onnx/onnxruntime with numpy 1.x" >&2; exit 1; }
echo "[setup] done"
