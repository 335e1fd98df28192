"""I3D video action recognition: the network, its pretrained weights, and the published recipe.

The names below are imported on first use, so that processes which only decode video (feature
extraction's workers) do not pay for importing torch.
"""

from __future__ import annotations

import importlib

__all__ = ["Classifier", "I3DError", "InceptionI3d", "Prediction", "load_model"]
__version__ = "0.1.0"

_HOMES = {"Classifier": "i3d.predict", "Prediction": "i3d.predict", "load_model": "i3d.predict",
          "InceptionI3d": "i3d.model", "I3DError": "i3d.errors"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'i3d' has no attribute {name!r}")
