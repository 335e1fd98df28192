"""``i3d features``: per-window (or per-frame) I3D features of many videos, by a named published protocol
or by explicit settings; resumable, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.cli.evaluate import with_path
from i3d.cli.options import add_settings, given_settings, positive_int, positive_seconds
from i3d.errors import I3DError


def add_parser(commands) -> None:
    from i3d.settings import ENGINES, ExtractionConfig, WindowSpec

    parser = commands.add_parser(
        "features", help="per-window 1024-d features of many videos, by published protocols (resumable)",
        description="Features by a named protocol (--preset, see --list-presets) or explicit settings; options given "
        "explicitly override the preset's. Defaults: 25 fps, short side 256, centre crop 224, 64-frame windows.")
    parser.add_argument("inputs", nargs="*", help="video files, folders (searched recursively), .txt/.csv lists")
    parser.add_argument("-o", "--output", type=Path, default=None, help="output folder (manifest.jsonl there)")
    parser.add_argument("--preset", default=None, help="a published protocol's settings (see --list-presets)")
    parser.add_argument("--list-presets", action="store_true", help="the presets, their settings and sources")
    add_settings(parser, ExtractionConfig)
    add_settings(parser, WindowSpec)
    parser.add_argument("--logits", action="store_true", help="also the logits of every window")
    parser.add_argument("--mixed-5c", action="store_true", help="also Mixed_5c averaged over space: T/8 x 1024")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="(default: local)")
    parser.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--ray-workers", type=positive_int, default=2,
                        help="Ray actors, each holding the network (default: 2)")
    parser.add_argument("--ray-cpus-per-worker", type=positive_int, default=None, metavar="N",
                        help="CPUs each Ray actor asks for, and its network's threads (default: 1 for a CPU "
                        "network, 2 for a GPU one: one decodes ahead while the other drives the GPU)")
    parser.add_argument("--ray-start-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                        help="how long a run may have no working Ray worker before it stops and says why "
                        "(default: 180)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def list_presets() -> None:
    from i3d.features.presets import PRESETS

    for preset in PRESETS.values():
        settings = ", ".join(f"{k} {v if v is not None else 'native'}" for k, v in {**preset.settings,
                                                                                   **preset.output}.items())
        print(f"{preset.name}: {preset.description}")
        print(f"    settings: {settings}")
        print(f"    source: {preset.source}")
        print(f"    checked against: {preset.verified}" + (f"; note: {preset.notes}" if preset.notes else ""))


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        list_presets()
        return 0
    if not args.inputs or args.output is None:
        raise I3DError("features: give INPUTS and -o OUTPUT (or --list-presets)")
    from tqdm import tqdm

    from i3d.features import extract_features
    from i3d.features.presets import config_from_preset
    from i3d.settings import ExtractionConfig, WindowSpec

    given = {**given_settings(args, ExtractionConfig), **given_settings(args, WindowSpec)}
    extras = tuple(name for name, wanted in (("logits", args.logits), ("mixed_5c", args.mixed_5c)) if wanted)
    if extras:
        given["extras"] = extras
    config = config_from_preset(args.preset, **given)

    def progress(outcomes, total):
        bar = tqdm(outcomes, total=total, unit="video", disable=args.quiet)
        seconds = windows = 0.0
        for job, outcome in bar:
            if not isinstance(outcome, str):
                seconds, windows = seconds + outcome.duration_s, windows + len(outcome.windows)
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{seconds / elapsed:.2f} video-s/s, {windows / elapsed:.2f} rows/s")
            else:
                bar.write(f"failed: {with_path(str(job.path), outcome)}", file=sys.stderr)
            yield job, outcome

    summary = extract_features(args.inputs, args.output, config, args.engine, args.ray_address, args.ray_workers,
                               args.ray_start_timeout, progress,
                               args.ray_cpus_per_worker)
    print(summary.line())
    return 1 if summary.failed else 0
