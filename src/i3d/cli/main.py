"""``i3d`` subcommands. Every user mistake surfaces as one ``i3d: error: ...`` line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.errors import I3DError


def cmd_predict(args: argparse.Namespace) -> None:
    from i3d.predict import Classifier

    if args.top_k < 1:
        raise I3DError("--top-k must be at least 1")
    prediction = Classifier(args.weights).predict(args.input, args.start, args.end)
    print(prediction.to_json(args.top_k) if args.json else prediction.to_text(args.top_k))


def cmd_weights_list(args: argparse.Namespace) -> None:
    from i3d.weights import REGISTRY, installed_path

    for name, info in REGISTRY.items():
        path = installed_path(name)
        state = f"installed at {path}" if path.exists() else "not installed"
        print(f"{name}  [{info.modality}, {info.num_classes} classes]  {state}")
        print(f"    {info.description}")
        print(f"    source: {info.source}; sha256 {info.source_sha256 or '-'}; licence: {info.license}")


def cmd_weights_fetch(args: argparse.Namespace) -> None:
    from i3d.weights import fetch_weights, installed_path

    path = installed_path(args.name)
    if path.exists() and not args.force and args.source is None:
        print(f"{args.name} already installed at {path}")
        return
    print(f"{args.name} installed at {fetch_weights(args.name, args.source)}")


def cmd_samples_fetch(args: argparse.Namespace) -> None:
    from i3d.video.samples import fetch_samples

    for path in fetch_samples(force=args.force):
        print(path)


def cmd_fvd(args: argparse.Namespace) -> None:
    from dataclasses import asdict, replace

    from i3d.fvd import PROTOCOLS, FvdReport, VideoEmbedder, fvd_from_stats, set_stats

    protocol = PROTOCOLS[args.protocol]
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
        args.output.write_text(report.to_json() + "\n")
    print(f"FVD: {report.fvd:.4f}  ({real.count} real, {fake.count} fake, protocol {args.protocol})")


def build_parser() -> argparse.ArgumentParser:
    from i3d.weights.registry import DEFAULT_WEIGHTS

    parser = argparse.ArgumentParser(prog="i3d", description="I3D video action recognition.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify a video, a frame folder or a .npy clip")
    predict.add_argument(
        "input", nargs="?", help="video file, frame folder or .npy (default: the bigbuckbunny.mp4 sample)")
    predict.add_argument("--weights", default=None, help=f"registry name or .safetensors file ({DEFAULT_WEIGHTS})")
    predict.add_argument("--top-k", type=int, default=20)
    predict.add_argument("--start", type=float, default=None, help="clip start, seconds")
    predict.add_argument("--end", type=float, default=None, help="clip end, seconds")
    predict.add_argument("--json", action="store_true", help="one JSON object: logits, labels, norm, top")
    predict.set_defaults(run=cmd_predict)

    weights = commands.add_parser("weights", help="list or fetch pretrained weights").add_subparsers(
        dest="action", required=True)
    weights.add_parser("list", help="known weights and whether installed").set_defaults(run=cmd_weights_list)
    fetch = weights.add_parser("fetch", help="download, verify and convert weights")
    fetch.add_argument("name", nargs="?", default=DEFAULT_WEIGHTS)
    fetch.add_argument("--source", type=Path, default=None, help="an already downloaded source file (offline)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if installed")
    fetch.set_defaults(run=cmd_weights_fetch)

    from i3d.fvd import PROTOCOLS

    fvd = commands.add_parser("fvd", help="Frechet Video Distance between two sets of videos")
    fvd.add_argument("real", help="folder of videos or frame folders, (N, T, H, W, 3) .npy/.npz, or .stats.npz")
    fvd.add_argument("fake", help="the same forms as REAL")
    fvd.add_argument("--protocol", choices=sorted(PROTOCOLS), default="16f-all")
    fvd.add_argument("--frames", type=int, default=None, help="override the protocol's frames per clip")
    fvd.add_argument("--clips", type=int, default=None, help="override the protocol's number of clips")
    fvd.add_argument("--batch-size", type=int, default=8)
    fvd.add_argument("--device", default="cpu")
    fvd.add_argument("--weights", default=None)
    fvd.add_argument("--save-stats", type=Path, default=None, help="write REAL's statistics (.stats.npz) for reuse")
    fvd.add_argument("-o", "--output", type=Path, default=None, help="JSON report")
    fvd.set_defaults(run=cmd_fvd)

    samples = commands.add_parser("samples", help="the sample videos").add_subparsers(dest="action", required=True)
    samples_fetch = samples.add_parser("fetch", help="download and verify the sample videos")
    samples_fetch.add_argument("--force", action="store_true")
    samples_fetch.set_defaults(run=cmd_samples_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except I3DError as error:
        print(f"i3d: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("i3d: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
