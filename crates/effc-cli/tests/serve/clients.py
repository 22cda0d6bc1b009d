"""Drives `effc serve` with the protocol's real clients, tritonclient over HTTP
and gRPC (crates/effc-cli/tests/serve.rs runs it with .ci/venv's Python).

Usage: clients.py HTTP_ADDR GRPC_ADDR MODEL TENSOR.f32 IMAGE...
Prints one JSON object: per protocol, what the server answered.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException


def drive(mod, url, model, tensor, images):
    c = mod.InferenceServerClient(url=url)
    r = {
        "live": c.is_server_live(),
        "ready": c.is_server_ready(),
        "model_ready": c.is_model_ready(model),
    }
    if mod is tgrpc:
        md = c.get_model_metadata(model, as_json=True)
        sm = c.get_server_metadata(as_json=True)
    else:
        md = c.get_model_metadata(model)
        sm = c.get_server_metadata()
    r["metadata"] = {
        "name": md["name"],
        "inputs": [
            {"name": t["name"], "datatype": t["datatype"], "shape": [int(d) for d in t["shape"]]}
            for t in md["inputs"]
        ],
        "outputs": [
            {"name": t["name"], "datatype": t["datatype"], "shape": [int(d) for d in t["shape"]]}
            for t in md["outputs"]
        ],
    }
    r["server"] = sm["name"]

    # Encoded photos as BYTES, the top 5 through the classification extension.
    files = np.array([open(p, "rb").read() for p in images], dtype=np.object_)
    inp = mod.InferInput("input", [len(images)], "BYTES")
    inp.set_data_from_numpy(files)
    outs = [mod.InferRequestedOutput("probabilities", class_count=5)]
    res = c.infer(model, [inp], outputs=outs, request_id="photos")
    r["classes"] = [s.decode() for s in res.as_numpy("probabilities").reshape(-1)]

    # A tensor: its logits, as bytes.
    x = np.fromfile(tensor, dtype="<f4").reshape(1, 3, 224, 224)
    inp = mod.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = c.infer(model, [inp], outputs=[mod.InferRequestedOutput("logits")])
    r["logits"] = res.as_numpy("logits").astype("<f4").tobytes().hex()

    # Errors: the protocol's, and the server goes on.
    errors = {}
    bad = mod.InferInput("input", [1, 3, 16, 16], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 16, 16), dtype=np.float32))
    nan = mod.InferInput("input", list(x.shape), "FP32")
    nan.set_data_from_numpy(np.full(x.shape, np.nan, dtype=np.float32))
    junk = mod.InferInput("input", [1], "BYTES")
    junk.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    for name, call in [
        ("unknown_model", lambda: c.infer("nope", [inp])),
        ("wrong_shape", lambda: c.infer(model, [bad])),
        ("nan", lambda: c.infer(model, [nan])),
        ("bad_image", lambda: c.infer(model, [junk])),
    ]:
        try:
            call()
            errors[name] = None
        except InferenceServerException as e:
            errors[name] = {"status": str(e.status()), "message": e.message()}
    r["errors"] = errors
    r["live_after"] = c.is_server_live()
    return r


def main():
    http, grpc, model, tensor = sys.argv[1:5]
    images = sys.argv[5:]
    print(
        json.dumps(
            {
                "http": drive(thttp, http, model, tensor, images),
                "grpc": drive(tgrpc, grpc, model, tensor, images),
            }
        )
    )


if __name__ == "__main__":
    main()
