"""`i3d flow` end to end as a process, PyTorch TV-L1 against OpenCV's, on a long and a short span.

    .venv/bin/python benchmarks/bench_flow_process.py [--video bikes.mp4] [--spans 3.2,0.4]

Each run is a fresh process (`python -m i3d.cli.main flow VIDEO --end S -o ...`), so start-up counts:
importing torch, loading the TV-L1 kernels built by the set-up (a note on stderr says when they are
not built, and the plain kernels run), decoding, and the flow itself. Spans are seconds from the start
(3.2 s = 80 frames at 25 fps, 0.4 s = 10 frames).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from i3d.video.samples import fetch_samples


def run(video: Path, end: float, method: str, output: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "i3d.cli.main", "flow", str(video), "--end", str(end), "--method",
                           method, "-o", str(output)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip().splitlines()[-1])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="bikes.mp4", help="a sample video's name, or a path")
    parser.add_argument("--spans", default="3.2,0.4", help="seconds from the start, comma-separated")
    args = parser.parse_args()
    samples = {p.name: p for p in fetch_samples()}
    video = samples.get(args.video, Path(args.video))
    with tempfile.TemporaryDirectory() as tmp:
        for end in (float(s) for s in args.spans.split(",")):
            torch_s = run(video, end, "torch", Path(tmp) / "torch.npy")
            opencv_s = run(video, end, "opencv", Path(tmp) / "opencv.npy")
            print(f"{video.name} first {end:g} s ({round(end * 25)} frames): torch {torch_s:.2f} s, "
                  f"opencv {opencv_s:.2f} s, ratio {torch_s / opencv_s:.2f}")


if __name__ == "__main__":
    main()
