import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import numbered_frames, write_video
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import build_model
from i3d.features import ExtractionConfig, WindowSpec, extract_features, plan_windows
from i3d.features.jobs import collect_jobs
from i3d.features.windows import iter_windows
from i3d.video.inputs import rgb_input_frames


@pytest.mark.parametrize("total, spec, spans, dropped", [
    (150, WindowSpec(64, 64, "keep"), [(0, 64), (64, 128), (128, 150)], 0),
    (150, WindowSpec(64, 64, "drop"), [(0, 64), (64, 128)], 22),
    (128, WindowSpec(64, 64, "drop"), [(0, 64), (64, 128)], 0),
    (40, WindowSpec(64, 64, "drop"), [(0, 40)], 0),  # shorter than one window: never dropped
    (100, WindowSpec(64, 32, "keep"), [(0, 64), (32, 96), (64, 100)], 0),
    (96, WindowSpec(64, 32, "keep"), [(0, 64), (32, 96)], 0),  # the tail (64, 96) adds no new frame
    (46, WindowSpec(10, 20, "drop"), [(0, 10), (20, 30)], 6),  # frames 10-19 are between windows, not dropped
    (0, WindowSpec(), [], 0),
])
def test_window_arithmetic(total, spec, spans, dropped):
    assert plan_windows(total, spec) == (spans, dropped)


def test_streamed_windows_follow_the_plan_and_hold_the_right_frames():
    for total in range(1, 45):
        for spec in (WindowSpec(8, 8, "keep"), WindowSpec(8, 3, "repeat"), WindowSpec(5, 9, "drop")):
            windows = list(iter_windows((np.full((1,), i) for i in range(total)), spec))
            assert [(w.start, w.end) for w in windows] == plan_windows(total, spec)[0]
            for w in windows:
                real = w.frames[: w.end - w.start, 0]
                assert list(real) == list(range(w.start, w.end))
                if spec.last == "repeat":
                    assert len(w.frames) == max(spec.clip_len, w.end - w.start)
                    assert set(w.frames[w.end - w.start :, 0]) <= {w.end - 1}


def test_inputs_from_files_folders_and_lists(tmp_path):
    for name in ("a/z.mp4", "c/z.mp4", "b/x.mp4", "b/deep/y.MKV", "b/notes.txt", "b/._x.mp4", "b/.cache/w.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.csv").write_text("path\na/z.mp4\n# skipped\nmissing.mp4\n")
    jobs = collect_jobs([tmp_path / "b", tmp_path / "list.csv", tmp_path / "b" / "x.mp4"])
    assert [(j.index, j.path.relative_to(tmp_path).as_posix(), j.name) for j in jobs] == [
        (0, "b/deep/y.MKV", "deep/y"), (1, "b/x.mp4", "x"), (2, "a/z.mp4", "z"), (3, "missing.mp4", "missing")]
    with pytest.raises(I3DError, match="would both write z.npz"):
        collect_jobs([tmp_path / "a/z.mp4", tmp_path / "c/z.mp4"])
    with pytest.raises(I3DError, match="no videos"):
        collect_jobs([tmp_path / "empty"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Small videos of awkward lengths and rates, and a corrupt one."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "a_30fps.mp4", numbered_frames(37, 64, 80), 30)  # 37 frames at 30 fps -> 31 at 25
    write_video(folder / "b_25fps.mp4", numbered_frames(21, 72, 64), 25)
    write_video(folder / "c_12fps.mp4", numbered_frames(6, 48, 64), 12.5)  # 6 frames -> 12 at 25 fps
    (folder / "d_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    return folder


SPEC = WindowSpec(clip_len=12, step=12, last="keep")


@pytest.fixture(scope="module")
def extracted(videos, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("features")
    config = ExtractionConfig(SPEC, extras=("logits", "mixed_5c"), batch_size=2, workers=1)
    return extract_features([videos], outdir, config), outdir


def test_manifest_has_one_row_per_input_and_records_the_broken_one(extracted, videos):
    summary, outdir = extracted
    lines = [json.loads(line) for line in (outdir / "manifest.jsonl").read_text().splitlines()]
    assert lines[0]["run"]["settings"]["clip_len"] == 12 and lines[0]["run"]["format"] == "npz"
    assert len(lines[0]["run"]["weights"][0]["sha256"]) == 64 and "torch" in lines[0]["run"]["software"]
    rows = lines[1:]
    assert [Path(r["input"]).name for r in rows] == ["a_30fps.mp4", "b_25fps.mp4", "c_12fps.mp4", "d_broken.mp4"]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"] and summary.failed == 1
    assert "d_broken.mp4" in rows[3]["error"] and rows[3]["output"] is None
    assert [r["frames"] for r in rows[:3]] == [31, 21, 12]
    assert [r["windows"] for r in rows[:3]] == [3, 2, 1]
    assert rows[0]["source_fps"] == pytest.approx(30) and rows[1]["duration_s"] == pytest.approx(21 / 25)
    assert sorted(p.name for p in outdir.iterdir()) == ["a_30fps.npz", "b_25fps.npz", "c_12fps.npz", "manifest.jsonl"]


def test_windows_and_timestamps_in_the_output(extracted):
    _, outdir = extracted
    with np.load(outdir / "a_30fps.npz") as data:
        np.testing.assert_array_equal(data["window_start_frame"], [0, 12, 24])
        np.testing.assert_array_equal(data["window_end_frame"], [12, 24, 31])
        np.testing.assert_allclose(data["window_start_s"], [0, 0.48, 0.96])
        np.testing.assert_allclose(data["window_end_s"], [0.48, 0.96, 1.24])
        assert float(data["fps"]) == 25 and int(data["frames"]) == 31
        assert data["features"].shape == (3, 1024) and data["logits"].shape == (3, 400)
        # Mixed_5c: ceil(12 / 8) = 2 vectors per full window, 2 for the 7-frame tail (loop-padded to 9)
        np.testing.assert_array_equal(data["mixed_5c_window"], [0, 0, 1, 1, 2, 2])


def test_features_are_what_the_logits_layer_sees(extracted, videos, pretrained):
    """Window by window, against the plain (unoptimised) network on the same frames."""
    _, outdir = extracted
    network = build_model(pretrained)
    frames = np.stack(list(rgb_input_frames(videos / "a_30fps.mp4")))
    weight = pretrained.state_dict["Logits.Conv3d_0c_1x1.conv3d.weight"].flatten(1).numpy()
    bias = pretrained.state_dict["Logits.Conv3d_0c_1x1.conv3d.bias"].numpy()
    with np.load(outdir / "a_30fps.npz") as data:
        for index, (start, end) in enumerate(zip(data["window_start_frame"], data["window_end_frame"])):
            clip = np.resize(frames[start:end], (max(9, end - start), 224, 224, 3))
            x = torch.from_numpy(clip.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None]
            with torch.no_grad():
                logits = network(x)[0].numpy()
                mixed = network.extract_endpoints(x, ["Mixed_5c"])["Mixed_5c"][0].mean(dim=(2, 3)).T.numpy()
            features = data["features"][index]
            np.testing.assert_allclose(features @ weight.T + bias, logits, atol=1e-4)
            np.testing.assert_allclose(data["logits"][index], logits, atol=1e-4)
            np.testing.assert_allclose(data["mixed_5c"][data["mixed_5c_window"] == index], mixed, atol=1e-4)


def test_rerun_skips_done_videos_and_retries_failed_ones(extracted, videos):
    summary, outdir = extracted
    before = {p.name: p.stat().st_mtime_ns for p in outdir.glob("*.npz")}
    again = extract_features([videos], outdir, ExtractionConfig(SPEC, extras=("logits", "mixed_5c"), batch_size=2))
    assert [r.reused for r in again.rows] == [True, True, True, False] and again.failed == 1
    assert {p.name: p.stat().st_mtime_ns for p in outdir.glob("*.npz")} == before
    assert [r.frames for r in again.rows] == [r.frames for r in summary.rows]


def test_a_rerun_with_other_settings_is_refused_naming_the_setting(videos, tmp_path):
    one = videos / "b_25fps.mp4"
    extract_features([one], tmp_path, ExtractionConfig(SPEC, workers=0))
    before = (tmp_path / "b_25fps.npz").read_bytes()
    with pytest.raises(I3DError, match="other settings \\(last 'keep' -> 'drop'\\)"):
        extract_features([one], tmp_path, ExtractionConfig(WindowSpec(12, 12, "drop"), workers=0))
    with pytest.raises(I3DError, match="format 'npz' -> 'h5'"):
        extract_features([one], tmp_path, ExtractionConfig(SPEC, fmt="h5", workers=0))
    assert (tmp_path / "b_25fps.npz").read_bytes() == before


def test_decoding_in_worker_processes_equals_decoding_inline(extracted, videos, tmp_path):
    _, outdir = extracted
    inline = ExtractionConfig(SPEC, extras=("logits", "mixed_5c"), batch_size=2, workers=0)
    extract_features([videos / "a_30fps.mp4"], tmp_path, inline)
    with np.load(outdir / "a_30fps.npz") as a, np.load(tmp_path / "a_30fps.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_npy_format_writes_the_feature_matrix(videos, tmp_path):
    extract_features([videos / "c_12fps.mp4"], tmp_path, ExtractionConfig(SPEC, fmt="npy", workers=0))
    assert np.load(tmp_path / "c_12fps.npy").shape == (1, 1024)
    with pytest.raises(I3DError, match="features only"):
        ExtractionConfig(SPEC, fmt="npy", extras=("logits",))


def _run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "i3d.cli.main", "features", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _finished_outputs(outdir):
    """Final outputs only: pathlib's glob also matches a writer's hidden temporary ``.v0.*.tmp.npz``."""
    return sorted(p.name for p in outdir.glob("*.npz") if not p.name.startswith("."))


@pytest.mark.slow
def test_killed_run_resumes_to_complete_and_correct_outputs(videos, tmp_path):
    """SIGKILL in the middle, rerun the same command: every output complete and equal to an uninterrupted run."""
    many = tmp_path / "in"
    many.mkdir()
    for i in range(6):
        os.link(videos / "b_25fps.mp4", many / f"v{i}.mp4")
    args = [str(many), "-o", str(tmp_path / "out"), "--clip-len", "12", "--step", "12", "--quiet"]
    process = _run_cli(args)
    deadline = time.time() + 120
    while not _finished_outputs(tmp_path / "out") and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = _finished_outputs(tmp_path / "out")
    assert 1 <= len(first) < 6, "the kill should land mid-run"
    resumed = _run_cli(args)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"6 done ({len(first)} from an earlier run), 0 failed" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.jsonl"] + [
        f"v{i}.npz" for i in range(6)]  # no temporary file left behind, not even the killed run's
    reference = extract_features([videos / "b_25fps.mp4"], tmp_path / "ref", ExtractionConfig(SPEC, workers=0))
    assert reference.failed == 0
    with np.load(tmp_path / "ref" / "b_25fps.npz") as expected:
        for i in range(6):
            with np.load(tmp_path / "out" / f"v{i}.npz") as actual:
                np.testing.assert_allclose(actual["features"], expected["features"], atol=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()][1:]
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)


def test_cli_exit_code_and_summary_line(videos, tmp_path, capsys):
    code = main(["features", str(videos / "c_12fps.mp4"), str(videos / "d_broken.mp4"), "-o", str(tmp_path),
                 "--clip-len", "12", "--workers", "0", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "2 videos: 1 done (0 from an earlier run), 1 failed" in captured.out
    assert captured.err.count("failed: ") == 1
    assert main(["features", str(tmp_path / "nothing_here"), "-o", str(tmp_path), "--step", "0"]) == 2


@pytest.mark.slow
def test_ray_engine_writes_what_the_local_engine_writes(extracted, videos, tmp_path):
    """The same files and manifest; values to float rounding (a Ray actor runs the network on 1 thread)."""
    pytest.importorskip("ray")
    _, local_dir = extracted
    config = ExtractionConfig(SPEC, extras=("logits", "mixed_5c"), batch_size=2)
    summary = extract_features([videos], tmp_path, config, engine="ray", ray_workers=2)
    def rows(folder):  # "reused" differs: the local folder has also been through a rerun; Ray's device and
        # runtime are recorded as given (auto), each worker resolving them, the local ones as resolved
        lines = [{**json.loads(line), "reused": None} for line in (folder / "manifest.jsonl").read_text().splitlines()]
        return [{**lines[0], "run": {**lines[0]["run"], "device": None, "runtime": None}}, *lines[1:]]

    assert rows(tmp_path) == rows(local_dir)
    run = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[0])["run"]
    assert (run["device"], run["runtime"]) == ("auto", "auto")
    assert summary.failed == 1
    for name in ("a_30fps.npz", "b_25fps.npz", "c_12fps.npz"):
        with np.load(local_dir / name) as a, np.load(tmp_path / name) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_allclose(a[key], b[key], atol=1e-4) if a[key].dtype.kind == "f" else \
                    np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
def test_a_ray_run_on_gpus_is_not_refused_for_the_driver_s_lack_of_one(videos, tmp_path):
    """A CPU-only head node drives GPU workers: the driver leaves --device cuda to the cluster, which here
    (no GPUs) refuses it in its own words."""
    pytest.importorskip("ray")
    from i3d.errors import I3DError

    with pytest.raises(I3DError, match="the Ray cluster has no GPUs"):
        extract_features([videos], tmp_path, ExtractionConfig(SPEC, device="cuda"), engine="ray", ray_workers=1)


def test_every_link_to_one_video_gets_its_own_output_and_row(tmp_path):
    """A class folder of links into one store of videos: each name an input, the file computed once."""
    from i3d.features import ExtractionConfig, WindowSpec, extract_features
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import save_weights

    store = tmp_path / "store"
    store.mkdir()
    video = write_video(store / "real.mp4", np.full((12, 48, 64, 3), 100, np.uint8), 25)
    links = tmp_path / "links"
    links.mkdir()
    for name in ("v0.mp4", "v1.mp4", "v2.mp4"):
        (links / name).symlink_to(video)
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_weights(weights, InceptionI3d(3, 3).state_dict(), ["a", "b", "c"], "rgb")
    config = ExtractionConfig(WindowSpec(16, 16), workers=0, weights=str(weights), runtime="fused")
    summary = extract_features([links], tmp_path / "out", config)
    assert summary.line().startswith("3 videos: 3 done")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npz")) == ["v0.npz", "v1.npz", "v2.npz"]
    features = [np.load(tmp_path / "out" / f"v{i}.npz")["features"] for i in range(3)]
    assert all(np.array_equal(features[0], f) for f in features[1:])
    assert sorted(Path(r.input).name for r in summary.rows) == ["v0.mp4", "v1.mp4", "v2.mp4"]


def test_link_loops_outside_folders_and_vanishing_inputs_each_get_their_row(tmp_path, recwarn):
    """A folder link is searched (outside the input too), a link back to a parent is said once, not followed;
    a link loop and a video deleted mid-run each fail on their own row; the other videos are done."""
    from i3d.features import ExtractionConfig, WindowSpec, extract_features
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import save_weights

    inputs, outside = tmp_path / "in", tmp_path / "elsewhere" / "vids"
    (inputs / "cls").mkdir(parents=True)
    outside.mkdir(parents=True)
    for path in (inputs / "cls" / "real.mp4", inputs / "cls" / "vanishes.mp4", outside / "far.mp4"):
        write_video(path, np.full((9, 48, 64, 3), 90, np.uint8), 25)
    (inputs / "cls" / "a.mp4").symlink_to("b.mp4")
    (inputs / "cls" / "b.mp4").symlink_to("a.mp4")
    (inputs / "cls" / "up").symlink_to("..")
    (inputs / "ext").symlink_to(outside)
    (inputs / "cls" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    torch.manual_seed(0)
    save_weights(tmp_path / "w.safetensors", InceptionI3d(3, 3).state_dict(), ["a", "b", "c"], "rgb")
    config = ExtractionConfig(WindowSpec(9, 9), workers=0, weights=str(tmp_path / "w.safetensors"), runtime="fused")

    def delete_while_running(outcomes, total):
        for job, outcome in outcomes:
            (inputs / "cls" / "vanishes.mp4").unlink(missing_ok=True)  # after the first video, before its turn
            yield job, outcome

    summary = extract_features([inputs], tmp_path / "out", config, progress=delete_while_running)
    errors = {Path(r.input).relative_to(inputs).as_posix(): r.error for r in summary.rows}
    assert errors == {
        "cls/a.mp4": f"{inputs}/cls/a.mp4: a link in a loop (it leads back to itself)",
        "cls/b.mp4": f"{inputs}/cls/b.mp4: a link in a loop (it leads back to itself)",
        "cls/gone.mp4": f"{inputs}/cls/gone.mp4: a link to {tmp_path}/nowhere.mp4, which is not there",
        "cls/real.mp4": None, "cls/vanishes.mp4": f"{inputs}/cls/vanishes.mp4: no such file or folder",
        "ext/far.mp4": None}
    assert summary.line().startswith("6 videos: 2 done (0 from an earlier run), 4 failed")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.npz")) == [
        "cls/real.npz", "ext/far.npz"]
    assert [str(w.message) for w in recwarn] == [f"{inputs}/cls/up: a link back to {inputs} (a loop); not "
                                                 "searched again"]


def test_many_videos_survive_kills_anywhere_and_two_runs_at_once(tmp_path):
    """benchmarks/bench_many_videos.py at a small count: SIGKILL at random moments then a rerun, and two runs
    into one folder, each end with every output whole, one manifest row per video, nothing temporary left."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from bench_many_videos import check_outputs, command, killed_and_restarted, make_videos, random_weights, two_at_once

    count = 16
    make_videos(tmp_path / "videos", count)
    weights = random_weights(tmp_path / "random.safetensors")
    # fused: a first OpenVINO conversion of these random weights takes seconds in which a kill finds no output
    history = killed_and_restarted(command(tmp_path / "videos", tmp_path / "killed", weights, 1, "fused"),
                                   tmp_path / "killed", count, kills=2, seed=1)
    check_outputs(tmp_path / "killed", count)
    reused = int(history[-1]["final_summary"].split("(")[1].split(" from")[0])
    assert reused == history[-2]["killed_with_outputs"] > 0  # every output finished before the kill is reused
    assert two_at_once(command(tmp_path / "videos", tmp_path / "two", weights, 1, "fused")) == [0, 0]
    check_outputs(tmp_path / "two", count)


def test_windows_of_different_videos_share_batches_and_keep_their_values(tmp_path, monkeypatch):
    """Six one-window videos with batches of 4 through the decoding processes: two network calls, not six;
    each video's features the same as when it is extracted alone."""
    import i3d.features.network as network_module
    from i3d.features import ExtractionConfig, WindowSpec, extract_features
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import save_weights

    rng = np.random.default_rng(2)
    for i in range(6):
        write_video(tmp_path / "in" / f"v{i}.mp4", rng.integers(0, 256, (9, 48, 64, 3), np.uint8), 25) if (
            tmp_path / "in").mkdir(exist_ok=True) is None else None
    torch.manual_seed(0)
    save_weights(tmp_path / "w.safetensors", InceptionI3d(3, 3).state_dict(), ["a", "b", "c"], "rgb")
    calls = []
    original = network_module.FeatureNetwork.run
    monkeypatch.setattr(network_module.FeatureNetwork, "run",
                        lambda self, clips: calls.append(len(clips)) or original(self, clips))
    settings = dict(weights=str(tmp_path / "w.safetensors"), runtime="fused", batch_size=4, size=193,
                    crop_size=193, fps=None)
    summary = extract_features([tmp_path / "in"], tmp_path / "shared", ExtractionConfig(WindowSpec(9, 9), workers=1,
                                                                                          **settings))
    assert summary.failed == 0 and calls == [4, 2]
    alone = extract_features([tmp_path / "in"], tmp_path / "alone", ExtractionConfig(WindowSpec(9, 9), workers=0,
                                                                                       **settings))
    assert alone.failed == 0
    for i in range(6):
        np.testing.assert_allclose(np.load(tmp_path / "shared" / f"v{i}.npz")["features"],
                                   np.load(tmp_path / "alone" / f"v{i}.npz")["features"], atol=1e-5)
