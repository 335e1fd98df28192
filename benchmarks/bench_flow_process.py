"""`i3d flow` end to end as a process, PyTorch TV-L1 against OpenCV's, on a long and a short span.

    .venv/bin/python benchmarks/bench_flow_process.py [--video bikes.mp4] [--spans 3.2,0.4] [--repeat 3] [--build]

Each run is a fresh process (`python -m i3d.cli.main flow VIDEO --end S -o ...`), so start-up counts:
importing torch, loading the TV-L1 kernels, decoding, the flow itself and the interpreter's exit. Spans
are seconds from the start (3.2 s = 80 frames at 25 fps, 0.4 s = 10 frames). For each span, in one run:

- opencv: `--method opencv`, the reference;
- warm: the kernels the set-up built, files in the OS cache (median of --repeat runs);
- cold: the same right after the OS file cache is dropped (as after a reboot; needs root, else skipped);
- plain: no kernels built (a fresh I3D_HOME), as where no compiler exists: the plain kernels run;
- with --build: the one-time build of the kernels (`python -m i3d.video.flow.aot`) into a fresh I3D_HOME,
  the cost a new machine pays once, at set-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from i3d.video.samples import fetch_samples

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def timed(command: list[str], home: Path | None = None) -> float:
    env = dict(os.environ, **({"I3D_HOME": str(home)} if home else {}))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip().splitlines()[-1])
    return time.perf_counter() - start


def flow_command(video: Path, end: float, method: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "i3d.cli.main", "flow", str(video), "--end", str(end), "--method", method,
            "-o", str(output)]


def drop_file_cache() -> bool:
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="bikes.mp4", help="a sample video's name, or a path")
    parser.add_argument("--spans", default="3.2,0.4", help="seconds from the start, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per span; the median is reported")
    parser.add_argument("--build", action="store_true", help="also time the one-time kernel build")
    args = parser.parse_args()
    samples = {p.name: p for p in fetch_samples()}
    video = samples.get(args.video, Path(args.video))
    with tempfile.TemporaryDirectory() as tmp:
        output, bare_home = Path(tmp) / "flow.npy", Path(tmp) / "home"
        bare_home.mkdir()
        if args.build:
            seconds = timed([sys.executable, "-m", "i3d.video.flow.aot"], Path(tmp) / "build")
            print(f"kernel build, once per machine at set-up: {seconds:.1f} s")
        for end in (float(s) for s in args.spans.split(",")):
            label = f"{video.name} first {end:g} s ({round(end * 25)} frames)"
            opencv = timed(flow_command(video, end, "opencv", output))
            warm = statistics.median(timed(flow_command(video, end, "torch", output)) for _ in range(args.repeat))
            cold = timed(flow_command(video, end, "torch", output)) if drop_file_cache() else None
            plain = timed(flow_command(video, end, "torch", output), bare_home)
            cold_text = f"cold {cold:.2f} s ({cold / opencv:.2f}x)" if cold else "cold: not measured (needs root)"
            print(f"{label}: opencv {opencv:.2f} s | warm {warm:.2f} s ({warm / opencv:.2f}x) | {cold_text} | "
                  f"plain kernels {plain:.2f} s ({plain / opencv:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
