#!/usr/bin/env python3
"""Load test of `effc serve` on loopback, bounded in count and time.

1. Throughput and p50/p99 latency at concurrency 1, 8 and 32, dynamic batching
   on (--max-batch 8) and off (--max-batch 1), on each device asked for (the CPU
   reference executor, and the GPU path: lavapipe here), with the batch sizes the
   server formed (from /metrics); side by side with the same model in
   onnxruntime behind a minimal Python server (bench/ort_server.py; Triton and
   MLServer do not install from the registries here).
2. 1000 concurrent connections, each sending one inference request with its own
   id: every request is answered once (200, or 503 when the queue is full), with
   its own id; health checks are answered throughout; the server's peak memory.
3. A slow-client attack: connections that send half a request line, or headers
   and then a body byte by byte; meanwhile a normal client's requests and health
   checks are answered; the server's peak memory.

Only the Python standard library; the load generator shares the machine with the
server, so compare numbers of one run only.

    cargo build --release -p effc-cli
    python3 bench/serve_load.py [--devices cpu,gpu] [--ort-python /work/venvs/torch/bin/python]
    SMOKE=1 python3 bench/serve_load.py       # a few requests per cell: checks the script
"""

import argparse
import asyncio
import http.client
import json
import logging
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "tests/fixtures/lite0/efficientnet-lite0.safetensors")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    """A server process that prints `http ADDR` (and `grpc ADDR`) on stdout."""

    def __init__(self, cmd, env=None):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=ROOT, env=env)
        line = self.proc.stdout.readline().decode().split()
        if not line or line[0] != "http":
            raise SystemExit(f"{cmd[0]} printed no address: {line}")
        host, port = line[1].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def rss_peak_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for l in f:
                    if l.startswith("VmHWM:"):
                        return int(l.split()[1])
        except OSError:
            return None

    def rss_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        return int(l.split()[1])
        except OSError:
            return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def get(self, path):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body


def tensor_request(blob, rid=None):
    head = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                        "parameters": {"binary_data_size": len(blob)}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}
    if rid is not None:
        head["id"] = rid
    j = json.dumps(head).encode()
    return j + blob, {"Inference-Header-Content-Length": str(len(j)),
                      "Content-Type": "application/octet-stream"}


def input_tensor():
    """A fixed pseudo-random NCHW input (both servers get the same bytes; its
    values do not change the time a forward takes)."""
    n = 3 * 224 * 224
    x, vals = 12345, []
    for _ in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        vals.append((x / 0x7FFFFFFF) * 2 - 1)
    return struct.pack(f"<{n}f", *vals)


def load(host, port, blob, concurrency, count, seconds):
    """`count` requests at most within `seconds`, `concurrency` keep-alive
    connections: (throughput, p50 ms, p99 ms, answered, errors)."""
    body, headers = tensor_request(blob)
    lat, errors = [], []
    lock = threading.Lock()
    left = [count]
    deadline = time.monotonic() + seconds

    def worker():
        c = http.client.HTTPConnection(host, port, timeout=120)
        while True:
            with lock:
                if left[0] == 0 or time.monotonic() > deadline:
                    break
                left[0] -= 1
            t = time.perf_counter()
            try:
                c.request("POST", "/v2/models/lite0/infer", body, headers)
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except Exception as e:  # a reset connection counts as an error
                ok = False
                c = http.client.HTTPConnection(host, port, timeout=120)
                r = e
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    lat.append(dt)
                else:
                    errors.append(getattr(r, "status", str(r)))
        c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")
    return {"rps": len(lat) / wall, "p50_ms": p(0.50), "p99_ms": p(0.99),
            "answered": len(lat), "errors": len(errors), "seconds": wall}


def batch_sizes(metrics_text):
    """(batches, rows, {bucket: count}) of effc_batch_size for lite0."""
    buckets, count, total = {}, 0, 0
    for l in metrics_text.splitlines():
        m = re.match(r'effc_batch_size_bucket\{model="lite0",le="([^"]+)"\} (\d+)', l)
        if m:
            buckets[m.group(1)] = int(m.group(2))
        m = re.match(r'effc_batch_size_count\{model="lite0"\} (\d+)', l)
        if m:
            count = int(m.group(1))
        m = re.match(r'effc_batch_size_sum\{model="lite0"\} (\S+)', l)
        if m:
            total = float(m.group(1))
    return count, total, buckets


def diff_buckets(a, b):
    """Per bucket (non-cumulative) of the difference of two cumulative histograms."""
    out, prev = {}, 0
    for k in b:
        cum = b[k] - a.get(k, 0)
        if k != "+Inf" and cum - prev:
            out[k] = cum - prev
        prev = cum
    return out


async def one_request(host, port, body, headers, rid):
    """One request on its own connection: (status, id answered)."""
    r, w = await asyncio.open_connection(host, port)
    head = f"POST /v2/models/lite0/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    for k, v in headers.items():
        head += f"{k}: {v}\r\n"
    w.write(head.encode() + b"\r\n" + body)
    await w.drain()
    data = await r.read()
    w.close()
    end = data.find(b"\r\n\r\n")
    status = int(data.split(b" ", 2)[1])
    rest = data[end + 4:]
    m = re.search(rb"inference-header-content-length: (\d+)", data[:end], re.I)
    j = rest[: int(m.group(1))] if m else rest
    try:
        answered = json.loads(j).get("id")
    except ValueError:
        answered = None
    return status, answered


async def health_loop(host, port, stop, out):
    while not stop.is_set():
        t = time.perf_counter()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            w.write(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await w.drain()
            data = await asyncio.wait_for(r.read(), 10)
            w.close()
            ok = data.startswith(b"HTTP/1.1 200")
        except Exception:
            ok = False
        out.append((ok, time.perf_counter() - t))
        await asyncio.sleep(0.05)


async def connections_1000(srv, blob, n):
    body, headers = tensor_request(blob)
    stop = asyncio.Event()
    health = []
    h = asyncio.create_task(health_loop(srv.host, srv.port, stop, health))
    t0 = time.perf_counter()
    tasks = []
    for i in range(n):
        b, hd = tensor_request(blob, rid=f"r{i}")
        tasks.append(asyncio.create_task(one_request(srv.host, srv.port, b, hd, f"r{i}")))
    res = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - t0
    stop.set()
    await h
    statuses = {}
    ids = []
    for x in res:
        if isinstance(x, Exception):
            statuses["error:" + type(x).__name__] = statuses.get("error:" + type(x).__name__, 0) + 1
            continue
        s, rid = x
        statuses[s] = statuses.get(s, 0) + 1
        if s == 200:
            ids.append(rid)
    return {
        "connections": n, "seconds": wall, "statuses": {str(k): v for k, v in statuses.items()},
        "answered_200": len(ids), "unique_ids": len(set(ids)),
        "ids_expected": all(i is not None for i in ids),
        "health_checks": len(health), "health_failed": sum(1 for ok, _ in health if not ok),
        "health_max_ms": max((d for _, d in health), default=0) * 1e3,
    }


async def slow_attack(srv, blob, n, seconds):
    """`n` slow connections (half of them stuck in the request line, half
    dribbling a body), while a normal client infers and checks health."""
    conns = []
    for i in range(n):
        try:
            r, w = await asyncio.open_connection(srv.host, srv.port)
        except OSError:
            break
        if i % 2:
            w.write(b"GET /v2/heal")
        else:
            w.write(b"POST /v2/models/lite0/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 602200\r\n\r\n{")
        await w.drain()
        conns.append((r, w))
    stop = asyncio.Event()
    health = []
    h = asyncio.create_task(health_loop(srv.host, srv.port, stop, health))
    normal = []
    t0 = time.perf_counter()
    body, headers = tensor_request(blob)
    while time.perf_counter() - t0 < seconds:
        # The dribblers send a byte each second.
        for r, w in conns[::2]:
            if not w.is_closing():
                w.write(b" ")
        t = time.perf_counter()
        try:
            s, _ = await asyncio.wait_for(one_request(srv.host, srv.port, body, headers, None), 60)
        except Exception:
            s = None
        normal.append((s, time.perf_counter() - t))
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t)))
    stop.set()
    await h
    # Closed by the server: end of stream (after a 408 for the dribblers).
    closed = [0, 0]
    for i, (r, w) in enumerate(conns):
        # A write after the server closed resets the connection: closed too.
        try:
            data = await asyncio.wait_for(r.read(65536), 0.05)
            while data:
                data = await asyncio.wait_for(r.read(65536), 0.05)
            closed[i % 2] += 1
        except asyncio.TimeoutError:
            if w.is_closing():
                closed[i % 2] += 1
        except OSError:
            closed[i % 2] += 1
        w.close()
    return {
        "slow_connections": len(conns), "seconds": seconds,
        "normal_requests": len(normal), "normal_ok": sum(1 for s, _ in normal if s == 200),
        "normal_max_ms": max((d for _, d in normal), default=0) * 1e3,
        "health_checks": len(health), "health_failed": sum(1 for ok, _ in health if not ok),
        "health_max_ms": max((d for _, d in health), default=0) * 1e3,
        "dribblers_closed_by_server": closed[0], "half_lines_closed_by_server": closed[1],
    }


def effc_cmd(effc, device, max_batch, delay_us, extra=()):
    return [effc, "serve", "--model", f"lite0=lite0:{WEIGHTS}", "--http", "127.0.0.1:0",
            "--grpc", "off", "--device", device, "--max-batch", str(max_batch),
            "--max-queue-delay-us", str(delay_us), "--log-format", "off", *extra]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--effc", default=os.path.join(ROOT, "target/release/effc"))
    ap.add_argument("--devices", default="cpu,gpu")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=96, help="per cell, at most")
    ap.add_argument("--seconds", type=float, default=25, help="per cell, at most")
    ap.add_argument("--ort-python", default="/work/venvs/torch/bin/python")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--slow-seconds", type=float, default=15)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    # Writes to connections the server closed are expected in the attack.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if os.environ.get("SMOKE"):
        a.requests, a.seconds, a.connections, a.slow, a.slow_seconds = 4, 5, 50, 20, 3
    if not os.path.exists(a.effc):
        raise SystemExit(f"{a.effc} is missing: cargo build --release -p effc-cli")
    blob = input_tensor()
    concs = [int(c) for c in a.concurrency.split(",")]
    results = {"load_before": os.getloadavg(), "cells": []}

    def cells(name, srv, batching, metrics):
        for c in concs:
            before = None
            load(srv.host, srv.port, blob, min(c, 4), min(c, 4), 30)  # warm-up
            if metrics:
                before = batch_sizes(srv.get("/metrics")[1].decode())
            r = load(srv.host, srv.port, blob, c, a.requests, a.seconds)
            r.update({"server": name, "batching": batching, "concurrency": c})
            if metrics:
                after = batch_sizes(srv.get("/metrics")[1].decode())
                nb, rows = after[0] - before[0], after[1] - before[1]
                r["batches"] = nb
                r["mean_batch"] = rows / nb if nb else 0
                r["batch_sizes"] = diff_buckets(before[2], after[2])
            log(json.dumps(r))
            results["cells"].append(r)

    for dev in [d for d in a.devices.split(",") if d]:
        for batching, mb, delay in (("on", 8, 2000), ("off", 1, 0)):
            env = dict(os.environ)
            srv = Server(effc_cmd(a.effc, dev, mb, delay), env=env)
            cells(f"effc-{dev}", srv, batching, True)
            results.setdefault("peak_rss_mb", {})[f"effc-{dev}-batching-{batching}"] = (srv.rss_peak_kb() or 0) / 1024
            srv.stop()

    if a.ort_python and os.path.exists(a.ort_python) and a.devices:
        srv = Server([a.ort_python, os.path.join(ROOT, "bench/ort_server.py"), WEIGHTS, a.effc])
        cells("onnxruntime", srv, "none", False)
        results.setdefault("peak_rss_mb", {})["onnxruntime"] = (srv.rss_peak_kb() or 0) / 1024
        srv.stop()

    # 1000 connections and the slow-client attack, on the CPU path with batching.
    srv = Server(effc_cmd(a.effc, "cpu", 8, 2000, ["--queue-size", "64", "--max-connections", "4096",
                                                   "--header-timeout", "5s", "--body-timeout", "5s"]))
    base = (srv.rss_kb() or 0) / 1024
    r = asyncio.run(connections_1000(srv, blob, a.connections))
    r["rss_before_mb"] = base
    r["peak_rss_mb"] = (srv.rss_peak_kb() or 0) / 1024
    log(json.dumps(r))
    results["connections"] = r
    r = asyncio.run(slow_attack(srv, blob, a.slow, a.slow_seconds))
    r["peak_rss_mb"] = (srv.rss_peak_kb() or 0) / 1024
    r["exit_code"] = srv.stop()
    log(json.dumps(r))
    results["slow"] = r
    results["load_after"] = os.getloadavg()
    out = json.dumps(results, indent=1)
    print(out)
    if a.json:
        with open(a.json, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
