#!/usr/bin/env bash
# Fashion-MNIST from scratch with examples/fashion-mnist.enet: effc train (CPU
# reference executor) and the same network, recipe and seed in timm/PyTorch
# (bench/train_fashion_mnist.py), run at the same time with THREADS threads each
# (default 1: on a 2-core machine each gets a core, so the time-per-epoch ratio
# comes from one window); then effc's trained weights (the EMA's) evaluated by timm.
# Needs dataset-fashion-mnist and a Python with torch, torchvision, timm, safetensors
# (PYTHON, default /work/venvs/torch/bin/python).
# Usage: bench/train_fashion_mnist.sh [EPOCHS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-12}
OUT=${2:-target/bench-train}
PYTHON=${PYTHON:-/work/venvs/torch/bin/python}
THREADS=${THREADS:-1}
EFFC=${EFFC:-target/release/effc}
# The recipe, given to both sides.
RECIPE=(--epochs "$EPOCHS" --batch 64 --lr 0.003 --weight-decay 0.05 --warmup 0.5
    --label-smoothing 0.1 --scale 0.8 --dropout 0.1 --drop-path 0 --ema 0.999 --seed 0)
mkdir -p "$OUT"
[ -n "${EFFC_PREBUILT:-}" ] || cargo build --release -q -p effc-cli
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s)" "$l"; done; }
start=$(date +%s)
( RAYON_NUM_THREADS=$THREADS "$EFFC" train examples/fashion-mnist.enet --data fashion-mnist \
    --optimizer adamw "${RECIPE[@]}" --log "$OUT/effc.jsonl" -o "$OUT/effc.safetensors" 2>&1 \
    | grep --line-buffered -v '^step' | stamp > "$OUT/effc.log"
  echo "$(date +%s) effc: $(( $(date +%s) - start )) s for $EPOCHS epochs (validation included)" >> "$OUT/effc.log" ) &
effc_pid=$!
( "$PYTHON" bench/train_fashion_mnist.py "${RECIPE[@]}" --threads "$THREADS" > "$OUT/timm.log"
  echo "timm: $(( $(date +%s) - start )) s for $EPOCHS epochs (validation and data loading included)" >> "$OUT/timm.log" ) &
timm_pid=$!
wait "$timm_pid" "$effc_pid"
cat "$OUT/effc.log" "$OUT/timm.log"
"$PYTHON" bench/train_fashion_mnist.py --epochs 0 --effc-weights "$OUT/effc.safetensors" | tee "$OUT/effc_in_timm.log"
"$PYTHON" bench/train_fashion_mnist_table.py "$OUT" | tee "$OUT/table.md"
