#!/usr/bin/env bash
# effc's CPU backend in WebAssembly (effc-cpu.wasm, SIMD128, 1 thread) against
# onnxruntime-web's wasm backend at 1 thread, in one headless /usr/bin/chromium, on
# the same weights (timm's tf_efficientnet_b0, seeded) and the same input: b0 at
# RES (224), batch 1. See bench/web.mjs for what is timed.
#
#   bench/web.sh [RUNS]        (OUT: work directory, default target/bench-web)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/venvs/torch/bin/python}
OUT=${OUT:-target/bench-web}
RES=${RES:-224}
RUNS=${1:-20}
if [ -z "${EFFC:-}" ]; then
  cargo build --release -p effc-cli
  EFFC=target/release/effc
fi
mkdir -p "$OUT"
"$PY" bench/web_export.py "$OUT" "$RES"
rm -rf "$OUT/site"
"$EFFC" compile b0 --target web --resolution "$RES" --weights "$OUT/b0.safetensors" -o "$OUT/site"
if [ ! -d bench/web/node_modules/onnxruntime-web ]; then
  (cd bench/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
node bench/web/bench.mjs "$OUT" "$RUNS"
