#!/usr/bin/env bash
# effc against PyTorch eager (timm, fp32) on the same NVIDIA GPU, in one run.
#
# Needs: an NVIDIA driver with Vulkan (wgpu's backend there), a Python with torch (CUDA)
# and timm, and either a Rust toolchain or a prebuilt effc (EFFC=path/to/effc, for a
# machine without cargo). Prints each measurement and the ratios the performance
# targets are stated in:
#   b0 batch-1 latency: effc / PyTorch  (target <= 0.5)
#   batch-64 throughput: effc / PyTorch (target >= 1)
#   b0 batch-64 throughput: effc f16 / effc f32 (target >= 1.3)
#
# Usage: bench/gpu.sh [RUNS]   (default 50 timed runs after 10 warm-up runs)
# Environment:
#   EFFC=PATH        use this effc binary instead of building one with cargo
#   PYTHON=PATH      the Python with torch and timm (default python3)
#   OUT=DIR          where the JSON results go (default target/bench-gpu)
#   PRECISIONS="f32 f16"  effc's storage precisions to measure (default both; the
#                    ratios against PyTorch are effc f32's, PyTorch runs fp32)
#   TUNE=1           run `effc tune` for each model first (at batch 64; its cache goes
#                    to $OUT/cache), so that effc runs with tiles measured on this GPU
#   SMOKE=1          check the script itself on a machine without a GPU: PyTorch on
#                    the CPU, effc on whatever adapter wgpu picks, b0 and v2-s at 64x64,
#                    batch 1 and 2. Its numbers mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
PY=${PYTHON:-python3}
OUT=${OUT:-target/bench-gpu}
SMOKE=${SMOKE:-0}
PRECISIONS=${PRECISIONS:-f32 f16}
mkdir -p "$OUT"

if [ "$SMOKE" = 1 ]; then
    BATCHES="1 2"
    WARMUP=1
    RES_B0=64
    RES_V2S=64
    TORCH_DEVICE=cpu
else
    BATCHES="1 64"
    WARMUP=10
    RES_B0=224
    RES_V2S=384
    TORCH_DEVICE=cuda
    # effc: the Vulkan adapter of the NVIDIA GPU (not llvmpipe).
    export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
    export WGPU_ADAPTER_NAME=${WGPU_ADAPTER_NAME:-nvidia}
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    else
        echo "warning: nvidia-smi not found"
    fi
fi

if [ -z "${EFFC:-}" ]; then
    cargo build --release -p effc-cli >/dev/null
    EFFC=target/release/effc
fi

# Tiles: the cost model's, or (TUNE=1) measured here first.
export EFFC_CACHE_DIR="$OUT/cache"
rm -rf "$EFFC_CACHE_DIR"
if [ "${TUNE:-0}" = 1 ]; then
    for p in $PRECISIONS; do
        for m in b0 v2-s; do
            res=$([ "$m" = b0 ] && echo "$RES_B0" || echo "$RES_V2S")
            echo "effc tune $m --batch ${BATCHES##* } --resolution $res --precision $p" >&2
            "$EFFC" tune "$m" --batch "${BATCHES##* }" --resolution "$res" --precision "$p" | tail -2 >&2
        done
    done
fi

for p in $PRECISIONS; do
    for m in b0 v2-s; do
        res=$([ "$m" = b0 ] && echo "$RES_B0" || echo "$RES_V2S")
        for b in $BATCHES; do
            echo "effc bench $m --batch $b --resolution $res --precision $p" >&2
            "$EFFC" bench "$m" --batch "$b" --resolution "$res" --precision "$p" --device gpu \
                --runs "$RUNS" --warmup "$WARMUP" --json > "$OUT/effc-$m-b$b-$p.json"
        done
    done
done

# PyTorch eager, fp32, the same models (timm's TF ports: same padding and eps as effc's
# built-ins) with random weights: the time does not depend on their values.
"$PY" - "$RUNS" "$OUT" "$TORCH_DEVICE" "$WARMUP" "$BATCHES" "$RES_B0" "$RES_V2S" <<'PYEOF'
import json, sys, time
import torch, timm
runs, out, device, warmup = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
batches = [int(b) for b in sys.argv[5].split()]
res = {"b0": int(sys.argv[6]), "v2-s": int(sys.argv[7])}
cuda = device == "cuda"
if cuda:
    assert torch.cuda.is_available(), "PyTorch has no CUDA device"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
sync = torch.cuda.synchronize if cuda else (lambda: None)
name_of_device = torch.cuda.get_device_name() if cuda else "cpu"
dev = torch.device(device)
for name, timm_name in [("b0", "tf_efficientnet_b0"), ("v2-s", "tf_efficientnetv2_s")]:
    m = timm.create_model(timm_name, pretrained=False).eval().to(dev)
    for b in batches:
        x = torch.randn(b, 3, res[name], res[name], device=dev)
        with torch.no_grad():
            for _ in range(warmup):
                m(x)
            sync()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                m(x)
                sync()
                times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        med = times[len(times) // 2]
        with open(f"{out}/torch-{name}-b{b}.json", "w") as f:
            json.dump({"model": name, "batch": b, "resolution": res[name],
                       "latency_ms": {"median": med, "min": times[0], "max": times[-1]},
                       "throughput": b / (med / 1e3), "device": name_of_device}, f)
PYEOF

"$PY" - "$OUT" "$BATCHES" "$PRECISIONS" <<'PYEOF'
import json, sys
out, batches = sys.argv[1], [int(b) for b in sys.argv[2].split()]
precisions = sys.argv[3].split()
def load(p):
    with open(f"{out}/{p}.json") as f:
        return json.load(f)
print(f"{'model':<6} {'res':>4} {'batch':>5} {'effc':>5} {'effc ms':>9} {'torch ms':>9} {'effc img/s':>11} {'torch img/s':>12} {'latency ratio':>14} {'throughput ratio':>17}")
for p in precisions:
    for m in ("b0", "v2-s"):
        for b in batches:
            e, t = load(f"effc-{m}-b{b}-{p}"), load(f"torch-{m}-b{b}")
            assert e["resolution"] == t["resolution"] and e["batch"] == t["batch"] == b, (e, t)
            print(f"{m:<6} {e['resolution']:>4} {b:>5} {p:>5} {e['latency_ms']['median']:>9.3f} {t['latency_ms']['median']:>9.3f} {e['throughput']:>11.1f} {t['throughput']:>12.1f} "
                  f"{e['latency_ms']['median'] / t['latency_ms']['median']:>14.3f} {e['throughput'] / t['throughput']:>17.3f}")
lo, hi = batches[0], batches[-1]
first = precisions[0]
e1, t1 = load(f"effc-b0-b{lo}-{first}"), load(f"torch-b0-b{lo}")
eh, th = load(f"effc-b0-b{hi}-{first}"), load(f"torch-b0-b{hi}")
print()
print(f"b0 batch-{lo} latency effc {first}/PyTorch: {e1['latency_ms']['median'] / t1['latency_ms']['median']:.3f} (target <= 0.5)")
print(f"b0 batch-{hi} throughput effc {first}/PyTorch: {eh['throughput'] / th['throughput']:.3f} (target >= 1)")
if "f16" in precisions and "f32" in precisions:
    h, f = load(f"effc-b0-b{hi}-f16"), load(f"effc-b0-b{hi}-f32")
    print(f"b0 batch-{hi} throughput effc f16/f32: {h['throughput'] / f['throughput']:.3f} (target >= 1.3; effc {h['precision']})")
print(f"effc adapter: {e1['adapter']}; its GEMM ceiling {e1['roofline']['gemm_gflops']:.1f} GFLOP/s")
print(f"effc tiles: {e1['tiles']}")
print(f"PyTorch device: {t1['device']}")
PYEOF

# Training (issue 21): one step of b0 (forward in train mode, backward, RMSpropTF with
# label smoothing 0.1: `effc train`'s default recipe), effc's GPU path against PyTorch
# eager fp32 (timm's tf_efficientnet_b0, bench/train_step.py) on the same GPU. `effc
# bench --train` also times the CPU reference executor on the same batch, alternating
# (slow at 224: TRAIN_RUNS, default 5, steps each, after one warm-up step).
TRAIN_BATCH=$([ "$SMOKE" = 1 ] && echo 2 || echo 64)
TRAIN_RUNS=${TRAIN_RUNS:-5}
echo "effc bench b0 --train --batch $TRAIN_BATCH --resolution $RES_B0" >&2
"$EFFC" bench b0 --train --batch "$TRAIN_BATCH" --resolution "$RES_B0" --device gpu \
    --runs "$TRAIN_RUNS" --warmup 1 --json > "$OUT/effc-train-b0-b$TRAIN_BATCH.json"
"$PY" bench/train_step.py b0 "$RES_B0" "$TRAIN_BATCH" "$TRAIN_RUNS" 3 "$TORCH_DEVICE" \
    > "$OUT/torch-train-b0-b$TRAIN_BATCH.json"
"$PY" - "$OUT" "$TRAIN_BATCH" <<'PYEOF'
import json, sys
out, b = sys.argv[1], sys.argv[2]
e = json.load(open(f"{out}/effc-train-b0-b{b}.json"))
t = json.load(open(f"{out}/torch-train-b0-b{b}.json"))
assert e["resolution"] == t["resolution"] and e["batch"] == t["batch"], (e, t)
print()
print(f"{'train':<6} {'res':>4} {'batch':>5} {'effc ms':>9} {'torch ms':>9} {'cpu ref ms':>11} {'effc img/s':>11} {'torch img/s':>12} {'effc/torch img/s':>17}")
print(f"{'b0':<6} {e['resolution']:>4} {e['batch']:>5} {e['step_ms']['median']:>9.2f} {t['step_ms']['median']:>9.2f} {e['cpu_reference_ms']['median']:>11.1f} "
      f"{e['images_per_s']:>11.1f} {t['images_per_s']:>12.1f} {e['images_per_s'] / t['images_per_s']:>17.3f}")
print(f"b0 batch-{b} training throughput effc/PyTorch: {e['images_per_s'] / t['images_per_s']:.3f} (target >= 1); "
      f"effc GPU / CPU reference step time {e['gpu_over_cpu_time']:.3f}")
print(f"effc training memory {e['memory']['total'] / 2**20:.1f} MiB on {e['adapter']}; PyTorch device: {t['device']}")
PYEOF
