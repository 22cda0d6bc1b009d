"""The same network, recipe and seed as `effc train examples/fashion-mnist.enet` in
timm/PyTorch on the CPU (bench/train_fashion_mnist.sh runs both side by side and
passes both the same recipe flags).

Usage: python bench/train_fashion_mnist.py --epochs N [--lr LR --weight-decay WD
       --warmup EPOCHS --scale S --dropout P --drop-path P --ema DECAY --threads T]
       [--effc-weights EFFC_OUTPUT.safetensors]

Builds examples/fashion-mnist.enet's network with timm's EfficientNet builder
(stem 16, head 256, same padding, BN eps 1e-3, SiLU), checks its parameter count
against effc's, and trains it as effc does: batch 64, AdamW (weight decay on
tensors of more than one dimension), cosine per step after a linear warmup from
1e-6, label smoothing 0.1, random-resized crop (scale S-1, bilinear) to 32 and flip;
with --ema, timm's ModelEmaV2 (weights and BN statistics, after every step),
evaluated each epoch. Evaluation resizes to 37 (bicubic) and center-crops 32.
Prints one JSON line per epoch (test top-1, EMA top-1, training seconds).
With --effc-weights, first evaluates effc's trained weights (timm naming) in timm.
"""
import argparse, gzip, json, sys, time
from functools import partial
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.layers import BatchNormAct2d
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.efficientnet import EfficientNet
from timm.loss import LabelSmoothingCrossEntropy
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV2
from torchvision import transforms as T

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, required=True)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--weight-decay", type=float, default=0.05)
ap.add_argument("--warmup", type=float, default=0.5, help="warmup epochs")
ap.add_argument("--label-smoothing", type=float, default=0.1)
ap.add_argument("--scale", type=float, default=0.08, help="random-resized crop's smallest area")
ap.add_argument("--dropout", type=float, default=0.1)
ap.add_argument("--drop-path", type=float, default=0.1)
ap.add_argument("--ema", type=float, default=None, help="EMA decay")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--effc-weights", default=None, help="effc train's output (timm naming) to evaluate")
args = ap.parse_args()

torch.manual_seed(args.seed)
torch.set_num_threads(args.threads)
DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD, BATCH = 0.286, 0.353, args.batch


def idx(name):
    with gzip.open(f"{DIR}/{name}.gz") as f:
        b = f.read()
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * ndim).reshape(dims)


xtr, ytr = idx("train-images-idx3-ubyte"), idx("train-labels-idx1-ubyte")
xte, yte = idx("t10k-images-idx3-ubyte"), idx("t10k-labels-idx1-ubyte")
norm = T.Normalize([MEAN] * 3, [STD] * 3)
train_t = T.Compose([T.RandomResizedCrop(32, scale=(args.scale, 1.0), interpolation=T.InterpolationMode.BILINEAR),
                     T.RandomHorizontalFlip(), T.ToTensor(), norm])
eval_t = T.Compose([T.Resize(37, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(), norm])
rgb = lambda a: Image.fromarray(a).convert("RGB")
test_x = torch.stack([eval_t(rgb(a)) for a in xte])
test_y = torch.from_numpy(yte.astype(np.int64))

arch = [["cn_r1_k3_s1_e1_c16_skip"], ["er_r2_k3_s2_e4_c32"], ["ir_r2_k3_s2_e4_c48_se0.25"], ["ir_r2_k3_s2_e4_c96_se0.25"]]
def build():
    return EfficientNet(block_args=decode_arch_def(arch), num_classes=10, num_features=256, stem_size=16, pad_type="same",
                        act_layer=torch.nn.SiLU, norm_layer=partial(BatchNormAct2d, eps=1e-3), round_chs_fn=round_channels,
                        drop_rate=args.dropout, drop_path_rate=args.drop_path)
model = build()
params = sum(p.numel() for p in model.parameters())


def evaluate(m):
    m.eval()
    with torch.no_grad():
        pred = torch.cat([m(test_x[i:i + 500]).argmax(1) for i in range(0, len(test_x), 500)])
    return float((pred == test_y).float().mean())


if args.effc_weights:
    m = build()
    missing = m.load_state_dict(load_file(args.effc_weights), strict=False)
    assert not missing.unexpected_keys and all(k.endswith("num_batches_tracked") for k in missing.missing_keys), missing
    print(json.dumps({"effc_weights_in_timm": args.effc_weights, "top1": evaluate(m)}), flush=True)
    if args.epochs == 0:
        sys.exit(0)

decay = [p for p in model.parameters() if p.ndim > 1]
no_decay = [p for p in model.parameters() if p.ndim <= 1]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=args.lr)
spe = len(xtr) // BATCH
sched = CosineLRScheduler(opt, t_initial=args.epochs * spe, lr_min=0.0, warmup_t=int(args.warmup * spe),
                          warmup_lr_init=1e-6, t_in_epochs=False)
ema = ModelEmaV2(model, decay=args.ema) if args.ema else None
loss_fn = LabelSmoothingCrossEntropy(args.label_smoothing)
g = torch.Generator().manual_seed(args.seed)
step = 0
print(json.dumps({"timm_params": params, "args": vars(args)}), flush=True)
for epoch in range(args.epochs):
    model.train()
    t0 = time.time()
    order = torch.randperm(len(xtr), generator=g)
    for b in range(spe):
        idxs = order[b * BATCH:(b + 1) * BATCH]
        x = torch.stack([train_t(rgb(xtr[i])) for i in idxs.tolist()])
        y = torch.from_numpy(ytr[idxs.numpy()].astype(np.int64))
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        sched.step_update(step)
    secs = time.time() - t0
    line = {"epoch": epoch, "train_seconds": round(secs, 1), "end": round(time.time(), 1), "top1": evaluate(model),
            "loss": float(loss.detach())}
    if ema is not None:
        line["ema_top1"] = evaluate(ema.module)
    print(json.dumps(line), flush=True)
