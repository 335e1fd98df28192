"""Named feature protocols of published work: each states its settings and where they come from.

A preset sets defaults; options given explicitly override them, and the manifest records the preset and
the overrides. ``verified`` says how far the frame pipeline was checked against the source: ``code``
where the extractor's own code was read and its steps reproduced (file and lines cited); ``published
settings`` where the source published its settings but not the code that made its features, so the
rest of the pipeline is this project's published I3D recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from i3d.errors import I3DError
from i3d.settings import ExtractionConfig, WindowSpec


@dataclass(frozen=True)
class FeaturePreset:
    name: str
    description: str
    settings: dict  # ExtractionConfig / WindowSpec field -> value
    source: str
    verified: str
    notes: str = ""
    output: dict = field(default_factory=dict)


PRESETS: dict[str, FeaturePreset] = {p.name: p for p in [
    FeaturePreset(
        "video-features",
        "v-iashin/video_features' I3D extractor with its defaults: 64-frame stacks every 64 frames at the "
        "video's own rate, RGB and RAFT flow (rgb and flow, 1024-d each)",
        {"fps": None, "clip_len": 64, "step": 64, "last": "drop", "size": 256, "crop_size": 224, "crops": "center",
         "decoder": "opencv", "resize": "pil", "needs_next_frame": True, "stream": "joint", "flow_method": "raft",
         "flow_encoding": "video-features"},
        "v-iashin/video_features@a2f61b7 models/i3d/extract_i3d.py:33 (streams rgb and flow unless one is given), "
        ":38-62 (min side 256, centre crop 224, RGB 2x/255-1; flow: centre crop, Clamp(-20, 20), ToUInt8, "
        "2x/255-1), :82-128 (cv2.VideoCapture at the native rate, a stack runs once stack_size + 1 frames are "
        "read, no partial stack; InputPadder built from the first resized frame), :142-150 (RAFT between frames "
        "t and t+1 of the padded stack, never unpadded), :185-196 (raft-sintel.pth, DataParallel prefix "
        "stripped); models/raft/raft_src/raft.py:30-47 (InputPadder, 'sintel' mode, replicate), :118 (20 "
        "iterations, test mode); models/transforms.py:132-176 (crop offset (H - 224) // 2 of the padded field, "
        "clamp, round(128 + 255/40 x) not clipped), :191-231 (PIL bilinear, long side int(256 * long / short)); "
        "configs/i3d.yml (stack_size 64, step_size 64, extraction_fps null, flow_type raft)",
        "code",
        "its I3D weights are DeepMind's rgb_imagenet and flow_imagenet as hassony2/kinetics_i3d_pytorch converts "
        "them (models/i3d/checkpoints/i3d_rgb.pt, i3d_flow.pt): give --weights rgb_imagenet --flow-weights "
        "flow_imagenet to match its numbers; --stream rgb gives its RGB half alone. Its flow is never unpadded: "
        "where a side needs an odd padding to reach a multiple of 8, the flow's centre crop sits one pixel right "
        "of (or below) the RGB crop, and so it does here",
    ),
    FeaturePreset(
        "actionformer-thumos",
        "THUMOS'14 two-stream features of ActionFormer-style localisation: 16-frame windows every 4 frames at "
        "the video's own rate (~30 fps), RGB and flow side by side (2048-d)",
        {"fps": None, "clip_len": 16, "step": 4, "last": "drop", "stream": "joint"},
        "happyharrycn/actionformer_release README.md (THUMOS14 features: two-stream I3D, clips of 16 frames at the "
        "video frame rate (~30 fps), stride 4 frames) and configs/thumos_i3d.yaml (feat_stride: 4, num_frames: 16, "
        "input_dim: 2048)",
        "published settings",
        "the features ActionFormer distributes were extracted with code it does not publish; the frame "
        "pipeline here is the published I3D recipe (short side 256, centre crop 224, TV-L1 flow)",
    ),
    FeaturePreset(
        "mstcn",
        "per-frame two-stream features of MS-TCN-style action segmentation: at 15 fps, one 2048-d feature per "
        "frame from the 21 frames centred on it, stored D x T",
        {"fps": 15.0, "per_frame": 21, "stream": "joint", "npy_layout": "columns"},
        "yabufarha/ms-tcn batch_gen.py (features = np.load(<video>.npy), used as features[:, ::sample_rate]: "
        "2048 x T); the MS-TCN paper (Farha & Gall, CVPR 2019) for 15 fps and 21-frame windows",
        "published settings",
        "write them with --format npy to get MS-TCN's (2048, T) files",
        {"fmt": "npy"},
    ),
    FeaturePreset(
        "anomaly-rtfm",
        "the ten-crop I3D ResNet-50 features of weakly supervised video anomaly detection (RTFM and the methods "
        "that reuse its UCF-Crime, ShanghaiTech and XD-Violence features): 16-frame snippets at the video's own "
        "rate, no overlap, frames stretched to 340x256, ten 224 crops; (snippets, 10, 2048)",
        {"fps": None, "clip_len": 16, "step": 16, "last": "drop", "size": 256, "crop_size": 224,
         "resize": "pil-lanczos-340x256", "crops": "10-oversample", "stream": "rgb", "weights": "i3d_r50_anomaly"},
        "tianyu0207/RTFM cf938f4c38c9 README.md:38 (features of the ResNet-50 I3D of Tushar-N/pytorch-resnet3d), "
        ":40 (10-crop); its extractor GowthamGottimukkala/I3D_Feature_Extraction_resnet 4cd6a1d9816 main.py:33 "
        "(every frame, via ffmpeg), extract_features.py:11-19 (PIL resize to 340x256 with ANTIALIAS, 2x/255-1, "
        "no mean/std), :30-46 (oversample: TL, TR, centre, BL, BR, then the mirrored frame's), :52-71 (16-frame "
        "chunks every 16 frames, whole chunks only), :99-103 ((chunks, 10, 2048)), resnet.py forward_single "
        "(res5 global average, no classifier); weights i3d_baseline_32x2_IN_pretrain_400k.pkl converted by "
        "pytorch-resnet3d utils/convert_weights.py",
        "code",
        "needs i3d_r50_anomaly: `i3d weights convert i3d_baseline_32x2_IN_pretrain_400k.pkl --name "
        "i3d_r50_anomaly`; frames come straight from the decoder, not through ffmpeg's JPEG files (main.py:33), "
        "so JPEG's loss is not reproduced; a video of exactly 16 frames gives one snippet where the extractor "
        "stops (extract_features.py:65)",
    ),
    FeaturePreset(
        "tencrop-inception",
        "the snippet protocol of anomaly detection on the Inception I3D: 16-frame snippets at the video's own "
        "rate, no overlap, torchvision's ten crops, RGB; (snippets, 10, 1024). Not RTFM's features: those are "
        "ResNet-50 (preset anomaly-rtfm)",
        {"fps": None, "clip_len": 16, "step": 16, "last": "drop", "crops": "10", "stream": "rgb"},
        "tianyu0207/RTFM README.md:40 (ten crops per snippet); the RTFM paper (Tian et al., ICCV 2021) for "
        "16-frame snippets; torchvision's TenCrop for the crop geometry",
        "published settings",
        "the Inception network gives 1024-d features that RTFM-style models trained on 2048-d ResNet-50 features "
        "cannot read; for those use anomaly-rtfm",
    ),
]}



SPEC_FIELDS = ("clip_len", "step", "last")


def config_from_preset(preset: str | None = None, **given) -> ExtractionConfig:
    """The extraction settings of a named protocol (``features.presets``), with ``given`` settings on top.

    ``given`` holds ExtractionConfig fields and the window fields clip_len, step and last; the manifest
    records the preset and which settings were given.
    """
    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise I3DError(f"unknown --preset {preset!r}; known: {', '.join(PRESETS)} (see --list-presets)")
        values.update(PRESETS[preset].settings)
        values.update(PRESETS[preset].output)
    values.update(given)
    spec = {k: values.pop(k) for k in SPEC_FIELDS if k in values}
    base = values.pop("spec", WindowSpec())
    spec = WindowSpec(**{**{k: getattr(base, k) for k in SPEC_FIELDS}, **spec})
    return ExtractionConfig(spec=spec, preset=preset, overrides=tuple(sorted(given)) if preset else (), **values)
