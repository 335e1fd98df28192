"""Inference speed and memory of each execution path on this machine; a benchmark, not a test.

Each path runs in a fresh process, so its peak resident memory is its own (the interpreter, torch and
the weights included), and one path's caches cannot flatter the next.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from i3d.errors import I3DError
from i3d.networks.flops import gflops_per_clip
from i3d.settings import BENCH_PATHS, BenchConfig


@dataclass
class BenchResult:
    path: str
    seconds_per_clip: float
    clips_per_second: float
    gflops_per_second: float
    peak_memory_mb: float
    memory: str  # what peak_memory_mb measures
    weights: str
    threads: int
    runs: str = ""  # what ran: runtime and precision
    convolutions: str = ""  # OpenVINO: the precisions its compiled convolutions run in, e.g. "57 u8"

    def row(self) -> str:
        notes = [self.runs] if self.runs else []
        if self.convolutions:
            notes.append(f"convolutions: {self.convolutions}")
        runs_on = f" ({', '.join(notes)})" if notes else ""
        return (f"{self.path:<12} {self.seconds_per_clip:>9.3f} {self.clips_per_second:>9.3f} "
                f"{self.gflops_per_second:>9.1f} {self.peak_memory_mb:>10.0f}  {self.memory}{runs_on}")


HEADER = f"{'path':<12} {'s/clip':>9} {'clips/s':>9} {'GFLOP/s':>9} {'peak MB':>10}  memory"


def default_paths() -> list[str]:
    return ["default", "eager", "fused", "openvino", "onnxruntime"] + (["cuda"] if torch.cuda.is_available()
                                                                            else [])


def _network(config: BenchConfig):
    """The plain network of the weights benchmarked, its name, and the weights' record (None: random)."""
    from i3d.factory import create_model

    try:
        model = create_model(config.weights)
    except I3DError:
        if config.weights is not None:
            raise
        from i3d.networks.inception import InceptionI3d

        return InceptionI3d().eval(), "random (default weights not installed)", None
    return model, model.weights.name, model.weights


def export_for_bench(config: BenchConfig, file: Path) -> None:
    """The ONNX file of the onnxruntime path, written in its own process so its memory is not counted."""
    from i3d.export import ExportGraph, ExportOptions, export_onnx

    options = ExportOptions()
    export_onnx(ExportGraph([_network(config)[0]], options), file, options, {})


def _runner(path: str, config: BenchConfig, onnx_file: Path | None):
    """A callable running one batch on this path, the weights it uses, and the network."""
    model, weights_name, _ = _network(config)
    run, form = _path_runner(path, model, weights_name, config, onnx_file)
    return run, weights_name, model, form


def _path_runner(path: str, model, weights_name: str, config: BenchConfig, onnx_file: Path | None):
    """A callable running one batch on this path, and the form it runs (what ``i3d.load_model`` gives)."""
    from i3d.runtimes import for_inference

    clip = torch.rand(config.batch_size, 3, config.frames, config.size, config.size) * 2 - 1
    if path in ("default", "eager", "fused", "openvino", "cuda"):  # i3d.load_model(runtime=..., precision=...)
        runtime = {"default": config.runtime, "cuda": "fused"}.get(path, path)
        precision = config.precision if path in ("default", "openvino", "cuda") else "fp32"
        device = "cuda" if path == "cuda" else "cpu"
        form = for_inference(model, runtime, precision, device)  # OpenVINO converts here (cached on disk)
        on_device = clip.to(device)

        def run():
            out = form(on_device)
            if path == "cuda":
                torch.cuda.synchronize()
            return out

        return run, form
    if path == "onnxruntime":
        from i3d.export import require

        onnxruntime = require("onnxruntime")
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(onnx_file), session_options, providers=["CPUExecutionProvider"])
        feeds = {"rgb": clip.numpy()}
        return (lambda: session.run(None, feeds)), None
    raise I3DError(f"unknown path {path!r}; known: {', '.join(BENCH_PATHS)}")


def bench_in_this_process(path: str, config: BenchConfig, onnx_file: Path | None = None) -> BenchResult:
    import warnings

    from i3d.errors import I3DNotice

    warnings.simplefilter("ignore", I3DNotice)  # a first-use conversion note would land inside the table
    run, weights_name, model, form = _runner(path, config, onnx_file)
    with torch.inference_mode():
        if path == "cuda":
            torch.cuda.reset_peak_memory_stats()
        run()  # warm-up: allocator, oneDNN primitive and ONNX Runtime kernel caches
        start = time.perf_counter()
        for _ in range(config.repeats):
            run()
        elapsed = time.perf_counter() - start
    clips = config.repeats * config.batch_size
    if path == "cuda":
        peak, memory = torch.cuda.max_memory_allocated() / 2**20, "CUDA memory allocated"
    else:
        peak, memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    gflops = gflops_per_clip(config.frames, config.size, layout=getattr(model, "layout", None))
    convolutions = ""
    if hasattr(form, "convolutions_run_in"):  # OpenVINO: what its compiled convolutions run in, for this clip size
        counts = form.convolutions_run_in((config.frames, config.size, config.size))
        convolutions = ", ".join(f"{n} {p}" for p, n in sorted(counts.items(), key=lambda item: -item[1]))
    runs = (f"{form.runtime} {form.precision}" if hasattr(form, "runtime") else
            "eager fp32" if path == "eager" else "onnxruntime fp32")
    return BenchResult(path, elapsed / clips, clips / elapsed, gflops * clips / elapsed, peak, memory, weights_name,
                       torch.get_num_threads(), runs, convolutions)


def bench(path: str, config: BenchConfig) -> BenchResult:
    """One path in a fresh (spawned) process."""
    if path not in BENCH_PATHS:
        raise I3DError(f"unknown path {path!r}; known: {', '.join(BENCH_PATHS)}")
    if path in ("default", "openvino"):
        from i3d.devices import check_precision

        check_precision(config.precision, "cpu")
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "bench.onnx" if path == "onnxruntime" else None
        if onnx_file is not None:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                pool.submit(export_for_bench, config, onnx_file).result()
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(bench_in_this_process, path, config, onnx_file).result()


def to_dict(result: BenchResult, config: BenchConfig) -> dict:
    return {**asdict(result), "config": asdict(config)}
