"""PyTorch eager fp32 training step of a timm EfficientNet, timed as `effc bench
MODEL --train` times effc's: forward in train mode, softmax cross-entropy with label
smoothing 0.1, backward, timm's RMSpropTF (lr 0.016 per 256 images, weight decay 1e-5
with timm's mask), on one random batch; median, min and max of RUNS steps after
WARMUP, each synchronized. Writes JSON to stdout.

Usage: train_step.py MODEL RES BATCH RUNS WARMUP DEVICE
  MODEL: b0 (timm's tf_efficientnet_b0, the TF port: effc's built-in b0's padding and
  eps), v2-s (tf_efficientnetv2_s); DEVICE: cuda or cpu.
"""
import json
import sys
import time

import timm
import timm.optim
import torch

TIMM = {"b0": "tf_efficientnet_b0", "v2-s": "tf_efficientnetv2_s", "v2-b0": "tf_efficientnetv2_b0"}


def main():
    name, res, batch, runs, warmup, device = sys.argv[1:7]
    res, batch, runs, warmup = int(res), int(batch), int(runs), int(warmup)
    cuda = device == "cuda"
    if cuda:
        assert torch.cuda.is_available(), "PyTorch has no CUDA device"
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    dev = torch.device(device)
    # effc's built-ins: dropout 0.2 and drop path 0.2 (b0), as timm's recipes train them.
    m = timm.create_model(TIMM[name], pretrained=False, drop_rate=0.2, drop_path_rate=0.2)
    m = m.train().to(dev)
    opt = timm.optim.create_optimizer_v2(
        m, "rmsproptf", lr=0.016 * batch / 256, weight_decay=1e-5
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, res, res, generator=g) * 2 - 1).to(dev)
    y = (torch.arange(batch) % 1000).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({
        "model": name, "batch": batch, "resolution": res,
        "step_ms": {"median": med, "min": times[0], "max": times[-1]},
        "images_per_s": batch / (med / 1e3),
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
