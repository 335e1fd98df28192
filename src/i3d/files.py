"""Writing outputs so that a reader, or a rerun after a crash, never finds a half-written file."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r"\..+\.(?P<pid>\d+)\.tmp(\.[^.]+)?")


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".{os.getpid()}.tmp{path.suffix}")
    # the name matches _TEMPORARY, so a later run can recognise it as a dead writer's leftover
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(path: Path) -> None:
    """Before any work: the output's folder exists (created if missing) and takes a new file, and the path
    is not a folder; a long job must not find out only at its end."""
    from i3d.errors import I3DError

    if path.is_dir():
        raise I3DError(f"{path}: is a folder; give the file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".{os.getpid()}.tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise I3DError(f"{path}: cannot write there ({error.strerror or error})") from None


def check_folder_writable(folder: Path) -> None:
    """Before any work: ``folder`` exists (created if missing), is a folder, and takes a new file."""
    from i3d.errors import I3DError

    if folder.exists() and not folder.is_dir():
        raise I3DError(f"{folder}: is a file; give a folder for the outputs")
    check_writable(folder / "outputs")


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
