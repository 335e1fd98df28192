"""Precision as a setting: what each device runs usefully, and the OpenVINO form against the network computed
in float64."""

import numpy as np
import pytest
import torch

import i3d
import i3d.devices as devices
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import create_model
from i3d.networks.inception import InceptionI3d
from i3d.weights.store import LoadedWeights


def _network(classes=10, endpoint="Mixed_4b", seed=0):
    torch.manual_seed(seed)
    network = InceptionI3d(classes, 3, final_endpoint=endpoint).eval()
    with torch.no_grad():  # BatchNorm statistics other than 0/1, so folding them matters
        for module in network.modules():
            if hasattr(module, "running_var"):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.2, 0.2)
    return network


def test_precisions_a_device_cannot_run_usefully_are_refused_in_one_line(monkeypatch, tmp_path, capsys):
    with pytest.raises(I3DError, match="fp16 is for CUDA GPUs"):
        devices.check_precision("fp16", "cpu")
    with pytest.raises(I3DError, match="must be one of fp32, bf16, fp16, int8"):
        devices.check_precision("fp8", "cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(I3DError, match="no native bf16"):
        devices.check_precision("bf16", "cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512_bf16"})
    devices.check_precision("bf16", "cpu")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    assert main(["predict", str(video), "--precision", "fp16"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "i3d: error: --precision fp16 is for CUDA GPUs: CPUs have no fast fp16 convolutions; use bf16 (on a CPU "
        "with native bf16) or fp32"]
    with pytest.raises(I3DError, match="int8 runs through OpenVINO"):
        i3d.load_model(_weights(), precision="int8", runtime="fused")


@pytest.mark.parametrize(("cap", "kept", "gone"), [
    ("AVX2", {"avx", "avx2", "fma"}, {"avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"}),
    ("avx512_core_vnni", {"avx2", "avx512f", "avx512_vnni"}, {"avx512_bf16", "avx512_fp16", "amx_bf16"}),
    ("AVX512_CORE_AMX", {"avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8"}, set()),
    ("", {"avx512_bf16", "amx_bf16", "amx_tile"}, set()),
])
def test_an_instruction_set_cap_makes_the_cpu_what_its_kernels_see(tmp_path, monkeypatch, cap, kept, gone):
    """ONEDNN_MAX_CPU_ISA caps PyTorch's and OpenVINO's kernels: capped at AVX2 a Sapphire Rapids is an AVX2 CPU,
    and bf16 is refused in one line instead of failing inside OpenVINO's compiler."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse4_1 avx avx2 fma avx_vnni avx512f avx512bw avx512_vnni "
                    "avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    flags = devices.cpu_flags(str(info))
    assert kept <= flags and not gone & flags
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", cap)  # oneDNN's older name
    assert devices.cpu_flags(str(info)) == flags
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    if "avx512_bf16" in flags:
        devices.check_precision("bf16", "cpu")
    else:
        with pytest.raises(I3DError, match="no native bf16"):
            devices.check_precision("bf16", "cpu")


def _weights(seed=0):
    network = _network(400, "Logits", seed)
    return LoadedWeights(network.state_dict(), [f"class {i}" for i in range(400)], "rgb", {"name": "random"})


def test_the_openvino_form_is_the_same_function(tmp_path, monkeypatch):
    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    weights = _weights(seed=3)
    form = i3d.load_model(weights, runtime="openvino")
    x = torch.rand(2, 3, 11, 224, 224, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        plain = create_model(weights).double()
        reference = plain(x.double())
        mixed_5c = plain.extract_endpoints(x.double(), ["Mixed_5c"])["Mixed_5c"]
    with torch.inference_mode():
        logits = form(x)
        endpoints = form.extract_endpoints(x, ["Mixed_5c"])
        features = form.forward_features(x)
    assert form.convolutions_run_in((11, 224, 224)) == {"f32": 57}  # fp32 asked, fp32 run
    assert logits.dtype == torch.float32 and float((logits.double() - reference).abs().max()) < 1e-4
    assert float((endpoints["Mixed_5c"].double() - mixed_5c).abs().max()) < 1e-4
    np.testing.assert_allclose(features.numpy(), plain.Logits.features(mixed_5c).numpy(), atol=1e-4)
    graphs = [p.name.split("-openvino")[0] for p in (tmp_path / "compiled").glob("*.xml")]
    assert graphs == ["graph-inception-eps0.001-400cls-3ch-exported-edgepool"]  # the architecture, converted once
    other = create_model(_weights(seed=4))
    second = i3d.load_model(_weights(seed=4), runtime="openvino")  # other weights go into the same graph
    assert len(list((tmp_path / "compiled").glob("*.xml"))) == 1
    with torch.no_grad():
        assert float((second(x).double() - other.double()(x.double())).abs().max()) < 1e-4
    with torch.no_grad():  # another frame size and batch: the exported graph's sizes are free
        odd = torch.rand(1, 3, 17, 240, 256, generator=torch.Generator().manual_seed(5)) * 2 - 1
        assert float((form(odd).double() - plain(odd.double())).abs().max()) < 1e-4


def test_predict_and_features_record_their_precision_and_runtime(tmp_path, capsys):
    import json

    from conftest import numbered_frames, write_video
    from i3d.weights.store import save_weights

    weights = _weights(seed=5)
    path = tmp_path / "w.safetensors"
    save_weights(path, weights.state_dict, weights.labels, "rgb", name="random")
    video = write_video(tmp_path / "v.mp4", numbered_frames(10, 48, 64), 25)
    assert main(["predict", str(video), "--json", "--weights", str(path), "--runtime", "fused"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["precision"], printed["runtime"]) == ("fp32", "fused")
    assert (printed["device"], printed["tf32_allowed"]) == ("cpu", False)
    assert main(["features", str(video), "-o", str(tmp_path / "out"), "--weights", str(path), "--runtime", "fused",
                 "--quiet"]) == 0
    run = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])["run"]
    assert run["runtime"] == "fused" and "precision" not in run["settings"]  # fp32: outputs of before stay valid
    assert (run["device"], run["tf32_allowed"]) == ("cpu", False)


def test_reports_say_whether_tf32_was_allowed_where_it_exists(monkeypatch):
    monkeypatch.delenv("I3D_ALLOW_TF32", raising=False)
    assert devices.compute_record(torch.device("cuda", 1)) == {"device": "cuda:1", "tf32_allowed": False}
    monkeypatch.setenv("I3D_ALLOW_TF32", "1")
    assert devices.compute_record("cuda") == {"device": "cuda", "tf32_allowed": True}
    assert devices.compute_record("cpu") == {"device": "cpu", "tf32_allowed": False}  # a CPU has no TF32


def test_devices_default_to_auto_and_ray_workers_share_gpus():
    from i3d.devices import parse_device
    from i3d.features.ray_engine import gpu_share
    from i3d.settings import ExtractionConfig, InferenceSettings, ServeConfig

    assert InferenceSettings().device == ExtractionConfig().device == ServeConfig().device == "auto"
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert gpu_share(ExtractionConfig(device="cuda:1"), 2, 1.0) == (0.5, ExtractionConfig(device="cuda"))
    assert gpu_share(ExtractionConfig(device="cuda"), 2, 4.0)[0] == 1.0
    assert gpu_share(ExtractionConfig(device="auto"), 2, 0) == (0, ExtractionConfig(device="cpu"))
    assert gpu_share(ExtractionConfig(device="cpu"), 2, 4.0) == (0, ExtractionConfig(device="cpu"))
    with pytest.raises(I3DError, match="the Ray cluster has no GPUs"):
        gpu_share(ExtractionConfig(device="cuda"), 2, 0)


def test_sums_over_processes_without_a_group_are_the_values():
    from i3d.devices import all_reduce_sum

    values = torch.tensor([1.5, 2.0], dtype=torch.float64)
    assert torch.equal(all_reduce_sum(values), values) and all_reduce_sum(values).dtype == torch.float64


def test_frames_become_the_network_s_input_where_they_are_as_the_cpu_recipe_makes_them():
    """uint8 frames travel to the device as uint8 and are normalised there: the same float32 values bit for
    bit as the recipe's numpy conversion, channels first and contiguous; floats (flow, joint) pass unchanged.
    (CUDA's pinned, non-blocking upload is checked by benchmarks/gpu_check.py where a GPU is lent.)"""
    from i3d.video.transforms import to_unit_range

    values = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1).repeat(3, axis=3)
    batch = devices.stack_on(torch.device("cpu"), [values, values[::-1]])
    assert batch.dtype == torch.uint8 and batch.shape == (2, 4, 8, 8, 3)
    x = devices.network_input(batch)
    assert x.shape == (2, 3, 4, 8, 8) and x.is_contiguous()
    expected = to_unit_range(np.stack([values, values[::-1]])).transpose(0, 4, 1, 2, 3)
    np.testing.assert_array_equal(x.numpy(), expected)
    flow = np.linspace(-1, 1, 2 * 3 * 4 * 5 * 2, dtype=np.float32).reshape(2, 3, 4, 5, 2)
    np.testing.assert_array_equal(devices.network_input(torch.from_numpy(flow)).numpy(), flow.transpose(0, 4, 1, 2, 3))


def test_clips_per_call_default_by_device_and_group_by_padded_length():
    """4 clips per call on CUDA, 1 on the CPU, as asked otherwise; clips gather until the batch is full or a
    clip of another length (after loop padding to 9 frames) comes, and each keeps its own logits in order."""
    from i3d.predict import Classifier
    from i3d.settings import InferenceSettings

    assert devices.clips_per_call(torch.device("cuda", 1)) == 4 and devices.clips_per_call(torch.device("cpu")) == 1
    assert devices.clips_per_call(torch.device("cpu"), 8) == 8
    with pytest.raises(I3DError, match="at least 1"):
        devices.clips_per_call(torch.device("cpu"), 0)
    with pytest.raises(I3DError, match="batch_size must be at least 1"):
        InferenceSettings(batch_size=0)

    class Sums(torch.nn.Module):  # logits: (sum over the clip, frames); shows which clip and its padding
        def forward(self, x):
            calls.append(tuple(x.shape))
            return torch.stack([x.sum(dim=(1, 2, 3, 4)), torch.full((len(x),), float(x.shape[2]))], dim=1)

    classifier = Classifier.__new__(Classifier)
    classifier.device, classifier.batch_size, classifier.models = torch.device("cpu"), 3, {"rgb": Sums()}
    classifier._shared = None
    lengths = [12, 12, 12, 12, 5, 8, 3, 12, 12]
    clips = [np.full((n, 4, 4, 3), i, np.float32) for i, n in enumerate(lengths)]
    clips[-1] = clips[-1].astype(np.uint8)  # another dtype: its own call, normalised as uint8 frames are
    calls = []
    out = list(classifier.batched_logits(iter(clips)))
    assert [clip is original for (clip, _), original in zip(out, clips)] == [True] * 9
    assert [c[0] for c in calls] == [3, 1, 3, 1, 1] and [c[2] for c in calls] == [12, 12, 9, 12, 12]
    np.testing.assert_allclose(out[-1][1], [(8 / 127.5 - 1) * 12 * 48, 12], rtol=1e-6)
    out = out[:-1]
    for i, (_, logits) in enumerate(out):
        padded = max(lengths[i], 9)
        np.testing.assert_array_equal(logits, [i * padded * 48, padded])


def test_threads_share_network_calls_and_each_gets_its_own_logits():
    """While one thread's call runs, the others' clips wait and then go through the network together (up to
    the limit, same shape only); each thread gets the logits of its own clips; a failed call raises in each
    thread whose clips it carried."""
    import threading

    from i3d.predict import SharedCalls

    started, release = threading.Event(), threading.Event()
    calls = []

    def run(clips, modality):
        calls.append([float(c[0, 0, 0, 0]) for c in clips])
        if len(calls) == 1:
            started.set()
            release.wait(10)
        if any(float(c[0, 0, 0, 0]) < 0 for c in clips):
            raise RuntimeError("out of memory")
        return np.stack([[c.sum(), len(c)] for c in clips])

    shared = SharedCalls(run, max_clips=4)
    results = {}

    def ask(name, values, frames=12):
        clips = [np.full((frames, 2, 2, 3), v, np.float32) for v in values]
        try:
            results[name] = shared(clips, "rgb")
        except RuntimeError as error:
            results[name] = str(error)

    first = threading.Thread(target=ask, args=("first", [1.0]))
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=ask, args=args) for args in
              (("a", [2.0, 3.0]), ("b", [4.0]), ("c", [5.0, 6.0]), ("short", [7.0], 5), ("bad", [-1.0], 20))]
    for count, thread in enumerate(others, 1):  # one at a time, so they wait in this order
        thread.start()
        while len(shared.waiting) < count:  # its clips wait while the first call runs
            threading.Event().wait(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    # then a and b share a call (c's two clips would pass 4); the 5-frame clip (padded to 9) and the 20-frame
    # one have shapes of their own
    assert calls[0] == [1.0] and sorted(map(sorted, calls[1:])) == [[-1.0], [2.0, 3.0, 4.0], [5.0, 6.0], [7.0]]
    assert shared.calls == {1: 3, 2: 1, 3: 1}
    for name, values, frames in (("first", [1.0], 12), ("a", [2.0, 3.0], 12), ("b", [4.0], 12),
                                 ("c", [5.0, 6.0], 12), ("short", [7.0], 5)):
        np.testing.assert_array_equal(results[name], [[v * frames * 12, frames] for v in values])
    assert results["bad"] == "out of memory" and not shared.running and not shared.waiting
