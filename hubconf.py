"""torch.hub entry points: ``torch.hub.load("path/to/i3d", "i3d", source="local", weights=...)``.

The package lives under src/; a clone that was not pip-installed is made importable from here.
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "av", "cv2", "safetensors"]

try:
    import i3d as _package  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def i3d(weights: str | None = None, pretrained: bool = True, **kwargs):
    """Inception-v1 I3D (Carreira & Zisserman 2017); ``weights`` names a registry entry or a .safetensors file.

    Keyword arguments are those of ``i3d.create_model`` (num_classes, in_channels, dropout, final_endpoint).
    """
    from i3d.factory import DEFAULT_WEIGHTS, create_model

    return create_model(weights or DEFAULT_WEIGHTS, pretrained=pretrained, **kwargs)
