"""The baseline of bench/serve_load.py: the same lite0 (the fixture's real
weights, loaded into timm's tf_efficientnet_lite0) exported to ONNX and run by onnxruntime behind a minimal Python server that
speaks the part of the Open Inference Protocol the load test uses: POST
/v2/models/lite0/infer with an FP32 [N, 3, 224, 224] input in the binary tensor
extension, `logits` back as binary; GET /v2/health/live.

Run with a Python that has torch, timm, onnx and onnxruntime:
    python bench/ort_server.py WEIGHTS.safetensors EFFC [PORT]
(EFFC: the effc binary, whose `inspect --params` maps the checkpoint's names to timm's).
Prints `http 127.0.0.1:PORT` once it listens. One thread per request
(ThreadingHTTPServer), one InferenceSession shared (its run is thread-safe); no
batching across requests.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
import timm
import torch
from safetensors.torch import load_file


def names(effc, naming):
    out = subprocess.run([effc, "inspect", "lite0", "--params", naming], check=True,
                         capture_output=True, text=True).stdout
    return [l.split("\t")[0] for l in out.splitlines() if l.strip()]


def session(weights, effc):
    # The checkpoint's TF-port names to timm's, in the order effc lists both.
    lsd = load_file(weights)
    mapping = dict(zip(names(effc, "tf"), names(effc, "timm")))
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    missing, unexpected = m.load_state_dict({mapping[k]: v for k, v in lsd.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit timm's lite0: missing {missing[:5]}, unexpected {unexpected[:5]}")
    path = os.path.join(tempfile.mkdtemp(), "lite0.onnx")
    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(
        m, x, path, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, opset_version=17,
        dynamo=False,
    )
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sess = None

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body go in two writes: without this, Nagle's algorithm and
        # the client's delayed ACK add 40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reply(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/v2/health/live", "/v2/health/ready"):
            self.reply(200, b"")
        else:
            self.reply(404, b'{"error": "not found"}')

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        if n > 64 << 20:
            self.reply(413, b'{"error": "too large"}')
            return
        body = self.rfile.read(n)
        h = int(self.headers.get("Inference-Header-Content-Length", n))
        head = json.loads(body[:h])
        inp = head["inputs"][0]
        x = np.frombuffer(body[h:], dtype="<f4").reshape(inp["shape"])
        (y,) = self.sess.run(["logits"], {"input": x})
        blob = y.astype("<f4").tobytes()
        out = {"model_name": "lite0", "id": head.get("id", ""), "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": list(y.shape),
             "parameters": {"binary_data_size": len(blob)}}]}
        j = json.dumps(out).encode()
        self.reply(200, j + blob, [("Inference-Header-Content-Length", str(len(j))),
                                   ("Content-Type", "application/octet-stream")])


def main():
    weights, effc = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    Handler.sess = session(weights, effc)
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    print(f"http 127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
