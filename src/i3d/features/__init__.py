"""Per-window I3D features of whole datasets: resumable, failures recorded, locally or on a Ray cluster."""

from i3d.features.extract import ExtractionConfig, ExtractionSummary, extract_features
from i3d.features.windows import WindowSpec, plan_windows

__all__ = ["ExtractionConfig", "ExtractionSummary", "WindowSpec", "extract_features", "plan_windows"]
