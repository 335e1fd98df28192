"""What a training run is told: one flat dataclass, read from YAML or TOML, every field overridable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i3d.errors import I3DError
from i3d.networks.architecture import ENDPOINTS, MIN_CROP, MIN_FRAMES, RESNET_ENDPOINTS
from i3d.settings import FLOW_METHOD_HELP, FLOW_METHODS, RAFT_ITERATIONS_HELP, RAFT_WEIGHTS_HELP, setting
from i3d.streams import STREAMS, check_stream

TRAINABLE_ENDPOINTS = (*ENDPOINTS, *RESNET_ENDPOINTS[:-1])  # either network's, before its classifier

# DeepMind's published schedules (steps, learning rate from that step on), minibatch 6 per replica.
# The flow stream was trained again after 115k steps, hence its second descent.
SCHEDULES = {
    "rgb": [(0, 0.1), (97_000, 0.01), (108_000, 0.001)],
    "flow": [(0, 0.1), (97_000, 0.01), (104_500, 0.001), (115_000, 0.1), (140_000, 0.01), (150_000, 0.001)],
}
PATH_FIELDS = ("train", "val", "videos_dir", "classes_file", "weights", "flow_weights", "output")


@dataclass
class TrainConfig:
    """One training run; every field is a key of the config file and an option of ``i3d train``."""

    # data
    train: str = setting("", "class folders, a `path,label[,start_s,end_s]` CSV, or a Charades CSV")
    val: str | None = setting(None, "validation data in the same forms (default: held out of train by val_ratio)")
    val_ratio: float = setting(0.0, "fraction of each class held out for validation when val is not given")
    videos_dir: str | None = setting(None, "Charades: the folder of <id>.mp4 (default: beside the CSV)")
    classes_file: str | None = setting(None, "class names, one per line, in logit order (default: sorted labels)")
    # clips
    stream: str = setting("rgb", "rgb, flow, or joint: the two streams one after the other, into output/rgb "
                          "and output/flow", STREAMS)
    clip_frames: int = setting(64, "frames per training clip (25 fps)")
    crop: int = setting(224, "side of the square crop")
    flow_method: str = setting("torch", FLOW_METHOD_HELP, FLOW_METHODS)
    raft_weights: str | None = setting(None, RAFT_WEIGHTS_HELP, default_text="raft-sintel")
    raft_iterations: int | None = setting(None, RAFT_ITERATIONS_HELP, default_text="20")
    # model
    weights: str | None = setting(None, "RGB starting weights: registry name or .safetensors (default: Kinetics-400)")
    flow_weights: str | None = setting(None, "flow starting weights (default: flow_imagenet, once converted)")
    dropout: float = setting(0.5, "dropout before the classifier")
    freeze_bn: bool = setting(False, "keep BatchNorm statistics as loaded (for small batches)")
    freeze_until: str | None = setting(None, "an endpoint: it and every layer before it are not trained "
                                       "(Inception: Conv3d_1a_7x7 .. Mixed_5c; ResNet-50: stem, res2 .. res5)",
                                       TRAINABLE_ENDPOINTS, metavar="ENDPOINT")
    # optimisation
    steps: int = setting(1000, "optimiser steps")
    batch_size: int = setting(6, "clips per forward pass per process")
    accumulate: int = setting(1, "forward passes per optimiser step (effective batch: batch_size x accumulate "
                              "x processes)")
    schedule: str = setting("0:0.01", "learning rates: `rgb`, `flow` (the reference's) or `step:lr,step:lr,...`")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-7, "SGD weight decay")
    amp: bool = setting(True, "mixed precision where the device has it (CUDA)")
    device: str = setting("auto", "auto (CUDA if available, else CPU), cpu, cuda or cuda:N")
    # bookkeeping
    output: str = setting("runs/i3d", "folder for checkpoints, metrics and the final weights")
    checkpoint_every: int = setting(100, "steps between checkpoints")
    eval_every: int = setting(0, "steps between validations, and one before the first step (0: only at the end)")
    log_every: int = setting(10, "steps between metric lines")
    workers: int = setting(2, "data-loading processes per training process")
    seed: int = setting(0, "seed of every random choice (clips, crops, flips, new classifier, dropout)")

    def __post_init__(self) -> None:
        self.stream = check_stream(self.stream)
        if self.flow_method != "raft" and (self.raft_weights is not None or self.raft_iterations is not None):
            raise I3DError(f"--raft-weights and --raft-iterations are for --flow-method raft, not {self.flow_method}")
        if self.freeze_until is not None and self.freeze_until not in TRAINABLE_ENDPOINTS:
            raise I3DError(f"freeze_until must be an endpoint: {', '.join(TRAINABLE_ENDPOINTS)}")
        for name in ("steps", "batch_size", "accumulate", "clip_frames", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise I3DError(f"{name} must be at least 1")
        if self.clip_frames < MIN_FRAMES or self.crop < MIN_CROP:
            raise I3DError(f"clips must have at least {MIN_FRAMES} frames and crops at least {MIN_CROP} px (the "
                           f"network's last pool is 2x7x7 at 1/8 of the frames and 1/32 of the side), not "
                           f"clip_frames {self.clip_frames} and crop {self.crop}")
        if not 0 <= self.dropout < 1:
            raise I3DError("dropout must be in [0, 1)")
        lr_schedule(self.schedule)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def lr_schedule(text: str) -> list[tuple[int, float]]:
    """``rgb``/``flow`` or ``step:lr,...`` -> [(first step, learning rate)], sorted, starting at step 0."""
    if text in SCHEDULES:
        return SCHEDULES[text]
    try:
        points = sorted((int(step), float(lr)) for step, lr in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise I3DError(f"schedule {text!r}: expected rgb, flow or `step:lr,step:lr,...`") from None
    if not points or points[0][0] != 0 or any(lr <= 0 for _, lr in points):
        raise I3DError(f"schedule {text!r}: must start at step 0 with positive learning rates")
    return points


def lr_at(schedule: list[tuple[int, float]], step: int) -> float:
    return [lr for first, lr in schedule if first <= step][-1]


def _field_types() -> dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_value(name: str, text: Any) -> Any:
    """A command-line or file value as the field's type (`none` for optional fields)."""
    kind = str(_field_types()[name].type)
    if text is None or (isinstance(text, str) and text.lower() in ("none", "null") and "None" in kind):
        return None
    try:
        if kind.startswith("bool"):
            if isinstance(text, bool):
                return text
            if str(text).lower() in ("1", "true", "yes", "on"):
                return True
            if str(text).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except (TypeError, ValueError):
        expected = {"bool": "true or false", "int": "an integer", "float": "a number"}[kind.split(" ")[0]]
        raise I3DError(f"{name}: {text!r} is not {expected}") from None
    return str(text)


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config file's fields (YAML or TOML; a ``[train]`` table or the top level), then the overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise I3DError(f"{path}: no such config file")
        text = path.read_text()
        try:
            if path.suffix.lower() == ".toml":
                try:
                    import tomllib
                except ModuleNotFoundError:  # Python 3.10
                    import tomli as tomllib

                values = tomllib.loads(text)
            else:
                import yaml

                values = yaml.safe_load(text) or {}
        except Exception as error:  # both parsers' errors: report the file and the reason in one line
            reason = " ".join(str(error).split())  # parsers' messages span lines; the error is one line
            raise I3DError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'} ({reason})") from None
        if not isinstance(values, dict):
            raise I3DError(f"{path}: expected a mapping of settings")
        if isinstance(values.get("train"), dict):  # a [train] table (e.g. in a pyproject-style file)
            values = values["train"]
    unknown = sorted(set(values) - set(_field_types()))
    if unknown:
        raise I3DError(f"{path}: unknown settings: {', '.join(unknown)}")
    try:
        values = {name: parse_value(name, value) for name, value in values.items()}
    except I3DError as error:
        raise I3DError(f"{path}: {error}") from None
    for key, value in values.items():  # paths in a config file are relative to the file
        relative = value and key in PATH_FIELDS and not Path(value).is_absolute()
        if relative and (key not in ("weights", "flow_weights") or value.endswith(".safetensors")):
            values[key] = str(path.parent / value)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if not values.get("train"):
        raise I3DError("no training data: set `train` in the config or pass --train")
    return TrainConfig(**values)
