"""A soak of `i3d serve` on loopback: thousands of mixed requests, memory, open files and temporary files.

    .venv/bin/python benchmarks/soak_serve.py [--requests 3000] [--minutes 10] [--clients 8]

Starts `i3d serve` on 127.0.0.1 (an ephemeral port) with a token and a private temporary folder, then sends
a bounded number of requests for a bounded time, from --clients threads and then one after the other:
good uploads, undecodable uploads, wrong and missing tokens, wrong content types, uploads too large by
their length, uploads cancelled half-way, and slow clients that pause between pieces. Every few seconds it
prints the server's resident memory, open file descriptors and temporary files; at the end, every status
by kind (anything not expected for its kind is counted as unexpected) and whether the server still serves.
Random-weights Inception I3D: the figures are about the service, not the network's values.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from urllib import request

import av
import numpy as np

TOKEN = "soak-test-token-0123456789"
EXPECTED = {"good": {200, 429}, "undecodable": {422, 429}, "wrong_token": {401}, "no_token": {401},
            "not_video": {415}, "too_large": {413}, "cancelled": {-1, 400, 408, 422, 429}, "slow": {200, 429}}
WEIGHTS = {"good": 30, "undecodable": 20, "wrong_token": 10, "no_token": 5, "not_video": 10, "too_large": 5,
           "cancelled": 15, "slow": 5}


def tiny_clip() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
            for image in np.random.default_rng(0).integers(0, 256, (16, 64, 80, 3), dtype=np.uint8):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        return path.read_bytes()


def multipart(data: bytes, content_type: str = "video/mp4") -> tuple[bytes, str]:
    boundary = "soakboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(base: str, body: bytes, content_type: str, token: str | None) -> int:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with request.urlopen(request.Request(base + "/v1/predict", data=body, headers=headers, method="POST"),
                             timeout=120) as response:
            response.read()
            return response.status
    except request.HTTPError as error:
        error.read()
        return error.code
    except OSError:
        return -1


def raw(port: int, body: bytes, content_type: str, pieces: int, pause_s: float, stop_after: int | None,
        answer_anyway: bool = False) -> int:
    """Send by hand: ``pieces`` pieces with pauses (a slow client); ``stop_after`` pieces then close (cancelled),
    or, with ``answer_anyway``, then wait for the server's answer."""
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    size = max(1, len(body) // pieces)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
            conn.sendall(head)
            for index in range(pieces):
                if stop_after is not None and index == stop_after:
                    if not answer_anyway:
                        return -1  # the client goes away mid-upload
                    break
                conn.sendall(body[index * size : (index + 1) * size if index < pieces - 1 else len(body)])
                time.sleep(pause_s)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else -1
    except OSError:
        return -1


def one_request(kind: str, base: str, port: int, clip: bytes) -> int:
    good, good_type = multipart(clip)
    if kind == "good":
        return post(base, good, good_type, TOKEN)
    if kind == "undecodable":
        return post(base, *multipart(os.urandom(4096)), TOKEN)
    if kind == "wrong_token":
        return post(base, good, good_type, "x" * len(TOKEN))
    if kind == "no_token":
        return post(base, good, good_type, None)
    if kind == "not_video":
        return post(base, *multipart(b"hello", "text/plain"), TOKEN)
    if kind == "too_large":  # its length says 3 MB: refused before a byte of it is sent
        return raw(port, *multipart(bytes(3 * 2**20)), pieces=1, pause_s=0.0, stop_after=0, answer_anyway=True)
    if kind == "cancelled":
        return raw(port, good, good_type, pieces=4, pause_s=0.01, stop_after=2)
    return raw(port, good, good_type, pieces=5, pause_s=0.3, stop_after=None)  # slow


def server_figures(pid: int, tmpdir: Path) -> tuple[float, int, int]:
    rss = next((int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")), float("nan"))
    return rss, len(os.listdir(f"/proc/{pid}/fd")), len(list(tmpdir.iterdir()))


def start_server(weights: Path, tmpdir: Path) -> tuple[subprocess.Popen, str, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "i3d.cli.main", "serve", "--port", str(port), "--token", TOKEN,
                               "--weights", str(weights), "--queue", "8", "--max-upload-mb", "1",
                               "--upload-idle-timeout", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "TMPDIR": str(tmpdir)})
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with request.urlopen(base + "/healthz", timeout=1) as response:
                if json.loads(response.read())["status"] == "ok":
                    return server, base, port
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read()) from None
            time.sleep(0.2)
    raise RuntimeError("the server did not start")


def soak(weights: Path, requests: int, minutes: float, clients: int, every_s: float = 5.0, seed: int = 0,
         say=print) -> dict:
    """Run the soak; returns the figures: samples, statuses by kind, unexpected count, alive at the end."""
    rng = random.Random(seed)
    kinds = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=requests)
    clip = tiny_clip()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        server, base, port = start_server(weights, tmpdir)
        statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        samples, done, stop = [], [0], threading.Event()
        deadline = time.monotonic() + minutes * 60

        def sample() -> None:
            start = time.monotonic()
            while not stop.wait(every_s):
                figures = server_figures(server.pid, tmpdir)
                samples.append((time.monotonic() - start, done[0], *figures))
                say(f"{samples[-1][0]:>7.0f} s {done[0]:>7} requests   RSS {figures[0]:>7.0f} MiB   "
                    f"fds {figures[1]:>4}   temporary files {figures[2]:>3}")

        def run(kind: str) -> None:
            if time.monotonic() > deadline:
                return
            statuses[kind][one_request(kind, base, port, clip)] += 1
            done[0] += 1

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            sampler.start()
            half = len(kinds) // 2
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:  # concurrent, then one after another
                list(pool.map(run, kinds[:half]))
            for kind in kinds[half:]:
                run(kind)
            time.sleep(1.0)  # let the last cancelled uploads be noticed
            final = server_figures(server.pid, tmpdir)
            try:
                with request.urlopen(base + "/healthz", timeout=10) as response:
                    alive = json.loads(response.read())["status"] == "ok"
            except OSError:
                alive = False
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=30)
    unexpected = {kind: {s: n for s, n in counts.items() if s not in EXPECTED[kind]}
                  for kind, counts in statuses.items()}
    return {"samples": samples, "final": final, "statuses": {k: dict(v) for k, v in statuses.items()},
            "unexpected": {k: v for k, v in unexpected.items() if v}, "alive": alive, "requests": done[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_many_videos import random_weights

    with tempfile.TemporaryDirectory() as tmp:
        weights = random_weights(Path(tmp) / "random.safetensors")
        print(f"soak of i3d serve on 127.0.0.1: up to {args.requests} requests in {args.minutes:g} min, "
              f"{args.clients} clients then one at a time")
        figures = soak(weights, args.requests, args.minutes, args.clients)
    print(f"\n{figures['requests']} requests sent")
    for kind, counts in sorted(figures["statuses"].items()):
        print(f"  {kind:<12} " + ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())))
    print(f"unexpected statuses: {figures['unexpected'] or 'none'}; server alive at the end: {figures['alive']}")
    rss, fds, temporary = figures["final"]
    print(f"at the end: RSS {rss:.0f} MiB, {fds} open file descriptors, {temporary} temporary files")


if __name__ == "__main__":
    main()
