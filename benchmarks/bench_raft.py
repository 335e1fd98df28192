"""RAFT against TV-L1 on real frames at 256x340, in one run: pairs per second, and bf16 against fp32.

    .venv/bin/python benchmarks/bench_raft.py [--pairs 8] [--iterations 20] [--rounds 2] [--device cpu]
        [--raft-weights raft-sintel]

Frames: consecutive frames from the middle of the sample bigbuckbunny.mp4, resized to 256x340 (RAFT pads
them to 256x344). TV-L1 is the project's batched PyTorch one (its fused kernels where built), 8 pairs a batch;
RAFT-large runs 4 pairs a batch on a CPU, all ``--pairs`` at once on CUDA, in fp32 and, where the CPU has
bf16 instructions (or on CUDA), under bf16 autocast. Each keeps its fastest of ``--rounds`` rounds. Without
``--raft-weights`` (or where they are not installed) RAFT runs on its initial weights: the time does not
depend on the values, only the bf16 error line is then meaningless.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from i3d.devices import parse_device
from i3d.video.decode import iter_video_file
from i3d.video.flow import FlowComputer, to_grey
from i3d.video.flow.raft import Raft, pad_to_eight
from i3d.video.samples import sample_path


def frames(count: int) -> np.ndarray:
    decoded = [image for _, image in iter_video_file(sample_path("bigbuckbunny.mp4"))]
    start = len(decoded) // 2
    return np.stack([cv2.resize(f, (340, 256), interpolation=cv2.INTER_AREA) for f in decoded[start:start + count]])


def timed(run, rounds: int, device: torch.device) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(rounds):
        tic = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - tic)
    return best, out


def raft_model(weights: str | None, device: torch.device) -> tuple[torch.nn.Module, str]:
    from i3d.errors import I3DError
    from i3d.video.flow import raft_network

    try:
        return raft_network(weights, device), weights or "raft-sintel"
    except I3DError:
        return Raft().eval().to(device), "initial weights (not installed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--raft-weights", default=None)
    args = parser.parse_args()
    device = parse_device(args.device)
    rgb = frames(args.pairs + 1)
    grey = np.stack([to_grey(f) for f in rgb])
    tvl1 = FlowComputer("torch", str(device))
    tvl1.pairs(grey[:2], grey[1:3])  # kernels loaded or compiled, allocator warm
    tvl1_s, _ = timed(lambda: np.concatenate([tvl1.pairs(grey[i:i + 8], grey[i + 1:i + 9])
                                             for i in range(0, args.pairs, 8)]), args.rounds, device)
    network, named = raft_model(args.raft_weights, device)
    images = pad_to_eight(torch.from_numpy(rgb).permute(0, 3, 1, 2).float().contiguous()).to(device)
    batch = args.pairs if device.type == "cuda" else 4

    def raft(dtype: torch.dtype | None):
        def run():
            outs = []
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                         enabled=dtype is not None):
                for i in range(0, args.pairs, batch):
                    end = min(i + batch, args.pairs)
                    outs.append(network(images[i:end], images[i + 1:end + 1], args.iterations).float())
            return torch.cat(outs).cpu().numpy()
        return run

    raft(None)()  # warm-up
    fp32_s, fp32 = timed(raft(None), args.rounds, device)
    print(f"{device} ({torch.get_num_threads()} threads), 256x340, {args.pairs} pairs, RAFT {args.iterations} "
          f"iterations ({named}):")
    print(f"  TV-L1 (torch)  {args.pairs / tvl1_s:7.2f} pairs/s")
    print(f"  RAFT fp32      {args.pairs / fp32_s:7.2f} pairs/s  ({tvl1_s / fp32_s:.2f}x TV-L1's rate)")
    cpu_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if device.type == "cuda" or cpu_bf16:
        raft(torch.bfloat16)()
        bf16_s, bf16 = timed(raft(torch.bfloat16), args.rounds, device)
        epe = np.sqrt(((bf16 - fp32) ** 2).sum(axis=1))
        print(f"  RAFT bf16      {args.pairs / bf16_s:7.2f} pairs/s  ({fp32_s / bf16_s:.2f}x fp32's rate); EPE "
              f"against fp32: mean {epe.mean():.3f} px, p99 {np.percentile(epe, 99):.3f} px "
              f"(mean |flow| {np.sqrt((fp32 ** 2).sum(axis=1)).mean():.2f} px)")
    else:
        print("  RAFT bf16      not measured: this CPU has no bf16 instructions")


if __name__ == "__main__":
    main()
