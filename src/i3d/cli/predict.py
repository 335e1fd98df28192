"""``i3d predict``: classify a video, a frame folder or a preprocessed clip."""

from __future__ import annotations

import argparse

from i3d.cli.options import add_device, add_flow_options, add_weights, positive_int, seconds


def add_parser(commands) -> None:
    parser = commands.add_parser("predict", help="classify a video, a frame folder or a .npy clip",
                                 description="Top classes of a whole video (or a span of it), by the weights' recipe.")
    parser.add_argument("input", nargs="?",
                        help="video file, frame folder or .npy (default: the bigbuckbunny.mp4 sample)")
    add_weights(parser)
    parser.add_argument("--top-k", type=positive_int, default=20, help="classes printed (default: 20)")
    parser.add_argument("--start", type=seconds, default=None, help="clip start, seconds (default: the start)")
    parser.add_argument("--end", type=seconds, default=None, help="clip end, seconds (default: the end)")
    parser.add_argument("--json", action="store_true", help="one JSON object: logits, labels, norm, top")
    parser.add_argument("--stream", choices=("rgb", "flow", "joint"), default="rgb",
                        help="rgb, flow, or joint: RGB and flow logits summed, as the reference does (default: rgb)")
    add_flow_options(parser)
    parser.add_argument("--flow", default=None, help="a saved flow input (.npy from `i3d flow`) for INPUT")
    add_device(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from i3d.predict import Classifier

    classifier = Classifier(args.weights, args.device, args.stream, args.flow_weights, args.flow_method)
    prediction = classifier.predict(args.input, args.start, args.end, flow=args.flow)
    print(prediction.to_json(args.top_k) if args.json else prediction.to_text(args.top_k))
