"""Fine-tuning and training I3D: single-label and Charades-style multi-label, resumable, with torchrun."""

from i3d.train.config import SCHEDULES, TrainConfig, load_config
from i3d.train.loop import TrainResult, train, train_stream

__all__ = ["SCHEDULES", "TrainConfig", "TrainResult", "load_config", "train", "train_stream"]
