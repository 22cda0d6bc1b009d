#!/usr/bin/env bash
# EfficientNet-Lite0 on Fashion-MNIST: fine-tuned from its ImageNet weights
# (tests/fixtures/lite0/efficientnet-lite0.safetensors, a new 10-class classifier)
# against the same model, budget, recipe and seed from scratch. Both are `effc train`
# on the CPU reference executor; each ends with top-1 on the 10k test images.
# Usage: bench/finetune_lite0.sh [STEPS] [OUT_DIR]   (RES: resolution, default 64;
# THREADS: RAYON_NUM_THREADS, default 2; the two runs go one after the other)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-500}
OUT=${2:-target/bench-finetune}
RES=${RES:-64}
THREADS=${THREADS:-2}
EFFC=${EFFC:-target/release/effc}
WEIGHTS=tests/fixtures/lite0/efficientnet-lite0.safetensors
# The budget and recipe, the same for both runs.
RECIPE=(--data fashion-mnist --classes 10 --resolution "$RES" --steps "$STEPS" --batch 32
    --optimizer adamw --lr 0.001 --weight-decay 0.05 --warmup 0.02 --label-smoothing 0.1
    --scale 0.8 --seed 0)
mkdir -p "$OUT"
[ -n "${EFFC_PREBUILT:-}" ] || cargo build --release -q -p effc-cli
for run in finetuned scratch; do
    from=()
    [ "$run" = finetuned ] && from=(--from "$WEIGHTS")
    start=$(date +%s)
    RAYON_NUM_THREADS=$THREADS "$EFFC" train lite0 "${from[@]}" "${RECIPE[@]}" \
        --log "$OUT/$run.jsonl" -o "$OUT/$run.safetensors" 2>&1 | grep -v '^step' | tee "$OUT/$run.log"
    echo "$run: $(( $(date +%s) - start )) s for $STEPS steps (validation included)" | tee -a "$OUT/$run.log"
done
grep -h 'validation' "$OUT/finetuned.log" "$OUT/scratch.log"
