#!/usr/bin/env python3
"""MiniLM embeddings through HTTP, side by side in one run: Switchyard's candle path (fp32 safetensors),
Switchyard's ONNX Runtime path (the int8 export), and a FastAPI + onnxruntime + tokenizers peer on the
same int8 export. Servers pinned to core 0, the client to core 1, one inference thread each.

    loadtest/text_bench.py [--seconds 8] [--concurrency 4]     (run by `make bench-text`)

Prints texts/s and p50/p99 latency per server at batch 1 and 32, and each figure's ratio to the peer.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the a man woman plays guitar market fell sharply today someone instrument city car drives fast slow music".split()


def texts(n, seed):
    out = []
    for i in range(n):
        k = 6 + (i * 7 + seed) % 8
        out.append(" ".join(WORDS[(i * 3 + j * 5 + seed) % len(WORDS)] for j in range(k)) + ".")
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/health/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready")


def drive(port, model, batch, seconds, concurrency):
    bodies = [json.dumps({"inputs": [{"name": "text", "shape": [batch], "datatype": "BYTES", "data": texts(batch, s)}],
                          "outputs": [{"name": "embedding"}]}).encode() for s in range(16)]
    latencies, errors, stop = [], [0], time.time() + seconds
    lock = threading.Lock()

    def worker(w):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, i = [], w
        while time.time() < stop:
            t0 = time.perf_counter()
            c.request("POST", f"/v2/models/{model}/infer", bodies[i % len(bodies)], {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors[0] += 1
            mine.append(time.perf_counter() - t0)
            i += 1
        with lock:
            latencies.extend(mine)

    # warm-up
    drive_once = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for b in bodies[:4]:
        drive_once.request("POST", f"/v2/models/{model}/infer", b, {"Content-Type": "application/json"})
        drive_once.getresponse().read()
    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    latencies.sort()
    q = lambda p: 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    return {"texts_per_s": len(latencies) * batch / wall, "p50_ms": q(0.5), "p99_ms": q(0.99), "errors": errors[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--peer-python", default=os.path.join(ROOT, ".venv-bench", "bin", "python"))
    a = ap.parse_args()
    repo = os.path.join(ROOT, "models")
    port_s, port_p = free_port(), free_port()
    servers = {
        "switchyard": subprocess.Popen(["taskset", "-c", "0", os.path.join(ROOT, "target/release/switchyard"), "serve",
                                        "--model-repository", repo, "--port", str(port_s), "--log", "warn"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "peer": subprocess.Popen(["taskset", "-c", "0", a.peer_python, os.path.join(ROOT, "loadtest/peers/fastapi_text.py"),
                                  os.path.join(repo, "minilm_onnx", "1"), str(port_p)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    os.sched_setaffinity(0, {1})
    try:
        wait_ready(port_s, servers["switchyard"])
        wait_ready(port_p, servers["peer"])
        rows = []
        for batch in (1, 32):
            peer = drive(port_p, "minilm", batch, a.seconds, a.concurrency)
            for name, port, model in [("Switchyard candle (fp32)", port_s, "minilm"), ("Switchyard ONNX Runtime (int8)", port_s, "minilm_onnx"),
                                      ("FastAPI+onnxruntime+tokenizers (int8)", port_p, "minilm")]:
                r = peer if port == port_p else drive(port, model, batch, a.seconds, a.concurrency)
                rows.append((name, batch, r, r["texts_per_s"] / peer["texts_per_s"]))
        print(f"MiniLM embeddings over HTTP, servers on core 0, client on core 1, concurrency {a.concurrency}, {a.seconds:.0f} s per point")
        print()
        print("| server | batch | texts/s | p50 ms | p99 ms | vs FastAPI peer | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, batch, r, ratio in rows:
            print(f"| {name} | {batch} | {r['texts_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio:.2f}x | {r['errors']} |")
    finally:
        for p in servers.values():
            p.terminate()
            p.wait()


if __name__ == "__main__":
    sys.exit(main())
