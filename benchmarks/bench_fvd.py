"""FVD speed per preset (videos/s of embedding) and the streaming metric's memory at 2048 videos.

    .venv/bin/python benchmarks/bench_fvd.py [--videos 8] [--size 128] [--batch-size 4]

Embedding speed: random uint8 videos of the preset's clip length at SIZExSIZE, resized and embedded as
the preset does (StyleGAN-V presets; google-research uses 16 frames here). Memory: the metric's state
(tracemalloc peak while 2048 videos' logits stream through ``update_embeddings`` in batches of 16),
against the same for 256 videos: running sums do not grow with the number of videos.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch

from i3d.fvd import FrechetVideoDistance, VideoEmbedder, get_protocol


def embedding_speed(preset: str, videos: int, size: int, batch_size: int, device: str) -> tuple[int, float]:
    protocol = get_protocol(preset)
    frames = protocol.frames or 16
    embedder = VideoEmbedder(device=device, batch_size=batch_size, resize=protocol.resize)
    clips = np.random.default_rng(0).integers(0, 256, (videos, frames, size, size, 3), np.uint8)
    embedder.embed(clips[:1])  # warm-up
    start = time.perf_counter()
    embedder.embed(clips)
    return frames, videos / (time.perf_counter() - start)


def streaming_peak(count: int, embedder: VideoEmbedder) -> float:
    metric = FrechetVideoDistance("stylegan-v-16f", embedder=embedder)
    rng = np.random.default_rng(1)
    tracemalloc.start()
    for _ in range(count // 16):
        metric.update_embeddings(rng.normal(size=(16, 400)), real=True)
        metric.update_embeddings(rng.normal(size=(16, 400)), real=False)
    metric.compute()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"{args.videos} random videos per preset at {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    for preset in ("stylegan-v-16f", "stylegan-v-128f", "stylegan-v-128f-subsample8f", "google-research"):
        frames, rate = embedding_speed(preset, args.videos, args.size, args.batch_size, args.device)
        print(f"{preset:30s} {frames:4d} frames/clip  {rate:7.3f} videos/s")
    embedder = VideoEmbedder(device=args.device)
    streaming_peak(32, embedder)  # first use imports scipy's square root: not the metric's memory
    small, large = streaming_peak(256, embedder), streaming_peak(2048, embedder)
    print(f"streaming metric, peak traced memory: {small:.2f} MiB at 256 videos, {large:.2f} MiB at 2048 videos")


if __name__ == "__main__":
    main()
