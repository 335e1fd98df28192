"""A bounded load test of `i3d serve` on loopback: N concurrent clients, a fixed number of requests.

    .venv/bin/python benchmarks/bench_serve.py [--clients 4] [--requests 16] [--queue 4]

Starts the service in a child process on 127.0.0.1 (an ephemeral port), posts a short clip cut from
the sample bigbuckbunny.mp4 (1 s) from N client threads (each retries after a 429, as Retry-After asks), and
prints throughput, p50/p95 latency of the answered attempts, the 429s (queue full), errors (must be 0) and
the server's peak resident memory.
Traffic goes to 127.0.0.1 only; the run stops by itself after the fixed number of requests.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib import request

from excerpt import excerpt

from i3d.video.samples import fetch_samples


def post(url: str, data: bytes) -> tuple[int, float]:
    boundary = "bench"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
            f"Content-Type: video/mp4\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = request.Request(url, data=body, method="POST",
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    try:
        with request.urlopen(req, timeout=300) as response:
            response.read()
            return response.status, time.perf_counter() - start
    except request.HTTPError as error:
        return error.code, time.perf_counter() - start
    except OSError:
        return -1, time.perf_counter() - start


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--queue", type=int, default=4)
    args = parser.parse_args()
    source = next(p for p in fetch_samples() if p.name == "bigbuckbunny.mp4")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        data = excerpt(source, 1.0, Path(tmp) / "clip.mp4").read_bytes()
        server = subprocess.Popen([sys.executable, "-m", "i3d.cli.main", "serve", "--port", str(port), "--queue",
                                   str(args.queue)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ})
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    with request.urlopen(base + "/healthz", timeout=1) as response:
                        if json.loads(response.read())["status"] == "ok":
                            break
                except OSError:
                    time.sleep(0.2)
            def client_request(_):  # a polite client: after a 429 it waits and tries again (at most 40 times)
                refused = 0
                for _ in range(40):
                    status, latency = post(base + "/v1/predict", data)
                    if status != 429:
                        return status, latency, refused
                    refused += 1
                    time.sleep(0.5)
                return 429, latency, refused

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(client_request, range(args.requests)))
            elapsed = time.perf_counter() - start
            peak = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    answered = sorted(t for status, t, _ in results if status == 200)
    refused = sum(r for _, _, r in results)
    errors = sum(status != 200 for status, _, _ in results)

    def percentile(q: float) -> float:
        return answered[min(len(answered) - 1, int(q * len(answered)))] if answered else float("nan")

    print(f"{args.requests} requests of a 1 s clip (1280x720) from {args.clients} clients, queue {args.queue}, "
          f"1 server process on 127.0.0.1")
    print(f"answered {len(answered)}, 429 answers {refused} (retried after 0.5 s), errors {errors}; "
          f"{len(answered) / elapsed:.2f} requests/s over {elapsed:.1f} s")
    print(f"latency of answered requests: p50 {percentile(0.5):.2f} s, p95 {percentile(0.95):.2f} s; "
          f"server peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
