"""Throughput of `i3d features` on the sample videos, and how much of it is decoding and resizing.

    .venv/bin/python benchmarks/bench_features.py [--clip-len 64] [--step 64] [--batch-size 4] [--workers 1]

Three measurements in one process, one after the other: decoding + resizing + cropping alone (inline,
no network), the network alone on those windows, then the real pipeline end to end (decoding in worker
processes, overlapped with the network). The decode share is decode / (decode + network).
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--clip-len", type=int, default=64)
    parser.add_argument("--step", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    spec = WindowSpec(args.clip_len, args.step)
    videos = fetch_samples()

    start = time.perf_counter()
    decoded = [(DecodedVideo(p, spec), []) for p in videos]
    for video, windows in decoded:
        windows.extend(video.windows())
    decode_s = time.perf_counter() - start
    seconds_of_video = sum(v.frames for v, _ in decoded) / 25
    count = sum(len(w) for _, w in decoded)

    network = FeatureNetwork(resolve_weights())
    network.run([decoded[0][1][0].frames])  # warm-up
    start = time.perf_counter()
    for _, windows in decoded:
        for i in range(0, len(windows), args.batch_size):
            group = windows[i : i + args.batch_size]
            same = [w for w in group if len(w.frames) == len(group[0].frames)]
            network.run([w.frames for w in same])
            for w in group[len(same) :]:
                network.run([w.frames])
    network_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        extract_features(videos, Path(tmp), ExtractionConfig(spec, batch_size=args.batch_size, workers=args.workers))
        total_s = time.perf_counter() - start

    print(f"{len(videos)} sample videos, {seconds_of_video:.2f} s of video at 25 fps, {count} windows of "
          f"{args.clip_len} frames (step {args.step}), batch {args.batch_size}")
    print(f"decode + resize + crop alone: {decode_s:7.2f} s")
    print(f"network alone:                {network_s:7.2f} s")
    print(f"decode share:                 {100 * decode_s / (decode_s + network_s):6.1f} %")
    print(f"end to end ({args.workers} decode worker): {total_s:7.2f} s  "
          f"{seconds_of_video / total_s:.2f} s of video/s, {count / total_s:.2f} windows/s "
          f"(includes loading the weights)")


if __name__ == "__main__":
    main()
