import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_video
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.evaluate import (
    EvaluationProtocol,
    EvaluationReport,
    clip_starts,
    crop_offsets,
    evaluate,
    read_list,
    summarise,
    video_views,
)
from i3d.predict import Classifier

LABELS = ["abseiling", "air drumming", "riding a bike", "yawning"]


def test_clips_are_uniformly_spaced_from_first_to_last_frame():
    assert clip_starts(100, EvaluationProtocol(clips=3, clip_frames=64)) == [(0, 64), (18, 64), (36, 64)]
    assert clip_starts(100, EvaluationProtocol(clips=1, clip_frames=64)) == [(18, 64)]
    assert clip_starts(40, EvaluationProtocol(clips=2, clip_frames=64)) == [(0, 40), (0, 40)]


def test_three_crops_run_along_the_long_side():
    assert crop_offsets(256, 340, 1) == [(16, 58)]
    assert crop_offsets(256, 340, 3) == [(16, 0), (16, 58), (16, 116)]
    assert crop_offsets(400, 256, 3) == [(0, 16), (88, 16), (176, 16)]


def test_views_are_the_clip_and_crop_slices_in_unit_range():
    frames = np.random.default_rng(0).integers(0, 256, (30, 256, 300, 3), dtype=np.uint8)
    views = list(video_views(frames, EvaluationProtocol(clips=2, clip_frames=20, crops=3)))
    assert len(views) == 6 and all(v.shape == (20, 224, 224, 3) for v in views)
    np.testing.assert_array_equal(views[5], frames[10:30, 16:240, 76:300] / np.float32(127.5) - 1)
    short = list(video_views(frames[:4], EvaluationProtocol()))[0]
    assert len(short) == 9 and np.array_equal(short[4], short[0])  # loop-padded to the network's minimum


def test_protocol_refuses_nonsense():
    for bad in (dict(clips=0), dict(clip_frames=8), dict(crops=2), dict(average="median")):
        with pytest.raises(I3DError):
            EvaluationProtocol(**bad)


def test_list_takes_names_indices_spans_and_relative_paths(tmp_path):
    (tmp_path / "list.csv").write_text(
        "path,label\nclips/a.mp4,riding a bike\n/abs/b.mp4,3\nc.mp4,Air_Drumming,1.5,4\n\n# comment,x\n")
    videos = read_list(tmp_path / "list.csv", LABELS)
    assert [(v.path, v.label, v.start_s, v.end_s) for v in videos] == [
        (tmp_path / "clips/a.mp4", 2, None, None), (Path("/abs/b.mp4"), 3, None, None),
        (tmp_path / "c.mp4", 1, 1.5, 4.0)]


@pytest.mark.parametrize("text, message", [
    ("a.mp4,swimming\nb.mp4,diving\n", "labels not among the 4 classes: 'swimming' \\(line 1\\), 'diving'"),
    ("a.mp4\n", "expected `path,label"),
    ("a.mp4,yawning,3,1\n", "end 1.0 is not after start 3.0"),
    ("a.mp4,yawning,x,1\n", "must be seconds"),
    ("path,label\n", "lists no videos"),
])
def test_bad_lists_fail_before_anything_runs(tmp_path, text, message):
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(I3DError, match=message):
        read_list(tmp_path / "list.csv", LABELS)


def test_accuracies_by_hand():
    report = EvaluationReport("list", {}, {})
    rows = [("yawning", ["yawning", "abseiling"]), ("yawning", ["abseiling", "yawning"]),
            ("abseiling", ["yawning", "air drumming"]), ("air drumming", ["air drumming", "yawning"])]
    report.predictions = [{"label": label, "top5": top} for label, top in rows]
    report.failures = [{"path": "x", "error": "broken"}]
    summarise(report, LABELS)
    assert (report.videos, report.evaluated, report.failed) == (5, 4, 1)
    assert report.top1 == 2 / 4 and report.top5 == 3 / 4
    assert report.per_class == {"abseiling": {"videos": 1, "correct": 0, "accuracy": 0.0},
                                "air drumming": {"videos": 1, "correct": 1, "accuracy": 1.0},
                                "yawning": {"videos": 2, "correct": 1, "accuracy": 0.5}}
    assert report.mean_class_accuracy == pytest.approx(0.5)
    assert sorted((c["label"], c["predicted"]) for c in report.most_confused) == [
        ("abseiling", "yawning"), ("yawning", "abseiling")]


@pytest.fixture(scope="module")
def labelled_list(tmp_path_factory, pretrained):
    """Two small synthetic videos, the first labelled with what the plain `predict` path says it is, and a
    corrupt file."""
    folder = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(3)
    smooth = np.cumsum(rng.integers(-6, 7, (12, 72, 96, 3)), axis=0) + 128
    write_video(folder / "a.mp4", np.clip(smooth, 0, 255).astype(np.uint8), 25)
    write_video(folder / "b.mp4", np.clip(255 - smooth, 0, 255).astype(np.uint8), 25)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    first = Classifier().predict(folder / "a.mp4").top(1)[0][0]
    other = next(label for label in pretrained.labels if label != Classifier().predict(folder / "b.mp4").top(5)[0][0]
                 and label != first)
    (folder / "list.csv").write_text(f"a.mp4,{first}\nb.mp4,{other}\nbroken.mp4,{first}\n")
    return folder / "list.csv", first


@pytest.mark.slow
def test_evaluation_agrees_with_predict_and_records_a_broken_video(labelled_list):
    list_file, first = labelled_list
    report = evaluate(list_file, EvaluationProtocol())
    assert (report.evaluated, report.failed) == (2, 1)
    assert report.failures[0]["path"].endswith("broken.mp4")
    assert report.predictions[0]["top5"][0] == first and report.predictions[0]["views"] == 1
    assert report.top1 == 0.5
    assert report.protocol == {"clips": 1, "clip_frames": 250, "crops": 1, "average": "softmax"}
    assert len(report.weights["sha256"]) == 64 and "torch" in report.software


@pytest.mark.slow
def test_cli_writes_the_report_and_exits_1_when_a_video_failed(labelled_list, tmp_path, capsys):
    list_file, _ = labelled_list
    code = main(["evaluate", str(list_file), "-o", str(tmp_path / "r.json"), "--clips", "2", "--clip-frames", "9",
                 "--crops", "3", "--average", "logits", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "top-1 50.00%" in captured.out and "1 failed and excluded" in captured.out
    assert captured.err.count("failed: ") == 1 and "broken.mp4" in captured.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert [p["views"] for p in report["predictions"]] == [6, 6]
    assert report["protocol"]["average"] == "logits"
    assert report["compute"] == {"device": "cpu", "tf32_allowed": False}


def test_rows_naming_one_video_are_each_counted_and_computed_once(tmp_path, monkeypatch):
    """A list naming a video twice and through a link: three rows, three predictions, one computation; the
    report says how many rows shared a video."""
    import i3d.evaluate as evaluation
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.registry import kinetics400_labels
    from i3d.weights.store import save_weights

    torch.manual_seed(0)
    save_weights(tmp_path / "random.safetensors", InceptionI3d().state_dict(), kinetics400_labels(), "rgb",
                 name="random")
    rng = np.random.default_rng(4)
    write_video(tmp_path / "a.mp4", rng.integers(0, 256, (10, 64, 80, 3), np.uint8), 25)
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a.mp4")
    (tmp_path / "list.csv").write_text("a.mp4,abseiling\nlink.mp4,abseiling\na.mp4,yawning\n")
    computed = []
    original = evaluation._video_scores
    monkeypatch.setattr(evaluation, "_video_scores", lambda *args: computed.append(1) or original(*args))
    report = evaluate(tmp_path / "list.csv", EvaluationProtocol(), weights=tmp_path / "random.safetensors",
                      device="cpu", runtime="fused")
    assert (report.evaluated, report.shared_rows, len(computed)) == (3, 2, 1)
    assert len({tuple(p["top5"]) for p in report.predictions}) == 1
    assert "2 of them rows naming a video an earlier row names, each counted" in report.summary()


@pytest.mark.slow
def test_views_of_a_video_share_network_calls_and_keep_their_scores(labelled_list, monkeypatch):
    list_file, _ = labelled_list
    sizes = []
    call = Classifier.batch_logits
    monkeypatch.setattr(Classifier, "batch_logits", lambda self, clips, modality="rgb": sizes.append(len(clips))
                        or call(self, clips, modality))
    protocol = EvaluationProtocol(clips=2, clip_frames=9, crops=3, average="logits")
    together = evaluate(list_file, protocol, batch_size=4)
    assert sizes == [4, 2, 4, 2]  # six views of each readable video
    sizes.clear()
    alone = evaluate(list_file, protocol, batch_size=1)
    assert sizes == [1] * 12
    assert [p["top5"] for p in together.predictions] == [p["top5"] for p in alone.predictions]
    for a, b in zip(together.predictions, alone.predictions):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
