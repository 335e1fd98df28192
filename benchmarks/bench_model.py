"""Seconds and GFLOP/s for one RGB clip on every inference form, in one run, and int8's accuracy cost.

    .venv/bin/python benchmarks/bench_model.py [--frames 79] [--repeats 3] [--threads 2]

Forms: the plain eager network (``i3d.create_model()``), the default ``i3d.load_model()`` (named by its
runtime), ONNX Runtime, the pt2 export (``torch.export``), OpenVINO fp32 and OpenVINO int8 (NNCF
post-training quantisation calibrated on the sample videos). They run in this process, alternating, each
timed as the median of REPEATS after a warm-up, so machine noise hits all alike.
GFLOP/s (multiply-adds x 2 of the direct convolutions) is set against an estimate of this CPU's fp32 peak:
threads x the clock /proc/cpuinfo reports x FLOPs per cycle of two full-width FMA units of its widest
vector ISA (AVX-512: 64, AVX2: 32). Boost clocks can exceed the reported clock, and OpenVINO's CPU plugin
may use Winograd convolutions (fewer multiply-adds than counted), so a form can show more than 100 %.
int8's accuracy cost: top-1 agreement and top-1
within top-5 against OpenVINO fp32, on 64-frame clips of the three sample videos.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import i3d
from i3d.export import calibration_clips, export, openvino_for_size
from i3d.factory import resolve_weights
from i3d.networks.flops import gflops_per_clip
from i3d.video.inputs import rgb_input_frames
from i3d.video.samples import fetch_samples
from i3d.video.transforms import to_unit_range


def cpu_peak_gflops(threads: int) -> tuple[float, str]:
    """threads x the clock /proc/cpuinfo reports x FLOPs per cycle of two full-width FMA units of the widest
    vector ISA (AVX-512: 2 x 16 lanes x 2 = 64; AVX2: 32), and which int8 instructions the CPU has."""
    flags, mhz = set(), 0.0
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("flags") and not flags:
                flags = set(line.split(":")[1].split())
            elif line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    per_cycle, isa = (64, "AVX-512") if "avx512f" in flags else (32, "AVX2") if "avx2" in flags else (16, "SSE")
    int8 = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    found = ", ".join(int8) or "none: int8 is not expected to be faster on this CPU"
    return threads * mhz / 1000 * per_cycle, (f"{threads} threads x {mhz / 1000:.2f} GHz (reported clock) x "
                                              f"{per_cycle} FLOP/cycle ({isa}, two FMA units); int8 instructions: "
                                              f"{found}")


def sample_clips(frames: int = 64) -> list[np.ndarray]:
    clips = []
    for video in fetch_samples():
        decoded = np.stack(list(rgb_input_frames(video)))
        for start in range(0, len(decoded) - frames + 1, frames):
            clips.append(to_unit_range(decoded[start : start + frames]).transpose(3, 0, 1, 2)[None].copy())
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=79)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import openvino

    weights = resolve_weights()
    default = i3d.load_model()
    plain = i3d.create_model()
    clip = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1
    forms = {"eager (plain network)": lambda x: plain(x),
             f"load_model() default ({default.runtime})": lambda x: default(x)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export([weights], tmp / "i3d.onnx", "onnx", check_frames=())
        export([weights], tmp / "i3d.pt2", "pt2", check_frames=())
        export([weights], tmp / "fp32.xml", "openvino", check_frames=())
        calibration_list = tmp / "samples.txt"
        calibration_list.write_text("".join(f"{p}\n" for p in fetch_samples()))
        export([weights], tmp / "int8.xml", "openvino", check_frames=(),
               calibration=calibration_clips(calibration_list))
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp / "i3d.onnx"), providers=["CPUExecutionProvider"])
        exported = torch.export.load(str(tmp / "i3d.pt2")).module()
        fp32, int8 = (openvino_for_size(tmp / f"{name}.xml", [clip.shape[1:]]) for name in ("fp32", "int8"))
        forms["onnxruntime"] = lambda x: session.run(None, {"rgb": x.numpy()})[0]
        forms["pt2 (torch.export)"] = lambda x: exported(x)
        forms["openvino fp32"] = lambda x: fp32(x.numpy())[0]
        forms["openvino int8"] = lambda x: int8(x.numpy())[0]
        times: dict[str, list[float]] = {name: [] for name in forms}
        with torch.inference_mode():
            for run in forms.values():
                run(clip)  # warm-up
            for _ in range(args.repeats):
                for name, run in forms.items():
                    start = time.perf_counter()
                    run(clip)
                    times[name].append(time.perf_counter() - start)
        clips = sample_clips()
        fp32, int8 = (openvino_for_size(tmp / f"{name}.xml", [clips[0].shape[1:]]) for name in ("fp32", "int8"))
        fp32_logits = np.concatenate([fp32(c)[0] for c in clips])
        int8_logits = np.concatenate([int8(c)[0] for c in clips])
    gflop = gflops_per_clip(args.frames, args.size)
    peak, note = cpu_peak_gflops(args.threads)
    print(f"clip 1x3x{args.frames}x{args.size}x{args.size}, {gflop:.1f} GFLOP, {args.threads} threads, "
          f"torch {torch.__version__}, openvino {openvino.__version__}, median of {args.repeats}")
    print(f"fp32 peak estimate {peak:.0f} GFLOP/s: {note}")
    base = statistics.median(times["eager (plain network)"])
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:>22}: {median:6.3f} s/clip  {gflop / median:6.1f} GFLOP/s  {100 * gflop / median / peak:5.1f} % "
              f"of peak  {median / base:4.2f}x eager")
    top1 = fp32_logits.argmax(1)
    int8_top1 = int8_logits.argmax(1)
    top5 = np.argsort(-fp32_logits, axis=1)[:, :5]
    print(f"int8 vs fp32 on {len(clips)} clips of the sample videos (64 frames): top-1 agreement "
          f"{np.mean(int8_top1 == top1):.2f}, int8 top-1 within fp32 top-5 "
          f"{np.mean([a in b for a, b in zip(int8_top1, top5)]):.2f}, max |logit difference| "
          f"{np.abs(int8_logits - fp32_logits).max():.2f}")


if __name__ == "__main__":
    main()
