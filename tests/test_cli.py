import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from i3d.cli.main import main
from i3d.factory import build_model
from i3d.networks.inception import InceptionI3d
from i3d.predict import Classifier


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """Nine frames, the fewest the network takes, in DeepMind's sample layout (1, T, 224, 224, 3)."""
    path = tmp_path_factory.mktemp("clip") / "clip.npy"
    t, h, w, c = np.meshgrid(np.arange(9), np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    np.save(path, (0.8 * np.cos(0.04 * h - 0.06 * w + 0.5 * t + c)).astype(np.float32)[None])
    return path


def test_json_output_has_all_logits_in_label_order(tiny_clip, capsys, pretrained):
    assert main(["predict", str(tiny_clip), "--json", "--top-k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["labels"] == pretrained.labels and len(result["logits"]) == 400
    assert result["norm"] == pytest.approx(float(np.linalg.norm(result["logits"])), rel=1e-6)
    top = result["top"]
    assert [t["logit"] for t in top] == sorted(result["logits"], reverse=True)[:3]
    assert top[0]["label"] == result["labels"][int(np.argmax(result["logits"]))]
    assert 0 < top[0]["probability"] <= 1


def test_text_output_is_the_reference_format(tiny_clip, capsys):
    assert main(["predict", str(tiny_clip), "--top-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Norm of logits: ")
    assert lines[2] == "Top classes and probabilities" and len(lines) == 3 + 5
    probability, logit, *label = lines[3].split(" ")
    assert 0 < float(probability) <= 1 and float(logit) and label


def test_short_clips_are_loop_padded(tmp_path, pretrained):
    clip = (np.random.default_rng(0).uniform(-1, 1, (4, 224, 224, 3))).astype(np.float32)
    classifier = Classifier()
    looped = np.concatenate([clip, clip, clip[:1]])  # 9 frames: the loop padding written out by hand
    np.testing.assert_allclose(classifier.clip_logits(clip), classifier.clip_logits(looped), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "/no/such/video.mp4"], "no such file"),
        (["predict", "--weights", "nope"], "neither a known weights name"),
        (["predict", "--top-k", "0"], "--top-k"),
        (["predict", "--start", "3", "--end", "1"], "must be after"),
        (["weights", "fetch", "unknown-weights"], "unknown weights"),
        (["train"], "no training data"),
        (["train", "--train", "/no/such/folder"], "no such folder or list file"),
        (["train", "--train", "x", "--steps", "abc"], "--steps: expected an integer, not 'abc'"),
        (["train", "--train", "x", "--freeze-until", "Mixed_9z"], "--freeze-until: invalid choice: 'Mixed_9z'"),
        (["train", "--train", "x", "--schedule", "5:0.1"], "must start at step 0"),
        (["weights", "inflate", "/no/such.pth", "-o", "/tmp/x.safetensors"], "no such file"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("i3d: error: ") and message in err and err.count("\n") == 1


def test_a_bad_file_from_the_shell_prints_no_traceback(tmp_path):
    bad = tmp_path / "clip.npy"
    np.save(bad, np.zeros((3, 224, 224), np.float32))
    done = subprocess.run([sys.executable, "-m", "i3d.cli.main", "predict", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("i3d: error:") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_video_end_to_end(sample_video, pretrained):
    """Real weights on a real video: the fast path agrees with the plain network on the same frames."""
    classifier = Classifier()
    prediction = classifier.predict(sample_video)
    assert prediction.frames == 132 and prediction.windows == 1  # 5.28 s at 25 fps
    assert prediction.probabilities.sum() == pytest.approx(1.0)
    plain = build_model(pretrained)
    assert isinstance(plain, InceptionI3d)
    from i3d.video.inputs import rgb_input_frames
    from i3d.video.transforms import to_unit_range

    clip = torch.from_numpy(to_unit_range(np.stack(list(rgb_input_frames(sample_video)))))
    with torch.inference_mode():
        reference = plain(clip.permute(3, 0, 1, 2)[None])[0].numpy()
    np.testing.assert_allclose(prediction.logits, reference, rtol=0, atol=1e-3)
    # The Flax port, run on these same 132 frames, ranks "feeding birds" first (see README, Fidelity).
    assert prediction.top(1)[0][0] == "feeding birds"


@pytest.mark.slow
def test_long_videos_are_windowed_with_frame_weights(sample_video, pretrained):
    classifier = Classifier()
    whole = classifier.predict(sample_video, window_frames=132)
    windowed = classifier.predict(sample_video, window_frames=50)
    assert windowed.windows == 3 and windowed.frames == 132
    assert np.corrcoef(whole.logits, windowed.logits)[0, 1] > 0.9


def test_flow_of_a_span_past_the_end_is_one_line(sample_video, tmp_path, capsys):
    output = tmp_path / "flow.npy"
    assert main(["flow", str(sample_video), "--start", "100", "--method", "opencv", "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err == f"i3d: error: {sample_video}: no frames in the requested span\n" and not output.exists()


def _all_parsers():
    import argparse

    from i3d.cli.main import build_parser

    pending = [build_parser()]
    while pending:
        parser = pending.pop()
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())


def test_every_option_of_every_command_has_help():
    missing = [f"{parser.prog} {action.option_strings or action.dest}" for parser in _all_parsers()
               for action in parser._actions if not action.help]
    assert missing == []


def test_help_and_argument_errors_import_no_torch():
    code = ("import sys; from i3d.cli.main import main; "
            "assert main(['features', '--help']) == 0; assert main(['predict', '--top-k', 'x']) == 2; "
            "heavy = [m for m in ('torch', 'numpy', 'cv2', 'av') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    expected = "i3d: error: predict: argument --top-k: expected an integer, not 'x' (see `i3d predict --help`)\n"
    assert done.stderr == expected


@pytest.mark.parametrize("args", [["predict", "--start", "-1"], ["predict", "--start", "nan"],
                                  ["flow", "x.mp4", "-o", "y.npy", "--batch-size", "0"]])
def test_bad_numbers_are_refused_before_any_work(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("i3d: error: ") and err.count("\n") == 1 and args[-2] in err


def test_an_unknown_stream_is_one_line_naming_the_streams(tmp_path, capsys):
    assert main(["features", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "out"), "--stream", "both"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'both'" in err and "joint" in err
