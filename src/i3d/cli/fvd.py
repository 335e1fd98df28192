"""``i3d fvd``: Fréchet Video Distance (and KVD) between two sets of videos, by a published protocol."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.cli.options import add_settings, add_weights, build_settings, given_settings, positive_int
from i3d.errors import I3DError, no_such_input


def _value_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0,1 or -1,1), not {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, not {text!r}")
    return low, high


def add_parser(commands) -> None:
    from i3d.settings import DEFAULT_FVD_PROTOCOL, FVD_PROTOCOLS, FvdProtocol, InferenceSettings

    parser = commands.add_parser(
        "fvd", help="Frechet Video Distance (and KVD) between two sets of videos, by a published protocol",
        description="Presets reproduce published FVD code step by step (see `--protocol`); the report states every "
        "setting, the clips used, the weights' sha256 and the seed.")
    parser.add_argument("real", type=Path, help="folder of videos or frame folders, (N, T, H, W, 3) .npy/.npz, "
                        "or a .stats.npz from --save-stats")
    parser.add_argument("fake", type=Path, help="the generated set, in the same forms (not a .stats.npz)")
    parser.add_argument("--protocol", choices=list(FVD_PROTOCOLS), default=DEFAULT_FVD_PROTOCOL,
                        help="stylegan-v-*: StyleGAN-V's fvd2048_16f, fvd2048_128f, fvd2048_128f_subsample8f; "
                        "google-research: the original frechet_video_distance; videogpt: VideoGPT's and TATS's FVD; "
                        f"cd-fvd: cd-fvd's I3D mode (default: {DEFAULT_FVD_PROTOCOL}); see docs/fvd.md")
    add_settings(parser, FvdProtocol)
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="draws of the real clips (seeds seed, seed+1, ...): mean and standard deviation "
                        "(default: 1)")
    parser.add_argument("--range", type=_value_range, default=(0.0, 255.0), dest="value_range", metavar="LOW,HIGH",
                        help="value range of float arrays (uint8 is always 0-255) (default: 0,255)")
    parser.add_argument("--no-kvd", action="store_true", help="skip the kernel distance")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per network call (default: 8)")
    add_settings(parser, InferenceSettings, skip=("batch_size",))  # FVD's own, above
    add_weights(parser, "weights (the TF-Hub I3D every FVD uses)")
    parser.add_argument("--save-stats", type=Path, default=None,
                        help="write REAL's statistics (.stats.npz) for reuse with the same protocol")
    parser.add_argument("-o", "--output", type=Path, default=None, help="JSON report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from i3d.files import atomic_path, check_writable
    from i3d.fvd import VideoEmbedder, compute_fvd, get_protocol
    from i3d.settings import FvdProtocol, InferenceSettings

    run_on = build_settings(args, InferenceSettings)
    protocol = get_protocol(args.protocol, **given_settings(args, FvdProtocol))
    for path in (args.output, args.save_stats):
        if path is not None:
            check_writable(path)
    if args.save_stats is not None and not args.save_stats.name.endswith(".stats.npz"):
        raise I3DError(f"{args.save_stats}: statistics files are named *.stats.npz")
    for source in (args.real, args.fake):
        if not source.exists():
            raise no_such_input(source)
    if args.fake.name.endswith(".stats.npz"):
        raise I3DError(f"{args.fake}: give the generated videos; only REAL may be saved statistics")
    embedder = VideoEmbedder(args.weights, run_on.device, args.batch_size, protocol.resize, run_on.precision,
                             run_on.runtime, protocol.batch_norm_eps)
    with tqdm(unit="clip", disable=args.quiet, file=sys.stderr, delay=1.0) as bar:  # no bar before a quick error
        def set_total(count: int) -> None:
            bar.total = count
            bar.refresh()

        report = compute_fvd(args.real, args.fake, protocol, embedder, args.runs, args.value_range,
                             not args.no_kvd, save_stats=args.save_stats, progress=bar.update, total=set_total)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text(report.to_json() + "\n")
    print(report.to_text())
