"""What the network sees over time: top classes per window over a whole video, a plot, a labelled video.

Windows of ``window_s`` seconds every ``step_s`` seconds over the 25 fps input (default 2.56 s = 64 frames,
every 1 s); a video shorter than one window gets one window of all it has. Frames stream through a
window-long buffer, so memory is bounded however long the video (one window of 224x224 float frames:
64 frames, 38 MB; the classifier's batch of windows on CUDA, 4 by default).
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from i3d.errors import I3DError
from i3d.predict import Classifier
from i3d.video.decode import TARGET_FPS


@dataclass
class TimelineWindow:
    start_s: float
    end_s: float
    logits: np.ndarray

    def probabilities(self, multi_label: bool) -> np.ndarray:
        if multi_label:
            return 1 / (1 + np.exp(-self.logits.astype(np.float64)))
        shifted = np.exp(self.logits.astype(np.float64) - self.logits.max())
        return shifted / shifted.sum()


@dataclass
class Timeline:
    labels: list[str]
    window_s: float
    step_s: float
    multi_label: bool = False
    windows: list[TimelineWindow] = field(default_factory=list)

    def top(self, window: TimelineWindow, k: int) -> list[tuple[str, float, float]]:
        probabilities = window.probabilities(self.multi_label)
        order = np.argsort(-window.logits, kind="stable")[:k]
        return [(self.labels[i], float(probabilities[i]), float(window.logits[i])) for i in order]

    def at(self, time_s: float) -> TimelineWindow | None:
        """The window whose centre is nearest to ``time_s`` (what is being shown then)."""
        if not self.windows:
            return None
        return min(self.windows, key=lambda w: abs((w.start_s + w.end_s) / 2 - time_s))

    def to_dict(self, k: int = 5) -> dict:
        return {"window_s": self.window_s, "step_s": self.step_s, "multi_label": self.multi_label,
                "windows": [{"start_s": round(w.start_s, 6), "end_s": round(w.end_s, 6),
                             "top": [{"label": label, "probability": p, "logit": logit}
                                     for label, p, logit in self.top(w, k)]} for w in self.windows]}

    def to_csv(self, k: int = 5) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["start_s", "end_s"] + [f"{name}_{i}" for i in range(1, k + 1) for name in ("label", "p")])
        for window in self.windows:
            row = [f"{window.start_s:.3f}", f"{window.end_s:.3f}"]
            for label, p, _ in self.top(window, k):
                row += [label, f"{p:.6f}"]
            writer.writerow(row)
        return out.getvalue()

    def to_json(self, k: int = 5) -> str:
        return json.dumps(self.to_dict(k))


def _windows(frames: Iterator[np.ndarray], length: int, step: int) -> Iterator[np.ndarray]:
    """Stacked frames of windows of ``length`` starting every ``step`` frames; held: one window."""
    held: deque[np.ndarray] = deque(maxlen=length)
    count = next_start = 0
    for frame in frames:
        held.append(frame)
        count += 1
        if count == next_start + length:
            yield np.stack(held)
            next_start += step
    if count and next_start == 0:  # a video shorter than one window: one window of all of it
        yield np.stack(held)


def compute_timeline(classifier: Classifier, source: str | Path, window_s: float = 2.56, step_s: float = 1.0,
                     start_s: float | None = None, end_s: float | None = None) -> Timeline:
    """Logits of every window of the video (RGB stream of ``classifier``)."""
    if not window_s > 0 or not step_s > 0:
        raise I3DError(f"--window and --step must be positive seconds, not {window_s} and {step_s}")
    length, step = max(1, round(window_s * TARGET_FPS)), max(1, round(step_s * TARGET_FPS))
    offset = start_s or 0.0
    timeline = Timeline(classifier.labels, window_s, step_s, classifier.multi_label)
    frames = classifier.transforms["rgb"].frames(Path(source), start_s, end_s)
    for index, (clip, logits) in enumerate(classifier.batched_logits(_windows(frames, length, step), "rgb")):
        first = index * step  # windows start every step frames, the first at 0
        timeline.windows.append(TimelineWindow(offset + first / TARGET_FPS, offset + (first + len(clip)) / TARGET_FPS,
                                               logits))
    if not timeline.windows:
        raise I3DError(f"{source}: no frames in the requested span")
    return timeline


def plot_timeline(timeline: Timeline, path: Path, k: int = 3) -> Path:
    """Probabilities over time of every class that reaches the top ``k`` in some window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from i3d.files import atomic_path

    shown = []
    for window in timeline.windows:
        for label, _, _ in timeline.top(window, k):
            if label not in shown:
                shown.append(label)
    times = [(w.start_s + w.end_s) / 2 for w in timeline.windows]
    probabilities = np.stack([w.probabilities(timeline.multi_label) for w in timeline.windows])
    figure, axes = plt.subplots(figsize=(10, 4.5), dpi=120)
    palette = plt.get_cmap("tab20").colors
    for i, label in enumerate(shown):  # 20 colours, then dashed: every line stays distinguishable
        axes.plot(times, probabilities[:, timeline.labels.index(label)], marker="o", markersize=3, label=label,
                  color=palette[i % 20], linestyle="-" if i < 20 else "--")
    axes.set_xlabel("time (s), window centres")
    axes.set_ylabel("probability" + (" (sigmoid)" if timeline.multi_label else ""))
    axes.set_ylim(0, 1)
    axes.set_title(f"Top-{k} classes over time ({timeline.window_s:g} s windows every {timeline.step_s:g} s)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
