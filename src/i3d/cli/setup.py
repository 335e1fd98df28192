"""``i3d setup``: everything first use would fetch or build, ahead of time: the weights, their OpenVINO
conversion (the default CPU runtime's), the sample videos and TV-L1's fused kernels for this CPU (where a
compiler exists)."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    parser = commands.add_parser("setup", help="fetch the default weights and samples and build TV-L1's kernels for "
                                 "this CPU, ahead of first use")
    parser.add_argument("--weights", action="append", default=None, metavar="NAME",
                        help="weights to fetch (repeatable; default: i3d-kinetics-400)")
    parser.add_argument("--no-kernels", action="store_true", help="skip building TV-L1's fused kernels")
    parser.add_argument("--no-samples", action="store_true", help="skip the sample videos")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys
    import warnings

    from i3d.errors import I3DNotice
    from i3d.runtimes.openvino import converted_graph, openvino_available
    from i3d.video.flow import built_kernels
    from i3d.video.samples import fetch_samples
    from i3d.weights.fetch import fetch_weights
    from i3d.weights.registry import DEFAULT_WEIGHTS, registry_entry
    from i3d.weights.store import installed_path

    for name in args.weights or [DEFAULT_WEIGHTS]:
        name = registry_entry(name).name
        if installed_path(name).exists():
            print(f"weights {name}: installed at {installed_path(name)}")
        else:
            print(f"weights {name}: installed at {fetch_weights(name)}", flush=True)
        if openvino_available():
            from i3d.factory import create_model

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", I3DNotice)
                print(f"OpenVINO: {converted_graph(create_model(name))}", flush=True)
    if not args.no_samples:
        print(f"samples: {fetch_samples()[0].parent}")
    if args.no_kernels:
        return 0
    if built_kernels.load() is not None:
        print(f"TV-L1 kernels: built in {built_kernels.kernel_dir()}")
        return 0
    failed = built_kernels.kernel_dir().with_name(built_kernels.kernel_dir().name + ".failed")
    failed.unlink(missing_ok=True)  # try again, and show why it fails
    print("TV-L1 kernels: building for this CPU (about a minute on 2 cores)", flush=True)
    done = subprocess.run([sys.executable, "-m", "i3d.video.flow.aot", "--if-missing"])
    if built_kernels.load() is None:
        print("TV-L1 kernels: not built; flow runs the plain kernels (same results, slower)", file=sys.stderr)
        return 1 if done.returncode else 0
    return 0
