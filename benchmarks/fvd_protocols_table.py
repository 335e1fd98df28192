"""Which FVD numbers compare: one pair of video sets under every protocol, side by side.

    .venv/bin/python benchmarks/fvd_protocols_table.py [--videos 16] [--frames 128]

The sets are tests/references/video_sets.py's moving gratings (real, and fake with a coarser grating and a
phase drift), FRAMES frames each at 72x96, written as .npy arrays and given to ``compute_fvd`` under each
protocol: the relative difference against the videogpt number shows how far papers using different code
can be apart on the same videos, before any difference in the videos themselves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from i3d.fvd import compute_fvd, get_protocol  # noqa: E402
from i3d.settings import FVD_FAMILIES, FVD_PROTOCOLS  # noqa: E402
from references.video_sets import video_sets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=128)
    args = parser.parse_args()
    real, fake = video_sets(args.videos, args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "real.npy", real)
        np.save(Path(tmp) / "fake.npy", fake)
        for name in ("stylegan-v-16f", "stylegan-v-128f", "google-research", "videogpt", "cd-fvd"):
            protocol = get_protocol(name, max_videos=None) if FVD_PROTOCOLS[name].max_videos else get_protocol(name)
            report = compute_fvd(Path(tmp) / "real.npy", Path(tmp) / "fake.npy", protocol, kvd=False)
            rows.append((name, report.fvd))
    reference = dict(rows)["videogpt"]
    print(f"{args.videos} + {args.videos} videos of {args.frames} frames at 72x96 (tests/references/video_sets.py)")
    print("| protocol | FVD | against videogpt | comparable with |")
    print("|---|---|---|---|")
    for name, value in rows:
        print(f"| `{name}` | {value:.2f} | {100 * (value / reference - 1):+.2f} % | {FVD_FAMILIES[name]} |")


if __name__ == "__main__":
    main()
