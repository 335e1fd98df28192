"""Fine-tuning and training I3D: single-label and Charades-style multi-label, resumable, with torchrun.

The loop (and its imports: torch.distributed, decoding, flow) loads on first use, so that reading the
settings, as every ``i3d`` command's parser does, costs nothing.
"""

from i3d.train.config import SCHEDULES, TrainConfig, load_config

_LOOP = ("TrainResult", "train", "train_stream")


def __getattr__(name: str):
    if name in _LOOP:
        from i3d.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'i3d.train' has no attribute {name!r}")


__all__ = ["SCHEDULES", "TrainConfig", "load_config", *_LOOP]
