"""Reference RAFT flow from princeton-vl/RAFT's own code, and from torchvision's port, on real frames.

Run once, in a throwaway environment with torch, torchvision, PyAV and Pillow, against a checkout of
princeton-vl/RAFT (its core/ folder is put on the path and run unmodified):

    python tests/references/raft_flow.py --raft /path/to/princeton-vl/RAFT -o tests/data/raft_reference.npz

Weights are formula-valued (tests/resnet_formula.py's ``tensor_values``, per princeton-vl tensor name), so
the tests rebuild the very same checkpoint, write it in each published layout and convert it. Frames come
from the two sample videos, resized to sizes that need padding. What is kept: the frames, each pair's flow
from princeton-vl's RAFT (padded by its InputPadder, unpadded after, ``test_mode``) at 20 iterations (and at
12 for the second pair), and for the first pair torchvision's ``raft_large`` flow with the weights renamed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resnet_formula import tensor_values  # noqa: E402

# (video, frame index, size): pairs are frames index and index + 1, resized by PIL bilinear
PAIRS = (("bikes.mp4", 40, (128, 226)), ("bigbuckbunny.mp4", 100, (130, 171)))


def princeton_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Formula values for every tensor; a block's ``norm3`` is the same module as its ``downsample.1``."""
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros_like(tensor)
            continue
        source = name.replace(".norm3.", ".downsample.1.")
        state[name] = torch.from_numpy(tensor_values(source, tuple(tensor.shape)))
    return state


def frames(samples: Path) -> list[np.ndarray]:
    out = []
    for video, index, (height, width) in PAIRS:
        with av.open(str(samples / video)) as container:
            decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(index + 2), container.decode(video=0))]
        out.append(np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
                             for f in decoded[index:index + 2]]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raft", type=Path, required=True, help="a checkout of princeton-vl/RAFT")
    parser.add_argument("--samples", type=Path, default=Path.home() / ".cache/i3d/samples")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.raft / "core"))
    from raft import RAFT  # princeton-vl's
    from torchvision.models.optical_flow import raft_large
    from utils.utils import InputPadder

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from i3d.video.flow.raft_weights import torchvision_names

    torch.set_grad_enabled(False)
    model = RAFT(argparse.Namespace(small=False, mixed_precision=False, alternate_corr=False))
    state = princeton_state(model)
    model.load_state_dict(state)
    model.eval()
    ported = raft_large(weights=None)
    ported.load_state_dict(torchvision_names({k: v for k, v in state.items() if ".norm3." not in k}))
    ported.eval()
    kept = {}
    for k, pair in enumerate(frames(args.samples)):
        images = torch.from_numpy(pair).permute(0, 3, 1, 2).float()
        padder = InputPadder(images.shape)
        first, second = padder.pad(images[:1], images[1:])
        kept[f"frames{k}"] = pair
        _, flow = model(first, second, iters=20, test_mode=True)
        kept[f"princeton{k}_20"] = padder.unpad(flow)[0].permute(1, 2, 0).numpy()
        print(f"pair {k}: {pair.shape[1:3]}, |flow| mean {np.abs(kept[f'princeton{k}_20']).mean():.3f} px, "
              f"max {np.abs(kept[f'princeton{k}_20']).max():.3f}")
        if k == 0:  # torchvision's port, from the same weights renamed
            flow = ported(2 * (first / 255) - 1, 2 * (second / 255) - 1, num_flow_updates=20)[-1]
            kept[f"torchvision{k}_20"] = padder.unpad(flow)[0].permute(1, 2, 0).numpy()
            print(f"  torchvision vs princeton {np.abs(kept['torchvision0_20'] - kept['princeton0_20']).max():.2e} px")
        else:  # torchvision's default iteration count
            _, flow = model(first, second, iters=12, test_mode=True)
            kept[f"princeton{k}_12"] = padder.unpad(flow)[0].permute(1, 2, 0).numpy()
    np.savez_compressed(args.output, **kept)


if __name__ == "__main__":
    main()
