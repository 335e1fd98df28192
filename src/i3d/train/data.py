"""Labelled videos for training, and the clips cut from them.

Three ways to say what is in the videos: a folder per class, a CSV ``path,label[,start_s,end_s]``, or a
Charades-style CSV (``id``, ``actions`` as ``class start end;...`` in seconds, ``length``) whose targets are
per frame. A training clip is a random run of ``clip_frames`` frames at 25 fps, a random ``crop`` square
of the 256-short-side frames and a coin-flip horizontal mirror (which negates the x component of flow);
a validation clip is the centred run and the centre crop. Every random choice comes from a generator
seeded by (seed, epoch, item), so a clip does not depend on which process or worker draws it, and a
resumed run sees exactly the clips an uninterrupted one would.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.lists import label_indices, read_list
from i3d.video.decode import TARGET_FPS, VIDEO_SUFFIXES, find_videos, image_files, pyav
from i3d.video.flow import FLOW_BOUND, FlowComputer
from i3d.video.inputs import rgb_resized_frames
from i3d.video.transforms import loop_pad


@dataclass(frozen=True)
class Action:
    label: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    label: int | None = None  # single-label
    actions: tuple[Action, ...] = ()  # multi-label, with time spans
    start_s: float | None = None
    end_s: float | None = None
    line: int = 0  # its row in the list file (0: found in class folders)


@dataclass(frozen=True)
class LabelledSet:
    videos: list[LabelledVideo]
    classes: list[str]
    multi_label: bool


def read_class_folders(folder: Path) -> LabelledSet:
    """``folder/<class>/<video>``: class names sorted, videos searched recursively within each class."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    videos = [LabelledVideo(path, index) for index, name in enumerate(classes)
              for path in find_videos(folder / name)]
    if not videos:
        raise I3DError(f"{folder}: no videos in class folders (expected {folder}/<class>/<video>)")
    return LabelledSet(videos, classes, multi_label=False)


def read_label_csv(path: Path, classes: list[str] | None = None) -> LabelledSet:
    """A ``path,label[,start_s,end_s]`` list (``i3d.lists``); the classes are the sorted labels seen unless given."""
    rows = read_list(path)
    classes = classes or sorted({row.label for row in rows})
    videos = [LabelledVideo(row.path, index, (), row.start_s, row.end_s, row.line)
              for row, index in zip(rows, label_indices(path, rows, classes))]
    return LabelledSet(videos, classes, multi_label=False)


def read_charades_csv(path: Path, videos_dir: Path, classes: list[str] | None = None) -> LabelledSet:
    """Charades' ``Charades_v1_train.csv`` layout: ``id``, ``actions`` (``c092 11.90 21.20;...``), ``length``.

    Videos are ``videos_dir/<id>.<any video suffix>``; classes are the sorted action codes seen unless given.
    """
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        if not reader.fieldnames or not {"id", "actions"} <= set(reader.fieldnames):
            raise I3DError(f"{path}: a Charades list needs `id` and `actions` columns")
        rows = list(reader)
    parsed = []
    for number, row in enumerate(rows, start=2):
        actions = []
        for item in filter(None, (part.strip() for part in (row["actions"] or "").split(";"))):
            try:
                code, start, end = item.split()
                actions.append((code, float(start), float(end)))
            except ValueError:
                raise I3DError(f"{path}:{number}: action {item!r} is not `class start end`") from None
        parsed.append((row["id"].strip(), actions))
    classes = classes or sorted({code for _, actions in parsed for code, _, _ in actions})
    index = {name: i for i, name in enumerate(classes)}
    videos = []
    for video_id, actions in parsed:
        unknown = [code for code, _, _ in actions if code not in index]
        if unknown:
            raise I3DError(f"{path}: video {video_id}: actions not among the classes: {', '.join(unknown)}")
        found = [p for p in sorted(videos_dir.glob(f"{video_id}.*")) if p.suffix.lower() in VIDEO_SUFFIXES]
        if not found:
            raise I3DError(f"{videos_dir}: no video for {video_id}")
        videos.append(LabelledVideo(found[0], None, tuple(Action(index[c], s, e) for c, s, e in actions)))
    if not videos:
        raise I3DError(f"{path}: lists no videos")
    return LabelledSet(videos, classes, multi_label=True)


def read_labelled_set(source: Path, videos_dir: Path | None = None, classes: list[str] | None = None) -> LabelledSet:
    if source.is_dir():
        return read_class_folders(source)
    if not source.is_file():
        raise I3DError(f"{source}: no such folder or list file")
    try:
        with open(source, newline="", encoding="utf-8-sig") as file:
            header = next(csv.reader(file), [])
    except UnicodeDecodeError:
        raise I3DError(f"{source}: not UTF-8 text; save the list as UTF-8 CSV") from None
    columns = [cell.strip() for cell in header]
    if "actions" in columns:
        return read_charades_csv(source, videos_dir or source.parent, classes)
    if "id" in columns and "label" not in columns:  # Charades' header without its labels: never video paths
        raise I3DError(f"{source}: a Charades list (its header has an `id` column) needs its `actions` column "
                       "(`class start end;...`); a plain list is `path,label[,start_s,end_s]`")
    return read_label_csv(source, classes)


def split_validation(videos: list[LabelledVideo], ratio: float, seed: int) -> tuple[list, list]:
    """A seeded split with about ``ratio`` of each class held out (at least one, where a class has two)."""
    if not 0 < ratio < 1:
        raise I3DError(f"val_ratio must be between 0 and 1, not {ratio}")
    rng = np.random.default_rng(seed)
    groups: dict[int | None, list[int]] = {}
    for i, video in enumerate(videos):
        groups.setdefault(video.label, []).append(i)
    held = set()
    for members in groups.values():
        count = min(len(members) - 1, max(1, round(ratio * len(members))))
        held.update(rng.permutation(members)[:count].tolist())
    return [v for i, v in enumerate(videos) if i not in held], [v for i, v in enumerate(videos) if i in held]


def span_frames(video: LabelledVideo) -> int:
    """Frames at 25 fps in the video's span, from the container's stated duration (decoding would cost more);
    a folder of frames is shown at 25 fps, one image each."""
    if video.path.is_dir():
        return _frames_in_span(video, len(image_files(video.path)) / TARGET_FPS)
    av = pyav()
    try:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = math.inf
    except (av.error.FFmpegError, OSError, IndexError) as error:
        raise I3DError(f"{video.path}: cannot open as a video ({error})") from None
    return _frames_in_span(video, duration)


def _frames_in_span(video: LabelledVideo, duration: float) -> int:
    end = duration if video.end_s is None else min(video.end_s, duration)
    return max(1, int((end - (video.start_s or 0.0)) * TARGET_FPS + 1e-6)) if math.isfinite(end) else 10**9


@dataclass(frozen=True)
class ClipSpec:
    clip_frames: int = 64
    crop: int = 224
    stream: str = "rgb"  # rgb or flow
    flow_method: str = "torch"
    flow_device: str = "cpu"  # where TV-L1 runs: the run's device (a CUDA one means spawned loader workers)
    raft_weights: str | None = None  # with flow_method raft: a name or a converted file (None: raft-sintel)
    raft_iterations: int | None = None  # None: 20


def choose_window(total: int, clip_frames: int, train: bool, rng: np.random.Generator) -> int:
    """The first frame of the clip: random for training, centred for validation."""
    slack = max(total - clip_frames, 0)
    return int(rng.integers(0, slack + 1)) if train else slack // 2


def crop_and_flip(clip: np.ndarray, crop: int, train: bool, rng: np.random.Generator, flow: bool) -> np.ndarray:
    """(T, H, W, C) -> (T, crop, crop, C): random square and coin-flip mirror for training, centre otherwise.

    Mirroring flow turns rightward motion leftward, so its x component changes sign.
    """
    height, width = clip.shape[1:3]
    if height < crop or width < crop:
        raise I3DError(f"frames of {height}x{width} are smaller than the {crop} crop")
    if train:
        top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    else:
        top, left = (height - crop) // 2, (width - crop) // 2
    clip = clip[:, top : top + crop, left : left + crop]
    if train and rng.random() < 0.5:
        clip = clip[:, :, ::-1]
        if flow:
            clip = clip * np.array([-1, 1], clip.dtype)
    return np.ascontiguousarray(clip)


def frame_targets(actions: tuple[Action, ...], first_s: float, frames: int, num_classes: int) -> np.ndarray:
    """(num_classes, frames) 0/1: frame k (shown at ``first_s + k / 25``) is in each action's [start, end]."""
    times = first_s + np.arange(frames) / TARGET_FPS
    targets = np.zeros((num_classes, frames), np.float32)
    for action in actions:
        targets[action.label, (times >= action.start_s) & (times <= action.end_s)] = 1
    return targets


class ClipDataset(torch.utils.data.Dataset):
    """``item(i, epoch)``: (clip (T, crop, crop, C), target, i); ``[i]`` is epoch 0's. RGB clips stay uint8
    (a quarter of float32's bytes through the loader's workers, pinning and upload) and become the network's
    [-1, 1] input on the device (``i3d.devices.network_input``, the same values bit for bit); flow is float32
    in [-1, 1].

    The target is the class index (single-label) or the (num_classes, T) per-frame 0/1 matrix.
    """

    def __init__(self, labelled: LabelledSet, videos: list[LabelledVideo], spec: ClipSpec, train: bool,
                 seed: int = 0, frames: list[int] | None = None) -> None:
        self.labelled, self.videos, self.spec, self.train, self.seed = labelled, videos, spec, train, seed
        self._frames: dict[int, int] = dict(enumerate(frames or []))  # frames of each video's span, as known
        self._flow: FlowComputer | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def _frames_rgb(self, video: LabelledVideo, first_s: float) -> np.ndarray:
        end_s = first_s + self.spec.clip_frames / TARGET_FPS
        if video.end_s is not None:
            end_s = min(end_s, video.end_s)
        frames = [f for _, f in zip(range(self.spec.clip_frames), rgb_resized_frames(video.path, first_s, end_s))]
        if not frames:
            raise I3DError(f"{video.path}: no frames at {first_s:.2f} s")
        return np.stack(frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.item(index, 0)

    def item(self, index: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        video = self.videos[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        if index not in self._frames:
            self._frames[index] = span_frames(video)
        first = choose_window(self._frames[index], self.spec.clip_frames, self.train, rng)
        first_s = (video.start_s or 0.0) + first / TARGET_FPS
        frames = self._frames_rgb(video, first_s)
        if self.spec.stream == "flow":
            if self._flow is None:
                raft = {"raft_weights": self.spec.raft_weights, "raft_iterations": self.spec.raft_iterations}
                self._flow = FlowComputer(self.spec.flow_method, self.spec.flow_device,
                                          **{k: v for k, v in raft.items() if v is not None})
            clip = np.stack(list(self._flow.fields(frames, FLOW_BOUND)))
        else:
            clip = frames
        decoded = len(clip)
        clip = crop_and_flip(loop_pad(clip, self.spec.clip_frames), self.spec.crop, self.train, rng,
                             flow=self.spec.stream == "flow")
        if self.labelled.multi_label:  # the targets of a loop-padded clip repeat as its frames do
            targets = frame_targets(video.actions, first_s, decoded, len(self.labelled.classes))
            target = torch.from_numpy(np.ascontiguousarray(loop_pad(targets.T, self.spec.clip_frames).T))
        else:
            target = torch.tensor(video.label)
        return torch.from_numpy(np.ascontiguousarray(clip)), target, index
