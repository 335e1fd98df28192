"""TV-L1's fused kernels, built ahead of time by ``i3d.video.flow.aot``, loaded in milliseconds by every process.

The folder ``$I3D_HOME/kernels/<key>/`` holds one AOTInductor package per kernel; the key holds the torch
version, the CPU's capability and a hash of the kernels' source, so a cache built by another torch,
another CPU or other code is never loaded. This module only loads: it imports neither the algorithm
(``tvl1_torch``) nor the build (``aot``), which imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from i3d.download import cache_dir

NAMES = ("warp", "median", "step", "step_single")  # step_single: one pair (sizes of 1 are specialised)


def cache_key() -> str:
    """torch version, CPU capability and kernel source. The capability is ATen's (a lookup, where asking
    Inductor would import it and probe the compiler: 2 s of a 10-frame run)."""
    here = Path(__file__).parent  # the algorithm and its build, read as text: this loader imports neither
    source = hashlib.sha256((here / "tvl1_torch.py").read_bytes() + (here / "aot.py").read_bytes()).hexdigest()[:12]
    isa = torch.backends.cpu.get_cpu_capability().lower()
    return f"torch-{torch.__version__.replace('+', '_')}-{isa}-{source}"


def kernel_dir() -> Path:
    return cache_dir() / "kernels" / cache_key()


_LOADED: dict[Path, dict] = {}  # one load per process: every FlowComputer (one per video) shares them


def _runner(package: Path):
    """The package's kernel, called on tensors, returning its list of tensors. The loader behind
    ``torch._inductor.aoti_load_package``, used directly: importing Inductor costs a second, and its
    wrapper re-parses the call spec at every call (thousands per video)."""
    loader = torch._C._aoti.AOTIModelPackageLoader(str(package), "model", False, 1, -1)
    return lambda *tensors: loader.boxed_run(list(tensors))


def _load_all(folder: Path) -> dict:
    """Every kernel of ``folder``. The loader unpacks each package under $TMPDIR and deletes it only when the
    loader is destroyed, which a worker process that ends with ``os._exit`` (multiprocessing's pools) never
    does: 8 MB left in /tmp per process. They unpack into a folder of their own, removed once loaded (the
    libraries stay mapped)."""
    unpacked = tempfile.mkdtemp(prefix="i3d-kernels-")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = unpacked
    try:
        return {name: _runner(folder / f"{name}.pt2") for name in NAMES}
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(unpacked, ignore_errors=True)


def load() -> dict | None:
    """The compiled kernels of this machine, or None when they were not built for it (or cannot load)."""
    folder = kernel_dir()
    if folder in _LOADED:
        return _LOADED[folder]
    try:
        if json.loads((folder / "key.json").read_text())["key"] != cache_key():
            return None
        loaded = _load_all(folder)
    except Exception:  # missing, partial, from another build: the plain kernels compute the same
        return None

    def step(*args):
        return loaded["step_single" if args[9].shape[0] == 1 else "step"](*args[:11])

    _LOADED[folder] = {"warp": loaded["warp"], "median": lambda padded: loaded["median"](padded)[0], "step": step}
    return _LOADED[folder]
