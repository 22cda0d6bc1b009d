#!/usr/bin/env python3
"""effc's CPU backend against the reference executor, onnxruntime and PyTorch eager,
in one run on one machine, on the same weights and input size.

For each model (timm's tf_efficientnet_b0 and tf_efficientnetv2_s, randomly
initialized: timing does not depend on the values), the script saves timm's state
dict as safetensors (effc reads timm names) and exports the same model to ONNX,
then for each batch and thread count times:
  - effc bench --device cpu       (RAYON_NUM_THREADS=threads)
  - effc bench --device reference (RAYON_NUM_THREADS=threads)
  - onnxruntime (CPUExecutionProvider, intra_op_num_threads=threads, all graph
    optimizations)
  - PyTorch eager (torch.set_num_threads(threads), inference_mode)
and prints a table (median latency ms, images/s) and the target ratios: effc/ort
latency at batch 1 (target <= 1) and effc/ort throughput at batch 8 (target >= 1).

Environment: EFFC (path to the effc binary, default target/release/effc), OUT
(directory for the weights, ONNX files and results.json, default target/bench-cpu),
MODELS, BATCHES, THREADS (space-separated), RUNS (timed forwards per cell, default
20), SMOKE=1 (b0 only at batch 1, 1 thread, 3 runs: checks the script).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import timm
import torch
from safetensors.torch import save_file

TIMM = {"b0": "tf_efficientnet_b0", "v2-s": "tf_efficientnetv2_s"}
SMOKE = os.environ.get("SMOKE") == "1"
EFFC = os.environ.get("EFFC", "target/release/effc")
OUT = os.environ.get("OUT", "target/bench-cpu")
MODELS = os.environ.get("MODELS", "b0" if SMOKE else "b0 v2-s").split()
BATCHES = [int(b) for b in os.environ.get("BATCHES", "1" if SMOKE else "1 8").split()]
THREADS = [int(t) for t in os.environ.get("THREADS", "1" if SMOKE else "1 2").split()]
RUNS = int(os.environ.get("RUNS", "3" if SMOKE else "20"))
WARMUP = 2 if SMOKE else 3


def effc_bench(device, model, weights, batch, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [EFFC, "bench", model, "--device", device, "--batch", str(batch),
           "-w", weights, "--runs", str(RUNS), "--warmup", str(WARMUP), "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def median_ms(f, runs):
    for _ in range(WARMUP):
        f()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return float(np.median(t))


def main():
    os.makedirs(OUT, exist_ok=True)
    uptime = open("/proc/loadavg").read().split()[:3]
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(uptime)} at start")
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        m = timm.create_model(TIMM[name], pretrained=False).eval()
        weights = os.path.join(OUT, f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in m.state_dict().items()
                   if not k.endswith("num_batches_tracked")}, weights)
        first = effc_bench("cpu", name, weights, 1, 1)
        res = first["resolution"]
        onnx_path = os.path.join(OUT, f"{name}-{res}.onnx")
        if not os.path.exists(onnx_path):
            torch.onnx.export(m, torch.randn(1, 3, res, res), onnx_path,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
                              dynamo=False)
        for batch in BATCHES:
            x = np.random.default_rng(0).standard_normal((batch, 3, res, res), dtype=np.float32)
            for threads in THREADS:
                cell = {"model": name, "resolution": res, "batch": batch, "threads": threads}
                e = effc_bench("cpu", name, weights, batch, threads)
                cell["effc_cpu_ms"] = e["latency_ms"]["median"]
                cell["effc_cpu_kernels"] = e["kernels"]
                r = effc_bench("reference", name, weights, batch, threads)
                cell["reference_ms"] = r["latency_ms"]["median"]
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
                cell["onnxruntime_ms"] = median_ms(lambda: sess.run(None, {"input": x}), RUNS)
                torch.set_num_threads(threads)
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    cell["torch_ms"] = median_ms(lambda: m(xt), RUNS)
                rows.append(cell)
                print(f"{name:5} {res:4} b{batch:<2} t{threads}  effc cpu {cell['effc_cpu_ms']:8.2f} ms"
                      f"  reference {cell['reference_ms']:8.2f}  onnxruntime {cell['onnxruntime_ms']:8.2f}"
                      f"  torch {cell['torch_ms']:8.2f}", flush=True)
    print()
    print("| model | batch | threads | effc cpu ms (img/s) | reference ms | onnxruntime ms (img/s) | PyTorch eager ms | effc/ort latency |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in rows:
        b = c["batch"]
        print(f"| {c['model']} {c['resolution']}px | {b} | {c['threads']} | {c['effc_cpu_ms']:.2f} ({b / c['effc_cpu_ms'] * 1e3:.1f})"
              f" | {c['reference_ms']:.2f} | {c['onnxruntime_ms']:.2f} ({b / c['onnxruntime_ms'] * 1e3:.1f})"
              f" | {c['torch_ms']:.2f} | {c['effc_cpu_ms'] / c['onnxruntime_ms']:.2f} |")
    uptime = open("/proc/loadavg").read().split()[:3]
    print(f"\nload average {' '.join(uptime)} at the end")
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
