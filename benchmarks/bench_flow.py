"""TV-L1: the project's batched PyTorch backend against OpenCV-contrib's, on real frames of the sample videos.

    .venv/bin/python benchmarks/bench_flow.py [--pairs 8] [--batch-size 8] [--rounds 3] [--device cpu] [--no-compile]

Frames are the flow recipe's (25 fps, short side 256, grey). For each sample video, ``--pairs``
consecutive pairs from the middle are computed by both backends: OpenCV one pair at a time, as it
runs, then the PyTorch backend in batches of ``--batch-size`` (the CLI's default, 8). The two take
turns for ``--rounds`` rounds and each keeps its fastest round: on a shared machine the noise only
ever adds time. Prints seconds per pair, the time ratio, and the end-point error between the two
flows (mean, median, 99th percentile) next to the mean flow magnitude. The PyTorch backend's one-off
compilation happens before the timing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from i3d.video.decode import TARGET_FPS
from i3d.video.flow import DEFAULT_BATCH, FlowComputer, opencv_tvl1, to_grey
from i3d.video.inputs import rgb_resized_frames
from i3d.video.samples import fetch_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    computer = FlowComputer("torch", args.device, args.batch_size, compile=not args.no_compile)
    total_cv = total_torch = 0.0
    errors = []
    for path in fetch_samples():
        frames = [to_grey(f) for f in rgb_resized_frames(path)]
        start = len(frames) // 2
        grey = frames[start : start + args.pairs + 1]
        firsts, seconds = np.stack(grey[:-1]), np.stack(grey[1:])
        cv_s = torch_s = float("inf")
        for _ in range(args.rounds):
            tic = time.perf_counter()
            expected = opencv_tvl1(firsts, seconds)
            cv_s = min(cv_s, time.perf_counter() - tic)
            tic = time.perf_counter()
            ours = np.concatenate([computer.pairs(firsts[i : i + args.batch_size], seconds[i : i + args.batch_size])
                                   for i in range(0, len(firsts), args.batch_size)])
            torch_s = min(torch_s, time.perf_counter() - tic)
        epe = np.sqrt(((ours - expected) ** 2).sum(axis=-1))
        errors.append(epe.ravel())
        total_cv, total_torch = total_cv + cv_s, total_torch + torch_s
        magnitude = np.sqrt((expected**2).sum(axis=-1)).mean()
        print(f"{path.name:<22} {firsts.shape[1]}x{firsts.shape[2]}, frames {start}-{start + args.pairs} "
              f"({start / TARGET_FPS:.2f} s): opencv {cv_s / len(firsts):.3f} s/pair, torch "
              f"{torch_s / len(firsts):.3f} s/pair, ratio {torch_s / cv_s:.2f}; EPE mean {epe.mean():.4f} "
              f"median {np.median(epe):.4f} p99 {np.percentile(epe, 99):.3f} (mean |flow| {magnitude:.3f} px)")
    every = np.concatenate(errors)
    print(f"all: time ratio torch/opencv {total_torch / total_cv:.2f}; EPE mean {every.mean():.4f} px "
          f"over {len(every)} flow vectors")


if __name__ == "__main__":
    main()
