"""``i3d fvd``: Fréchet Video Distance between two sets of videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d.cli.options import add_device, add_weights, positive_int


def add_parser(commands) -> None:
    from i3d.settings import FVD_PROTOCOLS

    parser = commands.add_parser("fvd", help="Frechet Video Distance between two sets of videos")
    parser.add_argument("real", help="folder of videos or frame folders, (N, T, H, W, 3) .npy/.npz, or .stats.npz")
    parser.add_argument("fake", help="the same forms as REAL")
    parser.add_argument("--protocol", choices=sorted(FVD_PROTOCOLS), default="16f-all",
                        help="how clips are taken (default: 16f-all)")
    parser.add_argument("--frames", type=positive_int, default=None, help="override the protocol's frames per clip")
    parser.add_argument("--clips", type=positive_int, default=None, help="override the protocol's number of clips")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per network call (default: 8)")
    add_device(parser)
    add_weights(parser)
    parser.add_argument("--save-stats", type=Path, default=None, help="write REAL's statistics (.stats.npz) for reuse")
    parser.add_argument("-o", "--output", type=Path, default=None, help="JSON report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from dataclasses import asdict, replace

    from i3d.files import atomic_path
    from i3d.fvd import FvdReport, VideoEmbedder, fvd_from_stats, set_stats
    from i3d.settings import FVD_PROTOCOLS

    protocol = FVD_PROTOCOLS[args.protocol]
    if args.frames is not None:
        protocol = replace(protocol, frames=args.frames)
    if args.clips is not None:
        protocol = replace(protocol, max_clips=args.clips)
    embedder = VideoEmbedder(args.weights, args.device, args.batch_size)
    real = set_stats(embedder, Path(args.real), protocol)
    if args.save_stats is not None:
        real.save(args.save_stats, source=str(args.real), protocol=str(asdict(protocol)))
    fake = set_stats(embedder, Path(args.fake), protocol)
    report = FvdReport(fvd_from_stats(real, fake), str(args.real), str(args.fake), real.count, fake.count,
                       asdict(protocol), embedder.weights_sha256)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text(report.to_json() + "\n")
    print(f"FVD: {report.fvd:.4f}  ({real.count} real, {fake.count} fake, protocol {args.protocol})")
