"""``i3d visualize``: what the network sees (RGB and flow animations) and what it answers."""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d.cli.options import add_flow_options, add_weights, positive_int, raft_options


def add_parser(commands) -> None:
    from i3d.settings import ANIMATION_FORMATS, FLOW_STYLES

    parser = commands.add_parser("visualize", help="animations of the RGB and flow inputs, chart of top classes")
    parser.add_argument("input", type=Path, help="video file or frame folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--frames", type=positive_int, default=32, help="frames shown and classified, 25 fps "
                        "(default: 32)")
    parser.add_argument("--stream", choices=("rgb", "flow", "joint"), default="rgb",
                        help="whose predictions (default: rgb)")
    parser.add_argument("--format", choices=ANIMATION_FORMATS, default="gif", help="animation format (default: gif)")
    parser.add_argument("--flow-style", choices=FLOW_STYLES, default="reference",
                        help="reference: (x, y, 0) + 0.5 as DeepMind shows it; wheel: hue = direction "
                        "(default: reference)")
    add_flow_options(parser)
    parser.add_argument("--top-k", type=positive_int, default=10, help="classes in the chart (default: 10)")
    add_weights(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from i3d.files import check_folder_writable
    from i3d.visualize import visualize

    check_folder_writable(args.output)

    for path in visualize(args.input, args.output, args.frames, args.stream, args.weights, args.flow_weights,
                          args.flow_method, args.flow_style, args.format, args.top_k, raft_options(args)):
        print(path)
