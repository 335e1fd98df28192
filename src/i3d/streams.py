"""One vocabulary for the streams across every command: ``rgb``, ``flow`` and ``joint`` (both together).

What ``joint`` combines depends on the command's output: predictions sum the two streams' logits (the
reference's fusion), features put the two 1024-d vectors side by side, training trains one after the
other. ``both`` was features' and training's spelling; it is still accepted, with a deprecation note.
"""

from __future__ import annotations

import warnings

STREAMS = ("rgb", "flow", "joint")
ALIASES = {"both": "joint"}


def canonical_stream(name: str) -> str:
    """The stream's current name; an old spelling is accepted with a FutureWarning (shown to users)."""
    if name in ALIASES:
        warnings.warn(f"stream {name!r} is now called {ALIASES[name]!r}; {name!r} will be removed",
                      FutureWarning, stacklevel=3)
        return ALIASES[name]
    if name not in STREAMS:
        from i3d.errors import I3DError

        raise I3DError(f"stream must be one of {', '.join(STREAMS)}, not {name!r}")
    return name


def stream_modalities(stream: str) -> list[str]:
    """The networks a stream runs, RGB first."""
    return ["rgb", "flow"] if canonical_stream(stream) == "joint" else [stream]
