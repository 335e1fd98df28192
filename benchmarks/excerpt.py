"""The first seconds of a sample video as a file of its own, for benchmarks that want a short real clip."""

from __future__ import annotations

from pathlib import Path

import av


def excerpt(source: Path, seconds: float, target: Path) -> Path:
    """Re-encode ``source``'s first ``seconds`` (H.264, 25 fps) to ``target``."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = writer.add_stream("libx264", rate=25)
        video = reader.streams.video[0]
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        for frame in reader.decode(video):
            if frame.time >= seconds:
                break
            writer.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        writer.mux(stream.encode())
    return target
