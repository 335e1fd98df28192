"""The one way in: create_model, list_models, torch.hub, and weights that carry their own recipe."""

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import i3d
from conftest import write_video
from i3d.factory import build_model, create_model, list_models
from i3d.networks.architecture import CLASSIFIER_BIAS, CLASSIFIER_WEIGHT, FIRST_CONV_WEIGHT
from i3d.predict import Classifier
from i3d.runtimes.fused import fuse
from i3d.weights.cross_modal import flow_state_dict_from_rgb
from i3d.weights.registry import DEFAULT_WEIGHTS, REGISTRY, Preprocessing

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.needs_weights


def test_create_model_loads_every_tensor_of_the_weights(pretrained):
    model = create_model()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, pretrained.state_dict[name]), name
    assert not model.training and model.labels == pretrained.labels
    assert model.weights_meta["name"] == DEFAULT_WEIGHTS and model.weights_meta["modality"] == "rgb"


def test_other_num_classes_replace_only_the_classifier(pretrained):
    torch.manual_seed(0)
    model = create_model(num_classes=7)
    state = model.state_dict()
    assert state[CLASSIFIER_WEIGHT].shape == (7, 1024, 1, 1, 1) and state[CLASSIFIER_BIAS].shape == (7,)
    kept = [k for k in pretrained.state_dict if not k.startswith("Logits.")]
    assert all(torch.equal(state[k], pretrained.state_dict[k]) for k in kept)
    assert model.labels is None and model(torch.zeros(1, 3, 9, 224, 224)).shape == (1, 7)


def test_two_input_channels_start_a_flow_network_from_rgb(pretrained):
    model = create_model(in_channels=2)
    expected = flow_state_dict_from_rgb(pretrained.state_dict)
    assert torch.equal(model.state_dict()[FIRST_CONV_WEIGHT], expected[FIRST_CONV_WEIGHT])
    assert model.weights_meta["modality"] == "flow" and model.in_channels == 2


def test_an_endpoint_network_takes_the_weights_up_to_it(pretrained):
    model = create_model(final_endpoint="Mixed_4f")
    assert "Logits" not in dict(model.named_children())
    full = create_model()
    x = torch.randn(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), full.extract_endpoints(x, ["Mixed_4f"])["Mixed_4f"])


def test_untrained_model_needs_no_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("I3D_HOME", str(tmp_path))  # nothing installed here
    model = create_model("rgb_imagenet", pretrained=False)
    assert model.num_classes == 400 and model.in_channels == 3 and model.labels is None
    assert create_model("flow_imagenet", pretrained=False).in_channels == 2
    assert list_models(installed=True) == [] and DEFAULT_WEIGHTS in list_models()


def test_torch_hub_loads_from_a_local_clone(pretrained):
    model = torch.hub.load(str(ROOT), "i3d", source="local", trust_repo=True)
    x = torch.randn(1, 3, 9, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), build_model(pretrained)(x), rtol=0, atol=1e-4)  # fast path vs plain
    assert model.labels == pretrained.labels


def test_package_exposes_the_factory():
    assert i3d.create_model is create_model and i3d.list_models is list_models
    assert i3d.get_weights(DEFAULT_WEIGHTS) is REGISTRY[DEFAULT_WEIGHTS]


def test_every_entry_describes_its_recipe_labels_and_provenance():
    for info in REGISTRY.values():
        recipe = info.preprocessing
        fps = None if info.layout else 25.0  # the ResNet-50 family samples frames at the video's own rate
        assert (recipe.fps, recipe.short_side, recipe.crop, recipe.value_range) == (fps, 256, 224, (-1.0, 1.0))
        assert recipe.channels == info.in_channels
        assert recipe.channel_order == ("RGB" if info.modality == "rgb" else "xy")
        assert info.provenance and info.license and info.trained_on
        assert set(info.meta) >= {"preprocessing", "metrics", "source_sha256", "label_set"}
    assert REGISTRY["flow_imagenet"].preprocessing.flow_bound == 20.0
    assert REGISTRY["rgb_imagenet"].metrics["kinetics400/test"]["top1"] == 71.1
    assert len(REGISTRY[DEFAULT_WEIGHTS].labels()) == 400


def _by_hand(path: Path, recipe: Preprocessing) -> np.ndarray:
    """Decode with PyAV, resample 50 -> 25 fps (every other frame), resize, centre-crop, scale."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    out = []
    for frame in frames[::2]:
        h, w = frame.shape[:2]
        size = (round(w * recipe.short_side / h), recipe.short_side)
        resized = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        top, left = (size[1] - recipe.crop) // 2, (size[0] - recipe.crop) // 2
        out.append(resized[top : top + recipe.crop, left : left + recipe.crop])
    return np.stack(out).astype(np.float32) / 127.5 - 1


def test_transforms_is_the_recipe_and_what_predict_feeds_the_network(tmp_path, pretrained):
    rng = np.random.default_rng(0)
    frames = cv2.resize(rng.integers(0, 256, (20, 30, 3), np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC)
    video = np.stack([np.roll(frames, 6 * i, axis=1) for i in range(24)])
    path = write_video(tmp_path / "pan.mp4", video, 50)
    transform = REGISTRY[DEFAULT_WEIGHTS].transforms()
    clip = transform(path)
    assert clip.shape == (1, 3, 12, 224, 224) and clip.dtype == torch.float32
    expected = _by_hand(path, REGISTRY[DEFAULT_WEIGHTS].preprocessing)
    np.testing.assert_array_equal(clip[0].permute(1, 2, 3, 0).numpy(), expected)
    with torch.inference_mode():
        logits = fuse(build_model(pretrained))(clip)[0].numpy()
    np.testing.assert_array_equal(Classifier(runtime="fused").predict(path).logits, logits)
    np.testing.assert_allclose(Classifier(runtime="openvino").predict(path).logits, logits, atol=1e-4, rtol=0)


def test_transforms_takes_uint8_frames_as_well_as_files(tmp_path):
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, (10, 240, 320, 3), np.uint8)
    transform = REGISTRY[DEFAULT_WEIGHTS].transforms()
    clip = transform(video)
    resized = cv2.resize(video[3], (341, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(clip[0, :, 3].permute(1, 2, 0).numpy(),
                                  resized[16:240, 58:282].astype(np.float32) / 127.5 - 1)
    assert "25 fps, short side 256, centre crop 224" in repr(transform)


def test_a_classifier_of_no_classes_is_refused_before_loading_anything():
    with pytest.raises(i3d.errors.I3DError, match="num_classes must be at least 1, not 0"):
        create_model("no-such-weights", num_classes=0)

