"""Pictures of what the network sees and says: the preprocessed RGB and flow inputs as animations, and the
top predictions as a bar chart. Flow is drawn as the reference draws it (x, y and a zero third channel,
plus 0.5) or as a colour wheel (hue = direction, brightness = speed relative to the clip's fastest)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from i3d.errors import I3DError
from i3d.files import atomic_path
from i3d.settings import ANIMATION_FORMATS, FLOW_STYLES


def rgb_pictures(clip: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) in [-1, 1] -> uint8 RGB."""
    return np.clip((clip + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def flow_pictures(flow: np.ndarray, style: str = "reference") -> np.ndarray:
    """(T, H, W, 2) in [-1, 1] -> uint8 RGB pictures."""
    if style == "reference":
        padded = np.concatenate([flow, np.zeros_like(flow[..., :1])], axis=-1) + 0.5
        return np.clip(padded * 255 + 0.5, 0, 255).astype(np.uint8)
    if style != "wheel":
        raise I3DError(f"flow style must be one of {', '.join(FLOW_STYLES)}")
    magnitude, angle = cv2.cartToPolar(flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32),
                                       angleInDegrees=True)
    # full brightness at the clip's 99th-percentile speed, but never below 1 px, so still noise stays dark
    brightest = max(float(np.percentile(magnitude, 99)), 1 / 20)
    hsv = np.stack([angle / 2, np.full_like(angle, 255), np.clip(magnitude / brightest * 255, 0, 255)], axis=-1)
    return np.stack([cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_HSV2RGB) for image in hsv])


def save_animation(frames: np.ndarray, path: Path, fps: float = 25.0) -> Path:
    """An animated GIF (looping) or an H.264 MP4 of uint8 RGB frames, written atomically."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ANIMATION_FORMATS:
        raise I3DError(f"{path}: animations are written as {' or '.join(ANIMATION_FORMATS)}")
    with atomic_path(path) as tmp:
        if fmt == "gif":
            from PIL import Image

            images = [Image.fromarray(frame) for frame in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                           loop=0)
        else:
            import av

            with av.open(str(tmp), "w", format="mp4") as container:
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
                for frame in frames:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
    return path


def bar_chart(top: Sequence[tuple[str, float]], path: Path, title: str = "") -> Path:
    """A PNG bar chart of (label, probability), best first."""
    from PIL import Image, ImageDraw, ImageFont

    row, label_width, bar_width, margin = 28, 260, 360, 16
    height = margin * 2 + row * (len(top) + (1 if title else 0))
    image = Image.new("RGB", (label_width + bar_width + 90, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    y = margin
    if title:
        draw.text((margin, y), title, fill="black", font=font)
        y += row
    for label, probability in top:
        draw.text((margin, y + 5), label[:34], fill="black", font=font)
        length = max(1, round(bar_width * probability))
        draw.rectangle([label_width, y + 4, label_width + length, y + row - 6], fill=(52, 101, 164))
        draw.text((label_width + length + 6, y + 5), f"{probability:.3f}", fill="black", font=font)
        y += row
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def visualize(
    source: Path,
    outdir: Path,
    frames: int = 32,
    stream: str = "rgb",
    weights: str | None = None,
    flow_weights: str | None = None,
    flow_method: str = "torch",
    flow_style: str = "reference",
    animation: str = "gif",
    top_k: int = 10,
    flow_options: dict | None = None,
) -> list[Path]:
    """The first ``frames`` frames as the network sees them (RGB and flow) and the stream's top-k on them."""
    from i3d.predict import Classifier
    from i3d.video.flow import FlowComputer, flow_input_frames
    from i3d.video.inputs import rgb_input_frames
    from i3d.video.transforms import to_unit_range

    if frames < 2:
        raise I3DError("--frames must be at least 2 (flow needs a pair)")
    rgb = np.stack([f for _, f in zip(range(frames), rgb_input_frames(source))])
    flow_source = flow_input_frames(source, None, None, FlowComputer(flow_method, **(flow_options or {})))
    flow = np.stack([f for _, f in zip(range(len(rgb)), flow_source)])
    rgb_clip = to_unit_range(rgb)
    written = [save_animation(rgb_pictures(rgb_clip), outdir / f"rgb_input.{animation}"),
               save_animation(flow_pictures(flow, flow_style), outdir / f"flow_input.{animation}")]
    classifier = Classifier(weights, stream=stream, flow_weights=flow_weights, flow_method=flow_method,
                            flow_options=flow_options)
    logits = sum(classifier.clip_logits(rgb_clip if m == "rgb" else flow, m).astype(np.float64)
                 for m in classifier.models)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-logits, kind="stable")[:top_k]
    top = [(classifier.labels[i], float(probabilities[i])) for i in order]
    title = f"{source.name}: {stream} stream, first {len(rgb)} frames"
    written.append(bar_chart(top, outdir / "top_predictions.png", title))
    return written
