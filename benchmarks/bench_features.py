"""Throughput of `i3d features` over a dataset against the network alone, and which stage limits it.

    .venv/bin/python benchmarks/bench_features.py [--videos 40] [--clip-len 16] [--step 16] [--batch-size 4]
                                                  [--workers 1]

A dataset of --videos short clips (64 frames, 320x240, each its own content; 0: the sample videos instead).
Measurements in one process: decoding + resizing + cropping alone (inline, no network); then, alternated
--repeats times, the network alone on those windows, batched as the pipeline batches them (equal-length
windows share a batch across videos), and the real pipeline (decoding in worker processes, overlapped with
the network), timed from its first finished video to its last so loading the weights and starting the
workers is left out. The medians are compared (the machine's speed drifts by several per cent a minute). Prints
videos/hour and frames/s of each, the pipeline's share of network-only throughput, and the limiting stage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

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
    parser.add_argument("--repeats", type=int, default=3, help="network-alone and pipeline runs, alternated")
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
        network_rates, pipeline_rates = [], []
        for repeat in range(args.repeats):  # alternated, so that a slower minute of the machine hits both
            network_rates.append(len(videos) / network_alone(network, windows, args.batch_size))
            pipeline_rates.append(pipeline(videos, Path(tmp) / f"out{repeat}", spec, args))
    per_video = frames / len(videos)
    network_rate, pipeline_rate = median(network_rates), median(pipeline_rates)
    decode_rate = len(videos) / decode_s * args.workers
    limit = "decoding" if decode_rate < network_rate else "the network"
    print(f"{len(videos)} videos, {frames} frames ({per_video:.0f} a video), {len(windows)} windows of "
          f"{args.clip_len} frames (step {args.step}), batch {args.batch_size}, {args.workers} decode worker(s), "
          f"median of {args.repeats} alternated runs")
    print(f"{'stage':<34} {'videos/hour':>12} {'frames/s':>10}")
    for name, rate in (("decode + resize + crop alone", decode_rate / args.workers),
                       (f"decoding with {args.workers} worker(s) (estimated)", decode_rate),
                       ("network alone", network_rate), ("pipeline, end to end", pipeline_rate)):
        print(f"{name:<34} {rate * 3600:>12.0f} {rate * per_video:>10.1f}")
    ratios = ", ".join(f"{100 * p / n:.1f}" for n, p in zip(network_rates, pipeline_rates))
    print(f"pipeline / network alone: {100 * pipeline_rate / network_rate:.1f} % (each run: {ratios}); "
          f"limiting stage: {limit}")


def network_alone(network: FeatureNetwork, windows: list, batch_size: int) -> float:
    """Seconds for the windows, batched as the pipeline batches them: equal lengths together, across videos."""
    start = time.perf_counter()
    batch: list = []
    for window in windows + [None]:
        if batch and (window is None or len(batch) == batch_size or len(window.frames) != len(batch[0].frames)):
            network.run([w.frames for w in batch])
            batch = []
        if window is not None:
            batch.append(window)
    return time.perf_counter() - start


def pipeline(videos: list[Path], outdir: Path, spec: WindowSpec, args: argparse.Namespace) -> float:
    """Videos/s of `extract_features`, from its first finished video to its last (start-up left out)."""
    stamps: list[float] = []

    def timed(outcomes, count):
        for outcome in outcomes:
            stamps.append(time.perf_counter())
            yield outcome

    extract_features(videos, outdir, ExtractionConfig(spec, batch_size=args.batch_size, workers=args.workers),
                     progress=timed)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


if __name__ == "__main__":
    main()
