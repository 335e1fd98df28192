"""Throughput of `i3d features` over a dataset against the network alone, and which stage limits it.

    .venv/bin/python benchmarks/bench_features.py [--videos 40] [--content real|noise] [--clip-len 16]
                                                  [--step 16] [--batch-size 4] [--workers 1] [--repeats 3]

A dataset of --videos short clips (64 frames, 320x240, each its own content): ``real`` cuts them from the
three sample videos (real footage at ordinary bitrates, as in Kinetics-style datasets); ``noise`` fills them
with random pixels, the worst case for a decoder (H.264 of noise costs about ten times as much to decode).
Measurements in one process: decoding + resizing + cropping alone (inline, no network), its wall and CPU
time; then, alternated --repeats times, the network alone on those windows, batched as the pipeline batches
them (equal-length windows share a batch across videos), and the real pipeline (decoding in worker
processes, overlapped with the network), timed from its first network call to its last finished video so
loading the weights and starting the workers is left out. The medians are compared (the machine's speed
drifts by several per cent a minute). Prints videos/hour and frames/s of each, the pipeline's share of
network-only throughput, and the limiting stage: decoding when it is slower than the network; where it is
not but shares the CPU cores with it, the ceiling that sharing sets (the network's CPU time over both).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from statistics import median

import av
import cv2
import numpy as np

from i3d.factory import resolve_weights
from i3d.features import ExtractionConfig, WindowSpec, extract_features
from i3d.features.network import FeatureNetwork
from i3d.features.video import DecodedVideo
from i3d.video.decode import iter_video_file
from i3d.video.samples import fetch_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40, help="0: the three sample videos themselves")
    parser.add_argument("--content", choices=("real", "noise"), default="real")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="network-alone and pipeline runs, alternated")
    args = parser.parse_args()
    spec = WindowSpec(args.clip_len, args.step)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        if not args.videos:
            videos = fetch_samples()
        elif args.content == "noise":
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_many_videos import make_videos

            videos = make_videos(folder, args.videos, frames=64, height=240, width=320)
        else:
            videos = clips_of_samples(folder, args.videos, frames=64, height=240, width=320)

        start, cpu_start = time.perf_counter(), cpu_seconds()
        decoded = [(DecodedVideo(p, spec), []) for p in videos]
        for video, windows in decoded:
            windows.extend(video.windows())
        decode_s, decode_cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
        frames = sum(v.frames for v, _ in decoded)
        windows = [w for _, ws in decoded for w in ws]

        network = FeatureNetwork({"rgb": resolve_weights()})
        network.run([windows[0].frames])  # warm-up
        network_rates, pipeline_rates, network_cpu = [], [], []
        for repeat in range(args.repeats):  # alternated, so that a slower minute of the machine hits both
            cpu_start = cpu_seconds()
            network_rates.append(len(videos) / network_alone(network, windows, args.batch_size))
            network_cpu.append(cpu_seconds() - cpu_start)
            pipeline_rates.append(pipeline(videos, Path(tmp) / f"out{repeat}", spec, args))
    per_video = frames / len(videos)
    network_rate, pipeline_rate = median(network_rates), median(pipeline_rates)
    decode_rate = len(videos) / decode_s * args.workers
    print(f"{len(videos)} videos ({args.content if args.videos else 'the samples'}), {frames} frames "
          f"({per_video:.0f} a video), {len(windows)} windows of {args.clip_len} frames (step {args.step}), "
          f"batch {args.batch_size}, {args.workers} decode worker(s), {os.cpu_count()} CPU cores, "
          f"median of {args.repeats} alternated runs")
    print(f"{'stage':<34} {'videos/hour':>12} {'frames/s':>10} {'CPU ms/frame':>13}")
    decode_ms, network_ms = 1e3 * decode_cpu_s / frames, 1e3 * median(network_cpu) / frames
    for name, rate, cpu_ms in (("decode + resize + crop alone", decode_rate / args.workers, decode_ms),
                               (f"decoding with {args.workers} worker(s) (estimated)", decode_rate, None),
                               ("network alone", network_rate, network_ms),
                               ("pipeline, end to end", pipeline_rate, None)):
        cpu = f"{cpu_ms:>13.2f}" if cpu_ms is not None else ""
        print(f"{name:<34} {rate * 3600:>12.0f} {rate * per_video:>10.1f} {cpu}")
    ratios = ", ".join(f"{100 * p / n:.1f}" for n, p in zip(network_rates, pipeline_rates))
    print(f"pipeline / network alone: {100 * pipeline_rate / network_rate:.1f} % (each run: {ratios})")
    if decode_rate < network_rate:
        print("limiting stage: decoding (add --workers)")
    else:
        ceiling = network_ms / (network_ms + decode_ms)
        shared = (f"decoding shares the {os.cpu_count()} cores and needs {100 * decode_ms / network_ms:.1f} % of the "
                  f"CPU time the network does, which caps the pipeline at about {100 * ceiling:.0f} % of the "
                  "network alone")
        if ceiling < 0.9:
            print(f"limiting stage: the CPU, shared by decoding and the network: {shared}")
        else:
            print(f"limiting stage: the network; {shared}")


def cpu_seconds() -> float:
    """CPU time of this process's threads and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def clips_of_samples(folder: Path, count: int, frames: int, height: int, width: int) -> list[Path]:
    """``count`` clips of real footage: consecutive stretches of the sample videos, scaled to ``width`` x
    ``height`` and encoded with libx264's defaults, each stretch its own."""
    sources = [[image for _, image in iter_video_file(path)] for path in fetch_samples()]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        first = (index // len(sources)) * frames // 2 % max(len(source) - frames, 1)
        path = folder / f"clip{index:05d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for image in (source[(first + k) % len(source)] for k in range(frames)):
                scaled = np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(scaled, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


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
    """Videos/s of `extract_features`, from its first network call to its last finished video (loading the
    weights, starting the decoders and decoding the first batch left out)."""
    first_call: list[float] = []
    finished: list[float] = []
    network_run = FeatureNetwork.run

    def timed_run(self, clips):
        first_call[:] = first_call or [time.perf_counter()]
        return network_run(self, clips)

    def timed(outcomes, count):
        for outcome in outcomes:
            finished.append(time.perf_counter())
            yield outcome

    FeatureNetwork.run = timed_run
    try:
        extract_features(videos, outdir, ExtractionConfig(spec, batch_size=args.batch_size, workers=args.workers),
                         progress=timed)
    finally:
        FeatureNetwork.run = network_run
    return len(videos) / (finished[-1] - first_call[0])


if __name__ == "__main__":
    main()
