"""cd-fvd's own FVD beside this project's, on the same videos in the same run: values and seconds.

    PYTHONPATH=/path/to/cd-fvd-0.1.1:/path/to/einops .venv/bin/python benchmarks/bench_fvd_peers.py

cd-fvd 0.1.1 (its PyPI sdist, unpacked; `pip install --target DIR --no-deps einops` beside it) runs in its I3D
mode with ``ckpt_path`` pointing at the default weights written in its network's layout, so both compute with
the same weights. Its package imports torchvision for its VideoMAE mode and its video-folder loader only; where
no torchvision matching this torch is installed, empty stand-in modules satisfy those imports (the I3D mode on
arrays never touches them).
"""

from __future__ import annotations

import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from i3d.factory import resolve_weights  # noqa: E402
from i3d.fvd import VideoEmbedder, fvd, get_protocol  # noqa: E402
from i3d.weights.torch_port import port_names  # noqa: E402
from references.video_sets import video_sets  # noqa: E402


def cd_fvd_class():
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 (absent, or built for another torch)
        for name in ("torchvision", "torchvision.transforms", "torchvision.datasets",
                     "torchvision.datasets.video_utils"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].__path__ = []  # a package, so its submodules import
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision.datasets.video_utils"].VideoClips = None
    from cdfvd.fvd import cdfvd

    return cdfvd


def main() -> None:
    real, fake = video_sets(16, 16)
    cdfvd = cd_fvd_class()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "i3d_pretrained_400.pt"
        torch.save(port_names(resolve_weights().state_dict), checkpoint)
        start = time.perf_counter()
        peer = cdfvd("i3d", ckpt_path=str(checkpoint), device="cpu")
        peer_value = float(peer.compute_fvd(real, fake))
        peer_s = time.perf_counter() - start
    rows = [("cd-fvd 0.1.1, its own code", peer_value, peer_s)]
    for name in ("cd-fvd", "videogpt"):
        protocol = get_protocol(name)
        start = time.perf_counter()
        embedder = VideoEmbedder(resize=protocol.resize, batch_norm_eps=protocol.batch_norm_eps, device="cpu")
        rows.append((f"i3d --protocol {name} ({embedder.runtime})", fvd(real, fake, embedder, name),
                     time.perf_counter() - start))
    print(f"16 + 16 videos of 16 frames at 72x96 (tests/references/video_sets.py), {torch.get_num_threads()} threads")
    print(f"{'':<40} {'FVD':>12} {'rel. to cd-fvd':>15} {'seconds':>8}")
    for name, value, seconds in rows:
        print(f"{name:<40} {value:12.4f} {value / peer_value - 1:+15.2e} {seconds:8.1f}")


if __name__ == "__main__":
    main()
