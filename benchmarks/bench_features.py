"""Throughput of `i3d features` over a dataset against the network alone, and which stage limits it.

    .venv/bin/python benchmarks/bench_features.py [--videos 40] [--clip-len 16] [--step 16] [--batch-size 4]
                                                  [--workers 1]

A dataset of --videos short clips (64 frames, 320x240, each its own content; 0: the sample videos instead).
Three measurements in one process, one after the other: decoding + resizing + cropping alone (inline, no
network); the network alone on those windows, batched as the pipeline batches them (equal-length windows
share a batch across videos); then the real pipeline (decoding in worker processes, overlapped with the
network), timed from its first finished video to its last so loading the weights and starting the workers
is left out. Prints videos/hour and frames/s of each, the pipeline's share of network-only throughput, and
the limiting stage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from i3d.factory import resolve_weights
from i3d.features import ExtractionConfig, WindowSpec, extract_features
from i3d.features.network import FeatureNetwork
from i3d.features.video import DecodedVideo
from i3d.video.samples import fetch_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    spec = WindowSpec(args.clip_len, args.step)
    with tempfile.TemporaryDirectory() as tmp:
        if args.videos:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_many_videos import make_videos

            videos = make_videos(Path(tmp) / "videos", args.videos, frames=64, height=240, width=320)
        else:
            videos = fetch_samples()

        start = time.perf_counter()
        decoded = [(DecodedVideo(p, spec), []) for p in videos]
        for video, windows in decoded:
            windows.extend(video.windows())
        decode_s = time.perf_counter() - start
        frames = sum(v.frames for v, _ in decoded)
        windows = [w for _, ws in decoded for w in ws]

        network = FeatureNetwork({"rgb": resolve_weights()})
        network.run([windows[0].frames])  # warm-up
        start = time.perf_counter()
        batch: list = []
        for window in windows + [None]:  # as the pipeline batches: equal lengths, across videos
            if batch and (window is None or len(batch) == args.batch_size
                          or len(window.frames) != len(batch[0].frames)):
                network.run([w.frames for w in batch])
                batch = []
            if window is not None:
                batch.append(window)
        network_s = time.perf_counter() - start

        stamps: list[float] = []

        def timed(outcomes, count):
            for outcome in outcomes:
                stamps.append(time.perf_counter())
                yield outcome

        extract_features(videos, Path(tmp) / "out", ExtractionConfig(spec, batch_size=args.batch_size,
                                                                      workers=args.workers), progress=timed)
    per_video = frames / len(videos)
    pipeline_rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])  # videos/s after the first finished
    network_rate, decode_rate = len(videos) / network_s, len(videos) / decode_s * args.workers
    limit = "decoding" if decode_rate < network_rate else "the network"
    print(f"{len(videos)} videos, {frames} frames ({per_video:.0f} a video), {len(windows)} windows of "
          f"{args.clip_len} frames (step {args.step}), batch {args.batch_size}, {args.workers} decode worker(s)")
    print(f"{'stage':<34} {'videos/hour':>12} {'frames/s':>10}")
    for name, rate in (("decode + resize + crop alone", decode_rate / args.workers),
                       (f"decoding with {args.workers} worker(s) (estimated)", decode_rate),
                       ("network alone", network_rate), ("pipeline, end to end", pipeline_rate)):
        print(f"{name:<34} {rate * 3600:>12.0f} {rate * per_video:>10.1f}")
    print(f"pipeline / network alone: {100 * pipeline_rate / network_rate:.1f} %; limiting stage: {limit}")


if __name__ == "__main__":
    main()
