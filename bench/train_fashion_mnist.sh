#!/usr/bin/env bash
# Fashion-MNIST from scratch with examples/fashion-mnist.enet: effc train (CPU
# reference executor) and the same network, recipe and seed in timm/PyTorch
# (bench/train_fashion_mnist.py), one after the other on this machine; then effc's
# trained weights evaluated by timm. Needs dataset-fashion-mnist and a Python with
# torch, torchvision, timm, safetensors (PYTHON, default /work/venvs/torch/bin/python).
# Usage: bench/train_fashion_mnist.sh [EPOCHS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-8}
OUT=${2:-target/bench-train}
PYTHON=${PYTHON:-/work/venvs/torch/bin/python}
mkdir -p "$OUT"
cargo build --release -q -p effc-cli
start=$(date +%s)
target/release/effc train examples/fashion-mnist.enet --data fashion-mnist --epochs "$EPOCHS" \
    --batch 64 --optimizer adamw --lr 0.002 --weight-decay 0.05 --warmup 0.5 --seed 0 \
    -o "$OUT/effc.safetensors" 2>&1 | grep -v '^step' | tee "$OUT/effc.log"
echo "effc: $(( $(date +%s) - start )) s for $EPOCHS epochs (validation included)" | tee -a "$OUT/effc.log"
start=$(date +%s)
"$PYTHON" bench/train_fashion_mnist.py "$EPOCHS" "$OUT/effc.safetensors" | tee "$OUT/timm.log"
echo "timm: $(( $(date +%s) - start )) s for $EPOCHS epochs (validation and data loading included)" | tee -a "$OUT/timm.log"
