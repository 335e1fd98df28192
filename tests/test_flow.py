import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import numbered_frames, write_video
from i3d.video.flow import FlowComputer, flow_input_frames, opencv_tvl1, to_flow_input, to_grey
from i3d.video.flow.tvl1_torch import median_blur5, resize_linear, sample_with_gradient, tvl1_flow
from i3d.video.inputs import rgb_resized_frames


def test_pyramid_resize_is_opencvs_bilinear():
    image = np.random.default_rng(0).uniform(0, 255, (37, 53)).astype(np.float32)
    down = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    ours = resize_linear(torch.from_numpy(image)[None], *down.shape, 1 / 0.8, 1 / 0.8)[0].numpy()
    np.testing.assert_allclose(ours, down, atol=1e-3)
    up = cv2.resize(down, (53, 37), interpolation=cv2.INTER_LINEAR)
    ours_up = resize_linear(torch.from_numpy(down)[None], 37, 53, down.shape[0] / 37, down.shape[1] / 53)[0]
    np.testing.assert_allclose(ours_up.numpy(), up, atol=1e-3)


def test_warp_is_opencvs_bicubic_remap_of_the_image_and_its_centred_gradient():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 30, 40)).astype(np.float32)
    map_x = (np.arange(40)[None] + rng.uniform(-4, 4, (2, 30, 40))).astype(np.float32)
    map_y = (np.arange(30)[:, None] + rng.uniform(-4, 4, (2, 30, 40))).astype(np.float32)
    map_x[0, 0, :3], map_y[0, 0, :3] = (-9, 45, 2.5), (3, 3, -7)  # windows wholly or partly outside
    padded = F.pad(torch.from_numpy(images)[:, None], (4, 4, 4, 4), mode="replicate").reshape(-1, 48)
    pair = torch.arange(60)[:, None] // 30
    ours = sample_with_gradient(padded, torch.from_numpy(map_x).reshape(-1, 40),
                                torch.from_numpy(map_y).reshape(-1, 40), pair, 30)
    for k, image in enumerate(images):
        edge = np.pad(image, 1, mode="edge")  # OpenCV's centeredGradient: one-sided halves on the borders
        sources = image, 0.5 * (edge[1:-1, 2:] - edge[1:-1, :-2]), 0.5 * (edge[2:, 1:-1] - edge[:-2, 1:-1])
        for sampled, source in zip(ours, sources):
            expected = cv2.remap(source, map_x[k], map_y[k], cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0)
            np.testing.assert_allclose(sampled[30 * k : 30 * k + 30].numpy(), expected, atol=2e-3)


def test_median_filter_is_exact():
    flow = torch.randn(3, 19, 23)
    expected = F.unfold(F.pad(flow[:, None], (2, 2, 2, 2), mode="replicate"), 5).median(dim=1).values.view(3, 19, 23)
    assert torch.equal(median_blur5(flow), expected)
    image = (np.random.default_rng(2).uniform(-5, 5, (19, 23))).astype(np.float32)
    np.testing.assert_array_equal(median_blur5(torch.from_numpy(image)[None])[0].numpy(), cv2.medianBlur(image, 5))


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.uint8)


def test_a_translation_is_recovered():
    scene = _textured(90, 110)
    first, second = scene[10:74, 10:90], scene[11:75, 8:88]  # content moves 2 px right and 1 px up
    flow = tvl1_flow(torch.from_numpy(first)[None], torch.from_numpy(second)[None])[0].numpy()
    interior = flow[8:-8, 8:-8]
    np.testing.assert_allclose(np.median(interior.reshape(-1, 2), axis=0), [2.0, -1.0], atol=0.05)


def test_pairs_kept_in_the_batch_by_a_mask_give_the_same_flow_with_a_tenth_of_the_host_questions():
    """The accelerator's strategy (converged pairs frozen by a mask, the device asked every CHECK_EVERY steps)
    against the CPU's (converged pairs leave the batch, asked at every step), on pairs that stop at different
    iterations: the same flow, bit for bit, and the questions counted."""
    from i3d.video.flow.tvl1_torch import CHECK_EVERY, HostChecks, TVL1Params

    scene = _textured(80, 96, seed=5)
    firsts = np.stack([scene[:48, :64], scene[:48, :64], scene[4:52, 4:68], scene[10:58, 20:84]])
    seconds = np.stack([scene[:48, :64], scene[1:49, 2:66], scene[4:52, 7:71], scene[12:60, 19:83]])
    first, second = torch.from_numpy(firsts), torch.from_numpy(seconds)
    params = TVL1Params(scales=2, warps=2)
    counts = {}
    for converged in ("shrink", "mask"):
        HostChecks.count = 0
        counts[converged] = (tvl1_flow(first, second, params, converged=converged), HostChecks.count)
    (shrunk, shrink_checks), (masked, mask_checks) = counts["shrink"], counts["mask"]
    torch.testing.assert_close(masked, shrunk, rtol=0, atol=0)
    assert shrunk[0].abs().max() == 0 and shrunk[1].abs().max() > 1  # a still pair and moving ones
    # the CPU's strategy asks once per step; the mask's once per CHECK_EVERY, plus at most one per warp
    assert shrink_checks > 100 and mask_checks <= shrink_checks // CHECK_EVERY + 2 * 2


def test_clipping_and_scaling_are_exact():
    field = np.zeros((256, 300, 2), np.float32)
    values = np.array([-30, -20, -5, 0, 7.5, 20, 25], np.float32)
    field[100:107, 150, 0] = values
    out = to_flow_input(field)
    assert out.shape == (224, 224, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[100 - 16 : 107 - 16, 150 - 38, 0], [-1, -1, -0.25, 0, 0.375, 1, 1])


def test_t_frames_give_t_fields_the_last_repeated():
    frames = [_textured(40, 48, seed) for seed in range(5)]
    computer = FlowComputer("torch", batch_size=3, compile=False)
    fields = list(computer.fields(frames))
    assert len(fields) == 5 and np.array_equal(fields[-1], fields[-2])
    direct = tvl1_flow(torch.from_numpy(np.stack(frames[:4])), torch.from_numpy(np.stack(frames[1:]))).numpy()
    np.testing.assert_allclose(np.stack(fields[:4]), direct, atol=1e-5)  # batching does not change the result
    assert np.array_equal(list(computer.fields(frames[:1]))[0], np.zeros((40, 48, 2), np.float32))


def test_flow_finished_where_it_is_computed_equals_the_recipe_s_arithmetic(monkeypatch):
    """Clipping, scaling and the centre crop run on each batch where TV-L1 ran it (one finished batch back to
    the host from a GPU), with the same float32 values as to_flow_input on each field in pixels."""
    import i3d.video.flow as flow

    rng = np.random.default_rng(4)
    pixels = (rng.standard_normal((5, 250, 290, 2)) * 15).astype(np.float32)  # past the bound often
    monkeypatch.setattr(flow.FlowComputer, "_pairs", lambda self, firsts, seconds: torch.from_numpy(
        pixels[firsts[:, 0, 0].astype(int)]))
    frames = [np.full((250, 290), index, np.float32) for index in range(6)]  # frame k -> field k
    computer = FlowComputer("torch", batch_size=2, compile=False)
    finished = list(computer.fields(frames, flow.FLOW_BOUND, 224))
    expected = [to_flow_input(field) for field in [*pixels, pixels[-1]]]
    assert len(finished) == 6 and all(f.shape == (224, 224, 2) and f.dtype == np.float32 for f in finished)
    assert all(np.array_equal(f, e) for f, e in zip(finished, expected))
    scaled = list(computer.fields(frames, flow.FLOW_BOUND))  # bound alone: the whole field, as features crop it
    assert all(np.array_equal(f, np.clip(p, -20, 20) / np.float32(20)) for f, p in zip(scaled, pixels))
    assert np.array_equal(list(computer.fields(frames[:1], flow.FLOW_BOUND, 224))[0], np.zeros((224, 224, 2)))


@pytest.mark.slow
def test_torch_tvl1_agrees_with_opencv_on_real_video(sample_video):
    """Two consecutive pairs from the middle of each sample video (the benchmark's frames)."""
    errors, magnitudes = [], []
    for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"):
        grey = [to_grey(f) for f in rgb_resized_frames(Path(sample_video).with_name(name))]
        middle = grey[len(grey) // 2 : len(grey) // 2 + 3]
        firsts, seconds = np.stack(middle[:-1]), np.stack(middle[1:])
        expected = opencv_tvl1(firsts, seconds)
        ours = FlowComputer("torch", compile=False).pairs(firsts, seconds)
        errors.append(np.sqrt(((ours - expected) ** 2).sum(axis=-1)).ravel())
        magnitudes.append(np.sqrt((expected**2).sum(axis=-1)).ravel())
    assert np.concatenate(magnitudes).mean() > 0.3  # there is motion to agree on
    assert np.concatenate(errors).mean() < 0.15


@pytest.mark.slow
def test_compiled_kernels_compute_what_the_eager_ones_do():
    from i3d.video.flow.aot import compile_kernels

    scene = _textured(120, 150, seed=3)
    first, second = torch.from_numpy(scene[:96, :128])[None], torch.from_numpy(scene[3:99, 2:130])[None]
    eager = tvl1_flow(first, second)
    kernels = compile_kernels()
    if kernels is None:
        pytest.skip("no working compiler toolchain for torch.compile here")
    compiled = tvl1_flow(first, second, kernels=kernels)
    assert (compiled - eager).abs().mean() < 1e-3


@pytest.mark.slow
def test_flow_input_of_a_video(sample_video):
    frames = list(flow_input_frames(sample_video, end_s=0.4, computer=FlowComputer("opencv")))
    assert len(frames) == 10 and frames[0].shape == (224, 224, 2)
    assert all(f.min() >= -1 and f.max() <= 1 for f in frames)


def test_kernels_built_ahead_of_time_compute_what_torch_compile_does(tmp_path):
    from i3d.video.flow import aot, built_kernels

    if built_kernels.load() is None:
        pytest.skip("the TV-L1 kernels are not built on this machine (`python -m i3d.video.flow.aot`)")
    scene = _textured(120, 150, seed=4)
    first, second = torch.from_numpy(scene[:96, :128])[None], torch.from_numpy(scene[2:98, 3:131])[None]
    built = tvl1_flow(first, second, kernels=built_kernels.load())
    compiled_kernels = aot.compile_kernels()
    if compiled_kernels is None:
        pytest.skip("no working compiler toolchain for torch.compile here")
    assert torch.equal(built, tvl1_flow(first, second, kernels=compiled_kernels))


def test_kernels_of_another_build_are_never_loaded(tmp_path, monkeypatch):
    from i3d.errors import I3DNotice
    from i3d.video.flow import built_kernels as aot
    from i3d.video.flow import kernels_for
    from i3d.video.flow.tvl1_torch import EAGER_KERNELS

    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    assert aot.load() is None  # nothing built here
    folder = aot.kernel_dir()
    folder.mkdir(parents=True)
    (folder / "key.json").write_text('{"key": "torch-0.0-vec512-000000000000"}')
    assert aot.load() is None  # another torch, CPU or code
    (folder / "key.json").write_text(f'{{"key": "{aot.cache_key()}"}}')
    for name in aot.NAMES:
        (folder / f"{name}.pt2").write_bytes(b"not a package")
    assert aot.load() is None  # damaged
    with pytest.warns(I3DNotice, match="TV-L1 runs its plain kernels"):
        assert kernels_for(torch.device("cpu")) is EAGER_KERNELS


def test_a_process_loads_the_built_kernels_quietly_and_without_inductor(tmp_path):
    """What keeps a short `i3d flow` fast: no Inductor import (a second) and no warnings on stderr; and a
    process that ends as a pool's worker does (``os._exit``: no destructors) leaves nothing in $TMPDIR."""
    from i3d.video.flow import built_kernels

    if built_kernels.load() is None:
        pytest.skip("the TV-L1 kernels are not built on this machine (`python -m i3d.video.flow.aot`)")
    video = write_video(tmp_path / "v.mp4", numbered_frames(4, 48, 64), 25)
    flow = subprocess.run([sys.executable, "-m", "i3d.cli.main", "flow", str(video), "-o", str(tmp_path / "f.npy")],
                          capture_output=True, text=True)
    assert flow.returncode == 0 and flow.stderr == "", flow.stderr
    probe = ("import sys, torch\nfrom i3d.video.flow import kernels_for, tvl1_flow\n"
             "kernels = kernels_for(torch.device('cpu'))\nassert kernels is not None\n"
             "tvl1_flow(torch.rand(1, 32, 40) * 255, torch.rand(1, 32, 40) * 255, kernels=kernels)\n"
             "print(sorted(m for m in sys.modules if m.startswith(('torch._inductor', 'torch._dynamo'))))\n"
             "sys.stdout.flush()\nimport os\nos._exit(0)")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(temporary)})
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
    assert list(temporary.iterdir()) == []


def test_built_kernels_run_on_any_cpu_of_their_capability():
    """Built for the capability's baseline (x86-64-v4 for AVX-512), never -march=native: a home folder
    shared by a cluster's nodes, or an image built on another machine, must not load an instruction the
    CPU lacks."""
    import platform
    import zipfile

    from i3d.video.flow import aot

    march = aot._portable_march().get("cpp.march")
    if aot.load() is None or march is None:
        pytest.skip(f"no kernels built here, or not an x86-64 CPU with AVX2 or AVX-512 ({platform.machine()})")
    for name in aot.NAMES:
        with zipfile.ZipFile(aot.kernel_dir() / f"{name}.pt2") as package:
            built = b"".join(package.read(item) for item in package.namelist() if not item.endswith(".so"))
        assert f"march={march}".encode() in built and b"march=native" not in built, name


def test_flow_batches_are_sized_to_the_device(monkeypatch):
    from i3d.video.flow import DEFAULT_BATCH, pairs_per_batch

    assert pairs_per_batch(torch.device("cpu"), 256, 340) == DEFAULT_BATCH
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 << 30, 80 << 30))
    assert pairs_per_batch(torch.device("cuda", 0), 256, 340) == (10 << 30) // 2 // (256 * 256 * 340) == 240
    assert pairs_per_batch(torch.device("cuda", 0), 64, 64) == 256  # capped
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 << 20, 80 << 30))
    assert pairs_per_batch(torch.device("cuda", 0), 256, 340) == 1  # a nearly full GPU still makes progress


def test_cuda_gets_kernels_compiled_for_it_once_per_device(monkeypatch):
    """CUDA's kernels come from torch.compile, once per process and device; where it cannot compile, the
    plain kernels with a notice; I3D_BUILD_KERNELS=0 keeps the plain ones. (The compiled kernels' numbers on
    a GPU are benchmarks/gpu_check.py's to check.)"""
    import i3d.video.flow as flow
    from i3d.errors import I3DNotice
    from i3d.video.flow import aot
    from i3d.video.flow.tvl1_torch import EAGER_KERNELS

    asked = []
    monkeypatch.delenv("I3D_BUILD_KERNELS", raising=False)
    monkeypatch.setattr(flow, "_COMPILED", {})
    monkeypatch.setattr(aot, "compile_kernels", lambda device: asked.append(device) or {"on": device})
    with pytest.warns(I3DNotice, match="compiling TV-L1's kernels for cuda:1"):
        assert flow.kernels_for(torch.device("cuda", 1)) == {"on": torch.device("cuda", 1)}
    assert flow.kernels_for(torch.device("cuda", 1)) == {"on": torch.device("cuda", 1)}
    flow.kernels_for(torch.device("cuda", 0))
    assert asked == [torch.device("cuda", 1), torch.device("cuda", 0)]
    monkeypatch.setattr(aot, "compile_kernels", lambda device: None)
    with pytest.warns(I3DNotice, match="TV-L1 runs its plain kernels on cuda:2"):
        assert flow.kernels_for(torch.device("cuda", 2)) is EAGER_KERNELS
    monkeypatch.setenv("I3D_BUILD_KERNELS", "0")
    assert flow.kernels_for(torch.device("cuda", 3)) is EAGER_KERNELS and torch.device("cuda", 3) not in flow._COMPILED


def test_kernels_compiled_for_a_device_are_warmed_up_on_it_with_its_options(monkeypatch):
    """Every tensor the warm-up hands a kernel is on the device asked for (a CPU tensor among CUDA ones
    fails there), and CPU-only options (cpp.*) stay off other devices. ``meta`` stands in for CUDA."""
    from i3d.video.flow import aot

    seen, given = [], {}

    def fake_compile(kernel, dynamic, options=None):
        given[kernel.__name__] = dict(options or {})

        def run(*args):
            seen.extend(a.device for a in args if isinstance(a, torch.Tensor))
            return kernel(*args)
        return run

    monkeypatch.setattr(aot, "vector_bits", lambda: 512)  # the median's cpp.simdlen applies on the CPU
    monkeypatch.setattr(torch, "compile", fake_compile)
    assert aot.compile_kernels("meta") is not None
    assert seen and set(seen) == {torch.device("meta")}
    assert not any(k.startswith("cpp.") for o in given.values() for k in o) and given
    seen.clear()
    assert aot.compile_kernels("cpu") is not None and set(seen) == {torch.device("cpu")}
    assert any(k.startswith("cpp.") for o in given.values() for k in o)
