"""``i3d predict``: classify a video, a frame folder or a preprocessed clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d.cli.options import (
    add_flow_options,
    add_settings,
    add_weights,
    build_settings,
    positive_int,
    positive_seconds,
    raft_options,
    seconds,
)
from i3d.errors import I3DError


def add_parser(commands) -> None:
    parser = commands.add_parser("predict", help="classify a video, a frame folder or a .npy clip",
                                 description="Top classes of a whole video (or a span of it), by the weights' recipe.")
    parser.add_argument("input", nargs="?",
                        help="video file, frame folder or .npy (default: the bigbuckbunny.mp4 sample)")
    add_weights(parser)
    parser.add_argument("--top-k", type=positive_int, default=None,
                        help="classes printed (default: 20; 5 per timeline window)")
    parser.add_argument("--start", type=seconds, default=None, help="clip start, seconds (default: the start)")
    parser.add_argument("--end", type=seconds, default=None, help="clip end, seconds (default: the end)")
    parser.add_argument("--json", action="store_true", help="one JSON object: logits, labels, norm, top")
    parser.add_argument("--stream", choices=("rgb", "flow", "joint"), default="rgb",
                        help="rgb, flow, or joint: RGB and flow logits summed, as the reference does (default: rgb)")
    add_flow_options(parser)
    parser.add_argument("--flow", default=None, help="a saved flow input (.npy from `i3d flow`) for INPUT")
    from i3d.settings import InferenceSettings

    add_settings(parser, InferenceSettings)
    timeline = parser.add_argument_group("over time")
    timeline.add_argument("--timeline", action="store_true",
                          help="top-k of every window over the whole video, as CSV (or JSON with --json)")
    timeline.add_argument("--window", type=positive_seconds, default=2.56,
                          help="timeline window, seconds (default: 2.56 = 64 frames at 25 fps)")
    timeline.add_argument("--step", type=positive_seconds, default=1.0,
                          help="from one timeline window to the next, seconds (default: 1)")
    timeline.add_argument("--plot", type=Path, default=None, metavar="PNG",
                          help="plot the probabilities of every class that reaches the top 3 over time")
    timeline.add_argument("--render", type=Path, default=None, metavar="MP4",
                          help="the video re-encoded with the current top-3 labels drawn on every frame")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from i3d.files import check_writable
    from i3d.predict import Classifier

    over_time = args.timeline or args.plot is not None or args.render is not None
    if over_time and args.stream != "rgb":
        raise I3DError("--timeline, --plot and --render follow the RGB stream (--stream rgb)")
    for output in (args.plot, args.render):
        if output is not None:
            check_writable(output)
    from i3d.settings import InferenceSettings

    run_on = build_settings(args, InferenceSettings)
    classifier = Classifier(args.weights, run_on.device, args.stream, args.flow_weights, args.flow_method,
                            run_on.precision, run_on.runtime, run_on.batch_size, raft_options(args))
    if not over_time:
        prediction = classifier.predict(args.input, args.start, args.end, flow=args.flow)
        top_k = args.top_k or 20
        print(prediction.to_json(top_k) if args.json else prediction.to_text(top_k))
        return
    from i3d.timeline import compute_timeline, plot_timeline
    from i3d.video.inputs import is_array_file
    from i3d.video.samples import sample_path

    source = Path(args.input) if args.input is not None else sample_path()
    if is_array_file(source):
        raise I3DError(f"{source}: a timeline needs the video (or frame folder), not a preprocessed array")
    timeline = compute_timeline(classifier, source, args.window, args.step, args.start, args.end)
    if args.plot is not None:
        plot_timeline(timeline, args.plot)
    if args.render is not None:
        if source.is_dir():
            raise I3DError(f"{source}: --render re-encodes a video file, not a frame folder")
        from i3d.render import render_video

        render_video(source, timeline, args.render)
    if args.timeline:
        top_k = args.top_k or 5
        print(timeline.to_json(top_k) if args.json else timeline.to_csv(top_k), end="" if not args.json else "\n")
    for output in (args.plot, args.render):
        if output is not None:
            print(f"wrote {output}", file=sys.stderr)
