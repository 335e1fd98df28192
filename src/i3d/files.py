"""Writing outputs so that a reader, or a rerun after a crash, never finds a half-written file."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r"\..+\.(?P<pid>\d+)\.tmp(\.[^.]+)?")
PENDING_TEMPORARIES: set[Path] = set()  # written now; removed by a Ctrl-C that cannot wait for the writer


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (numpy and ONNX look at it) and ends in the pid, so
    concurrent writers never share one; permissions follow the umask like a normally created file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                    suffix=f".{os.getpid()}.tmp{path.suffix}")
    except OSError as error:
        raise write_error(path, error) from None
    # the name matches _TEMPORARY, so a later run can recognise it as a dead writer's leftover
    os.close(fd)
    tmp = Path(name)
    PENDING_TEMPORARIES.add(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as error:  # a full disk, a quota, a vanished folder: one line, nothing half-written left
        raise write_error(path, error) from None
    except Exception as error:  # torch.save and safetensors report a full disk in their own exception types
        if _free_bytes(path.parent) >= 1 << 20:
            raise
        raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from error
    finally:
        if tmp.exists():
            tmp.unlink()
        PENDING_TEMPORARIES.discard(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_error(path: Path, error: OSError) -> Exception:
    """The one-line error for an output that could not be written. It says when the disk is full: numpy's
    own message for a short write is only 'N requested and M written'."""
    from i3d.errors import OutputError

    reason = error.strerror or str(error)
    if error.errno != errno.ENOSPC and _free_bytes(path.parent) < 1 << 20:
        reason += "; the disk is full"
    return OutputError(path, reason + cache_hint(path), error.errno)


def cache_hint(path: Path | str) -> str:
    """For a path in i3d's own cache, what to do when it cannot be written there."""
    from i3d.download import cache_dir

    if Path(os.path.realpath(path)).is_relative_to(os.path.realpath(cache_dir())):  # never raises on a link loop
        return f"; it is in the cache {cache_dir()}: set I3D_HOME to a folder you can write"
    return ""


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


def check_writable(path: Path) -> None:
    """Before any work: the output's folder exists (created if missing) and takes a new file, and the path
    is not a folder; a long job must not find out only at its end."""
    from i3d.errors import I3DError

    if path.is_dir():
        raise I3DError(f"{path}: is a folder; give the file to write")
    _probe(path.parent, path)


def check_folder_writable(folder: Path) -> None:
    """Before any work: ``folder`` exists (created if missing), is a folder, and takes a new file."""
    from i3d.errors import I3DError

    if folder.exists() and not folder.is_dir():
        raise I3DError(f"{folder}: is a file; give a folder for the outputs")
    _probe(folder, folder)


def _probe(folder: Path, named: Path) -> None:
    """Create ``folder`` if missing and a file in it, then remove the file; errors name ``named``."""
    from i3d.errors import I3DError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{named.stem}.", suffix=f".{os.getpid()}.tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise I3DError(f"{named}: cannot write there ({error.strerror or error})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of writers that were killed (their pid no longer runs) under ``folder``."""
    removed = []
    for tmp in folder.rglob(".*.tmp*"):
        match = _TEMPORARY.fullmatch(tmp.name)
        if match and tmp.is_file() and not _alive(int(match["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


FORMAT_VERSION = "1"  # the project's weights files (I3D and RAFT): safetensors with this in their metadata
TENSORS_DIGEST = "tensors_sha256"  # the metadata field: sha256 of the tensors as written (names, dtypes, shapes, bytes)


def tensors_digest(state_dict: dict) -> str:
    """sha256 of the tensors in name order: each one's name, dtype, shape and bytes. Written into a weights
    file's own metadata and checked on every load, so the file vouches for itself wherever it is copied."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def read_safetensors(path: Path, refetch: str = "") -> tuple[dict, dict[str, str]]:
    """A safetensors file's tensors and metadata; a file that cannot be read is one line (``refetch``: what to
    do about it, appended)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as file:
            return tensors, dict(file.metadata() or {})
    except (SafetensorError, OSError) as error:
        from i3d.errors import I3DError

        raise I3DError(f"{path}: not a readable safetensors file ({error})" + (f"; {refetch}" if refetch else "")
                       ) from None
