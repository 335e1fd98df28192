"""``i3d flow``: the flow input of a video (TV-L1 or RAFT), saved for reuse."""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d.cli.options import add_device, add_raft_options, positive_int, raft_options, seconds
from i3d.errors import I3DError


def add_parser(commands) -> None:
    from i3d.settings import FLOW_METHOD_HELP, FLOW_METHODS

    parser = commands.add_parser("flow", help="the flow input of a video (TV-L1 or RAFT), saved for reuse",
                                 description="Flow between consecutive 25 fps frames at short side 256, clipped to "
                                 "+-20 px, scaled to [-1, 1], centre 224 crop: DeepMind's flow sample format.")
    parser.add_argument("input", type=Path, help="video file or frame folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help=".npy: (T, 224, 224, 2) float32 in [-1, 1]")
    parser.add_argument("--method", choices=FLOW_METHODS, default="torch", help=f"{FLOW_METHOD_HELP} (default: torch)")
    add_raft_options(parser)
    parser.add_argument("--start", type=seconds, default=None, help="span start, seconds (default: the start)")
    parser.add_argument("--end", type=seconds, default=None, help="span end, seconds (default: the end)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="frame pairs per batch (default on a CPU: 8 for TV-L1, 4 for RAFT; on a GPU "
                        "as many as half its free memory holds, up to 256)")
    add_device(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import numpy as np

    from i3d.files import atomic_path, check_writable
    from i3d.video.flow import FlowComputer, flow_input_frames

    if args.input.suffix.lower() == ".npy":
        raise I3DError(f"{args.input}: give a video file or a frame folder; flow is computed from frames")
    check_writable(args.output)
    computer = FlowComputer(args.method, args.device, args.batch_size, **raft_options(args))
    fields = list(flow_input_frames(args.input, args.start, args.end, computer))
    if not fields:
        raise I3DError(f"{args.input}: no frames in the requested span")
    frames = np.stack(fields)
    with atomic_path(args.output) as tmp, open(tmp, "wb") as file:
        np.save(file, frames)
    method = "RAFT" if args.method == "raft" else f"{args.method} TV-L1"
    print(f"wrote {args.output}: {frames.shape} float32 in [-1, 1] ({method}, 25 fps)")
