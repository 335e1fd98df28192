"""Training: losses and metrics by hand, clip sampling and augmentation, configs, exact resume, torchrun DDP,
and ImageNet inflation against a separately written 2D Inception-v1."""

import csv
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import write_video
from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.networks.inception import INCEPTION_CHANNELS, InceptionI3d
from i3d.train import TrainConfig, load_config, train, train_stream
from i3d.train.config import lr_at, lr_schedule
from i3d.train.data import Action, ClipDataset, ClipSpec, crop_and_flip, frame_targets, read_labelled_set
from i3d.train.objectives import average_precision, charades_loss, mean_average_precision
from i3d.weights import save_weights
from i3d.weights.cross_modal import flow_state_dict_from_rgb
from i3d.weights.inflate import inflate_googlenet


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_charades_loss_is_half_per_frame_half_max_over_time():
    logits = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])  # (1 clip, 2 classes, 2 time steps)
    targets = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])  # 4 frames
    # linear stretch of 2 steps to 4 frames (half-pixel centres): a, 3a/4 + b/4, a/4 + 3b/4, b
    frames = [[a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b] for a, b in ([1.0, -2.0], [0.5, 3.0])]
    per_frame = np.mean([_bce(frames[c][t], float(targets[0, c, t])) for c in range(2) for t in range(4)])
    per_clip = np.mean([_bce(max(frames[c]), float(targets[0, c].max())) for c in range(2)])
    assert float(charades_loss(logits, targets)) == pytest.approx(0.5 * per_frame + 0.5 * per_clip, rel=1e-6)


def test_average_precision_by_hand():
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)  # ties: pessimistic
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.4]])
    positives = np.array([[1, 0], [0, 0], [0, 0]])  # the second class has no positive: left out of the mean
    assert mean_average_precision(scores, positives) == pytest.approx(1.0)


def test_temporal_logits_average_to_the_logits():
    torch.manual_seed(0)
    model = InceptionI3d(num_classes=5).eval()
    clip = torch.rand(1, 3, 17, 224, 224) * 2 - 1
    with torch.no_grad():
        temporal = model.temporal_logits(clip)
        torch.testing.assert_close(temporal.mean(dim=2), model(clip), atol=1e-5, rtol=1e-5)
    assert temporal.shape == (1, 5, 2)


def test_mirroring_flow_negates_its_x_component():
    rng = np.random.default_rng(0)
    clip = rng.uniform(-1, 1, (3, 6, 8, 2)).astype(np.float32)
    outcomes = set()
    for seed in range(16):
        out = crop_and_flip(clip, 4, True, np.random.default_rng(seed), flow=True)
        choose = np.random.default_rng(seed)
        top, left = int(choose.integers(0, 3)), int(choose.integers(0, 5))
        crop = clip[:, top : top + 4, left : left + 4]
        if choose.random() < 0.5:
            np.testing.assert_array_equal(out[..., 0], -crop[:, :, ::-1, 0])
            np.testing.assert_array_equal(out[..., 1], crop[:, :, ::-1, 1])
            outcomes.add("mirrored")
        else:
            np.testing.assert_array_equal(out, crop)
            outcomes.add("kept")
    assert outcomes == {"mirrored", "kept"}
    centre = crop_and_flip(clip, 4, False, rng, flow=True)
    np.testing.assert_array_equal(centre, clip[:, 1:5, 2:6])


def test_frame_targets_follow_the_action_spans():
    targets = frame_targets((Action(0, 0.1, 0.2), Action(2, 0.0, 1.0)), first_s=0.08, frames=5, num_classes=3)
    # frames shown at 0.08, 0.12, 0.16, 0.20, 0.24 s
    assert targets.tolist() == [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]


def _textured_video(path, speed: int, frames: int = 30, seed: int = 0):
    """A smooth random texture moving ``speed`` px a frame (smooth, so TV-L1 converges in a few iterations)."""
    noise = np.random.default_rng(seed).uniform(0, 255, (64, 200, 3)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return write_video(path, np.stack([np.roll(texture, speed * t, axis=1)[:, 40:120] for t in range(frames)]), 25)


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    for label, speed in (("left", -3), ("right", 3), ("still", 0)):
        (root / label).mkdir()
        for i in range(3):
            _textured_video(root / label / f"v{i}.mp4", speed, seed=100 + 10 * speed + i)
    (root / "right" / "._v0.mp4").write_bytes(b"macOS fork")  # hidden files are not videos
    return root


def test_charades_list_gives_per_frame_targets(tmp_path):
    _textured_video(tmp_path / "AB12C.mp4", 2, frames=50)
    _textured_video(tmp_path / "XY34Z.mp4", 0, frames=50)
    (tmp_path / "train.csv").write_text("id,subject,actions,length\nAB12C,s1,c001 0.00 1.00;c003 1.20 1.90,2.0\n"
                                        "XY34Z,s2,,2.0\n")
    labelled = read_labelled_set(tmp_path / "train.csv")
    assert labelled.multi_label and labelled.classes == ["c001", "c003"]
    clips = ClipDataset(labelled, labelled.videos, ClipSpec(clip_frames=16), train=False)
    clip, target, _ = clips[0]
    assert clip.shape == (16, 224, 224, 3) and clip.dtype == torch.uint8 and target.shape == (2, 16)
    first_s = (50 - 16) // 2 / 25  # the centred window starts at frame 17
    np.testing.assert_array_equal(target.numpy(), frame_targets(labelled.videos[0].actions, first_s, 16, 2))
    assert clips[1][1].sum() == 0
    (tmp_path / "bad.csv").write_text("id,actions\nAB12C,c001 zero 1\n")
    with pytest.raises(I3DError, match="is not `class start end`"):
        read_labelled_set(tmp_path / "bad.csv")


def test_config_files_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("train: data\nsteps: 20\nfreeze_bn: true\nschedule: rgb\nweights: null\n")
    config = load_config(tmp_path / "a.yaml", {"steps": 5})
    assert (config.steps, config.freeze_bn, config.train) == (5, True, str(tmp_path / "data"))
    (tmp_path / "b.toml").write_text('[train]\ntrain = "/abs/list.csv"\nclip_frames = 32\n')
    assert load_config(tmp_path / "b.toml").clip_frames == 32
    (tmp_path / "c.yaml").write_text("train: data\nstepz: 3\n")
    with pytest.raises(I3DError, match="unknown settings: stepz"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(I3DError, match="schedule"):
        TrainConfig(train="x", schedule="10:0.1")
    flow = lr_schedule("flow")
    assert [lr_at(flow, s) for s in (0, 97_000, 104_499, 104_500, 115_000, 149_999, 150_000)] == [
        0.1, 0.01, 0.01, 0.001, 0.1, 0.01, 0.001]
    assert lr_at(lr_schedule("0:0.5,10:0.05"), 9) == 0.5


def _small_run(folder, output, **overrides) -> TrainConfig:
    settings = dict(train=str(folder), val_ratio=0.34, batch_size=1, clip_frames=9, log_every=1, workers=0,
                    checkpoint_every=2, steps=4, output=str(output), schedule="0:0.01,3:0.001")
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one(class_folders, tmp_path, pretrained):
    whole = train_stream(_small_run(class_folders, tmp_path / "whole"), say=lambda _: None)
    train_stream(_small_run(class_folders, tmp_path / "parts", steps=2), say=lambda _: None)
    with pytest.raises(I3DError, match="pass --resume"):
        train_stream(_small_run(class_folders, tmp_path / "parts"), say=lambda _: None)
    parts = train_stream(_small_run(class_folders, tmp_path / "parts"), resume=True, say=lambda _: None)
    expected, actual = load_file(whole.final_weights), load_file(parts.final_weights)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    rows = (tmp_path / "parts" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]
    whole_rows = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:4] for r in whole_rows] == [r.split(",")[:4] for r in rows]  # step, epoch, lr, loss
    assert set(whole.last_validation) == {"val_loss", "val_top1", "val_top5"}
    assert list((tmp_path / "whole" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_both_streams_train_one_after_the_other(class_folders, tmp_path, pretrained):
    flow_start = tmp_path / "flow_start.safetensors"
    save_weights(flow_start, flow_state_dict_from_rgb(pretrained.state_dict), pretrained.labels, "flow",
                 name="flow_start")
    config = _small_run(class_folders, tmp_path / "run", stream="joint", steps=1, flow_weights=str(flow_start),
                        flow_method="opencv")
    results = train(config, say=lambda _: None)
    assert [resolve_weights(r.final_weights).modality for r in results] == ["rgb", "flow"]
    assert results[1].final_weights == tmp_path / "run" / "flow" / "model.safetensors"
    said = []
    assert train(config, resume=True, say=said.append) == [] and len(said) == 2 and "finished" in said[0]


@pytest.mark.slow
def test_two_processes_under_torchrun_equal_one_accumulating_two_passes(class_folders, tmp_path, pretrained):
    common = ["--train", str(class_folders), "--val-ratio", "0.34", "--batch-size", "1", "--clip-frames", "9",
              "--steps", "2", "--workers", "0", "--dropout", "0", "--freeze-bn", "true", "--schedule", "0:0.01"]
    single = subprocess.run([sys.executable, "-m", "i3d.cli.main", "train", *common, "--accumulate", "2",
                             "--output", str(tmp_path / "one")], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29517", "-m", "i3d.cli.main", "train", *common, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "x 2 processes" in ddp.stdout and "effective batch 2" in ddp.stdout
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=2e-6, rtol=1e-5)

    def validations(run: str) -> list[dict]:  # each process validated its share (2 and 1 of the 3 clips)
        with open(tmp_path / run / "metrics.csv") as file:
            return [{k: float(v) for k, v in row.items() if k.startswith("val_") and v} for row in
                    csv.DictReader(file) if row.get("val_loss")]

    single_val, shared_val = validations("one"), validations("two")
    assert len(single_val) == len(shared_val) >= 1
    for a, b in zip(single_val, shared_val):
        assert a.keys() == b.keys() == {"val_loss", "val_top1", "val_top5"}
        assert all(abs(a[k] - b[k]) < 1e-5 for k in a)


@pytest.mark.slow
def test_multi_label_training_reports_map(tmp_path, pretrained):
    for name, speed in (("AA", 2), ("BB", 0), ("CC", -2)):
        _textured_video(tmp_path / f"{name}.mp4", speed, frames=40)
    (tmp_path / "train.csv").write_text("id,actions\nAA,c1 0 1.0;c2 0.5 1.5\nBB,c2 0 1.6\n")
    (tmp_path / "val.csv").write_text("id,actions\nCC,c1 0.2 0.9\n")
    result = train_stream(TrainConfig(train=str(tmp_path / "train.csv"), val=str(tmp_path / "val.csv"), batch_size=2,
                               clip_frames=16, steps=1, workers=0, output=str(tmp_path / "run")), say=lambda _: None)
    assert set(result.last_validation) == {"val_loss", "val_map"} and result.last_validation["val_map"] == 1.0


# A 2D Inception-v1 written here from torchvision's names, with TF "SAME" padding, independent of the I3D code.
_BLOCKS_2D = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
              "inception4e", "inception5a", "inception5b")


def _random_googlenet(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes, channels = {"conv1": (64, 3, 7), "conv2": (64, 64, 1), "conv3": (192, 64, 3)}, 192
    for block, (c0, c1a, c1b, c2a, c2b, c3) in zip(_BLOCKS_2D, INCEPTION_CHANNELS.values()):
        shapes.update({f"{block}.branch1": (c0, channels, 1), f"{block}.branch2.0": (c1a, channels, 1),
                       f"{block}.branch2.1": (c1b, c1a, 3), f"{block}.branch3.0": (c2a, channels, 1),
                       f"{block}.branch3.1": (c2b, c2a, 3), f"{block}.branch4.1": (c3, channels, 1)})
        channels = c0 + c1b + c2b + c3
    state = {}
    for name, (out, inp, k) in shapes.items():
        state[f"{name}.conv.weight"] = torch.randn(out, inp, k, k, generator=generator) * math.sqrt(2 / (inp * k * k))
        state[f"{name}.bn.weight"] = torch.rand(out, generator=generator) * 1.5 - 0.25  # some negative scales
        state[f"{name}.bn.bias"] = torch.randn(out, generator=generator) * 0.1
        state[f"{name}.bn.running_mean"] = torch.randn(out, generator=generator) * 0.1
        state[f"{name}.bn.running_var"] = torch.rand(out, generator=generator) + 0.5
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.randn(1000, 1024, generator=generator) * 0.03
    state["fc.bias"] = torch.randn(1000, generator=generator) * 0.01
    return state


def _tf_same(x, k, s):
    pads = []
    for size in reversed(x.shape[2:]):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _googlenet_2d(state, x):
    def unit(x, name, k, s=1):
        x = F.conv2d(F.pad(x, _tf_same(x, k, s)), state[f"{name}.conv.weight"], stride=s)
        return F.relu(F.batch_norm(x, state[f"{name}.bn.running_mean"], state[f"{name}.bn.running_var"],
                                   state[f"{name}.bn.weight"], state[f"{name}.bn.bias"], False, 0.0, 1e-3))

    def pool(x, k, s):
        return F.max_pool2d(F.pad(x, _tf_same(x, k, s), value=-math.inf), k, s)

    x = pool(unit(x, "conv1", 7, 2), 3, 2)
    x = pool(unit(unit(x, "conv2", 1), "conv3", 3), 3, 2)
    for block in _BLOCKS_2D:
        x = torch.cat([unit(x, f"{block}.branch1", 1), unit(unit(x, f"{block}.branch2.0", 1), f"{block}.branch2.1", 3),
                       unit(unit(x, f"{block}.branch3.0", 1), f"{block}.branch3.1", 3),
                       unit(pool(x, 3, 1), f"{block}.branch4.1", 1)], 1)
        if block == "inception3b":
            x = pool(x, 3, 2)
        elif block == "inception4e":
            x = pool(x, 2, 2)
    return x


def test_inflated_network_on_a_boring_video_answers_as_the_2d_network_on_its_image():
    state_2d = _random_googlenet()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    network = InceptionI3d(1000).eval()
    network.load_state_dict(inflate_googlenet(state_2d))
    with torch.no_grad():
        expected = _googlenet_2d(state_2d, image)
        boring = image[:, :, None].expand(-1, -1, 120, -1, -1)  # long enough for the middle to miss the padding
        mixed_5c = network.extract_endpoints(boring, ["Mixed_5c"])["Mixed_5c"]
    middle = mixed_5c.shape[2] // 2
    torch.testing.assert_close(mixed_5c[:, :, middle], expected, atol=1e-5, rtol=1e-4)
    assert float(expected.abs().max()) > 0.1  # a real signal, not zeros everywhere
    with pytest.raises(I3DError, match="not a torchvision GoogLeNet"):
        inflate_googlenet({k: v for k, v in state_2d.items() if not k.startswith("conv2.")})


def test_a_charades_list_without_its_actions_column_names_the_file_and_the_column(tmp_path):
    from i3d.errors import I3DError
    from i3d.train.data import read_labelled_set

    listed = tmp_path / "Charades_v1_train.csv"
    listed.write_text("id,subject,scene,quality,relevance,verified,script,objects,descriptions,length\n"
                      "46GP8,HR43,Kitchen,6,7,Yes,a script,food,a description,24.83\n")
    with pytest.raises(I3DError, match="Charades_v1_train.csv: a Charades list .* needs its `actions` column"):
        read_labelled_set(listed)


def test_a_list_may_name_folders_of_frames_shown_at_25_fps(tmp_path):
    """Datasets shipped as extracted frames (one image per frame): a `path,label` row may name the folder."""
    from i3d.train.loop import _readable
    from i3d.video.transforms import center_crop, resize_short_side

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (20, 60, 80, 3), dtype=np.uint8)
    for name, count in (("walk", 20), ("run", 12)):
        (tmp_path / name).mkdir()
        for index in range(count):  # natural order: frame_2 before frame_10
            cv2.imwrite(str(tmp_path / name / f"frame_{index}.png"), frames[index][..., ::-1])
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.csv").write_text("path,label\nwalk,walk\nrun,run\nempty,run\n")
    labelled = read_labelled_set(tmp_path / "list.csv")
    said = []
    readable = _readable(labelled.videos, said.append, tmp_path / "list.csv")
    assert [(video.path.name, count) for video, count in readable] == [("walk", 20), ("run", 12)]
    assert len(said) == 1 and "empty: no image files" in said[0]
    dataset = ClipDataset(labelled, [v for v, _ in readable], ClipSpec(clip_frames=9), train=False,
                          frames=[n for _, n in readable])
    clip, target, _ = dataset[0]
    first = (20 - 9) // 2  # validation takes the centred window
    expected = np.stack([center_crop(resize_short_side(f)) for f in frames[first:first + 9]])
    assert labelled.classes[int(target)] == "walk"
    np.testing.assert_array_equal(clip.numpy(), expected)
