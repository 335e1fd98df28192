"""The device check for a GPU: each GPU path against the CPU's fp32 answer, every result kept the moment it is known.

    python3 benchmarks/gpu_check.py --prepare            # here, once: writes gpu_check_assets/ (about 54 MiB)
    python3 benchmarks/gpu_check.py                      # on the GPU machine, the repository and that folder carried
    python3 benchmarks/gpu_check.py --device cpu         # the rehearsal: every step on the CPU

The GPU machine is a bare image: no PyAV, no OpenCV-contrib, no network, torch as it comes. So ``--prepare``
does here what needs those: it copies the default weights and one sample video into ``gpu_check_assets/home``
(an I3D_HOME), and computes the references on this CPU in fp32: the logits of a decoded clip, TV-L1's flow
(the CPU's own fused kernels) and the clip's features. RAFT is checked with formula weights against
princeton-vl's own flow (tests/data/raft_reference.npz), so no RAFT file is carried.

Each check prints one line and appends it, as JSON, to ``$OUT/gpu_check.jsonl`` (or ``--out``), so a run cut
short keeps what it measured. Checks: predict in fp32 (1e-4, which also proves TF32 off through
``load_model``), bf16 and fp16 (same top-1); features at the real batch (clips/s, peak memory); TV-L1 with
kernels compiled for the device (refused if they fell back to the plain ones) against the CPU's; RAFT against
princeton-vl's flow (1e-3 px) and its pairs/s batched; the FVD metric reduced by one NCCL process (gloo on
the CPU) against the same sums unreduced; one training step under bf16 autocast (finite loss and gradients,
loss within 2e-2 of the CPU's fp32); `i3d train` of the flow stream with two loader workers computing TV-L1 on
the device, from frame folders; the decode pool (two workers decoding with OpenCV) against decoding
inline; concurrent predictions sharing network calls against one at a time. Exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "gpu_check_assets"
VIDEO = "bikes.mp4"
CLIP_FRAMES = 32


class Recorder:
    """Prints each result and appends it to the JSON-lines file at once."""

    def __init__(self, path: Path) -> None:
        self.path, self.failed = path, 0
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, check: str, ok: bool | None, **values) -> None:
        verdict = {True: "ok", False: "MISMATCH", None: "skipped"}[ok]
        self.failed += ok is False
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        print(f"{verdict:<9} {check}: {shown}", flush=True)
        with open(self.path, "a") as file:
            file.write(json.dumps({"check": check, "verdict": verdict, **values}) + "\n")


def prepare() -> None:
    """Weights, the sample video and CPU references into gpu_check_assets/ (git ignores it; carry it)."""
    from i3d.factory import resolve_weights
    from i3d.video.decode import iter_video_file
    from i3d.video.samples import sample_path
    from i3d.video.transforms import resize_short_side

    weights = resolve_weights()
    home = ASSETS / "home"
    (home / "weights").mkdir(parents=True, exist_ok=True)
    (home / "samples").mkdir(parents=True, exist_ok=True)
    for file in (weights.path, weights.path.with_name(weights.path.name + ".sha256.json")):
        shutil.copy2(file, home / "weights" / file.name)
    shutil.copy2(sample_path(VIDEO), home / "samples" / VIDEO)
    frames = [image for _, image in iter_video_file(sample_path(VIDEO))]
    start = len(frames) // 2
    resized = [resize_short_side(f) for f in frames[start:start + CLIP_FRAMES]]
    clip = np.stack([f[16:240, (f.shape[1] - 224) // 2:][:, :224] for f in resized])
    grey = np.stack([resize_short_side(f, 256)[:, :340].mean(axis=2).astype(np.uint8) for f in resized[:4]])
    references = cpu_references(clip, grey)
    np.savez_compressed(ASSETS / "references.npz", clip=clip, grey=grey, **references)
    size = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    print(f"wrote {ASSETS} ({size / 2**20:.1f} MiB): carry it with the repository")


def cpu_references(clip: np.ndarray, grey: np.ndarray) -> dict[str, np.ndarray]:
    import i3d
    from i3d.video.flow import FlowComputer

    model = i3d.load_model(runtime="fused", device="cpu")
    x = torch.from_numpy(clip.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None]
    with torch.inference_mode():
        logits = model(x).numpy()
    flow = FlowComputer("torch", "cpu").pairs(grey[:-1], grey[1:])
    return {"logits": logits, "tvl1": flow}


def formula_raft() -> torch.nn.Module:
    sys.path.insert(0, str(ROOT / "tests"))
    from i3d.video.flow.raft import Raft
    from resnet_formula import tensor_values

    network = Raft().eval()
    state = {name: torch.zeros_like(t) if name.endswith("num_batches_tracked")
             else torch.from_numpy(tensor_values(name, tuple(t.shape))) for name, t in network.state_dict().items()}
    network.load_state_dict(state)
    return network


def check_predict(record: Recorder, device: torch.device, refs) -> None:
    import i3d
    from i3d.errors import I3DError

    x = torch.from_numpy(refs["clip"].astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None]
    for precision in ("fp32", "bf16", "fp16"):
        try:
            model = i3d.load_model(runtime="fused", device=str(device), precision=precision)
        except I3DError as error:
            record(f"predict {precision}", None, reason=str(error))
            continue
        with torch.inference_mode():
            logits = model(x.to(device)).float().cpu().numpy()
        diff = float(np.abs(logits - refs["logits"]).max())
        same_top = int(logits.argmax()) == int(refs["logits"].argmax())
        ok = diff < 1e-4 if precision == "fp32" else same_top
        record(f"predict {precision} vs CPU fp32", ok, max_abs_logit_diff=diff, same_top1=same_top,
               limit="1e-4" if precision == "fp32" else "same top-1")


def check_features_throughput(record: Recorder, device: torch.device, refs) -> None:
    from i3d.devices import clips_per_call
    from i3d.factory import resolve_weights
    from i3d.features.network import FeatureNetwork

    network = FeatureNetwork({"rgb": resolve_weights()}, device, runtime="fused")
    window = np.concatenate([refs["clip"], refs["clip"]])[:, None]  # 64 frames, one crop
    batch = clips_per_call(device) if device.type == "cuda" else 2
    network.run([window] * batch)  # warm-up: kernels chosen, allocator grown
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start, calls = time.perf_counter(), 3
    for _ in range(calls):
        network.run([window] * batch)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    record("features at the real batch", True, clips_per_call=batch, clips_per_s=batch * calls / seconds,
           frames=64, peak_gib=peak)


def check_tvl1(record: Recorder, device: torch.device, refs) -> None:
    from i3d.video.flow import FlowComputer
    from i3d.video.flow.tvl1_torch import EAGER_KERNELS

    computer = FlowComputer("torch", str(device))
    if device.type == "cuda" and computer.kernels is EAGER_KERNELS:
        record("tv-l1 kernels compiled for the device", False, reason="torch.compile fell back to the plain kernels")
    else:
        record("tv-l1 kernels compiled for the device", True)
    grey = refs["grey"]
    computer.pairs(grey[:1], grey[1:2])
    start = time.perf_counter()
    flow = computer.pairs(grey[:-1], grey[1:])
    seconds = time.perf_counter() - start
    epe = float(np.linalg.norm(flow - refs["tvl1"], axis=-1).mean())
    # float rounding moves the stopping rule's iteration counts: a few 1e-3 px; a miscompiled kernel is off by px
    record("tv-l1 vs the CPU's kernels", epe < 0.05, mean_epe_px=epe, pairs_per_s=len(flow) / seconds, limit=0.05)


def check_raft(record: Recorder, device: torch.device) -> None:
    from i3d.devices import exact_cuda_math
    from i3d.video.flow.raft import pad_to_eight, unpad

    reference = np.load(ROOT / "tests" / "data" / "raft_reference.npz")
    network = formula_raft().to(device)
    pair = torch.from_numpy(reference["frames0"]).permute(0, 3, 1, 2).float()
    height, width = pair.shape[-2:]
    padded = pad_to_eight(pair).to(device)
    with torch.inference_mode(), exact_cuda_math(device):  # as FlowComputer runs it: TF32 off
        flow = unpad(network(padded[:1], padded[1:], 20), height, width)[0].permute(1, 2, 0).cpu().numpy()
    diff = float(np.abs(flow - reference["princeton0_20"]).max())
    record("raft vs princeton-vl's code (20 iterations)", diff < 1e-3, max_abs_px=diff, limit=1e-3)
    batch = 16 if device.type == "cuda" else 2
    images = torch.rand(batch + 1, 3, 256, 344, device=device) * 255
    with torch.inference_mode():
        network(images[:-1], images[1:], 20)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        network(images[:-1], images[1:], 20)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    record("raft pairs/s at 256x344, batched", True, pairs=batch, pairs_per_s=batch / (time.perf_counter() - start))


def check_fvd_reduction(record: Recorder, device: torch.device, refs) -> None:
    import torch.distributed as dist

    from i3d.fvd.metric import FrechetVideoDistance

    clips = np.stack([refs["clip"][:16], refs["clip"][16:]])
    metric = FrechetVideoDistance("google-research", device=str(device))
    metric.update(clips, real=True)
    metric.update(clips[::-1].copy(), real=False)
    local = metric._reduced(metric.real, metric.embedder.dimension)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        reduced = metric._reduced(metric.real, metric.embedder.dimension)
    finally:
        dist.destroy_process_group()
    diff = float(np.abs(reduced.outer - local.outer).max() / np.abs(local.outer).max())
    record(f"fvd metric reduced by one {backend} process", diff == 0 and reduced.count == local.count,
           relative_diff=diff, count=reduced.count)


def check_training_step(record: Recorder, device: torch.device, refs) -> None:
    from i3d.factory import create_model

    torch.manual_seed(0)
    x = torch.from_numpy(refs["clip"][:16].astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)[None].repeat(2, 1, 1,
                                                                                                            1, 1)
    target = torch.tensor([3, 7])
    losses = {}
    for where, autocast in (("cpu", False), (device, device.type == "cuda")):
        model = create_model(num_classes=10, seed=0).to(where).train()
        with torch.autocast(torch.device(where).type, dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(model(x.to(where)), target.to(where))
        loss.backward()
        finite = all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        losses[str(where)] = (loss.item(), finite)
    (cpu_loss, _), (loss, finite) = losses["cpu"], losses[str(device)]
    record("training step, bf16 autocast", finite and abs(loss - cpu_loss) < 2e-2, loss=loss, cpu_fp32_loss=cpu_loss,
           finite_gradients=finite)


def check_flow_training(record: Recorder, device: torch.device, refs) -> None:
    """``i3d train`` of the flow stream as a user runs it: two DataLoader workers computing TV-L1 on the
    device (spawned, not forked, where it is CUDA), from a list of frame folders (the image has no PyAV)."""
    import csv

    import cv2

    from i3d.factory import resolve_weights
    from i3d.train import TrainConfig, train_stream
    from i3d.weights import save_weights
    from i3d.weights.cross_modal import flow_state_dict_from_rgb

    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, shift in (("left", 0), ("right", 8)):
            folder = Path(tmp) / label
            folder.mkdir()
            for index, frame in enumerate(np.roll(refs["clip"][:12], shift, axis=2)):
                cv2.imwrite(str(folder / f"{index:03d}.png"), frame[..., ::-1])
            rows.append((str(folder), label))
        with open(Path(tmp) / "train.csv", "w", newline="") as file:
            csv.writer(file).writerows([("path", "label"), *rows])
        rgb = resolve_weights()
        start = Path(tmp) / "flow_start.safetensors"
        save_weights(start, flow_state_dict_from_rgb(rgb.state_dict), rgb.labels, "flow", name="flow_start")
        config = TrainConfig(train=str(Path(tmp) / "train.csv"), stream="flow", flow_weights=str(start),
                             device=str(device), workers=2, batch_size=2, clip_frames=9, steps=1, log_every=1,
                             checkpoint_every=1, output=str(Path(tmp) / "run"))
        started = time.perf_counter()
        result = train_stream(config, say=lambda _: None)
        with open(result.metrics) as file:
            loss = float(list(csv.DictReader(file))[-1]["loss"])
    record("train the flow stream: 2 loader workers computing TV-L1 on the device", np.isfinite(loss),
           loss=loss, seconds=time.perf_counter() - started)


def check_decode_pool(record: Recorder, device: torch.device) -> None:
    from i3d.features import ExtractionConfig, WindowSpec, extract_features
    from i3d.video.samples import sample_path

    outputs, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (0, 2):
            config = ExtractionConfig(WindowSpec(32, 32), device=str(device), runtime="fused", workers=workers,
                                      decoder="opencv")
            start = time.perf_counter()
            summary = extract_features([sample_path(VIDEO)], Path(tmp) / str(workers), config)
            seconds[workers] = time.perf_counter() - start
            if summary.failed:
                record("decode pool", False, reason=summary.rows[0].error)
                return
            outputs[workers] = np.load(Path(tmp) / str(workers) / f"{Path(VIDEO).stem}.npz")["features"]
    diff = float(np.abs(outputs[2] - outputs[0]).max())
    record("decode pool (2 workers, OpenCV) vs inline", diff == 0, max_abs_diff=diff, inline_s=seconds[0],
           pool_s=seconds[2])


def check_shared_calls(record: Recorder, device: torch.device, refs) -> None:
    from i3d.predict import Classifier

    classifier = Classifier(device=str(device), runtime="fused")
    clips = [np.roll(refs["clip"][:16], k, axis=2) for k in range(4)]
    alone = [classifier.clip_logits(c) for c in clips]
    classifier.share_calls(4)
    shared: list = [None] * 4
    threads = [threading.Thread(target=lambda k=k: shared.__setitem__(k, classifier.clip_logits(clips[k])))
               for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    diff = max(float(np.abs(a - b).max()) for a, b in zip(alone, shared))
    record("serve: 4 concurrent predictions sharing calls vs one at a time", diff < 1e-4, max_abs_logit_diff=diff)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="write gpu_check_assets/ here, then stop")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for the rehearsal (default: cuda)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")),
                        help="folder of gpu_check.jsonl (default: $OUT, else here)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.prepare:
        prepare()
        return 0
    if not (ASSETS / "references.npz").is_file():
        print(f"no {ASSETS}: run `python3 benchmarks/gpu_check.py --prepare` where PyAV and the weights are, "
              "and carry the folder", file=sys.stderr)
        return 2
    os.environ["I3D_HOME"] = str(ASSETS / "home")
    os.environ["I3D_OFFLINE"] = "1"
    from i3d.devices import parse_device

    device = parse_device(args.device)
    record = Recorder(args.out / "gpu_check.jsonl")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    record("environment", True, device=str(device), name=name, torch=torch.__version__, cuda=str(torch.version.cuda),
           python=platform.python_version())
    refs = dict(np.load(ASSETS / "references.npz"))
    for check in (check_predict, check_features_throughput, check_tvl1, check_raft, check_fvd_reduction,
                  check_training_step, check_flow_training, check_decode_pool, check_shared_calls):
        started = time.perf_counter()
        try:
            check(record, device, refs) if "refs" in check.__code__.co_varnames else check(record, device)
        except Exception as error:  # one failing step is a finding; the others still run
            record(check.__name__, False, error=f"{type(error).__name__}: {error}"[:300])
        print(f"          ({check.__name__}: {time.perf_counter() - started:.1f} s)", flush=True)
    print(f"{record.failed} mismatched; results in {record.path}")
    return 1 if record.failed else 0


if __name__ == "__main__":
    sys.exit(main())
