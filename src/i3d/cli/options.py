"""Command-line options made from the settings dataclasses, so the API's field help is the option's help."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from i3d.settings import option_name

_TYPES = {"int": int, "float": float, "str": str, "Path": Path}


def _converter(field: dataclasses.Field):
    """Text -> the field's type; ``none`` for optional fields; true/false/yes/no/1/0 for flags."""
    kind = str(field.type)
    base = _TYPES.get(kind.split(" ")[0], str)

    none_word = field.metadata.get("none_word")

    def convert(text: str) -> Any:
        if none_word is not None and text == none_word:
            return text  # given_settings turns it into None (None itself means "not given")
        if "None" in kind and text.lower() in ("none", "null"):
            return None
        if kind.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
        try:
            return base(text)
        except ValueError:
            expected = "an integer" if base is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}{f' or `{none_word}`' if none_word else ''}, "
                                             f"not {text!r}") from None

    convert.__name__ = base.__name__
    return convert


def add_settings(parser: argparse.ArgumentParser, settings: type, skip: Iterable[str] = ()) -> None:
    """One option per field of ``settings`` that has help; left out, an option is None (the dataclass's
    default applies). The help ends with the default, written once, in the field.

    A flag (bool field) may stand alone (true) or take a value: ``--amp false``.
    """
    for field in dataclasses.fields(settings):
        if field.name in skip or not field.metadata.get("help"):
            continue
        help_text = field.metadata["help"]
        default = field.metadata.get("default_text", field.default)
        if default not in (None, "", dataclasses.MISSING):
            help_text += f" (default: {default})"
        flag, choices = option_name(field), field.metadata.get("choices")
        if str(field.type).startswith("bool"):
            extra = {"nargs": "?", "const": True, "metavar": "BOOL"}
        else:
            extra = {"metavar": field.metadata.get("metavar", None if choices else field.name.upper())}
        parser.add_argument(flag, dest=field.name, default=None, help=help_text, type=_converter(field),
                            choices=choices, **extra)


def given_settings(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields the user set on the command line (a field's ``none_word``, such as ``native``, is None)."""
    given = {}
    for field in dataclasses.fields(settings):
        if not field.metadata.get("help"):  # not an option (a preset's setting, or set by other options)
            continue
        value = getattr(args, field.name, None)
        if value is not None:
            given[field.name] = None if value == field.metadata.get("none_word") else value
    return given


def build_settings(args: argparse.Namespace, settings: type) -> Any:
    return settings(**given_settings(args, settings))


def _at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
    return value


def positive_int(text: str) -> int:
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _at_least(text, 0)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def seconds(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be seconds from the video's start (0 or more), not {text}")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0 seconds, not {text}")
    return value


def add_weights(parser: argparse.ArgumentParser, what: str = "RGB weights") -> None:
    parser.add_argument("--weights", default=None,
                        help=f"{what}: a registry name (`i3d weights list`) or a .safetensors file "
                        "(default: i3d-kinetics-400)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA where available), cpu, cuda or cuda:N "
                        "(default: auto)")


def add_flow_options(parser: argparse.ArgumentParser) -> None:
    from i3d.settings import FLOW_METHOD_HELP, FLOW_METHODS

    parser.add_argument("--flow-weights", default=None,
                        help="flow weights (default: flow_imagenet, once converted)")
    parser.add_argument("--flow-method", choices=FLOW_METHODS, default="torch", help=f"{FLOW_METHOD_HELP} "
                        "(default: torch)")
    add_raft_options(parser)


def add_raft_options(parser: argparse.ArgumentParser) -> None:
    from i3d.settings import RAFT_ITERATIONS_HELP, RAFT_WEIGHTS_HELP

    parser.add_argument("--raft-weights", default=None, help=f"{RAFT_WEIGHTS_HELP} (default: raft-sintel)")
    parser.add_argument("--raft-iterations", type=positive_int, default=None,
                        help=f"{RAFT_ITERATIONS_HELP} (default: 20)")


def raft_options(args: argparse.Namespace) -> dict:
    """The RAFT options given, for ``FlowComputer``: only where given, so TV-L1 refuses them by name."""
    return {k: getattr(args, k) for k in ("raft_weights", "raft_iterations") if getattr(args, k) is not None}
