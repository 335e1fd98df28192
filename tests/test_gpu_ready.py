"""What a GPU run depends on, checked where its logic runs on a CPU: the process group's backend, each rank's
device, the start method of loader workers that use CUDA, which generators a checkpoint keeps, per-rank seeds
and the TF32 state around the inference forms. The rest is benchmarks/gpu_check.py's, on a GPU."""

import numpy as np
import pytest
import torch

import i3d.train.loop as loop
from i3d.devices import exact_cuda_math
from i3d.errors import I3DError
from i3d.train.config import TrainConfig


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: bound.append(device))
    bound: list = []
    return bound


@pytest.mark.parametrize(("device", "backend"), [("cpu", "gloo"), ("auto", "nccl"), ("cuda", "nccl")])
def test_the_backend_follows_the_run_s_device_not_the_machine(monkeypatch, two_gpus, device, backend):
    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(loop.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(loop.dist, "init_process_group", lambda name: chosen.append(name))
    monkeypatch.setattr(loop.dist, "get_rank", lambda: 3)
    monkeypatch.setattr(loop.dist, "get_world_size", lambda: 4)
    process = loop.start_process_group(device)
    assert chosen == [backend] and process.local_rank == 3
    assert two_gpus == ([1] if backend == "nccl" else [])  # local rank 3 of 2 GPUs: cuda:1, bound before NCCL
    expected = torch.device("cpu") if device == "cpu" else torch.device("cuda", 1)
    assert loop.pick_device(TrainConfig(train="x", device=device), process) == expected


def test_loader_workers_that_compute_flow_on_a_gpu_are_spawned():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    flow = TrainConfig(train="x", stream="flow", workers=2)
    assert loop.loader_options(flow, cuda) == {"num_workers": 2, "pin_memory": True, "multiprocessing_context": "spawn"}
    assert loop.loader_options(flow, cpu) == {"num_workers": 2, "pin_memory": False}
    assert "multiprocessing_context" not in loop.loader_options(TrainConfig(train="x", workers=2), cuda)
    assert "multiprocessing_context" not in loop.loader_options(TrainConfig(train="x", stream="flow", workers=0), cuda)


def test_a_checkpoint_s_random_state_restores_the_draws_that_follow():
    torch.manual_seed(7)
    state = loop.random_state(torch.device("cpu"))
    expected = torch.rand(3)
    torch.rand(5)
    loop.set_random_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    loop.set_random_state(state["cpu"], torch.device("cpu"))  # a checkpoint written with the CPU's state alone
    assert torch.equal(torch.rand(3), expected)


def test_a_seeded_classifier_leaves_every_generator_as_it_was():
    from i3d.factory import _new_classifier
    from i3d.networks.inception import InceptionI3d

    heads = []
    for seed in (11, 12):  # two ranks: their own generators, the same seeded classifier
        torch.manual_seed(seed)
        model = InceptionI3d(5, final_endpoint="Logits")
        before = torch.get_rng_state()
        _new_classifier(model, 3, seed=5)
        assert torch.equal(torch.get_rng_state(), before)  # dropout masks after it are the rank's own
        heads.append(model.Logits.Conv3d_0c_1x1.conv3d.weight)
    assert torch.equal(*heads)


@pytest.fixture
def tf32_on():
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "tf32"
    yield conv, matmul
    conv.fp32_precision, matmul.fp32_precision = saved


def test_the_inference_forms_turn_tf32_off_around_each_call_and_back_after(monkeypatch, tf32_on):
    conv, matmul = tf32_on
    with exact_cuda_math(torch.device("cuda", 0)):
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")  # the user's setting, untouched
    with exact_cuda_math(torch.device("cpu")):
        assert conv.fp32_precision == "tf32"
    monkeypatch.setenv("I3D_ALLOW_TF32", "1")
    with exact_cuda_math(torch.device("cuda", 0)):
        assert conv.fp32_precision == "tf32"


def test_every_fused_call_runs_under_the_exact_math_of_its_input_s_device(monkeypatch):
    import contextlib

    import i3d.runtimes.fused as fused
    from i3d.networks.inception import InceptionI3d

    entered = []

    @contextlib.contextmanager
    def recording(device):
        entered.append(device)
        yield

    monkeypatch.setattr(fused, "exact_cuda_math", recording)
    form = fused.fuse(InceptionI3d(4, final_endpoint="Mixed_3b").eval())
    with torch.no_grad():
        form(torch.zeros(1, 3, 9, 64, 64))
        form.extract_endpoints(torch.zeros(1, 3, 9, 64, 64), ["Mixed_3b"])
    assert entered == [torch.device("cpu")] * 2


def test_clips_made_ahead_come_in_order_carry_errors_and_stop_with_the_consumer():
    """On CUDA, predict decodes the next clips in a thread while the GPU runs (``made_ahead``)."""
    import threading

    from i3d.batching import made_ahead

    assert list(made_ahead(iter(range(50)), 3)) == list(range(50))

    def failing():
        yield 1
        raise I3DError("x.mp4: decoding failed after 1 frames")

    got = []
    with pytest.raises(I3DError, match="decoding failed after 1 frames"):
        for item in made_ahead(failing(), 2):
            got.append(item)
    assert got == [1]
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield len(produced)

    ahead = made_ahead(endless(), 2)
    assert next(ahead) == 1
    ahead.close()  # the consumer stops: so does the thread, a bounded number of items later
    threading.Event().wait(0.5)
    settled = len(produced)
    threading.Event().wait(0.3)
    assert len(produced) == settled <= 5


def test_a_video_decoded_ahead_gives_the_windows_decoded_inline(tmp_path, monkeypatch):
    """A GPU's features (Ray actors, and the local engine when flow runs on the GPU) decode the next windows in
    a thread while the network runs: the same windows, in order, and a failing video still fails."""
    import threading

    from conftest import numbered_frames, write_video
    from i3d.features.video import DecodedVideo, extract_video
    from i3d.settings import ExtractionConfig, WindowSpec

    video = write_video(tmp_path / "v.mp4", numbered_frames(40, 48, 64), 25)
    config = ExtractionConfig(WindowSpec(clip_len=8, step=6), batch_size=2)
    decoding_threads = set()
    windows = DecodedVideo.windows

    def recorded(self):
        for window in windows(self):
            decoding_threads.add(threading.current_thread().name)
            yield window

    def run(clips):  # a stand-in network: what it saw, in order
        return [{"features": np.asarray([clip.mean(), clip[0].mean(), len(clip)])} for clip in clips]

    monkeypatch.setattr(DecodedVideo, "windows", recorded)
    inline = extract_video(video, run, config)
    assert decoding_threads == {threading.current_thread().name}
    ahead = extract_video(video, run, config, decode_ahead=True)
    assert decoding_threads == {threading.current_thread().name, "i3d-decode-ahead"}
    assert ahead.windows == inline.windows == [(s, min(s + 8, 40)) for s in range(0, 40, 6)]
    assert np.array_equal(ahead.arrays["features"], inline.arrays["features"])
    with pytest.raises(I3DError, match="no such file"):
        extract_video(tmp_path / "missing.mp4", run, config, decode_ahead=True)


def test_ray_actors_ask_for_one_cpu_on_a_cpu_and_two_beside_a_gpu():
    from i3d.features.ray_engine import worker_cpus

    assert worker_cpus(None, 0) == 1
    assert worker_cpus(None, 0.5) == worker_cpus(None, 1.0) == 2
    assert worker_cpus(6, 1.0) == worker_cpus(6, 0) == 6
    with pytest.raises(I3DError, match="at least 1"):
        worker_cpus(0, 0)
