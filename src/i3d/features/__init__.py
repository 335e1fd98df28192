"""Per-window I3D features of whole datasets: resumable, failures recorded, locally or on a Ray cluster.

Names load on first use, so the command-line parser can read the presets without torch.
"""

from __future__ import annotations

import importlib

__all__ = ["PRESETS", "ExtractionConfig", "ExtractionSummary", "WindowSpec", "extract_features", "plan_windows"]

_HOMES = {"ExtractionConfig": "i3d.settings", "ExtractionSummary": "i3d.features.extract",
          "extract_features": "i3d.features.extract", "WindowSpec": "i3d.settings",
          "plan_windows": "i3d.features.windows", "PRESETS": "i3d.features.presets"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'i3d.features' has no attribute {name!r}")
