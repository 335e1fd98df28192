"""``i3d train``: fine-tune or train one stream (or both), in one process or several under torchrun."""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d.cli.options import add_settings, given_settings


def add_parser(commands) -> None:
    from i3d.train.config import TrainConfig

    parser = commands.add_parser("train", help="fine-tune or train one stream (torchrun for several processes)",
                                 description="Every setting of the config file can be given or overridden as an "
                                 "option; options left out take the file's value, else the default shown.")
    parser.add_argument("config", type=Path, nargs="?", default=None, help="YAML or TOML settings file")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    add_settings(parser, TrainConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from i3d.train import TrainConfig, load_config, train

    config = load_config(args.config, given_settings(args, TrainConfig))
    train(config, resume=args.resume)
