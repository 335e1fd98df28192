"""Installed weights are checked when loaded: the sha256 recorded when they were written, finite values,
well-formed labels; each failure is one line saying how to get the file back."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import i3d.weights.store as store
from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.networks.inception import InceptionI3d
from i3d.predict import Classifier
from i3d.weights.store import digest_path, installed_path, load_weights, save_weights


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return InceptionI3d(5, 3).state_dict()


def _flip_a_byte(path, offset_from_end=1000):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_bits_are_found_by_the_recorded_sha256(tmp_path, state):
    path = tmp_path / "w.safetensors"
    save_weights(path, state, list("abcde"), "rgb", name="w")
    record = json.loads(digest_path(path).read_text())
    assert len(record["sha256"]) == 64
    assert load_weights(path).num_classes == 5
    _flip_a_byte(path)
    with pytest.raises(I3DError, match=r"sha256 [0-9a-f]{64} differs from [0-9a-f]{64}, recorded when it was written"):
        load_weights(path)


def test_an_intact_file_is_hashed_again_only_when_it_changed(tmp_path, state, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_weights(path, state, list("abcde"), "rgb")
    calls = []
    original = store.sha256_of
    monkeypatch.setattr(store, "sha256_of", lambda p: calls.append(p) or original(p))
    load_weights(path)
    load_weights(path)
    assert calls == []  # the stamp recorded at writing still matches
    path.touch()
    load_weights(path)
    load_weights(path)
    assert len(calls) == 1  # hashed once after the change, then the new stamp was kept


def test_nan_values_are_refused_even_without_a_record(tmp_path, state):
    tensors = {k: v.clone() for k, v in state.items()}
    tensors["Mixed_4b.Branch_0.Conv3d_0a_1x1.conv3d.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(tensors, path, metadata={"i3d_format": "1", "modality": "rgb", "labels": json.dumps(list("abcde"))})
    with pytest.raises(I3DError, match="Mixed_4b.Branch_0.Conv3d_0a_1x1.conv3d.weight holds NaN or infinite"):
        load_weights(path)
    with pytest.raises(I3DError, match="refusing to write them"):
        save_weights(tmp_path / "again.safetensors", tensors, list("abcde"), "rgb")


@pytest.mark.parametrize("labels", ["not json [", json.dumps({"a": 1}), json.dumps([1, 2, 3, 4, 5])])
def test_labels_metadata_must_be_a_list_of_names(tmp_path, state, labels):
    path = tmp_path / "bad_labels.safetensors"
    save_file(dict(state), path, metadata={"i3d_format": "1", "modality": "rgb", "labels": labels})
    with pytest.raises(I3DError, match="labels metadata is not a JSON list of class names"):
        load_weights(path)


def test_a_damaged_installed_file_says_how_to_fetch_it_again(tmp_path, monkeypatch, state):
    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    path = installed_path("i3d-kinetics-400")
    path.parent.mkdir(parents=True)
    labels = [f"class {i}" for i in range(400)]
    torch.manual_seed(1)
    save_weights(path, InceptionI3d(400, 3).state_dict(), labels, "rgb", name="i3d-kinetics-400")
    _flip_a_byte(path, 50_000)
    with pytest.raises(I3DError, match=r"re-fetch it: `i3d weights fetch i3d-kinetics-400 --force`"):
        resolve_weights("i3d-kinetics-400")


def test_negative_or_nan_spans_are_refused_in_the_api_too(tmp_path, pretrained):
    from conftest import numbered_frames, write_video

    video = write_video(tmp_path / "v.mp4", numbered_frames(20, 48, 64), 25)
    classifier = Classifier()
    for start in (-1.0, float("nan")):
        with pytest.raises(I3DError, match="not a time in the video"):
            classifier.predict(video, start_s=start)
    assert np.isfinite(classifier.predict(video, start_s=0.2).logits).all()


def test_weights_that_contradict_their_metadata_are_refused_at_load(tmp_path):
    """Metadata says RGB, the first convolution takes 2 channels: one line at load, not a shape error later."""
    state = InceptionI3d(2, 2).state_dict()
    save_file(state, tmp_path / "odd.safetensors",
              metadata={"i3d_format": "1", "modality": "rgb", "labels": '["a", "b"]'})
    with pytest.raises(I3DError, match="metadata says rgb .3 input channels. but its first convolution takes 2"):
        load_weights(tmp_path / "odd.safetensors")


def test_a_network_giving_nan_is_an_error_naming_the_weights_never_nan_printed(tmp_path, capsys):
    from conftest import numbered_frames, write_video
    from i3d.cli.main import main

    torch.manual_seed(0)
    network = InceptionI3d(3, 3)
    with torch.no_grad():
        network.Mixed_5c.Branch_0.Conv3d_0a_1x1.batch_norm.running_var.fill_(-10.0)  # rsqrt of a negative: NaN
    path = tmp_path / "w.safetensors"
    save_file(network.state_dict(), path, metadata={"i3d_format": "1", "modality": "rgb", "labels": '["a", "b", "c"]',
                                                    "name": "broken"})
    video = write_video(tmp_path / "v.mp4", numbered_frames(10), 25)
    assert main(["predict", str(video), "--weights", str(path), "--runtime", "fused"]) == 2
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "give non-finite scores" in captured.err


def _damaged_copy(source, target, count=20_000):
    """``source`` copied without its sidecar record (as a file handed to someone is), ``count`` bytes of its
    tensor data flipped."""
    data = bytearray(source.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    for offset in range(header + 4096, header + 4096 + count):
        data[offset] ^= 0x40
    target.write_bytes(bytes(data))
    return target


def test_a_damaged_file_given_by_path_is_refused_by_its_own_digest(tmp_path, state, capsys):
    from conftest import numbered_frames, write_video
    from i3d.cli.main import main

    intact = tmp_path / "intact.safetensors"
    save_weights(intact, state, list("abcde"), "rgb", name="w")
    assert len(load_weights(intact).metadata[store.TENSORS_DIGEST]) == 64
    damaged = _damaged_copy(intact, tmp_path / "copy.safetensors")
    assert not digest_path(damaged).exists()  # nothing beside it to check against: the file vouches for itself
    video = write_video(tmp_path / "v.mp4", numbered_frames(10), 25)
    plot = tmp_path / "timeline.png"
    assert main(["predict", str(video), "--weights", str(damaged), "--timeline", "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not plot.exists()
    assert captured.err.splitlines() == [
        f"i3d: error: {damaged}: its tensors differ from the digest recorded in the file when it was written: the "
        "file is damaged; write it again"]


def test_a_file_without_a_digest_loads_with_a_note_and_implausible_values_are_refused(tmp_path, state):
    foreign = tmp_path / "foreign.safetensors"
    metadata = {"i3d_format": "1", "modality": "rgb", "labels": json.dumps(list("abcde"))}
    save_file(state, foreign, metadata=metadata)
    with pytest.warns(store.I3DNotice, match="records no digest of its tensors, so it cannot be verified"):
        assert load_weights(foreign).num_classes == 5
    blown = dict(state)
    blown["Conv3d_1a_7x7.conv3d.weight"] = state["Conv3d_1a_7x7.conv3d.weight"] * 1e30
    save_file(blown, foreign, metadata=metadata)
    with pytest.warns(store.I3DNotice), pytest.raises(I3DError, match="Conv3d_1a_7x7.conv3d.weight holds values of "
                                                                        "magnitude .* beyond any trained network's"):
        load_weights(foreign)


def test_the_digest_names_the_tensors_not_their_order(state):
    """One digest whatever order the tensors come in; another as soon as one value changes."""
    reordered = dict(reversed(list(state.items())))
    assert store.tensors_digest(state) == store.tensors_digest(reordered)
    changed = {**state, "Logits.Conv3d_0c_1x1.conv3d.bias": state["Logits.Conv3d_0c_1x1.conv3d.bias"] + 1}
    assert store.tensors_digest(changed) != store.tensors_digest(state)
