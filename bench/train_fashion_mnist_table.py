"""Per-epoch table of a bench/train_fashion_mnist.sh run: top-1 (and the EMA's) of
effc and timm, and the time per epoch of each, run side by side.

Usage: python bench/train_fashion_mnist_table.py OUT_DIR

effc's training seconds are the sum of 64 / images-per-second over the epoch's steps
(effc.jsonl); its wall seconds are the time between its epoch lines (effc.log,
training and both validations). timm's training seconds are its own; its wall
seconds the time between the ends of its epochs' training (so also both
validations). Ratios are effc / timm: below 1, effc is faster.
"""
import json, re, sys

d = sys.argv[1]
effc, start = {}, None
for line in open(f"{d}/effc.log"):
    t, rest = line.split(" ", 1)
    start = int(t) if start is None else start
    m = re.match(r"epoch (\d+): validation (\(EMA\) )?top-1 ([\d.]+)%", rest)
    if m:
        e = effc.setdefault(int(m.group(1)), {})
        e["ema" if m.group(2) else "top1"], e["t"] = float(m.group(3)), int(t)
train = {}
for line in open(f"{d}/effc.jsonl"):
    s = json.loads(line)
    if "images_per_s" in s:
        train[s["epoch"]] = train.get(s["epoch"], 0.0) + 64 / s["images_per_s"]
timm = [json.loads(l) for l in open(f"{d}/timm.log") if l.startswith('{"epoch"')]
print("| epoch | effc top-1 | effc EMA | timm top-1 | timm EMA | effc train s | timm train s | ratio | effc wall s | timm wall s | ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
prev, sums = start, [0.0, 0.0, 0.0, 0.0]
for k in sorted(effc):
    e, x = effc[k], timm[k] if k < len(timm) else None
    wall, prev = e["t"] - prev, e["t"]
    row = f"| {k} | {e.get('top1', 0):.2f} | {e.get('ema', 0):.2f}"
    if x is None:
        print(row + f" | | | {train.get(k, 0):.0f} | | | {wall} | | |")
        continue
    twall = x["end"] - timm[k - 1]["end"] if k > 0 else None
    row += f" | {100 * x['top1']:.2f} | {100 * x.get('ema_top1', 0):.2f} | {train.get(k, 0):.0f} | {x['train_seconds']:.0f}"
    row += f" | {train.get(k, 0) / x['train_seconds']:.2f} | {wall}"
    row += " | | |" if twall is None else f" | {twall:.0f} | {wall / twall:.2f} |"
    print(row)
    sums = [sums[0] + train.get(k, 0), sums[1] + x["train_seconds"], sums[2], sums[3]]
print(f"\ntraining seconds, all epochs: effc {sums[0]:.0f}, timm {sums[1]:.0f}, ratio {sums[0] / max(sums[1], 1e-9):.2f}")
