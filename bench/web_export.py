#!/usr/bin/env python3
"""The weights and the ONNX export bench/web.sh compares effc and onnxruntime-web on.

timm's tf_efficientnet_b0 (effc's `b0`), randomly initialized with a fixed seed
(timing does not depend on the values): its state dict as safetensors (effc reads
timm names), the same model exported to ONNX at batch 1 and RES (224), an input
(NCHW f32, seeded) and PyTorch's logits for it, so that the benchmark checks both
sides compute the same function before it times them.

  python bench/web_export.py OUT [RES]
"""

import os
import sys

import numpy as np
import timm
import torch
from safetensors.torch import save_file


def main():
    out = sys.argv[1]
    res = int(sys.argv[2]) if len(sys.argv) > 2 else 224
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    m = timm.create_model("tf_efficientnet_b0", pretrained=False).eval()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()
               if not k.endswith("num_batches_tracked")},
              os.path.join(out, "b0.safetensors"))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, res, res), dtype=np.float32))
    torch.onnx.export(m, x, os.path.join(out, "b0.onnx"),
                      input_names=["input"], output_names=["logits"], dynamo=False)
    with torch.inference_mode():
        logits = m(x).numpy().astype(np.float32)
    x.numpy().astype(np.float32).tofile(os.path.join(out, "input.f32"))
    logits.tofile(os.path.join(out, "logits.f32"))
    print(f"wrote {out}/b0.safetensors, b0.onnx ({res}x{res}), input.f32, logits.f32 "
          f"(torch {torch.__version__}, timm {timm.__version__})")


if __name__ == "__main__":
    main()
