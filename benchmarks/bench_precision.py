"""Every runtime and precision side by side, in one process: seconds per clip, and what each costs in fidelity.

    .venv/bin/python benchmarks/bench_precision.py [--frames 79] [--repeats 3] [--max-isa avx2]

Forms: every runtime x precision: the plain network moved to fp32, bf16 and fp16 (``eager``), PyTorch's fused
form in the same three (and ``torch.autocast`` bf16 around the fp32 one, the usual recipe), and the OpenVINO
form in fp32, bf16 and int8; ``i3d.load_model()``'s default is one of them, named. A precision the CPU has no
native kernels for is still measured (emulated: slow), so the table shows why the commands refuse it. All
are timed alternating in this process (median of REPEATS after a warm-up), on one 1 x 3 x FRAMES x 224 x 224
clip of bikes.mp4. Fidelity, each against the same network computed in float64
by PyTorch: max |logit difference| on that clip; top-1 agreement on 64-frame clips of the three sample
videos; the 1024-d features' cosine similarity (min over those clips) and max |difference|; and the FVD
between two sets of 16-frame clips (bikes against bigbuckbunny; the google-research protocol's
statistics) against the float64 number. A precision this CPU cannot run usefully is left out, with why.
``--max-isa`` caps the instruction sets PyTorch's and OpenVINO's kernels use (oneDNN's ONEDNN_MAX_CPU_ISA,
ATen's ATEN_CPU_CAPABILITY; the benchmark restarts itself with them set): ``avx2`` measures an AVX-512
machine's run as an AVX2-only CPU would run it (the same clock and caches, the AVX2 code paths).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

import i3d
from i3d.devices import cpu_flags
from i3d.factory import create_model
from i3d.fvd.distance import GaussianStats, fvd_from_stats
from i3d.runtimes.fused import fuse
from i3d.runtimes.openvino import OpenVinoForm
from i3d.video.inputs import rgb_input_frames
from i3d.video.samples import sample_path
from i3d.video.transforms import to_unit_range

# --max-isa: oneDNN's cap (PyTorch's convolutions, all of OpenVINO's CPU plugin) and ATen's own kernels' cap
MAX_ISA = {"avx2": ("AVX2", "avx2"), "avx512_core": ("AVX512_CORE", "avx512"),
           "avx512_core_vnni": ("AVX512_CORE_VNNI", "avx512"), "avx512_core_bf16": ("AVX512_CORE_BF16", "avx512")}


def clips_of(name: str, frames: int) -> list[torch.Tensor]:
    decoded = to_unit_range(np.stack(list(rgb_input_frames(sample_path(name)))))
    return [torch.from_numpy(decoded[s : s + frames].transpose(3, 0, 1, 2)[None].copy())
            for s in range(0, len(decoded) - frames + 1, frames)]


class Eager(torch.nn.Module):
    """The plain network moved to a dtype, called with float32 clips as the other forms are."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.network, self.dtype = create_model().to(dtype), dtype

    def forward(self, x):
        return self.network(x.to(self.dtype)).float()

    def forward_features(self, x):
        return self.network.forward_features(x.to(self.dtype)).float()


class Autocast(torch.nn.Module):
    def __init__(self, form: torch.nn.Module) -> None:
        super().__init__()
        self.form = form

    def forward(self, x):
        with torch.autocast("cpu", torch.bfloat16):
            return self.form(x).float()

    def forward_features(self, x):
        with torch.autocast("cpu", torch.bfloat16):
            return self.form.forward_features(x).float()


def forms(fp16: bool = True) -> dict[str, torch.nn.Module]:
    """name -> a model whose forward (eval, inference mode) is that form; ``fp16`` False leaves out the fp16
    forms, which a CPU runs without fast kernels (tens of seconds for a 16-frame clip)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, **({"fp16": torch.float16} if fp16 else {})}
    made: dict[str, torch.nn.Module] = {f"eager {name}": Eager(dtype) for name, dtype in dtypes.items()}
    made.update({f"fused {name}": fuse(create_model(), name) for name in dtypes})
    made["fused fp32 + autocast bf16"] = Autocast(made["fused fp32"])
    made.update({f"openvino {name}": OpenVinoForm(create_model(), name) for name in ("fp32", "bf16", "int8")})
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=79)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-isa", choices=sorted(MAX_ISA), help="cap the instruction sets used (default: all)")
    parser.add_argument("--table", action="store_true",
                        help="only seconds per clip and the largest logit difference (docs/performance.md's table)")
    args = parser.parse_args()
    if args.max_isa and os.environ.get("ONEDNN_MAX_CPU_ISA") != MAX_ISA[args.max_isa][0]:
        onednn, aten = MAX_ISA[args.max_isa]  # read when the libraries load: only a fresh process obeys them
        os.environ.update(ONEDNN_MAX_CPU_ISA=onednn, DNNL_MAX_CPU_ISA=onednn, ATEN_CPU_CAPABILITY=aten)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    default = i3d.load_model()
    default_name = f"{default.runtime} {default.precision}"
    models = forms(fp16=not args.table)
    reference = create_model().double()
    clip = clips_of("bikes.mp4", args.frames)[0]
    if args.table:
        table(models, reference, clip, args, default_name)
        return
    views = [c for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4") for c in clips_of(name, 64)]
    sets = {name: clips_of(name, 16)[:8] for name in ("bikes.mp4", "bigbuckbunny.mp4")}
    with torch.inference_mode():
        times: dict[str, list[float]] = {name: [] for name in models}
        for model in models.values():
            model(clip)  # warm-up; an OpenVINO form converts (once per machine) and compiles here
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(clip)
                times[name].append(time.perf_counter() - start)
        exact = {"clip": reference(clip.double()), "views": [reference(v.double()) for v in views],
                 "features": [reference.forward_features(v.double()) for v in views],
                 "sets": {k: [reference(c.double()).numpy() for c in v] for k, v in sets.items()}}
        exact_fvd = fvd_from_stats(*(_stats(exact["sets"][k]) for k in sets))
        flags = cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8"}
        print(f"1 x 3 x {args.frames} x 224 x 224 clip of bikes.mp4, {torch.get_num_threads()} threads, torch "
              f"{torch.__version__}; CPU flags: {', '.join(sorted(flags))}"
              + (f" (capped at {os.environ['ONEDNN_MAX_CPU_ISA']})" if args.max_isa else ""))
        print(f"i3d.load_model() default: {default_name}; fidelity against PyTorch float64; {len(views)} 64-frame "
              f"clips of the 3 samples; FVD of 8 v 8 16-frame clips, float64: {exact_fvd:.4f}")
        print(f"{'form':>26} {'s/clip':>7} {'vs eager fp32':>13} {'max|dlogit|':>11} {'top-1 agree':>11} "
              f"{'feat cos min':>12} {'feat max|d|':>11} {'FVD diff':>9}")
        base = statistics.median(times["eager fp32"])
        for name, model in models.items():
            seconds = statistics.median(times[name])
            logit_error = float((model(clip).double() - exact["clip"]).abs().max())
            agree = np.mean([int(model(v).argmax()) == int(e.argmax()) for v, e in zip(views, exact["views"])])
            features = [model.forward_features(v).double() for v in views]
            cosine = min(float(torch.nn.functional.cosine_similarity(f, e).min())
                         for f, e in zip(features, exact["features"]))
            feature_error = max(float((f - e).abs().max()) for f, e in zip(features, exact["features"]))
            fvd = fvd_from_stats(*(_stats([model(c).double().numpy() for c in v]) for v in sets.values()))
            mark = "  <- default" if name == default_name else ""
            print(f"{name:>26} {seconds:7.3f} {seconds / base:12.2f}x {logit_error:11.2e} {agree:11.2f} "
                  f"{cosine:12.6f} {feature_error:11.2e} {abs(fvd - exact_fvd):9.4f}{mark}")


def table(models: dict, reference: torch.nn.Module, clip: torch.Tensor, args: argparse.Namespace, default: str) -> None:
    """Seconds per clip (median of REPEATS after a warm-up, forms alternating) and max |logit - float64|."""
    with torch.inference_mode():
        exact = reference(clip.double())
        times: dict[str, list[float]] = {name: [] for name in models}
        errors = {name: float((model(clip).double() - exact).abs().max()) for name, model in models.items()}
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(clip)
                times[name].append(time.perf_counter() - start)
    flags = cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8"}
    print(f"1 x 3 x {args.frames} x 224 x 224 clip of bikes.mp4, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; CPU flags: {', '.join(sorted(flags))}; median of {args.repeats}")
    print("| runtime and precision | s per clip | max abs logit difference against float64 |")
    print("|---|---|---|")
    for name in models:
        mark = " (the default)" if name == default else ""
        print(f"| {name}{mark} | {statistics.median(times[name]):.3f} | {errors[name]:.2e} |")


def _stats(logits: list[np.ndarray]) -> GaussianStats:
    stats = GaussianStats()
    stats.add(np.concatenate(logits).astype(np.float64))
    return stats


if __name__ == "__main__":
    main()
