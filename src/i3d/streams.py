"""One vocabulary for the streams across every command: ``rgb``, ``flow`` and ``joint`` (both together).

What ``joint`` combines depends on the command's output: predictions sum the two streams' logits (the
reference's fusion), features put the two 1024-d vectors side by side, training trains one after the other.
"""

from __future__ import annotations

STREAMS = ("rgb", "flow", "joint")


def check_stream(name: str) -> str:
    """``name``, where it names a stream; else one line listing the streams."""
    if name not in STREAMS:
        from i3d.errors import I3DError

        raise I3DError(f"stream must be one of {', '.join(STREAMS)}, not {name!r}")
    return name


def stream_modalities(stream: str) -> list[str]:
    """The networks a stream runs, RGB first."""
    return ["rgb", "flow"] if check_stream(stream) == "joint" else [stream]
