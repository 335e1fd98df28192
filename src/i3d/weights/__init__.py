"""Pretrained weights: the registry, the store, fetching, and the readers of foreign checkpoint formats.

Names load on first use: the registry is plain data that the command-line parser reads without torch.
``i3d.factory.resolve_weights`` is the one place a weights name or path is loaded.
"""

from __future__ import annotations

import importlib

__all__ = [
    "DEFAULT_WEIGHTS", "REGISTRY", "LoadedWeights", "WeightsInfo", "fetch_weights", "installed_path",
    "registry_entry", "save_weights",
]

_HOMES = {
    "DEFAULT_WEIGHTS": "i3d.weights.registry", "REGISTRY": "i3d.weights.registry",
    "WeightsInfo": "i3d.weights.registry", "registry_entry": "i3d.weights.registry",
    "LoadedWeights": "i3d.weights.store", "installed_path": "i3d.weights.store", "save_weights": "i3d.weights.store",
    "fetch_weights": "i3d.weights.fetch",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'i3d.weights' has no attribute {name!r}")
