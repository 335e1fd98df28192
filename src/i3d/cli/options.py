"""Command-line options made from the settings dataclasses, so the API's field help is the option's help."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

_TYPES = {"int": int, "float": float, "str": str}


def option_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _converter(field: dataclasses.Field):
    """Text -> the field's type; ``none`` for optional fields; true/false/yes/no/1/0 for flags."""
    kind = str(field.type)
    base = _TYPES.get(kind.split(" ")[0], str)

    def convert(text: str) -> Any:
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
            raise argparse.ArgumentTypeError(f"expected {base.__name__ == 'int' and 'an integer' or 'a number'}, "
                                             f"not {text!r}") from None

    convert.__name__ = base.__name__
    return convert


def add_settings(parser: argparse.ArgumentParser, settings: type, skip: Iterable[str] = ()) -> None:
    """One option per field of ``settings``; left out, an option is None (the dataclass's default applies).

    A flag (bool field) may stand alone (true) or take a value: ``--amp false``.
    """
    for field in dataclasses.fields(settings):
        if field.name in skip:
            continue
        help_text = field.metadata.get("help", "")
        if field.default not in (None, ""):
            help_text += f" (default: {field.default})"
        flag, choices = option_name(field), field.metadata.get("choices")
        if str(field.type).startswith("bool"):
            extra = {"nargs": "?", "const": True, "metavar": "BOOL"}
        else:
            extra = {"metavar": field.metadata.get("metavar", None if choices else field.name.upper())}
        parser.add_argument(flag, dest=field.name, default=None, help=help_text, type=_converter(field),
                            choices=choices, **extra)


def given_settings(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields the user set on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(settings)
            if getattr(args, f.name, None) is not None}


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


def add_weights(parser: argparse.ArgumentParser, what: str = "RGB weights") -> None:
    parser.add_argument("--weights", default=None,
                        help=f"{what}: a registry name (`i3d weights list`) or a .safetensors file "
                        "(default: i3d-kinetics-400)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def add_flow_options(parser: argparse.ArgumentParser) -> None:
    from i3d.settings import FLOW_METHODS

    parser.add_argument("--flow-weights", default=None,
                        help="flow weights (default: flow_imagenet, once converted)")
    parser.add_argument("--flow-method", choices=FLOW_METHODS, default="torch",
                        help="TV-L1 backend: the batched PyTorch one, or OpenCV-contrib's (default: torch)")
