"""Hostile and odd inputs across the commands: each ends with exit code 2 and one `i3d: error:` line that
names the file or the flag, before any work, and leaves nothing half-written."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import numbered_frames, write_video
from i3d.cli.main import main
from i3d.networks.inception import InceptionI3d
from i3d.weights.store import save_weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    video = write_video(root / "v.mp4", numbered_frames(12, 48, 64), 25)
    write_video(root / "long.mp4", numbered_frames(1000, 48, 64), 25)  # a minute of work: time to interrupt
    (root / "a_file").write_text("not a folder")
    (root / "latin1.csv").write_bytes(b"v.mp4,caf\xe9\n")
    (root / "empty_classes.txt").write_text("\n\n")
    (root / "broken.yaml").write_text("train: [unclosed\nsteps: 3\n")
    np.save(root / "ok.npy", np.zeros((2, 16, 32, 32, 3), np.uint8))
    for name in ("corrupt.stats.npz", "corrupt.npz"):  # a zip's magic number, then nothing a zip holds
        (root / name).write_bytes(b"PK\x03\x04" + bytes(60))
    (root / "typed.yaml").write_text("train: data\nsteps: abc\n")
    torch.manual_seed(0)
    save_weights(root / "flow.safetensors", InceptionI3d(3, 2).state_dict(), list("abc"), "flow")
    from safetensors.torch import save_file

    from i3d.weights.store import TENSORS_DIGEST, tensors_digest

    misfit = InceptionI3d(3, 3).state_dict()  # labels for 2 classes, a classifier for 3; the file vouches for itself
    metadata = {"i3d_format": "1", "modality": "rgb", "labels": '["a", "b"]', TENSORS_DIGEST: tensors_digest(misfit)}
    save_file(misfit, root / "misfit.safetensors", metadata=metadata)
    return {"root": root, "video": video}


def _cases(f):
    root, video = f["root"], f["video"]
    blocked = root / "a_file" / "out"  # a path under a file: no folder can be made there
    cases = [
        (["predict", str(video), "--device", "tpu"], "--device tpu: not a device"),
        (["predict", str(video), "--start", "nan"], "--start: must be a finite number"),
        (["predict", str(video), "--weights", str(root / "flow.safetensors")], "are for the flow stream, not rgb"),
        (["flow", str(video), "-o", str(root), "--method", "opencv"], f"{root}: is a folder"),
        (["flow", str(video), "-o", str(blocked / "f.npy"), "--method", "opencv"], "cannot write there"),
        (["flow", str(video), "-o", str(root / "f.npy"), "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["features", str(video), "-o", str(root / "a_file")], "a_file: is a file"),
        (["visualize", str(video), "-o", str(root / "a_file")], "a_file: is a file"),
        (["export", "-o", str(blocked / "m.onnx")], "cannot write there"),
        (["evaluate", str(root / "latin1.csv")], "latin1.csv: not UTF-8 text"),
        (["train", "--train", str(video.parent), "--classes-file", str(root / "empty_classes.txt"), "--output",
          str(root / "run")], "empty_classes.txt: lists no class names"),
        (["train", "--train", str(video.parent), "--classes-file", str(root / "absent.txt"), "--output",
          str(root / "run2")], "absent.txt: no such classes file"),
        (["train", str(root / "broken.yaml")], "broken.yaml: not valid YAML"),
        (["train", "--train", str(video.parent), "--crop", "64", "--output", str(root / "run3")],
         "crops at least 193 px"),
        (["train", str(root / "typed.yaml")], "typed.yaml: steps: 'abc' is not an integer"),
        (["predict", str(video), "--weights", str(root / "misfit.safetensors")], "misfit.safetensors: weights do not "
                                                                                  "fit I3D"),
        (["weights", "fetch", "--source", str(root / "absent.tar.gz"), "--force"], "absent.tar.gz"),
        (["weights", "convert", str(root / "absent.pt")], "absent.pt: no such file"),
        (["fvd", str(root / "absent.npy"), str(root / "absent2.npy")], "absent.npy: no such file or folder"),
        (["fvd", str(root / "corrupt.stats.npz"), str(root / "ok.npy")], "corrupt.stats.npz: not a statistics file"),
        (["fvd", str(root / "corrupt.npz"), str(root / "corrupt.npz")], "corrupt.npz: not a readable array"),
        (["serve", "--port", "99999"], "serve: argument --port: must be a port from 1 to 65535"),
        (["serve", "--timeout", "inf"], "--timeout must be above 0, not inf"),
        (["bench", "--clips", "3"], "bench: unrecognized arguments: --clips 3 (see `i3d bench --help`)"),
        (["weights", "verify", "x.pt"], "weights verify: unrecognized arguments: x.pt (see `i3d weights verify "),
        (["bench", "--frames", "0"], "--frames must be at least 9"),
    ]
    if not torch.cuda.is_available():
        cases.append((["predict", str(video), "--device", "cuda"], "no CUDA device PyTorch can use"))
    return cases


@pytest.mark.needs_weights
def test_every_case_is_one_line_exit_2_naming_the_culprit(files, capsys):
    failures = []
    for args, message in _cases(files):
        code = main(args)
        err = capsys.readouterr().err
        if code != 2 or not err.startswith("i3d: error: ") or err.count("\n") != 1 or message not in err:
            failures.append((args, code, err))
    assert failures == []
    assert not (files["root"] / "f.npy").exists()


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5])
def test_ctrl_c_at_any_moment_is_one_line_and_death_by_sigint(files, delay):
    """While modules import (the first seconds), loading the weights, or decoding: one line, then the process
    dies of SIGINT (never a plain exit status), which a calling shell reports as 130."""
    # the long video: a 12-frame one is predicted, and the process exiting, by 2.5 s once decoding got faster
    process = subprocess.Popen([sys.executable, "-m", "i3d.cli.main", "predict", str(files["root"] / "long.mp4")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    start = time.monotonic()
    out, err = process.communicate(timeout=30)
    if process.returncode == 0:  # it finished first; nothing to interrupt
        return
    assert time.monotonic() - start < 2.0
    assert process.returncode == -signal.SIGINT and err.strip().splitlines() == ["i3d: interrupted"], err


@pytest.mark.parametrize("command", ["flow", "features", "predict"])
def test_ctrl_c_in_the_middle_of_the_work_ends_it_at_once_and_leaves_no_temporary_file(files, tmp_path, command):
    """Within 2 s even inside a forward pass of seconds (features' windows of 64 frames, four at a time)."""
    out = tmp_path / "out"
    long = str(files["root"] / "long.mp4")
    argv = {"flow": ["flow", long, "-o", str(out / "f.npy"), "--method", "opencv"],
            "features": ["features", str(files["video"]), long, "-o", str(out)],
            "predict": ["predict", long]}
    process = subprocess.Popen([sys.executable, "-m", "i3d.cli.main", *argv[command]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # past the imports: decoding, computing or writing
    process.send_signal(signal.SIGINT)
    start = time.monotonic()
    out_text, err = process.communicate(timeout=30)
    assert time.monotonic() - start < 2.0
    assert process.returncode == -signal.SIGINT, (out_text, err)
    assert err.replace("\r", "\n").splitlines()[-1] == "i3d: interrupted"
    assert [p.name for p in out.rglob("*") if ".tmp" in p.name] == []
    assert not (out / "f.npy").exists()


STUCK_IN_NATIVE_CODE = r"""
import sys, torch
from pathlib import Path
from i3d.cli import interrupt
from i3d.files import atomic_path
interrupt.install_watchdog()
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_text("half")
    print(tmp, flush=True)
    torch.linalg.matrix_power(torch.rand(1500, 1500), 2**40 - 1)  # one call of ~80 products: seconds
print("the call finished first", flush=True)
"""


def test_ctrl_c_inside_a_long_native_call_removes_the_write_in_progress(tmp_path):
    """The main thread cannot see the interrupt until torch returns: the watchdog ends the process after 1 s,
    with the temporary file of the write in progress removed, the line said and SIGINT as the cause."""
    target = tmp_path / "out.npy"
    process = subprocess.Popen([sys.executable, "-c", STUCK_IN_NATIVE_CODE, str(target)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    pending = Path(process.stdout.readline().strip())
    assert pending.exists()
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    start = time.monotonic()
    out, err = process.communicate(timeout=30)
    if "the call finished first" in out:
        pytest.skip("this machine did the products before the interrupt")
    assert time.monotonic() - start < 2.0
    assert process.returncode == -signal.SIGINT and err.strip().splitlines() == ["i3d: interrupted"], err
    assert not pending.exists() and not target.exists()


def test_ctrl_c_stops_a_shell_loop_over_videos(files):
    """`for v in ...; do i3d predict $v; done` and Ctrl-C: the loop stops, as it does for any well-behaved
    program; a process that merely exits 130 lets bash go on to the next video."""
    script = (f'for v in 1 2 3; do "{sys.executable}" -m i3d.cli.main predict "{files["video"]}" 2>/dev/null; '
              f'echo "status $?"; done; echo end')
    process = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(1.0)  # inside the first prediction, which takes seconds
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
    out, _ = process.communicate(timeout=60)
    assert out == "" and process.returncode == -signal.SIGINT, out


def test_serve_on_a_port_in_use_says_so_before_starting(capsys):
    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"i3d: error: 127.0.0.1:{port}: cannot listen there (Address already in use); " \
                                "choose another --port\n"


def _undecodable_copy(video, target):
    """The same container (it opens, it states a duration) with its coded frames blanked out."""
    data = bytearray(video.read_bytes())
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") if data.index(b"moov") > start else len(data)
    data[start + 64 : end] = bytes(end - start - 64)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.slow
def test_training_leaves_out_a_video_without_decodable_frames_and_goes_on(files, tmp_path, capsys):
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            write_video(tmp_path / "data" / label / f"{i}.mp4", numbered_frames(12, 48, 64), 25)
    _undecodable_copy(files["video"], tmp_path / "data" / "a" / "broken.mp4")
    args = ["train", "--train", str(tmp_path / "data"), "--steps", "1", "--batch-size", "2", "--clip-frames", "9",
            "--workers", "1", "--dropout", "0", "--output", str(tmp_path / "run")]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "left out: " in out.out and "broken.mp4" in out.out and "Traceback" not in out.err
    assert (tmp_path / "run" / "model.safetensors").is_file()
    for i in range(4):
        _undecodable_copy(files["video"], tmp_path / "data" / "b" / f"bad{i}.mp4")
    assert main([*args[:-1], str(tmp_path / "run2")]) == 2
    assert ("5 of 9 videos of the list cannot be used; the files exist but do not open as videos"
            in capsys.readouterr().err)
