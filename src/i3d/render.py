"""The input video with the network's current top classes drawn on every frame (``i3d predict --render``).

Re-encoded with PyAV (H.264) at the source's frame rate and (upright) size; an audio stream is copied as
it is. The labels on a frame are those of the timeline window whose centre is nearest to its time.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from i3d.errors import I3DError, I3DNotice
from i3d.files import atomic_path
from i3d.timeline import Timeline
from i3d.video.decode import iter_video_file, pyav, upright_rgb


def draw_labels(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """A dark translucent box in the top-left corner with one line per class."""
    height = image.shape[0]
    scale = max(0.4, height / 720)
    thickness = max(1, round(scale * 1.5))
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0] for line in lines]
    line_height = max(h for _, h in sizes) + round(12 * scale)
    box_w = min(image.shape[1], max(w for w, _ in sizes) + round(20 * scale))
    box_h = min(height, line_height * len(lines) + round(10 * scale))
    out = image.copy()
    region = out[:box_h, :box_w]
    region[:] = (region * 0.4).astype(np.uint8)
    for i, line in enumerate(lines):
        y = round(10 * scale) + line_height * (i + 1) - round(6 * scale)
        cv2.putText(out, line, (round(10 * scale), y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return out


def render_video(source: Path, timeline: Timeline, output: Path, k: int = 3) -> Path:
    av = pyav()
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as error:
        raise I3DError(f"{source}: cannot open as a video ({error})") from None
    with container:
        if not container.streams.video:
            raise I3DError(f"{source}: has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        frames = iter_video_file(source)
        first = next(frames, None)
        frames.close()
        if first is None:
            raise I3DError(f"{source}: no frame could be decoded")
        height, width = first[1].shape[:2]
        with atomic_path(output) as tmp, av.open(str(tmp), "w", format="mp4") as out:
            encoder = out.add_stream("libx264", rate=rate)  # streams first: the header is written at the first mux
            encoder.width, encoder.height = width // 2 * 2, height // 2 * 2  # 4:2:0 needs even sides
            encoder.pix_fmt, encoder.options = "yuv420p", {"crf": "18"}
            audio_out = None
            if audio is not None:
                try:
                    audio_out = out.add_stream_from_template(audio)
                except (ValueError, av.error.FFmpegError):
                    warnings.warn(f"{source}: its {audio.codec_context.name} audio cannot go into MP4; rendered "
                                  "without sound", I3DNotice, stacklevel=2)
            streams = [video] + ([audio] if audio_out is not None else [])
            reformatter = av.video.reformatter.VideoReformatter()
            for packet in container.demux(*streams):
                if packet.stream is audio:
                    if packet.dts is not None:
                        packet.stream = audio_out
                        out.mux(packet)
                    continue
                for frame in packet.decode():
                    image = upright_rgb(frame, reformatter)[: encoder.height, : encoder.width]
                    window = timeline.at(frame.time or 0.0)
                    lines = [f"{p:.2f}  {label}" for label, p, _ in timeline.top(window, k)] if window else []
                    image = draw_labels(image, lines) if lines else image
                    out.mux(encoder.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
            out.mux(encoder.encode())
    return output
