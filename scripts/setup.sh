#!/usr/bin/env bash
# Set up everything deepwatch needs on a fresh machine: a .venv in the repo root, PyTorch (the
# CPU build where no NVIDIA GPU exists, a CUDA build where one does), the project with its test
# extras, and a Chromium for the browser agent (Debian's package; Playwright's own download is
# not used). Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip setuptools wheel

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing a CUDA build of torch"
    $PIP install -q "torch>=2.2"
  elif $PIP download -q --no-deps --no-index -d "$(mktemp -d)" "torch==2.13.0" >/dev/null 2>&1; then
    # A CPU wheel is already on this machine's local wheel path.
    echo "setup: no GPU, installing the local CPU build of torch"
    $PIP install -q "torch==2.13.0"
  else
    echo "setup: no GPU, installing the CPU build of torch from PyTorch's CPU index"
    $PIP install -q "torch==2.13.0" --index-url "${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  fi
fi

$PIP install -q -e ".[test]"

# The browser agent needs Chromium; evidence screenshots need a Korean font, or Hangul renders
# as empty boxes.
need=()
if [ -z "${DEEPWATCH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=ko 2>/dev/null)" ]; then need+=(fonts-nanum); fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]}: install them with your package manager (or set DEEPWATCH_CHROMIUM to a Chromium binary)" >&2
    exit 1
  fi
fi
echo "setup: done"
