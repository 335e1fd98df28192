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
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib import request

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

    from i3d.networks.inception import InceptionI3d
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


@pytest.mark.needs_weights
def test_the_service_answers_507_when_it_cannot_store_an_upload(inputs):
    """`i3d serve` whose temporary folder is a full disk: each upload is a 507 JSON error, and it serves on."""
    pytest.importorskip("uvicorn")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upload = write_video(inputs / "upload.mp4", numbered_frames(300, 48, 64), 25)  # more than the room left
    # 8 KiB left: Python's tempfile skips a folder it cannot write 4 bytes to, so the folder is not quite full
    server = subprocess.Popen([*_in_a_full_disk(8), "env", "TMPDIR=/mnt", sys.executable, "-m", "i3d.cli.main",
                               "serve", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                request.urlopen(url + "/healthz", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.5)
        boundary = "b0undary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload.mp4"\r\n'
                f"Content-Type: video/mp4\r\n\r\n").encode() + upload.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        for _ in range(2):
            upload = request.Request(url + "/v1/predict", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with pytest.raises(request.HTTPError) as answer:
                request.urlopen(upload, timeout=60)
            assert answer.value.code == 507
            assert json.loads(answer.value.read()) == {
                "error": "the server could not store the upload (No space left on device)"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
