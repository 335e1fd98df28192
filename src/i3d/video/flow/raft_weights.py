"""RAFT's published weights: pinned, fetched on first use, converted to one safetensors file.

Two published layouts are read: princeton-vl/RAFT's ``raft-*.pth`` (a DataParallel state dict, every name
prefixed ``module.``; a residual block's ``norm3`` is the same tensor as its ``downsample.1``) and
torchvision's ports (``raft_large_C_T_*.pth``, renamed per pytorch/vision#5060). Either becomes a file
with the princeton-vl names (``i3d.video.flow.raft.Raft``) and ``kind: raft`` in its metadata, so RAFT
weights and I3D weights cannot be taken for each other.
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from i3d.download import cache_dir, first_use_lock, offline, sha256_of
from i3d.errors import I3DError, I3DNotice
from i3d.files import FORMAT_VERSION, TENSORS_DIGEST, atomic_path, read_safetensors, tensors_digest
from i3d.weights.remote import RemoteFile, download

KIND = "raft"
VIDEO_FEATURES = ("v-iashin/video_features", "a2f61b7a4cf0ca6a2d91dcc2182f57e7cfd12664")
TORCHVISION_HOST = "https://download.pytorch.org/models"
# name -> (the published file, what it was trained on)
RAFT_WEIGHTS: dict[str, tuple[RemoteFile, str]] = {
    "raft-sintel": (RemoteFile(*VIDEO_FEATURES, "models/raft/checkpoints/raft-sintel.pth",
                               "e9ace903040d51abc4e0e6463a4072da78cedb9b"),
                    "princeton-vl's raft-sintel.pth (FlyingChairs, FlyingThings, then Sintel+KITTI+HD1K+Things), "
                    "as video_features commits it and runs it"),
    "raft-kitti": (RemoteFile(*VIDEO_FEATURES, "models/raft/checkpoints/raft-kitti.pth",
                              "ddf86d90a4cbd729f08e59950fbb502fdf0d0fd2"),
                   "princeton-vl's raft-kitti.pth (raft-sintel fine-tuned on KITTI), as video_features commits it"),
    "raft-things": (RemoteFile("", "", "raft_large_C_T_V1-22a6c225.pth", None, host=TORCHVISION_HOST,
                               sha256_prefix="22a6c225"),
                    "princeton-vl's raft-things.pth (FlyingChairs then FlyingThings) as torchvision ports it "
                    "(Raft_Large_Weights.C_T_V1)"),
}
DEFAULT_RAFT = "raft-sintel"  # video_features' choice (models/raft/extract_raft.py, DATASET_to_RAFT_CKPT_PATHS)


@cache
def _names() -> tuple[str, ...]:
    from i3d.video.flow.raft import Raft

    return tuple(Raft().state_dict())


_TO_TORCHVISION = [  # princeton-vl name pattern -> torchvision's, applied in order
    (r"^fnet\.", "feature_encoder."), (r"^cnet\.", "context_encoder."),
    (r"^(\w+_encoder)\.conv1\.", r"\1.convnormrelu.0."), (r"^(\w+_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(\w+_encoder)\.conv2\.", r"\1.conv."),
    (r"(layer\d\.\d)\.conv1\.", r"\1.convnormrelu1.0."), (r"(layer\d\.\d)\.norm1\.", r"\1.convnormrelu1.1."),
    (r"(layer\d\.\d)\.conv2\.", r"\1.convnormrelu2.0."), (r"(layer\d\.\d)\.norm2\.", r"\1.convnormrelu2.1."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv(\w)(\d)\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."), (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
]


def torchvision_name(name: str) -> str:
    for pattern, replacement in _TO_TORCHVISION:
        name = re.sub(pattern, replacement, name)
    return name


def torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """princeton-vl names to torchvision's ``raft_large`` names."""
    return {torchvision_name(k): v for k, v in state.items()}


def layout_of(state: dict) -> str | None:
    """'princeton' or 'torchvision' where the names are RAFT-large's (as a set, whatever is missing or extra),
    else None."""
    names = {str(k).removeprefix("module.") for k in state}
    ours = set(_names())
    theirs = {torchvision_name(k) for k in ours}
    best = max((len(names & ours), "princeton"), (len(names & theirs), "torchvision"))
    return best[1] if best[0] >= len(ours) // 2 else None


def raft_state(state: dict, origin: str) -> dict[str, torch.Tensor]:
    """The state dict of a RAFT-large checkpoint in either layout, with princeton-vl's names; every tensor
    mapped, none missing, none extra, shapes checked (BatchNorm's ``num_batches_tracked`` left out)."""
    layout = layout_of(state)
    if layout is None:
        raise I3DError(f"{origin}: not a RAFT-large checkpoint (first names: "
                       f"{', '.join(str(k) for k in list(state)[:3]) or 'none'})")
    # BatchNorm's step counter plays no part in inference
    state = {str(k).removeprefix("module."): v for k, v in state.items() if not str(k).endswith("num_batches_tracked")}
    if layout == "princeton":
        for name in [k for k in state if ".norm3." in k]:  # the same module as downsample.1, saved twice
            twin = state.pop(name)
            if not torch.equal(twin, state.get(name.replace(".norm3.", ".downsample.1."), twin)):
                raise I3DError(f"{origin}: {name} differs from the downsample normalisation it is in RAFT")
    else:
        inverse = {torchvision_name(k): k for k in _names()}
        state = {inverse.get(k, k): v for k, v in state.items()}
    expected = _expected_shapes()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    for what, names in (("lacks", missing), ("has tensors RAFT-large does not have:", extra),
                        ("has tensors of the wrong shape:", wrong)):
        if names:
            raise I3DError(f"{origin}: a RAFT checkpoint that {what} {names[0]}"
                           + (f" (+{len(names) - 1} more)" if len(names) > 1 else ""))
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


@cache
def _expected_shapes() -> dict[str, tuple[int, ...]]:
    from i3d.video.flow.raft import Raft

    return {k: tuple(v.shape) for k, v in Raft().state_dict().items() if not k.endswith("num_batches_tracked")}


def save_raft(path: Path, state: dict[str, torch.Tensor], **metadata: str) -> None:
    """Write atomically, with the digest of the tensors in the file's own metadata."""
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise I3DError(f"RAFT weights hold NaN or infinite values ({bad}); refusing to write them")
    meta = {"i3d_format": FORMAT_VERSION, "kind": KIND, TENSORS_DIGEST: tensors_digest(state), **metadata}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=meta)


def load_raft(path: Path) -> dict[str, torch.Tensor]:
    """A file ``save_raft`` wrote, verified against its recorded digest."""
    state, metadata = read_safetensors(path)
    if metadata.get("kind") != KIND:
        what = (f"I3D weights ({metadata.get('modality', 'rgb')} stream)" if "labels" in metadata
                else "not RAFT weights")
        raise I3DError(f"{path}: {what}, given as RAFT weights; convert a RAFT checkpoint with "
                       "`i3d weights convert FILE -o raft.safetensors`")
    if metadata.get(TENSORS_DIGEST) != tensors_digest(state):
        raise I3DError(f"{path}: its tensors differ from the digest recorded when it was written: the file is damaged")
    return raft_state(state, str(path))


def raft_weights_path(name: str) -> Path:
    return cache_dir() / "weights" / f"{name}.safetensors"  # beside the I3D weights


def resolve_raft_weights(weights: str | Path | None = None) -> Path:
    """A RAFT weights file by name (fetched, converted and installed on first use) or by path."""
    weights = str(weights or DEFAULT_RAFT)
    if weights not in RAFT_WEIGHTS:
        path = Path(weights)
        if not path.is_file():
            raise I3DError(f"--raft-weights {weights}: neither a RAFT weights name ({', '.join(RAFT_WEIGHTS)}) "
                           "nor a file")
        if path.suffix != ".safetensors":
            raise I3DError(f"{path}: convert a RAFT checkpoint first: `i3d weights convert {path} -o "
                           f"{path.stem}.safetensors`, then give that file")
        return path
    path = raft_weights_path(weights)
    if path.is_file():
        return path
    if offline():
        raise I3DError(f"RAFT weights {weights} are not installed; run `i3d weights fetch {weights}`")
    with first_use_lock(path):
        if not path.is_file():
            warnings.warn(f"RAFT weights {weights} are not installed: fetching them now (first use, 20 MB; "
                          "I3D_OFFLINE=1 turns this off)", I3DNotice, stacklevel=2)
            fetch_raft(weights)
    return path


def fetch_raft(name: str, mirror: str | None = None, quiet: bool = False) -> Path:
    """Download the pinned file, verify it, convert it and install it under its name."""
    remote, trained = RAFT_WEIGHTS[name]
    source = download(remote, mirror, quiet)
    state = raft_state(read_torch_state(source, remote.name), remote.name)
    path = raft_weights_path(name)
    save_raft(path, state, name=name, provenance=trained, source_url=remote.url, source_sha256=sha256_of(source))
    return path


def read_torch_state(path: Path, origin: str) -> dict:
    """The state dict of a PyTorch file, read with ``weights_only``: tensors and plain containers, never code."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (unpickling refusals and damaged files alike): one line
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise I3DError(f"{origin}: not a readable PyTorch state dict ({reason[:200]})") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise I3DError(f"{origin}: not a state dict of tensors")
    return state


def convert_raft(source: Path, output: Path) -> Path:
    """`i3d weights convert` for a RAFT checkpoint in either published layout."""
    state = raft_state(read_torch_state(source, str(source)), str(source))
    save_raft(output, state, name=output.stem, provenance=f"converted from {source.name}",
              source_sha256=sha256_of(source))
    return output
