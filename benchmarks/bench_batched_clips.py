"""Seconds for a timeline of a sample video with 1 and with N windows per network call, in one process.

    .venv/bin/python benchmarks/bench_batched_clips.py [--video bikes.mp4] [--batch 4] [--runtime auto]
                                                       [--device auto] [--repeats 3]

What the default of ``Classifier.batch_size`` rests on (4 clips a call on CUDA, 1 on the CPU): the two
classifiers alternate, each timed as the best of REPEATS after a warm-up, so machine noise hits both alike.
The logits of every window are compared too (float rounding only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from i3d.predict import Classifier
from i3d.timeline import compute_timeline
from i3d.video.samples import fetch_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="bikes.mp4", help="one of the sample videos (default: bikes.mp4)")
    parser.add_argument("--batch", type=int, default=4, help="windows per call set against 1 (default: 4)")
    parser.add_argument("--runtime", default="auto", help="auto, torch or openvino (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default: 3)")
    parser.add_argument("--window", type=float, default=1.0, help="window seconds (default: 1)")
    parser.add_argument("--step", type=float, default=0.5, help="step seconds (default: 0.5)")
    args = parser.parse_args()
    path = next(p for p in fetch_samples() if p.name == args.video)
    classifiers = {size: Classifier(device=args.device, runtime=args.runtime, batch_size=size)
                   for size in (1, args.batch)}
    for classifier in classifiers.values():  # warm-up: compiles, allocations
        compute_timeline(classifier, path, args.window, args.step, end_s=2 * args.window)
    seconds: dict[int, list[float]] = {size: [] for size in classifiers}
    timelines = {}
    for _ in range(args.repeats):
        for size, classifier in classifiers.items():
            start = time.perf_counter()
            timelines[size] = compute_timeline(classifier, path, args.window, args.step)
            seconds[size].append(time.perf_counter() - start)
    one, many = timelines[1], timelines[args.batch]
    difference = max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(one.windows, many.windows))
    first = classifiers[1]
    print(f"{path.name}: {len(one.windows)} windows of {args.window:g} s every {args.step:g} s; device "
          f"{first.device}, runtime {first.runtime}, best of {args.repeats}")
    for size in classifiers:
        print(f"  {size} window(s) a call: {min(seconds[size]):.2f} s")
    print(f"  ratio {args.batch}/1: {min(seconds[args.batch]) / min(seconds[1]):.3f}; max |logit difference| "
          f"{difference:.2e}")


if __name__ == "__main__":
    main()
