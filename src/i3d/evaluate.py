"""Top-1/top-5 accuracy over a labelled list of videos, with the multi-clip, multi-crop testing protocol stated.

A clip is ``clip_frames`` consecutive frames at 25 fps (the whole video when it is shorter); ``clips``
clips are spaced uniformly from the first frame to the last; each clip is seen through one centre crop
or three crops along the long side (start, centre, end; the short side centred). Scores are averaged
over every clip and crop, as softmax probabilities or as logits, and the video's prediction is the best
average score. One video's frames are held at a time (short side 256, uint8: 0.35 MB a frame).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from i3d.devices import compute_record
from i3d.errors import I3DError, one_line
from i3d.lists import label_indices, likely_cause
from i3d.lists import read_list as read_rows
from i3d.networks.architecture import MIN_FRAMES
from i3d.predict import Classifier
from i3d.settings import EvaluationProtocol
from i3d.versions import software_versions
from i3d.video.inputs import rgb_resized_frames
from i3d.video.transforms import CROP, loop_pad, to_unit_range


def clip_starts(total_frames: int, protocol: EvaluationProtocol) -> list[tuple[int, int]]:
    """(start, length) of each clip: uniformly spaced with the first and last frames covered; one clip centred."""
    length = min(protocol.clip_frames, total_frames)
    last_start = total_frames - length
    starts = np.linspace(0, last_start, protocol.clips) if protocol.clips > 1 else [last_start / 2]
    return [(int(round(s)), length) for s in starts]


def crop_offsets(height: int, width: int, crops: int) -> list[tuple[int, int]]:
    """(top, left) of each 224 crop."""
    top, left = (height - CROP) // 2, (width - CROP) // 2
    if crops == 1:
        return [(top, left)]
    if width >= height:
        return [(top, 0), (top, left), (top, width - CROP)]
    return [(0, left), (top, left), (height - CROP, left)]


def video_views(frames: np.ndarray, protocol: EvaluationProtocol) -> Iterator[np.ndarray]:
    """Every (clip, crop) view of a (T, H, W, 3) uint8 video, as float [-1, 1] clips of at least 9 frames."""
    height, width = frames.shape[1:3]
    for start, length in clip_starts(len(frames), protocol):
        clip = frames[start : start + length]
        for top, left in crop_offsets(height, width, protocol.crops):
            yield loop_pad(to_unit_range(clip[:, top : top + CROP, left : left + CROP]), MIN_FRAMES)


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    label: int
    start_s: float | None = None
    end_s: float | None = None


def read_list(path: Path, labels: Sequence[str]) -> list[LabelledVideo]:
    """The labelled videos of a list (``i3d.lists`` format), labels as class names or indices."""
    rows = read_rows(path)
    return [LabelledVideo(row.path, index, row.start_s, row.end_s)
            for row, index in zip(rows, label_indices(path, rows, labels))]


@dataclass
class EvaluationReport:
    list_file: str
    protocol: dict
    weights: dict
    precision: str = "fp32"
    runtime: str = "torch"
    compute: dict = field(default_factory=dict)  # the device, and whether TF32 was allowed there
    videos: int = 0
    evaluated: int = 0
    failed: int = 0
    top1: float | None = None
    top5: float | None = None
    mean_class_accuracy: float | None = None
    per_class: dict = field(default_factory=dict)
    most_confused: list = field(default_factory=list)
    predictions: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    # Rows naming a file and span an earlier row names (a path twice, or links to one file): each row is
    # counted, as the list asks; the video is computed once.
    shared_rows: int = 0
    software: dict = field(default_factory=software_versions)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        if not self.evaluated:
            if not self.failures:
                return "no video could be evaluated"
            cause = likely_cause(Path(self.list), [Path(f["path"]) for f in self.failures])
            return one_line(f"{self.list}: no video of the list could be evaluated ({self.failed} failed); {cause}")
        line = (f"top-1 {100 * self.top1:.2f}%  top-5 {100 * self.top5:.2f}%  "
                f"mean class accuracy {100 * self.mean_class_accuracy:.2f}%  ({self.evaluated} videos")
        if self.shared_rows:
            line += f", {self.shared_rows} of them rows naming a video an earlier row names, each counted"
        return line + (f", {self.failed} failed and excluded)" if self.failed else ")")


def summarise(report: EvaluationReport, labels: Sequence[str], confused: int = 10) -> None:
    """Fill the accuracy fields from ``report.predictions``."""
    rows = report.predictions
    report.evaluated, report.failed = len(rows), len(report.failures)
    report.videos = report.evaluated + report.failed
    if not rows:
        return
    report.top1 = sum(r["top5"][0] == r["label"] for r in rows) / len(rows)
    report.top5 = sum(r["label"] in r["top5"] for r in rows) / len(rows)
    seen, right = Counter(r["label"] for r in rows), Counter(r["label"] for r in rows if r["top5"][0] == r["label"])
    report.per_class = {label: {"videos": n, "correct": right[label], "accuracy": right[label] / n}
                        for label, n in sorted(seen.items(), key=lambda item: labels.index(item[0]))}
    report.mean_class_accuracy = float(np.mean([c["accuracy"] for c in report.per_class.values()]))
    pairs = Counter((r["label"], r["top5"][0]) for r in rows if r["top5"][0] != r["label"])
    report.most_confused = [{"label": a, "predicted": b, "videos": n} for (a, b), n in pairs.most_common(confused)]


def evaluate(
    list_file: Path,
    protocol: EvaluationProtocol | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    precision: str = "fp32",
    runtime: str = "auto",
    progress: Callable[[Iterator[LabelledVideo], int], Iterator[LabelledVideo]] | None = None,
    batch_size: int | None = None,
) -> EvaluationReport:
    """Evaluate every listed video; one that cannot be read is recorded in ``failures`` and excluded."""
    protocol = protocol or EvaluationProtocol()
    classifier = Classifier(weights, device, precision=precision, runtime=runtime, batch_size=batch_size)
    labels = classifier.labels
    videos = read_list(list_file, labels)
    record = classifier.weights["rgb"]
    report = EvaluationReport(str(list_file), asdict(protocol), {"name": record.name, "file": str(record.path),
                                                                 "sha256": record.sha256},
                              classifier.precision, classifier.runtime, compute_record(classifier.device))
    iterator: Iterator[LabelledVideo] = iter(videos)
    if progress is not None:
        iterator = progress(iterator, len(videos))
    computed: dict[tuple, tuple[np.ndarray, int, int] | I3DError] = {}  # per file and span: (mean, views, frames)
    for video in iterator:
        key = (_same_file(video.path), video.start_s, video.end_s)
        if key in computed:
            report.shared_rows += 1
        else:
            computed[key] = _video_scores(video, classifier, protocol)
        outcome = computed[key]
        if isinstance(outcome, I3DError):
            report.failures.append({"path": str(video.path), "error": str(outcome)})
            continue
        mean, views, frame_count = outcome
        top5 = [labels[i] for i in np.argsort(-mean, kind="stable")[:5]]
        report.predictions.append({"path": str(video.path), "start_s": video.start_s, "end_s": video.end_s,
                                   "label": labels[video.label], "top5": top5,
                                   "score": float(mean.max()), "views": views, "frames": frame_count})
    summarise(report, labels)
    return report


def _same_file(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # a link loop: its own name, which fails as such
        return path.absolute()


def _video_scores(video: LabelledVideo, classifier: Classifier, protocol: EvaluationProtocol
                  ) -> tuple[np.ndarray, int, int] | I3DError:
    """The mean of the views' scores, the number of views and of frames; or why the video cannot be read."""
    recipe = classifier.weights["rgb"].preprocessing  # the ResNet-50 family: its own rate and frame stride
    try:
        decoded = list(rgb_resized_frames(video.path, video.start_s, video.end_s, fps=recipe.fps,
                                          short_side=recipe.short_side))[:: recipe.frame_stride]
        if not decoded:
            raise I3DError("no frames in the requested span")
        frames = np.stack(decoded)
    except I3DError as error:
        return error
    scores = [logits.astype(np.float64) for _, logits in classifier.batched_logits(video_views(frames, protocol))]
    if protocol.average == "softmax":
        scores = [torch.softmax(torch.from_numpy(s), 0).numpy() for s in scores]
    return np.mean(scores, axis=0), len(scores), len(frames)
