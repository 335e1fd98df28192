"""The device check for the first GPU: every GPU path against the CPU's fp32 answer, in one process, one table.

    .venv/bin/python benchmarks/gpu_check.py                  # on a CUDA machine (the default device: cuda)
    .venv/bin/python benchmarks/gpu_check.py --device cpu     # the dry run: every step, on the CPU

Checks, each against the same computation on the CPU in fp32 (PyTorch runtime on both sides, so the device's
path is what is measured): predict on the sample videos in fp32 (1e-4), fp16 and bf16 (top-1 kept, the
difference printed), and a timeline with 4 windows per network call (1e-4); the feature presets whose weights
are installed (1e-4 in fp32, TF32 off); FVD of two small sets (1e-4 relative); TV-L1 flow against OpenCV's
(end-point error), its kernels compiled for the device against the plain ones, and its pairs/s; `i3d features`
throughput in videos/hour with the limiting stage (decoding or the network) named; torchcodec's decoder on the
device against PyAV (frames/s and RGB agreement) where torchcodec is installed; a DDP training step on two
GPUs where there are two. Records the device, torch and CUDA versions and the TF32 switches. Exits 1 on any
mismatch, 0 otherwise; a step that cannot run here (no weights installed, fewer than two GPUs, a precision the
device lacks) is listed as skipped with its reason.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Check:
    name: str
    value: str
    reference: str
    limit: str
    ok: bool | None  # None: skipped

    def row(self) -> str:
        verdict = {True: "ok", False: "MISMATCH", None: "skipped"}[self.ok]
        return f"{self.name:<50} {self.value:>16} {self.reference[:16]:>16} {self.limit:>12}  {verdict}"


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def check_predict(device: str, samples: list[Path]) -> list[Check]:
    from i3d.errors import I3DError
    from i3d.predict import Classifier

    reference = Classifier(device="cpu", runtime="fused")
    checks = []
    for precision, limit in (("fp32", 1e-4), ("fp16", None), ("bf16", None)):
        try:
            classifier = Classifier(device=device, precision=precision, runtime="fused")
        except I3DError as error:
            checks.append(Check(f"predict {precision}", "-", "-", "-", None))
            checks[-1].value = str(error)[:16]
            continue
        for path in samples:
            want, got = reference.predict(path), classifier.predict(path)
            diff = _max_diff(got.logits, want.logits)
            same_top = int(np.argmax(got.logits)) == int(np.argmax(want.logits))
            ok = (diff < limit) if limit is not None else same_top
            checks.append(Check(f"predict {precision} {path.name} (max |dlogit|)", f"{diff:.2e}",
                                want.top(1)[0][0][:16], f"{limit:g}" if limit else "same top-1", ok and same_top))
    from i3d.timeline import compute_timeline

    batched = Classifier(device=device, runtime="fused", batch_size=4)  # timeline windows 4 to a network call
    want, got = (compute_timeline(c, samples[0], window_s=1.0, step_s=0.4) for c in (reference, batched))
    diff = max(_max_diff(a.logits, b.logits) for a, b in zip(got.windows, want.windows))
    checks.append(Check(f"timeline, 4 windows a call ({len(got.windows)} windows)", f"{diff:.2e}", "cpu, 1 a call",
                        "1e-4", diff < 1e-4 and len(got.windows) == len(want.windows)))
    return checks


def check_presets(device: str, samples: list[Path]) -> list[Check]:
    from i3d.errors import I3DError
    from i3d.factory import resolve_weights
    from i3d.features.extract import extract_features
    from i3d.features.presets import PRESETS, config_from_preset

    checks = []
    for name in PRESETS:
        config = config_from_preset(name, runtime="fused", workers=0)
        try:
            for modality in config.modalities:
                resolve_weights(config.weights if modality == "rgb" else config.flow_weights, modality)
        except I3DError:
            checks.append(Check(f"features --preset {name}", "-", "-", "1e-4", None))
            checks[-1].value = "no weights here"
            continue
        with tempfile.TemporaryDirectory() as tmp:
            outputs = {}
            for where in ("cpu", device):
                chosen = config_from_preset(name, runtime="fused", workers=0, device=where)
                extract_features(samples[:1], Path(tmp) / where, chosen)
                found = sorted(p for p in (Path(tmp) / where).iterdir() if p.suffix in (".npz", ".npy"))
                data = np.load(found[0])
                outputs[where] = data["features"] if hasattr(data, "files") else data
            diff = _max_diff(outputs[device], outputs["cpu"])
            checks.append(Check(f"features --preset {name} (max |d|)", f"{diff:.2e}", "cpu fp32", "1e-4",
                                diff < 1e-4))
    return checks


def check_fvd(device: str, samples: list[Path]) -> Check:
    from i3d.fvd import VideoEmbedder, compute_fvd
    from i3d.video.decode import iter_video_file

    frames = [np.stack([image[:128, :128] for _, image in iter_video_file(path)][:64]) for path in samples]
    clips = np.stack([f[start : start + 16] for f in frames for start in (0, 16, 32, 48)])
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "real.npy", clips[::2])
        np.save(Path(tmp) / "fake.npy", clips[1::2])
        values = {where: compute_fvd(Path(tmp) / "real.npy", Path(tmp) / "fake.npy", "stylegan-v-16f",
                                     VideoEmbedder(device=where, runtime="fused"), kvd=False).fvd
                  for where in ("cpu", device)}
    relative = abs(values[device] - values["cpu"]) / max(abs(values["cpu"]), 1e-12)
    return Check("fvd stylegan-v-16f (relative difference)", f"{relative:.2e}", f"{values['cpu']:.3f}", "1e-4",
                 relative < 1e-4)


def check_flow(device: str, samples: list[Path]) -> list[Check]:
    from i3d.video.decode import iter_video_file
    from i3d.video.flow import FlowComputer, opencv_tvl1, to_grey
    from i3d.video.transforms import resize_short_side

    grey = np.stack([to_grey(resize_short_side(image)) for _, image in list(iter_video_file(samples[0]))[:9]])
    firsts, seconds = grey[:-1], grey[1:]
    reference = opencv_tvl1(firsts, seconds)
    flows, rates = {}, {}
    for kind, compiled in (("compiled", True), ("plain", False)):
        computer = FlowComputer("torch", device, compile=compiled)
        computer.pairs(firsts[:1], seconds[:1])  # warm-up: kernels, allocator
        start = time.perf_counter()
        flows[kind] = computer.pairs(firsts, seconds)  # back on the host: the device has finished
        rates[kind] = len(firsts) / (time.perf_counter() - start)
    epe = float(np.linalg.norm(flows["compiled"] - reference, axis=-1).mean())
    drift = float(np.linalg.norm(flows["compiled"] - flows["plain"], axis=-1).mean())
    size = f"{grey.shape[2]}x{grey.shape[1]}"
    return [Check("tv-l1 end-point error vs OpenCV (px)", f"{epe:.3f}", "opencv", "0.5", epe < 0.5),
            # float rounding moves the stopping rule's iteration counts: 7e-3 px on this video on a CPU; a
            # miscompiled kernel is off by pixels
            Check("tv-l1 compiled vs plain kernels (px)", f"{drift:.2e}", "plain", "0.05", drift < 0.05),
            Check(f"tv-l1 pairs/s at {size}, compiled", f"{rates['compiled']:.1f}", f"plain {rates['plain']:.1f}",
                  "-", True)]


def check_throughput(device: str, samples: list[Path]) -> Check:
    from i3d.factory import resolve_weights
    from i3d.features import ExtractionConfig, WindowSpec, extract_features
    from i3d.features.network import FeatureNetwork
    from i3d.features.video import DecodedVideo

    spec = WindowSpec(64, 64)
    start = time.perf_counter()
    windows = [w for path in samples for w in DecodedVideo(path, spec).windows()]
    decode_s = time.perf_counter() - start
    network = FeatureNetwork({"rgb": resolve_weights()}, device, runtime="fused")
    network.run([windows[0].frames])
    start = time.perf_counter()
    for window in windows:
        network.run([window.frames])
    network_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        extract_features(samples, Path(tmp), ExtractionConfig(spec, device=device, runtime="fused"))
        total_s = time.perf_counter() - start
    limit = "decoding" if decode_s > network_s else "the network"
    return Check(f"features videos/hour (limit: {limit})", f"{len(samples) / total_s * 3600:.0f}",
                 f"dec {decode_s:.1f}s net {network_s:.1f}s", "-", True)


def check_gpu_decoding(device: str, samples: list[Path]) -> list[Check]:
    """torchcodec's decoder on the device (NVDEC on CUDA) against PyAV on the CPU, the decoder features use:
    frames/s of each, and how far apart their RGB frames are (colour conversion differs by a level or two)."""
    name = "decode: torchcodec on the device vs PyAV"
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as error:  # not installed, or built for another torch/CUDA/FFmpeg
        return [Check(name, f"{type(error).__name__}"[:16], "-", "-", None)]
    from i3d.video.decode import iter_video_file

    counts, pyav_s, codec_s, differences = [], 0.0, 0.0, []
    try:
        for path in samples:
            start = time.perf_counter()
            reference = np.stack([image for _, image in iter_video_file(path)])
            pyav_s += time.perf_counter() - start
            start = time.perf_counter()
            decoded = VideoDecoder(str(path), device=device, dimension_order="NHWC")[:].cpu().numpy()
            codec_s += time.perf_counter() - start
            if decoded.shape != reference.shape:
                return [Check(name, f"{decoded.shape}"[:16], f"{reference.shape}", "same shape", False)]
            counts.append(len(reference))
            differences.append(np.abs(decoded.astype(np.int16) - reference).mean())
    except Exception as error:  # a decoder that fails on the device is a finding, not a crash of the check
        return [Check(name, f"{type(error).__name__}: {error}"[:16], "-", "-", False)]
    mean_level = float(np.mean(differences))
    return [Check("decode: torchcodec vs PyAV mean |RGB| difference", f"{mean_level:.2f}", "pyav", "3 levels",
                  mean_level < 3),
            Check("decode frames/s: torchcodec on the device", f"{sum(counts) / codec_s:.0f}",
                  f"pyav {sum(counts) / pyav_s:.0f}", "-", True)]


def check_ddp_training(device: str) -> Check:
    if not device.startswith("cuda") or torch.cuda.device_count() < 2:
        return Check("train: one DDP step on 2 GPUs", "-", "-", "-", None)
    import av

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for label in ("a", "b"):
            (Path(tmp) / "data" / label).mkdir(parents=True)
            for i in range(2):
                with av.open(str(Path(tmp) / "data" / label / f"v{i}.mp4"), "w") as container:
                    stream = container.add_stream("libx264", rate=25)
                    stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
                    for image in rng.integers(0, 256, (12, 64, 80, 3), dtype=np.uint8):
                        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                    container.mux(stream.encode())
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                               "i3d.cli.main", "train", "--train", str(Path(tmp) / "data"), "--val-ratio", "0.5",
                               "--output", str(Path(tmp) / "run"), "--steps", "1", "--batch-size", "1",
                               "--clip-frames", "9", "--workers", "0", "--device", "cuda"],
                              capture_output=True, text=True)
    return Check("train: one DDP step on 2 GPUs", f"exit {done.returncode}", "exit 0", "-", done.returncode == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for the dry run (default: cuda)")
    args = parser.parse_args()
    from i3d.devices import parse_device
    from i3d.video.samples import fetch_samples

    device = parse_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}; the inference forms "
          f"run without TF32 unless I3D_ALLOW_TF32=1 (here: {os.environ.get('I3D_ALLOW_TF32', 'unset')})")
    samples = fetch_samples()
    checks = [*check_predict(str(device), samples), *check_presets(str(device), samples),
              check_fvd(str(device), samples), *check_flow(str(device), samples),
              check_throughput(str(device), samples), *check_gpu_decoding(str(device), samples),
              check_ddp_training(str(device))]
    print(f"\n{'check':<50} {'value':>16} {'reference':>16} {'limit':>12}  verdict")
    for check in checks:
        print(check.row())
    failed = [c for c in checks if c.ok is False]
    print(f"\n{len(checks)} checks: {sum(c.ok is True for c in checks)} ok, {len(failed)} mismatched, "
          f"{sum(c.ok is None for c in checks)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
