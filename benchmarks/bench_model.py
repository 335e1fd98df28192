"""Seconds and GFLOP/s for one RGB clip: a straightforward eager port against the optimised default.

Both run in this process, alternating, so machine noise hits both alike; the ratio is the figure to read.
    .venv/bin/python benchmarks/bench_model.py [--frames 79] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from i3d.inference import gflops_per_clip, optimize_for_inference
from i3d.model import InceptionI3d
from i3d.weights import resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=79)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    eager = InceptionI3d()
    eager.load_state_dict(resolve_weights().state_dict)
    eager.eval()
    fast = optimize_for_inference(eager)
    clip = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1
    gflop = gflops_per_clip(args.frames, args.size)

    times: dict[str, list[float]] = {"eager port": [], "optimised": []}
    with torch.inference_mode():
        logits = {name: net(clip) for name, net in [("eager port", eager), ("optimised", fast)]}  # warm-up
        for _ in range(args.repeats):
            for name, net in [("eager port", eager), ("optimised", fast)]:
                start = time.perf_counter()
                net(clip)
                times[name].append(time.perf_counter() - start)

    print(f"clip 1x3x{args.frames}x{args.size}x{args.size}, {gflop:.1f} GFLOP, {args.threads} threads, "
          f"torch {torch.__version__}, median of {args.repeats}")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:>11}: {median:6.3f} s/clip  {gflop / median:6.1f} GFLOP/s")
    ratio = statistics.median(times["optimised"]) / statistics.median(times["eager port"])
    print(f"optimised / eager time: {ratio:.2f}")
    print(f"max |logit difference|: {(logits['optimised'] - logits['eager port']).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
