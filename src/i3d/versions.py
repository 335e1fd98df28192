"""The software a reported number came from, so that it can be reproduced."""

from __future__ import annotations

import platform
from importlib import metadata


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("i3d", "torch", "numpy", "av", "opencv-contrib-python-headless", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
