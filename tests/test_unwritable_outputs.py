"""Outputs that cannot be written, for every command that writes: a folder the user may not write (refused
before any work, one line naming it) and a disk that fills up (one line naming the file, nothing
half-written, what was finished kept, a many-video run recording the failed video and going on).

Both run the commands in a child process: as root, permission bits are enforced by dropping the
capability that overrides them (util-linux's setpriv); the full disk is a small tmpfs mounted in a
private mount namespace (unshare), so nothing outside the test sees it.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import numbered_frames, write_video

RUN_COMMANDS = r"""
import contextlib, io, json, os, sys
from i3d.cli.main import main
argvs, folder = json.loads(sys.argv[1]), sys.argv[2]
results = []
for argv in argvs:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results.append({"argv": argv, "code": code, "err": err.getvalue()})
files = {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read().decode("latin-1")
         for d, _, names in os.walk(folder) for f in names}
print(json.dumps({"results": results, "files": files}))
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    os.chmod(root, 0o755)
    videos = [write_video(root / f"v{k}.mp4", numbered_frames(12, 48, 64), 25) for k in range(3)]
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(root / f"{name}.npy", rng.integers(0, 256, (4, 16, 32, 32, 3), dtype=np.uint8))
    (root / "list.csv").write_text("v0.mp4,abseiling\nv1.mp4,archery\n")
    for label, video in (("a", videos[0]), ("b", videos[1])):
        (root / "classes" / label).mkdir(parents=True)
        shutil.copy(video, root / "classes" / label)
    return root


def _commands(root: Path, out: Path) -> list[list[str]]:
    video = str(root / "v0.mp4")
    return [
        ["flow", video, "-o", str(out / "f.npy"), "--method", "opencv"],
        ["fvd", str(root / "a.npy"), str(root / "b.npy"), "-o", str(out / "fvd.json")],
        ["features", video, "-o", str(out / "features")],
        ["export", "-o", str(out / "i3d.onnx")],
        ["evaluate", str(root / "list.csv"), "-o", str(out / "evaluation.json")],
        ["visualize", video, "-o", str(out / "pictures")],
        ["weights", "flow-from-rgb", "-o", str(out / "flow_init.safetensors")],
        ["predict", video, "--plot", str(out / "timeline.png")],
        ["predict", video, "--render", str(out / "labelled.mp4")],
        ["train", "--train", str(root / "classes"), "--output", str(out / "run"), "--steps", "1",
         "--clip-frames", "9", "--crop", "193", "--batch-size", "1", "--workers", "0"],
    ]


def _run(prefix: list[str], argvs: list[list[str]], folder: Path) -> dict:
    """Each command's exit code and stderr, and then the files under ``folder`` (name: content)."""
    done = subprocess.run([*prefix, sys.executable, "-c", RUN_COMMANDS, json.dumps(argvs), str(folder)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _error_lines(err: str) -> list[str]:
    """What a user reads, without progress bars."""
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith(("i3d:", "Traceback"))]


def _without_overriding_permissions() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and util-linux's setpriv is missing: permission bits cannot be enforced")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.needs_weights
def test_a_folder_the_user_may_not_write_is_refused_before_any_work(inputs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(locked, 0o555)
    try:
        report = _run(_without_overriding_permissions(), _commands(inputs, locked), locked)
    finally:
        os.chmod(locked, 0o755)
    failures = []
    for result in report["results"]:
        lines = _error_lines(result["err"])
        named = next(a for a in result["argv"] if a.startswith(str(locked)))
        if (result["code"] != 2 or len(lines) != 1 or not lines[0].startswith(f"i3d: error: {named}: cannot write")
                or "Permission denied" not in lines[0]):
            failures.append(result)
    assert failures == []
    assert report["files"] == {}


def _in_a_full_disk(free_kib: int) -> list[str]:
    """A prefix that runs the command with /full a 4 MiB tmpfs holding ``free_kib`` KiB free, out/ in it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a full disk is simulated with a tmpfs in a private mount namespace: needs root and unshare")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    script = ("mount -t tmpfs -o size=4m tmpfs /mnt && mkdir /mnt/out && "
              f"dd if=/dev/zero of=/mnt/filler bs=4k count={(4096 - free_kib) // 4} 2>/dev/null; "
              'exec "$@"')
    return ["unshare", "-m", "sh", "-c", script, "sh"]


@pytest.mark.needs_weights
def test_a_full_disk_is_one_line_per_command_and_leaves_nothing_half_written(inputs):
    out = Path("/mnt/out")
    report = _run(_in_a_full_disk(0), _commands(inputs, out), out)
    failures = []
    for result in report["results"]:
        lines = _error_lines(result["err"])
        if (result["code"] != 2 or len(lines) != 1 or "could not be written (No space left on device" not in lines[0]
                or str(out) not in lines[0]):
            failures.append(result)
    assert failures == []
    assert [name for name in report["files"] if ".tmp" in name] == []  # no temporary file left behind


@pytest.mark.needs_weights
def test_a_disk_filling_up_fails_the_video_it_hit_and_keeps_the_others(inputs):
    """Room for the manifest and a video's features or two: the rest fail as videos, the run goes on."""
    videos = [str(inputs / f"v{k}.mp4") for k in range(3)]
    out = Path("/mnt/out")
    report = _run(_in_a_full_disk(20), [["features", *videos, "-o", str(out)]], out)
    result, files = report["results"][0], report["files"]
    assert result["code"] == 1 and "Traceback" not in result["err"]
    rows = [json.loads(line) for line in files["manifest.jsonl"].splitlines()][1:]
    assert sorted(Path(row["input"]).name for row in rows) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    done = [row for row in rows if row["status"] == "done"]
    failed = [row for row in rows if row["status"] == "failed"]
    assert done and failed and all("No space left on device" in row["error"] for row in failed)
    assert sorted(row["output"] for row in done) == sorted(name for name in files if name.endswith(".npz"))
    for row in done:  # each finished file whole: it loads
        np.load(io.BytesIO(files[row["output"]].encode("latin-1")))["features"]
    assert [name for name in files if ".tmp" in name] == []


def test_weights_in_a_read_only_folder_load_after_their_time_stamp_changed(inputs, tmp_path):
    """The sidecar's 'last verified' stamp is a shortcut: where it cannot be updated, the weights still load."""
    import torch

    from i3d.model import InceptionI3d
    from i3d.weights.store import save_weights

    shared = tmp_path / "shared"
    torch.manual_seed(0)
    save_weights(shared / "mine.safetensors", InceptionI3d(3, 3).state_dict(), ["a", "b", "c"], "rgb")
    os.utime(shared / "mine.safetensors", (1, 1))  # copied by a tool that did not keep times: re-verified
    os.chmod(tmp_path, 0o755)
    os.chmod(shared, 0o555)
    try:
        report = _run(_without_overriding_permissions(),
                      [["predict", str(inputs / "v0.mp4"), "--weights", str(shared / "mine.safetensors")]], shared)
    finally:
        os.chmod(shared, 0o755)
    assert report["results"][0]["code"] == 0, report["results"][0]["err"]
