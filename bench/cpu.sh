#!/usr/bin/env bash
# effc's CPU backend vs the reference executor, onnxruntime and PyTorch eager, side
# by side in one run (see bench/cpu.py for what it measures and its variables).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/venvs/torch/bin/python}
if [ -z "${EFFC:-}" ]; then
  cargo build --release -p effc-cli
  export EFFC=target/release/effc
fi
exec "$PY" bench/cpu.py "$@"
