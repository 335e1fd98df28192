"""`i3d weights fetch` for the published checkpoints, against a local HTTP server on 127.0.0.1 serving files
the tests write in the real formats (DeepMind's TF checkpoints with their real index, the PyTorch port's
state dicts): pinned git blob SHA-1s, resumed downloads, refused tampering, server errors, mirrors."""

import dataclasses
import hashlib
import http.server
import json
import threading

import numpy as np
import pytest
import torch

import i3d.weights.registry as registry
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.networks.inception import InceptionI3d
from i3d.weights.fetch import fetch_weights
from i3d.weights.remote import MIRROR_VARIABLE, git_blob_sha1
from i3d.weights.store import installed_path
from test_convert import _data_for_index, _fixture, _port_state_dict


def _blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Server:
    """Files by repository path; can cut the first answer for a path short, or fail with a status."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.cut_once, self.fail, self.requests = files, set(), {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                if path in server.fail:
                    self.send_error(server.fail[path])
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if path in server.cut_once:  # a connection lost half-way
                    server.cut_once.discard(path)
                    body = body[: len(body) // 2]
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def published(tmp_path, monkeypatch):
    """rgb_imagenet (TF checkpoint, the real index) and rgb_charades (a port .pt), served and pinned."""
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    arrays = _data_for_index(_fixture("rgb_imagenet"), tmp_path / "model.ckpt")
    torch.manual_seed(3)
    port = _port_state_dict(InceptionI3d(157, 3).eval(), gammas=True)
    torch.save(port, tmp_path / "rgb_charades.pt")
    contents = {"rgb_imagenet": {
        "data/checkpoints/rgb_imagenet/model.ckpt.index": (tmp_path / "model.ckpt.index").read_bytes(),
        "data/checkpoints/rgb_imagenet/model.ckpt.data-00000-of-00001":
            (tmp_path / "model.ckpt.data-00000-of-00001").read_bytes()},
        "rgb_charades": {"models/rgb_charades.pt": (tmp_path / "rgb_charades.pt").read_bytes()}}
    pinned = dict(registry.REGISTRY)
    for name, files in contents.items():
        entry = registry.REGISTRY[name]
        pinned[name] = dataclasses.replace(entry, files=tuple(
            dataclasses.replace(f, blob_sha1=_blob_sha1(files[f.path])) for f in entry.files))
    monkeypatch.setattr(registry, "REGISTRY", pinned)
    server = Server({path: data for files in contents.values() for path, data in files.items()})
    monkeypatch.setenv(MIRROR_VARIABLE, server.url)
    yield server, arrays, port
    server.close()


def test_the_pins_are_the_issue_s_git_blob_sha1s():
    entry = registry.REGISTRY["rgb_imagenet"]
    assert entry.files[0].url == ("https://raw.githubusercontent.com/deepmind/kinetics-i3d/"
                                  "0667e889a5904b4dc122e0ded4c332f49f8df42c/data/checkpoints/rgb_imagenet/model.ckpt.index")
    assert [f.blob_sha1 for f in entry.files] == ["5ab1058b8f4f89a896c01f67c0a4c96a31548af7",
                                                  "2958652e0c9c48a65010c0ebda5c9cfd4edc7c18"]
    assert registry.REGISTRY["flow_charades"].files[0].blob_sha1 == "e609545f2ae2d992ca715b819ed6b53b8f5c8b95"
    # our shipped copy of the real index file is the published blob
    assert git_blob_sha1(_fixture("rgb_imagenet")) == "5ab1058b8f4f89a896c01f67c0a4c96a31548af7"
    assert registry.REGISTRY["rgb_scratch_kin600"].labels()[:2] == ["abseiling", "acting in play"]
    assert len(registry.REGISTRY["rgb_charades"].labels()) == 157


def test_a_deepmind_checkpoint_is_fetched_verified_converted_and_predicts(published, capsys, tmp_path):
    server, arrays, _ = published
    assert main(["weights", "fetch", "rgb_imagenet", "--quiet"]) == 0
    assert "rgb_imagenet installed at" in capsys.readouterr().out
    loaded = resolve_weights("rgb_imagenet")
    np.testing.assert_array_equal(loaded.state_dict["Logits.Conv3d_0c_1x1.conv3d.bias"].numpy(),
                                  arrays["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"])
    assert loaded.labels[0] == "abseiling" and loaded.metadata["license"] == "Apache-2.0 (DeepMind)"
    assert main(["weights", "verify"]) == 0
    assert "ok       rgb_imagenet" in capsys.readouterr().out


def test_an_interrupted_download_resumes_where_it_stopped(published, tmp_path):
    server, _, port = published
    server.cut_once.add("models/rgb_charades.pt")
    with pytest.raises(I3DError, match="bytes kept; run the command again to resume"):
        fetch_weights("rgb_charades", quiet=True)
    fetch_weights("rgb_charades", quiet=True)
    ranges = [r for p, r in server.requests if p == "models/rgb_charades.pt"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    loaded = resolve_weights("rgb_charades")
    assert loaded.multi_label and len(loaded.labels) == 157 and loaded.labels[0] == "Holding some clothes"


def test_a_tampered_file_is_deleted_and_reported_with_both_hashes(published, tmp_path):
    server, _, _ = published
    path = "data/checkpoints/rgb_imagenet/model.ckpt.data-00000-of-00001"
    server.files[path] = server.files[path][:-8] + b"tampered"
    with pytest.raises(I3DError, match=r"git blob SHA-1 [0-9a-f]{40} differs from the pinned [0-9a-f]{40}"):
        fetch_weights("rgb_imagenet", quiet=True)
    assert not list((tmp_path / "home" / "downloads").glob("*.part"))
    assert not (tmp_path / "home" / "weights" / "rgb_imagenet.safetensors").exists()


def test_a_server_error_and_no_network_are_one_line_naming_the_url(published, capsys, monkeypatch):
    server, _, _ = published
    server.fail["models/rgb_charades.pt"] = 503
    assert main(["weights", "fetch", "rgb_charades", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{server.url}/models/rgb_charades.pt: the server answered 503" in err and err.count("\n") == 1
    assert main(["weights", "fetch", "rgb_charades", "--quiet", "--mirror", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "could not be fetched" in err and "--mirror" in err and err.count("\n") == 1


def test_a_local_folder_mirror_works_offline(published, tmp_path, monkeypatch):
    server, _, _ = published
    folder = tmp_path / "mirror"
    for path, data in server.files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    monkeypatch.delenv(MIRROR_VARIABLE)
    path = fetch_weights("rgb_charades", mirror=str(folder), quiet=True)
    assert path.is_file() and server.requests == []


def test_charades_weights_predict_independent_probabilities(published, tmp_path, capsys):
    fetch_weights("rgb_charades", quiet=True)
    clip = tmp_path / "clip.npy"
    np.save(clip, np.random.default_rng(0).uniform(-1, 1, (9, 224, 224, 3)).astype(np.float32))
    assert main(["predict", str(clip), "--weights", "rgb_charades", "--json", "--top-k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["multi_label"] and len(result["labels"]) == 157
    logit = result["top"][0]["logit"]
    assert result["top"][0]["probability"] == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-9)


def test_unknown_names_list_the_known_ones(capsys):
    assert main(["weights", "fetch", "rgb_imagenet_v2"]) == 2
    err = capsys.readouterr().err
    assert "unknown weights 'rgb_imagenet_v2'; known: i3d-kinetics-400, rgb_imagenet" in err


def test_first_use_fetches_verifies_and_installs_once(published, monkeypatch, recwarn):
    from i3d.errors import I3DNotice
    from i3d.factory import create_model

    server, _, _ = published
    with pytest.raises(I3DError, match=r"weights rgb_charades are not installed; run `i3d weights fetch rgb_charades`"):
        resolve_weights("rgb_charades")  # I3D_OFFLINE=1, as in every test: nothing fetched
    assert server.requests == []
    monkeypatch.delenv("I3D_OFFLINE")
    model = create_model("rgb_charades")
    assert model.weights.name == "rgb_charades" and len(model.labels) == 157
    assert any(issubclass(w.category, I3DNotice) and "fetching them now (first use" in str(w.message)
               for w in recwarn.list)
    fetched = len(server.requests)
    assert resolve_weights("rgb_charades").sha256 == model.weights.sha256 and len(server.requests) == fetched


def test_two_first_uses_at_once_fetch_one_verified_file(published, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    server, _, _ = published
    monkeypatch.delenv("I3D_OFFLINE")
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(lambda _: resolve_weights("rgb_imagenet").record(), range(2)))
    assert records[0] == records[1]
    fetched = [path for path, _ in server.requests]
    assert sorted(fetched) == sorted(set(fetched)) and len(fetched) == 2  # the index and the data, once each
    assert not list(installed_path("rgb_imagenet").parent.glob("*.tmp*"))


def test_first_use_without_a_network_says_how_to_fetch_elsewhere(published, monkeypatch, capsys, tmp_path):
    from conftest import numbered_frames, write_video

    server, _, _ = published
    monkeypatch.delenv("I3D_OFFLINE")
    server.fail["models/rgb_charades.pt"] = 503
    video = write_video(tmp_path / "v.mp4", numbered_frames(10), 25)
    assert main(["predict", "--weights", "rgb_charades", str(video)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("i3d: error:")]) == 1
    assert "could not be fetched" in err[-1] and "I3D_WEIGHTS_URL" in err[-1]
    assert not installed_path("rgb_charades").exists()
    assert main(["--offline", "predict", "--weights", "rgb_charades", str(video)]) == 2
    assert "not installed; run `i3d weights fetch rgb_charades`" in capsys.readouterr().err


def test_the_videogpt_family_s_file_is_fetched_by_name_in_its_own_layout(pretrained, tmp_path, monkeypatch):
    """TATS's i3d_pretrained_400.pt is TF-Hub's weights in the PyTorch port's names with BatchNorm scales of 1
    (convert_tf_pretrained.py): a file written so from the default weights, served and pinned, converts back to
    exactly the default weights' tensors."""
    from i3d.weights.torch_port import port_names

    monkeypatch.setenv("I3D_HOME", str(tmp_path / "home"))
    ours = pretrained.state_dict
    layout = port_names(ours)
    assert layout["Mixed_3b.b1b.bn.weight"].eq(1).all() and "logits.conv3d.bias" in layout
    torch.save(layout, tmp_path / "i3d_pretrained_400.pt")
    data = (tmp_path / "i3d_pretrained_400.pt").read_bytes()
    name = "tats-i3d_pretrained_400"
    entry = registry.REGISTRY[name]
    assert entry.files[0].blob_sha1 == "a867b87ac3a9097d200598b1d48a1b890d8ec744"  # TATS@03bbce1d's blob
    monkeypatch.setattr(registry, "REGISTRY", {**registry.REGISTRY, name: dataclasses.replace(
        entry, files=(dataclasses.replace(entry.files[0], blob_sha1=_blob_sha1(data)),))})
    server = Server({entry.files[0].path: data})
    monkeypatch.setenv(MIRROR_VARIABLE, server.url)
    try:
        fetch_weights(name, quiet=True)
    finally:
        server.close()
    fetched = resolve_weights(name)
    assert fetched.labels == pretrained.labels
    assert all(torch.equal(fetched.state_dict[k], ours[k]) for k in ours)
