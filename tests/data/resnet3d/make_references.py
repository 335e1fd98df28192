"""Run each source's own ResNet-50 I3D code on formula-defined weights and input; keep names and logits.

Not part of the suite: it needs the sources, installed in a throwaway environment beside this project's
torch (nothing here imports i3d):

    pip install --no-deps --target REF pytorchvideo==0.1.5 fvcore iopath mmaction2==1.2.0 mmcv-lite==2.1.0 \
        mmengine==0.10.7 addict yapf termcolor yacs tabulate portalocker platformdirs einops
    # torchvision's compiled ops do not load against this torch; the models need only the name RoIAlign:
    mkdir REF/torchvision && echo 'class RoIAlign: pass' > REF/torchvision/ops.py && touch REF/torchvision/__init__.py
    git -C video-nonlocal-net ... ; pytorch-resnet3d checked out at 8d3e1da2c2bb (Tushar-N/pytorch-resnet3d)
    PYTHONPATH=REF python tests/data/resnet3d/make_references.py PYTORCH_RESNET3D_CHECKOUT
    # and the anomaly-detection features (GowthamGottimukkala/I3D_Feature_Extraction_resnet at 4cd6a1d9816,
    # its extract_features.py and resnet.py; natsort installed beside the rest):
    PYTHONPATH=REF python tests/data/resnet3d/make_references.py PYTORCH_RESNET3D_CHECKOUT EXTRACTOR_CHECKOUT

Each reference JSON holds the source's tensor names and shapes (so a test writes exactly the source's
checkpoint), the logits of ``clip_input()`` and the 2048-d pooled feature before the classifier.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE))
from resnet_formula import FRAMES, SIZE, clip_input, tensor_values  # noqa: E402


def fill(model: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Overwrite every floating tensor of ``model`` by formula, named as the source's checkpoint names it."""
    names = {}
    state = model.state_dict()
    for name, tensor in state.items():
        names[prefix + name] = tuple(tensor.shape)
        if tensor.is_floating_point():
            tensor.copy_(torch.from_numpy(tensor_values(prefix + name, tuple(tensor.shape))))
    return names


def save(name: str, source: str, names: dict, logits: torch.Tensor, features: torch.Tensor, frames: int = FRAMES,
         **extra) -> None:
    record = {"source": source, "frames": frames, "size": SIZE, "names": [[k, list(v)] for k, v in names.items()],
              "logits": logits.flatten().tolist(), "features": features.flatten().tolist(), **extra}
    (HERE / f"{name}.json").write_text(json.dumps(record) + "\n")
    print(f"{name}: {len(names)} tensors, logits |max| {logits.abs().max():.3f}, std {logits.std():.3f}")


def unit_input(frames: int = FRAMES) -> np.ndarray:
    return (clip_input(frames) + 1) / 2  # [0, 1]


LONG = 16  # frames for the layouts that stride time in the stem: res3 and res4 still see 2 time steps


def pytorchvideo_reference() -> None:
    from pytorchvideo.models.hub.resnet import i3d_r50

    model = i3d_r50(pretrained=False).eval()
    names = fill(model)
    x = torch.from_numpy((unit_input() - 0.45) / 0.225).float()  # pytorchvideo hub: mean 0.45, std 0.225
    pooled = {}
    model.blocks[6].pool.register_forward_hook(lambda m, i, o: pooled.setdefault("x", o))
    with torch.no_grad():
        logits = model(x)
    save("pytorchvideo-r50", "pytorchvideo 0.1.5 models.hub.resnet.i3d_r50", names, logits,
         pooled["x"].mean(dim=(2, 3, 4)), checkpoint_key="model_state")


def _mmaction_module(path: str):
    import mmaction

    for package in ("mmaction.models", "mmaction.models.backbones", "mmaction.models.heads", "mmaction.models.losses"):
        module = types.ModuleType(package)  # skip the package __init__s: the 1.2.0 wheel lacks localizers/drn
        module.__path__ = [str(Path(mmaction.__path__[0], *package.split(".")[1:]))]
        sys.modules[package] = module
    return importlib.import_module(path)


MMACTION_BASE = dict(pretrained2d=False, pretrained=None, depth=50, conv1_kernel=(5, 7, 7), conv1_stride_t=2,
                     pool1_stride_t=2, conv_cfg=dict(type="Conv3d"), norm_eval=False,
                     inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)), zero_init_residual=False)
MMACTION_NL = dict(non_local=((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0)))


def mmaction_reference(name: str, **backbone_changes) -> None:
    ResNet3d = _mmaction_module("mmaction.models.backbones.resnet3d").ResNet3d
    I3DHead = _mmaction_module("mmaction.models.heads.i3d_head").I3DHead
    _mmaction_module("mmaction.models.losses.cross_entropy_loss")  # registers the head's default loss
    backbone = ResNet3d(**{**MMACTION_BASE, **backbone_changes})
    backbone.init_weights()
    head = I3DHead(num_classes=400, in_channels=2048, spatial_type="avg", dropout_ratio=0.5)
    backbone.eval(), head.eval()
    names = {**fill(backbone, "backbone."), **fill(head, "cls_head.")}
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])  # data_preprocessor
    x = torch.from_numpy((unit_input(LONG) * 255 - mean[:, None, None, None]) / std[:, None, None, None]).float()
    with torch.no_grad():
        res5 = backbone(x)
        logits = head(res5)
    save(name, f"mmaction2 1.2.0 ResNet3d + I3DHead ({backbone_changes or 'i3d_r50 base'})", names, logits,
         res5.mean(dim=(2, 3, 4)), LONG, checkpoint_key="state_dict")


def caffe2_blob_names(nonlocal_blocks: bool) -> dict[str, tuple[int, ...]]:
    """Blob names and shapes as video-nonlocal-net's resnet_video_org.py / resnet_helper.py / nonlocal_helper.py
    name them (conv ``_w``, SpatialBN ``_s _b _rm _riv``, non-local convs with ``_b``, FC ``pred_w pred_b``)."""
    blobs = {"conv1_w": (64, 3, 5, 7, 7)}
    blobs.update({f"res_conv1_bn_{k}": (64,) for k in ("s", "b", "rm", "riv")})
    temporal = ((3, 3, 3), (3, 1, 3, 1), (3, 1, 3, 1, 3, 1), (1, 3, 1))
    channels = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=2):
        for block in range(count):
            prefix = f"res{stage}_{block}"
            if block == 0:
                blobs[f"{prefix}_branch1_w"] = (width * 4, channels, 1, 1, 1)
                blobs.update({f"{prefix}_branch1_bn_{k}": (width * 4,) for k in ("s", "b", "rm", "riv")})
            for part, shape in (("a", (width, channels, temporal[stage - 2][block], 1, 1)),
                                ("b", (width, width, 1, 3, 3)), ("c", (width * 4, width, 1, 1, 1))):
                blobs[f"{prefix}_branch2{part}_w"] = shape
                blobs.update({f"{prefix}_branch2{part}_bn_{k}": (shape[0],) for k in ("s", "b", "rm", "riv")})
            channels = width * 4
            if nonlocal_blocks and stage in (3, 4) and block % 2 == 1:
                nl = f"nonlocal_conv{stage}_{block}"
                for conv in ("theta", "phi", "g"):
                    blobs[f"{nl}_{conv}_w"] = (channels // 2, channels, 1, 1, 1)
                    blobs[f"{nl}_{conv}_b"] = (channels // 2,)
                blobs[f"{nl}_out_w"], blobs[f"{nl}_out_b"] = (channels, channels // 2, 1, 1, 1), (channels,)
                blobs.update({f"{nl}_bn_{k}": (channels,) for k in ("s", "b", "rm", "riv")})
    blobs["pred_w"], blobs["pred_b"] = (400, 2048), (400,)
    return blobs


def caffe2_reference(name: str, checkout: Path, nonlocal_blocks: bool) -> None:
    """pytorch-resnet3d's own converter (utils/convert_weights.py) and network (models/resnet.py)."""
    shapes = caffe2_blob_names(nonlocal_blocks)
    blobs = {k: tensor_values(k, v) for k, v in shapes.items()}
    with tempfile.TemporaryDirectory() as folder:
        pkl, pth = Path(folder, "model.pkl"), Path(folder, "model.pth")
        pkl.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
        subprocess.run([sys.executable, "-m", "utils.convert_weights", str(pkl), str(pth)], cwd=checkout, check=True,
                       stdout=subprocess.DEVNULL)
        converted = torch.load(pth, weights_only=True)
    sys.path.insert(0, str(checkout))
    from models.resnet import I3Res50

    model = I3Res50(num_classes=400, use_nl=nonlocal_blocks)
    missing = set(model.state_dict()) - set(converted) - {k for k in model.state_dict() if "num_batches" in k}
    assert not missing, f"pytorch-resnet3d left unmapped: {sorted(missing)[:5]}"
    model.load_state_dict(converted, strict=False)
    model.eval()
    x = torch.from_numpy((unit_input(LONG) * 255 - 114.75) / 57.375).float()  # lib/core/config.py:108-109
    pooled = {}
    model.avgpool.register_forward_hook(lambda m, i, o: pooled.setdefault("x", o))
    with torch.no_grad():
        logits = model.forward_single(x)
    save(name, f"Tushar-N/pytorch-resnet3d 8d3e1da2c2bb utils/convert_weights.py + models/resnet.py "
               f"I3Res50(use_nl={nonlocal_blocks})", shapes, logits, pooled["x"].flatten(1), LONG,
         checkpoint_key="blobs")


def anomaly_reference(checkout: Path, extractor: Path) -> None:
    """GowthamGottimukkala/I3D_Feature_Extraction_resnet 4cd6a1d9816's own ``run`` (extract_features.py) on
    ``anomaly_frames()`` saved as PNG files, with pytorch-resnet3d's network on the formula's Caffe2 weights."""
    from anomaly_frames import anomaly_frames
    from PIL import Image

    Image.ANTIALIAS = Image.LANCZOS  # the extractor's name for it; Pillow 10 dropped the alias
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the extractor moves every batch to CUDA
    shapes = caffe2_blob_names(False)
    blobs = {k: tensor_values(k, v) for k, v in shapes.items()}
    with tempfile.TemporaryDirectory() as folder:
        pkl, pth, frames = Path(folder, "model.pkl"), Path(folder, "model.pth"), Path(folder, "frames")
        pkl.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
        subprocess.run([sys.executable, "-m", "utils.convert_weights", str(pkl), str(pth)], cwd=checkout, check=True,
                       stdout=subprocess.DEVNULL)
        frames.mkdir()
        for index, frame in enumerate(anomaly_frames()):
            Image.fromarray(frame).save(frames / f"{index}.png")
        sys.path.insert(0, str(extractor))
        import extract_features
        from resnet import i3_res50

        model = i3_res50(400, str(pth))
        model.train(False)
        features = extract_features.run(model, 16, str(frames) + "/", 20, "oversample")
    np.save(HERE / "anomaly-rtfm.npy", features.astype(np.float32))
    print(f"anomaly-rtfm: features {features.shape}, |max| {np.abs(features).max():.3f}")


if __name__ == "__main__":
    checkout = Path(sys.argv[1])
    if len(sys.argv) > 2:  # the anomaly-detection extractor's checkout: its features only
        anomaly_reference(checkout, Path(sys.argv[2]))
        sys.exit()
    torch.set_grad_enabled(False)
    pytorchvideo_reference()
    mmaction_reference("mmaction2-r50")
    mmaction_reference("mmaction2-r50-heavy", inflate=(1, 1, 1, 1), conv1_stride_t=1, pool1_stride_t=1)
    for mode in ("embedded_gaussian", "dot_product", "gaussian"):
        mmaction_reference(f"mmaction2-r50-nl-{mode.replace('_', '-')}", **MMACTION_NL, non_local_cfg=dict(
            sub_sample=True, use_scale=False, norm_cfg=dict(type="BN3d", requires_grad=True), mode=mode))
    caffe2_reference("caffe2-r50-32x2", checkout, False)
    caffe2_reference("caffe2-r50-nl-32x2", checkout, True)
