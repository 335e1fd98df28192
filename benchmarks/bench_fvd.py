"""Clips per second of the FVD embedding (resize to 224, I3D logits) on this machine.

    .venv/bin/python benchmarks/bench_fvd.py [--frames 16] [--size 64] [--clips 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from i3d.fvd import VideoEmbedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    embedder = VideoEmbedder(device=args.device, batch_size=args.batch_size)
    videos = np.random.default_rng(0).integers(0, 256, (args.clips, args.frames, args.size, args.size, 3), np.uint8)
    embedder.embed(videos[: args.batch_size])  # warm-up
    start = time.perf_counter()
    embedder.embed(videos)
    elapsed = time.perf_counter() - start
    print(f"{args.clips} clips of {args.frames}x{args.size}x{args.size} on {args.device} "
          f"({torch.get_num_threads()} threads), batch {args.batch_size}: "
          f"{elapsed:.2f} s, {args.clips / elapsed:.2f} clips/s")


if __name__ == "__main__":
    main()
