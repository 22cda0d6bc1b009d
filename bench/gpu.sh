#!/usr/bin/env bash
# effc against PyTorch eager (timm, fp32) on the same NVIDIA GPU, in one run.
#
# Needs: a Rust toolchain, an NVIDIA driver with Vulkan (wgpu's backend there), and a
# Python with torch (CUDA) and timm. Prints each measurement and the ratios the
# performance targets are stated in:
#   b0 batch-1 latency: effc / PyTorch  (target <= 0.5)
#   batch-64 throughput: effc / PyTorch (target >= 1)
# Usage: bench/gpu.sh [RUNS]   (default 50 timed runs after warm-up)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
PY=${PYTHON:-python3}
OUT=${OUT:-target/bench-gpu}
mkdir -p "$OUT"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "warning: nvidia-smi not found"
cargo build --release -p effc-cli >/dev/null
EFFC=target/release/effc

# effc: the Vulkan adapter of the NVIDIA GPU (not llvmpipe).
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
export WGPU_ADAPTER_NAME=${WGPU_ADAPTER_NAME:-nvidia}
for m in b0 v2-s; do
    for b in 1 64; do
        "$EFFC" bench "$m" --batch "$b" --runs "$RUNS" --warmup 10 --json > "$OUT/effc-$m-b$b.json"
    done
done

# PyTorch eager, fp32, the same models (timm's TF ports: same padding and eps as effc's built-ins).
"$PY" - "$RUNS" "$OUT" <<'PYEOF'
import json, sys, time
import torch, timm
runs, out = int(sys.argv[1]), sys.argv[2]
assert torch.cuda.is_available(), "PyTorch has no CUDA device"
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")
for name, timm_name, res in [("b0", "tf_efficientnet_b0", 224), ("v2-s", "tf_efficientnetv2_s", 384)]:
    m = timm.create_model(timm_name, pretrained=False).eval().to(dev)
    for b in (1, 64):
        x = torch.randn(b, 3, res, res, device=dev)
        with torch.no_grad():
            for _ in range(10):
                m(x)
            torch.cuda.synchronize()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                m(x)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        med = times[len(times) // 2]
        json.dump({"model": name, "batch": b, "latency_ms": {"median": med, "min": times[0], "max": times[-1]}, "throughput": b / (med / 1e3), "device": torch.cuda.get_device_name()},
                  open(f"{out}/torch-{name}-b{b}.json", "w"))
PYEOF

"$PY" - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
def load(p): return json.load(open(f"{out}/{p}.json"))
print(f"{'model':<6} {'batch':>5} {'effc ms':>9} {'torch ms':>9} {'effc img/s':>11} {'torch img/s':>12} {'latency ratio':>14} {'throughput ratio':>17}")
for m in ("b0", "v2-s"):
    for b in (1, 64):
        e, t = load(f"effc-{m}-b{b}"), load(f"torch-{m}-b{b}")
        print(f"{m:<6} {b:>5} {e['latency_ms']['median']:>9.3f} {t['latency_ms']['median']:>9.3f} {e['throughput']:>11.1f} {t['throughput']:>12.1f} "
              f"{e['latency_ms']['median'] / t['latency_ms']['median']:>14.3f} {e['throughput'] / t['throughput']:>17.3f}")
e1, t1 = load("effc-b0-b1"), load("torch-b0-b1")
e64, t64 = load("effc-b0-b64"), load("torch-b0-b64")
print()
print(f"b0 batch-1 latency effc/PyTorch: {e1['latency_ms']['median'] / t1['latency_ms']['median']:.3f} (target <= 0.5)")
print(f"b0 batch-64 throughput effc/PyTorch: {e64['throughput'] / t64['throughput']:.3f} (target >= 1)")
print(f"adapter: {e1['adapter']}; GEMM ceiling {e1['roofline']['gemm_gflops']:.0f} GFLOP/s")
PYEOF
