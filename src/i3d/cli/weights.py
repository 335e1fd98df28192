"""``i3d weights``: list, fetch, convert, and derive pretrained weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from i3d.errors import I3DError


def add_parser(commands) -> None:
    from i3d.networks.architecture import RESNET_LAYOUTS
    from i3d.settings import SOURCE_FORMATS
    from i3d.weights.registry import DEFAULT_WEIGHTS

    actions = commands.add_parser("weights", help="list, fetch or convert pretrained weights",
                                  description="Pretrained weights: the registry, downloads and converters."
                                  ).add_subparsers(dest="action", required=True, metavar="ACTION",
                                                                            help="one of:")
    actions.add_parser("list", help="known weights and whether installed").set_defaults(run=run_list)

    fetch = actions.add_parser("fetch", help="download, verify and convert weights")
    fetch.add_argument("name", nargs="?", default=DEFAULT_WEIGHTS, help=f"registry name (default: {DEFAULT_WEIGHTS})")
    fetch.add_argument("--source", type=Path, default=None, help="an already downloaded source file (offline)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if installed")
    fetch.add_argument("--mirror", default=None, help="a URL or local folder holding the published files at their "
                       "repository paths (default: $I3D_WEIGHTS_URL, else the pinned GitHub URLs)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(run=run_fetch)
    actions.add_parser("verify", help="recheck every installed weights file against its recorded sha256"
                       ).set_defaults(run=run_verify)

    convert = actions.add_parser("convert", help="convert a published checkpoint (I3D, or RAFT for --raft-weights)",
                                 description="Any published I3D checkpoint to this project's .safetensors, its "
                                 "format recognised from its contents: DeepMind's TF checkpoints, the PyTorch "
                                 "port's .pt, the Keras ports' .h5; for the ResNet-50 family PyTorchVideo's .pyth, "
                                 "MMAction2's .pth, video-nonlocal-net's Caffe2 .pkl and pytorch-resnet3d's .pth; "
                                 "RAFT-large's .pth (princeton-vl's or torchvision's) for --raft-weights.")
    convert.add_argument("source", type=Path, help="model.ckpt(.index), .pt, .h5, .pyth, .pth or .pkl")
    convert.add_argument("-o", "--output", type=Path, default=None,
                         help="the .safetensors to write (default: installed under --name)")
    convert.add_argument("--name", default=None, help="a registry name (rgb_imagenet, flow_imagenet, ...): "
                         "installs it so `--weights NAME` finds it")
    convert.add_argument("--labels", type=Path, default=None, help="class names, one per line, in logit order")
    convert.add_argument("--scope", choices=("RGB", "Flow"), default=None,
                         help="the stream, if the checkpoint holds both (default: the only one)")
    convert.add_argument("--source-format", choices=SOURCE_FORMATS, default=None,
                         help="default: recognised from the file")
    convert.add_argument("--layout", choices=sorted(RESNET_LAYOUTS), default=None, metavar="LAYOUT",
                         help="a ResNet-50 layout the file cannot show itself (Caffe2 32x2 or 8x8, MMAction2's "
                         "non-local form): " + ", ".join(sorted(RESNET_LAYOUTS)) + " (default: from --name, "
                         "else from the tensors and the file name)")
    convert.set_defaults(run=run_convert)

    cross = actions.add_parser("flow-from-rgb", help="a flow network initialised from RGB weights (cross-modal)")
    cross.add_argument("rgb", nargs="?", default=None, help=f"RGB weights (default: {DEFAULT_WEIGHTS})")
    cross.add_argument("-o", "--output", type=Path, required=True, help="the flow .safetensors to write")
    cross.set_defaults(run=run_flow_from_rgb)

    inflate = actions.add_parser("inflate", help="I3D weights from a 2D Inception-v1 (torchvision GoogLeNet)")
    inflate.add_argument("source", type=Path, help="GoogLeNet state dict (.pth, .pt or .safetensors)")
    inflate.add_argument("-o", "--output", type=Path, required=True, help="I3D weights (.safetensors)")
    inflate.add_argument("--labels", type=Path, default=None, help="class names of its classifier, one per line")
    inflate.set_defaults(run=run_inflate)


def run_list(args: argparse.Namespace) -> None:
    from i3d.video.flow.raft_weights import RAFT_WEIGHTS, raft_weights_path
    from i3d.weights.registry import REGISTRY
    from i3d.weights.store import installed_path

    for name, info in REGISTRY.items():
        path = installed_path(name)
        state = f"installed at {path} ({path.stat().st_size / 2**20:.1f} MiB)" if path.exists() else "not installed"
        kind = f"{info.modality}, {info.num_classes} classes" + (", multi-label" if info.multi_label else "") + \
            (f", ResNet-50 ({info.layout})" if info.layout else "")
        print(f"{name}  [{kind}]  {state}")
        print(f"    {info.description}; trained on {info.trained_on}")
        pins = f"sha256 {info.source_sha256}" if info.source_sha256 else \
            ", ".join(f"{f.name if not f.host else 'pinned by'} {f.pin}" for f in info.files)
        unpinned = "" if info.fetchable else " (not fetched by i3d: no published hash pins the file)"
        print(f"    source: {info.source}{unpinned}; {pins + '; ' if pins else ''}licence: {info.license}")
        for dataset, scores in info.metrics.items():
            if dataset != "source":
                print(f"    published: {dataset} top-1 {scores['top1']}%, top-5 {scores['top5']}% "
                      f"({info.metrics['source']})")
    for name, (remote, trained) in RAFT_WEIGHTS.items():
        path = raft_weights_path(name)
        state = f"installed at {path} ({path.stat().st_size / 2**20:.1f} MiB)" if path.exists() else "not installed"
        print(f"{name}  [RAFT-large optical flow, --raft-weights]  {state}")
        print(f"    {trained}")
        print(f"    source: {remote.url}; {remote.pin}; licence: BSD-3-Clause")


def run_fetch(args: argparse.Namespace) -> None:
    from i3d.video.flow.raft_weights import RAFT_WEIGHTS, fetch_raft, raft_weights_path
    from i3d.weights.fetch import fetch_weights
    from i3d.weights.registry import registry_entry
    from i3d.weights.store import installed_path

    if args.name in RAFT_WEIGHTS:
        if args.source is not None:
            raise I3DError(f"{args.name} is fetched from its pinned URL; for a local copy use --mirror FOLDER")
        path = raft_weights_path(args.name)
        if path.exists() and not args.force:
            print(f"{args.name} already installed at {path}")
            return
        print(f"{args.name} installed at {fetch_raft(args.name, args.mirror, args.quiet)}")
        return
    name = registry_entry(args.name).name
    path = installed_path(name)
    if path.exists() and not args.force and args.source is None:
        print(f"{name} already installed at {path}")
        return
    print(f"{name} installed at {fetch_weights(name, args.source, args.mirror, args.quiet)}")


def run_verify(args: argparse.Namespace) -> int:
    from i3d.factory import resolve_weights
    from i3d.weights.registry import REGISTRY
    from i3d.weights.store import digest_path, installed_path

    checked = damaged = 0
    for name in REGISTRY:
        path = installed_path(name)
        if not path.exists():
            continue
        checked += 1
        if digest_path(path).is_file():  # forget when it last matched: hash it now
            record = json.loads(digest_path(path).read_text())
            record.pop("verified", None)
            digest_path(path).write_text(json.dumps(record) + "\n")
        try:
            resolve_weights(name)
            print(f"ok       {name}  {path}" + ("" if digest_path(path).is_file() else "  (no sha256 recorded: values "
                                                                                     "and layout checked)"))
        except I3DError as error:
            damaged += 1
            print(f"damaged  {name}  {error}")
    print(f"{checked} installed, {damaged} damaged")
    return 1 if damaged else 0


def run_convert(args: argparse.Namespace) -> None:
    from i3d.files import check_writable
    from i3d.weights.convert import convert_weights, detect_format

    if args.output is not None:
        check_writable(args.output)
    if args.source.is_file() and args.source_format is None and detect_format(args.source)[0] == "raft":
        convert_raft_checkpoint(args)
        return
    converted = convert_weights(args.source, args.output, args.name, args.labels, args.scope, args.source_format,
                                layout=args.layout)
    if converted.labels_note:
        print(f"note: {converted.labels_note}")
    print(f"{converted.modality} {converted.network}, {converted.num_classes} classes, written to {converted.path}")


def convert_raft_checkpoint(args: argparse.Namespace) -> None:
    from i3d.video.flow.raft_weights import RAFT_WEIGHTS, convert_raft, raft_weights_path

    if args.labels is not None or args.scope is not None or args.layout is not None:
        raise I3DError(f"{args.source} is a RAFT checkpoint: --labels, --scope and --layout are for I3D")
    if args.output is None and args.name not in RAFT_WEIGHTS:
        raise I3DError(f"{args.source} is a RAFT checkpoint: give -o FILE.safetensors, or --name with one of "
                       f"{', '.join(RAFT_WEIGHTS)} to install it there")
    output = args.output or raft_weights_path(args.name)
    convert_raft(args.source, output)
    print(f"RAFT-large optical flow, written to {output} (give it as --raft-weights)")


def run_flow_from_rgb(args: argparse.Namespace) -> None:
    from i3d.factory import resolve_weights
    from i3d.files import check_writable
    from i3d.weights.cross_modal import flow_state_dict_from_rgb
    from i3d.weights.store import save_weights

    check_writable(args.output)
    rgb = resolve_weights(args.rgb)
    if rgb.modality != "rgb":
        raise I3DError(f"{args.rgb} holds {rgb.modality} weights; cross-modal initialisation starts from RGB")
    if rgb.layout is not None:
        raise I3DError(f"{rgb.name} is a ResNet-50 I3D: the flow stream is the Inception network's")
    origin = rgb.name
    save_weights(args.output, flow_state_dict_from_rgb(rgb.state_dict), rgb.labels, "flow",
                 name=args.output.stem, provenance=f"cross-modal initialisation from {origin}")
    print(f"flow I3D initialised from {args.rgb or 'the default RGB weights'}, written to {args.output}")


def run_inflate(args: argparse.Namespace) -> None:
    from i3d.files import check_writable
    from i3d.weights.inflate import inflate_file

    check_writable(args.output)
    classes = inflate_file(args.source, args.output, args.labels)
    print(f"I3D inflated from 2D Inception-v1 ({classes} classes), written to {args.output}")
