import os
import subprocess
import sys

import pytest

from i3d.files import atomic_path, remove_stale_temporaries


def test_atomic_path_leaves_nothing_when_the_write_fails(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"] and target.read_bytes() == b"whole"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    leftovers = [tmp_path / f".v1.abc.{dead_pid}.tmp.npz", tmp_path / "sub" / f".v2.x_y.{dead_pid}.tmp.npy"]
    live = tmp_path / f".v3.abc.{os.getpid()}.tmp.npz"
    kept = [live, tmp_path / "v1.npz", tmp_path / ".hidden"]
    for path in leftovers + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(leftovers)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in leftovers)
