"""I3D video action recognition: the network, its pretrained weights, and the published recipe.

The names below are imported on first use, so that the command-line parser and processes which only
decode video (feature extraction's workers) do not pay for importing torch.
"""

from __future__ import annotations

import importlib

__all__ = ["Classifier", "I3DError", "InceptionI3d", "Prediction", "create_model", "get_weights", "list_models",
           "load_model"]
__version__ = "0.1.0"

_HOMES = {"Classifier": "i3d.predict", "Prediction": "i3d.predict",
          "create_model": "i3d.factory", "list_models": "i3d.factory", "load_model": "i3d.factory",
          "get_weights": "i3d.weights.registry",
          "InceptionI3d": "i3d.networks.inception", "I3DError": "i3d.errors"}


def __getattr__(name: str):
    if name in _HOMES:
        attribute = "registry_entry" if name == "get_weights" else name
        return getattr(importlib.import_module(_HOMES[name]), attribute)
    raise AttributeError(f"module 'i3d' has no attribute {name!r}")
