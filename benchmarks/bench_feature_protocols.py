"""Cost of each feature protocol: clips/s for centre, 3 and 10 crops and per-frame W=21, in one process.

    .venv/bin/python benchmarks/bench_feature_protocols.py [--seconds 2] [--batch-size 4]

The first SECONDS of bikes.mp4 (a sample video) are cut to a temporary file; each mode then runs
``extract_video`` on it (decoding, resizing, cropping and the network, inline). A clip is one
(window, crop) through the network; the 10-crop / centre time ratio should stay at or under 10.5
(crops of a window go through the network in one batch). Per-frame W=21 is compared with windows of
21 frames every frame (step 1), the same amount of network work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from excerpt import excerpt

from i3d.factory import resolve_weights
from i3d.features import ExtractionConfig, WindowSpec
from i3d.features.network import FeatureNetwork
from i3d.features.video import extract_video
from i3d.video.samples import fetch_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=4, help="clips per network call (a window's crops share one)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bikes = next(p for p in fetch_samples() if p.name == "bikes.mp4")
    weights = {"rgb": resolve_weights()}
    modes = {
        "centre, 16-frame windows": (ExtractionConfig(WindowSpec(16, 16, "drop"), workers=0), 1),
        "3 crops, 16-frame windows": (ExtractionConfig(WindowSpec(16, 16, "drop"), workers=0, crops="3"), 3),
        "10 crops, 16-frame windows": (ExtractionConfig(WindowSpec(16, 16, "drop"), workers=0, crops="10"), 10),
        "per-frame W=21": (ExtractionConfig(workers=0, per_frame=21), 1),
        "21-frame windows, step 1": (ExtractionConfig(WindowSpec(21, 1, "drop"), workers=0), 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        video = excerpt(bikes, args.seconds, Path(tmp) / "bikes_excerpt.mp4")
        print(f"{args.seconds:g} s of bikes.mp4 (640x272, 25 fps), batch {args.batch_size} clips, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}")
        times = {}
        for name, (config, crops) in modes.items():
            config = ExtractionConfig(**{**config.__dict__, "batch_size": args.batch_size})
            network = FeatureNetwork(weights, extras=(), squeeze_crops=config.crops == "center")
            extract_video(video, network.run, config)  # warm-up
            elapsed = float("inf")
            for _ in range(args.rounds):  # the best of a few rounds: this machine's timings drift
                start = time.perf_counter()
                result = extract_video(video, network.run, config)
                elapsed = min(elapsed, time.perf_counter() - start)
            clips = len(result.windows) * crops
            times[name] = elapsed / clips
            print(f"{name:28s} {len(result.windows):4d} rows x {crops:2d} crops  {elapsed:7.2f} s  "
                  f"{clips / elapsed:6.2f} clips/s")
    ten, centre = times["10 crops, 16-frame windows"], times["centre, 16-frame windows"]
    print(f"10 crops / centre time per window: {10 * ten / centre:.2f} (at most 10.5); per-frame W=21 / "
          f"step-1 windows, time per row: {times['per-frame W=21'] / times['21-frame windows, step 1']:.2f}")


if __name__ == "__main__":
    main()
