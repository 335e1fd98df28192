"""`i3d features` over thousands of tiny videos: memory, manifest growth, kill -9 restarts, two runs at once.

    .venv/bin/python benchmarks/bench_many_videos.py [--videos 2000] [--kills 3] [--workers 1]

Generates the videos (9 frames, 64x80, each its own content), then: (1) one run, sampling the resident
memory of the command and its decoding processes as outputs appear, and the manifest's size per row;
(2) a run killed with SIGKILL at random moments, restarted each time, until it finishes: what each restart
reused, and that every output is whole; (3) two runs started together into one folder. Random-weights
Inception I3D (the figures are about the pipeline, not the network's values); the runtime is the default.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_videos(folder: Path, count: int, frames: int = 9, height: int = 64, width: int = 80) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        rng = np.random.default_rng(index)
        path = folder / f"v{index:05d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for image in rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def random_weights(path: Path) -> Path:
    import torch

    from i3d.networks.inception import InceptionI3d
    from i3d.weights.registry import kinetics400_labels
    from i3d.weights.store import save_weights

    torch.manual_seed(0)
    save_weights(path, InceptionI3d().state_dict(), kinetics400_labels(), "rgb", name="random")
    return path


def command(videos: Path, outdir: Path, weights: Path, workers: int, runtime: str = "auto") -> list[str]:
    return [sys.executable, "-m", "i3d.cli.main", "features", str(videos), "-o", str(outdir), "--weights",
            str(weights), "--fps", "native", "--clip-len", "9", "--step", "9", "--size", "193", "--crop-size", "193",
            "--workers", str(workers), "--runtime", runtime, "--quiet"]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (Linux /proc), in MiB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    family, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return sum(rss.get(p, 0) for p in family) / 2**20


def finished(outdir: Path) -> list[Path]:
    return [p for p in outdir.glob("*.npz") if not p.name.startswith(".")]


def check_outputs(outdir: Path, count: int) -> dict:
    """Every output present and whole, one manifest row per input, no temporary file left."""
    outputs = finished(outdir)
    for path in outputs:
        with np.load(path) as data:
            assert data["features"].shape == (1, 1024), path
    rows = [json.loads(line) for line in (outdir / "manifest.jsonl").read_text().splitlines()][1:]
    leftovers = [p.name for p in outdir.iterdir() if p.name.startswith(".")]
    assert len(outputs) == count, f"{len(outputs)} outputs for {count} videos"
    assert len(rows) == count and all(r["status"] == "done" for r in rows), "manifest rows"
    assert not leftovers, f"temporary files left: {leftovers[:3]}"
    return {"outputs": len(outputs), "rows": len(rows), "manifest_bytes": (outdir / "manifest.jsonl").stat().st_size}


def run_sampled(cmd: list[str], outdir: Path, count: int) -> list[tuple[int, float, float]]:
    """Run to the end, sampling (outputs finished, tree RSS MiB, manifest bytes) every half second."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while process.poll() is None:
        manifest = outdir / "manifest.jsonl"
        samples.append((len(finished(outdir)) if outdir.exists() else 0, tree_rss_mb(process.pid),
                        manifest.stat().st_size if manifest.exists() else 0))
        time.sleep(0.5)
    assert process.returncode == 0, process.stderr.read()
    return samples


def killed_and_restarted(cmd: list[str], outdir: Path, count: int, kills: int, seed: int = 0) -> list[dict]:
    """SIGKILL at random moments (once some outputs exist, before the end), rerun until it finishes."""
    rng = random.Random(seed)
    history = []
    for _ in range(kills):
        before = len(finished(outdir)) if outdir.exists() else 0
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = before + max(1, int((count - before) * rng.uniform(0.1, 0.5)))
        while process.poll() is None and len(finished(outdir) if outdir.exists() else []) < target:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # anywhere: mid-decode, mid-write, mid-manifest
        process.send_signal(signal.SIGKILL)
        process.wait()
        history.append({"killed_with_outputs": len(finished(outdir)), "had_before": before})
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    history.append({"final_summary": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""})
    return history


def two_at_once(cmd: list[str]) -> list[int]:
    processes = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    return [p.wait() for p in processes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_videos(root / "videos", args.videos)
        weights = random_weights(root / "random.safetensors")
        print(f"{args.videos} videos of 9 frames (64x80) generated in {time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        samples = run_sampled(command(root / "videos", root / "one", weights, args.workers), root / "one", args.videos)
        elapsed = time.perf_counter() - start
        figures = check_outputs(root / "one", args.videos)
        print(f"\n1. one run: {elapsed:.1f} s ({args.videos / elapsed:.1f} videos/s)")
        print("   outputs    RSS MiB (command + decoders)   manifest bytes")
        for fraction in (0.1, 0.25, 0.5, 0.75, 1.0):
            near = [s for s in samples if s[0] >= fraction * args.videos * 0.999]
            if near:
                print(f"   {near[0][0]:>7}    {near[0][1]:>8.0f}                      {near[0][2]:>10}")
        print(f"   manifest: {figures['manifest_bytes']} bytes for {figures['rows']} rows "
              f"({figures['manifest_bytes'] / figures['rows']:.0f} bytes a row); every output whole")

        history = killed_and_restarted(command(root / "videos", root / "killed", weights, args.workers),
                                       root / "killed", args.videos, args.kills)
        figures = check_outputs(root / "killed", args.videos)
        print(f"\n2. {args.kills} kill -9 at random moments, then a rerun:")
        for step in history[:-1]:
            print(f"   killed with {step['killed_with_outputs']} outputs finished ({step['had_before']} before it)")
        print(f"   rerun: {history[-1]['final_summary']}")
        print(f"   every one of the {figures['outputs']} outputs whole, {figures['rows']} manifest rows, no temporary "
              "file left")

        codes = two_at_once(command(root / "videos", root / "two", weights, args.workers))
        figures = check_outputs(root / "two", args.videos)
        print(f"\n3. two runs into one folder at once: exit codes {codes}; every one of the {figures['outputs']} "
              f"outputs whole, {figures['rows']} manifest rows")


if __name__ == "__main__":
    main()
