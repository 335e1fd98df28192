"""The training loop: one entry point for a single process and for ``torchrun`` (DistributedDataParallel).

The samples form one endless stream: position ``j`` is item ``permutation(seed, epoch)[j % N]`` of epoch
``j // N``. Optimiser step ``s`` takes positions ``s * B * A * W`` onwards (B clips per pass, A passes
accumulated, W processes), process ``r`` the B after every ``r``-th. Which clips a step sees therefore
depends on nothing but the step, so a resumed run continues exactly, and W processes with A = 1 see what
one process with A = W sees.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from i3d.devices import all_reduce_sum, network_input, parse_device
from i3d.errors import I3DError
from i3d.factory import create_model
from i3d.files import atomic_path, atomic_write_text, check_folder_writable
from i3d.lists import likely_cause, read_classes_file
from i3d.networks.inception import BatchNormNoScale, InceptionI3d
from i3d.train.config import TrainConfig, lr_at, lr_schedule
from i3d.train.data import (
    ClipDataset,
    ClipSpec,
    LabelledSet,
    LabelledVideo,
    read_labelled_set,
    span_frames,
    split_validation,
)
from i3d.train.objectives import charades_loss, mean_average_precision, top_k_correct
from i3d.video.inputs import rgb_resized_frames
from i3d.weights.store import save_weights

METRICS = ["step", "epoch", "lr", "loss", "clips_per_s", "val_loss", "val_top1", "val_top5", "val_map"]


@dataclass
class Process:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def wants_cuda(device: str) -> bool:
    """Whether a run asked to run on ``device`` (auto, cpu, cuda, cuda:N) runs on a GPU of this machine."""
    return torch.cuda.is_available() and (device == "auto" or parse_device(device).type == "cuda")


def start_process_group(device: str = "auto") -> Process:
    """torchrun's environment -> a process group: NCCL when the run is on GPUs, gloo when it is on CPUs (also on
    a machine that has GPUs: NCCL cannot reduce CPU tensors); a plain run is one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Process()
    on_gpu = wants_cuda(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_gpu:  # before the group: NCCL binds each rank to its current device
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), local_rank)


class SampleStream(torch.utils.data.Dataset):
    """Position j of the endless, epoch-by-epoch shuffled stream of training clips."""

    def __init__(self, clips: ClipDataset, seed: int) -> None:
        self.clips, self.seed = clips, seed
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2**62

    def locate(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, len(self.clips))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.clips)))
        return epoch, int(self._order[1][offset])

    def __getitem__(self, position: int):
        epoch, index = self.locate(position)
        return self.clips.item(index, epoch)


def stream_positions(first_step: int, steps: int, batch: int, accumulate: int, process: Process) -> Iterator[int]:
    for step in range(first_step, steps):
        for micro in range(accumulate):
            start = ((step * accumulate + micro) * process.world + process.rank) * batch
            yield from range(start, start + batch)


def build_network(config: TrainConfig, classes: list[str]) -> tuple[InceptionI3d, str]:
    """The starting weights with a new classifier for ``classes`` (kept if the classes are the same); the new
    classifier comes from the run's seed, so it is the same in every process and every run."""
    weights = config.weights if config.stream == "rgb" else config.flow_weights
    model = create_model(weights, stream=config.stream, classes=classes, seed=config.seed, dropout=config.dropout)
    return model, model.weights.name


class TemporalLogits(torch.nn.Module):
    """The network answering per time step, as its forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: InceptionI3d) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model.temporal_logits(clips)


def frozen_modules(model: InceptionI3d, config: TrainConfig) -> list[torch.nn.Module]:
    """The modules whose parameters and BatchNorm statistics stay as loaded."""
    frozen = []
    if config.freeze_until is not None:
        if config.freeze_until not in model.endpoints:
            raise I3DError(f"--freeze-until {config.freeze_until} is not an endpoint of this network: "
                           f"{', '.join(model.endpoints[:-1])}")
        names = model.endpoints[: model.endpoints.index(config.freeze_until) + 1]
        frozen += [getattr(model, n) for n in names if hasattr(model, n)]
    if config.freeze_bn:
        frozen += [m for m in model.modules() if isinstance(m, (BatchNormNoScale, torch.nn.BatchNorm3d))]
    return frozen


def set_train_mode(model: torch.nn.Module, frozen: list[torch.nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()


def pick_device(config: TrainConfig, process: Process) -> torch.device:
    """The run's device; with several processes on GPUs, each rank its own (local rank modulo the GPUs, as
    ``start_process_group`` binds it)."""
    if not wants_cuda(config.device):
        return parse_device(config.device if config.device != "auto" else "cpu")
    device = parse_device(config.device if config.device != "auto" else "cuda")
    if device.index is None or process.world > 1:
        device = torch.device(f"cuda:{process.local_rank % torch.cuda.device_count()}")
    return device


class MetricsLog:
    """metrics.csv (truncated to the resumed step, so a killed run's extra rows go) and TensorBoard."""

    def __init__(self, outdir: Path, resumed_step: int) -> None:
        self.path = outdir / "metrics.csv"
        kept = []
        if resumed_step and self.path.is_file():
            with open(self.path, newline="") as file:
                kept = [row for row in csv.DictReader(file) if int(row["step"]) <= resumed_step]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, METRICS)
            writer.writeheader()
            writer.writerows(kept)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(outdir / "tensorboard"), purge_step=resumed_step or None)
        except ImportError:  # tensorboard is the optional extra i3d[train]
            self.board = None

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, METRICS).writerow({k: ("" if v is None else v) for k, v in row.items()})
        if self.board is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and value is not None:
                    self.board.add_scalar(key, value, row["step"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def random_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The generators a run draws from: the CPU's, and its GPU's where it runs on one (dropout on CUDA draws
    from the GPU's generator)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict[str, torch.Tensor] | torch.Tensor, device: torch.device) -> None:
    if isinstance(state, torch.Tensor):  # a checkpoint of a CPU run holds the CPU's state alone
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _rng_states(process: Process, device: torch.device) -> list[dict[str, torch.Tensor]]:
    state = random_state(device)
    if process.world == 1:
        return [state]
    gathered: list = [None] * process.world
    dist.all_gather_object(gathered, {k: v.cpu() for k, v in state.items()})
    return gathered


def save_checkpoint(path: Path, model, optimizer, scaler, step: int, config: TrainConfig, classes, rng) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "config": config.to_json(), "classes": classes, "rng": rng,
             "scaler": scaler.state_dict() if scaler is not None else None}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    try:  # weights_only: a checkpoint is tensors, numbers and strings; nothing is ever unpickled beyond that
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise I3DError(f"{path}: not a readable training checkpoint ({error})") from None


def _data(config: TrainConfig, say: Callable[[str], None]) -> tuple[LabelledSet, list, list]:
    classes = read_classes_file(Path(config.classes_file)) if config.classes_file else None
    videos_dir = Path(config.videos_dir) if config.videos_dir else None
    labelled = read_labelled_set(Path(config.train), videos_dir, classes)
    train_videos, val_videos = labelled.videos, []
    if config.val:
        val_videos = read_labelled_set(Path(config.val), videos_dir, labelled.classes).videos
    elif config.val_ratio:
        train_videos, val_videos = split_validation(labelled.videos, config.val_ratio, config.seed)
    val_list = Path(config.val) if config.val else Path(config.train)
    return labelled, _readable(train_videos, say, Path(config.train)), _readable(val_videos, say, val_list)


MAX_BAD_SHARE = 0.5  # more unreadable videos than this, and the list itself is likely wrong


def _readable(videos: list, say: Callable[[str], None], source: Path) -> list[tuple[LabelledVideo, int]]:
    """The videos that open and decode a frame, with their frame counts (so no clip opens a file again to
    count); the others are reported once and left out (a data-loading worker never meets them), unless so
    many are bad that the list itself is in doubt: then the error names the list and the likely cause."""
    kept, bad = [], []
    for video in videos:
        try:
            frames = span_frames(video)
            first = rgb_resized_frames(video.path, video.start_s, video.end_s)
            if next(first, None) is None:
                raise I3DError(f"{video.path}: no frame could be decoded")
            first.close()
            kept.append((video, frames))
        except I3DError as error:
            bad.append((video, str(error)))
            say(f"left out: {error}")
    if videos and len(bad) > MAX_BAD_SHARE * len(videos):
        video, error = bad[0]
        where = f"{source}:{video.line}" if video.line else str(source)
        raise I3DError(f"{where}: {len(bad)} of {len(videos)} videos of the list cannot be used; "
                       f"{likely_cause(source, [v.path for v, _ in bad])} (first: {error})")
    return kept


def clip_dataset(labelled: LabelledSet, readable: list, spec: ClipSpec, train: bool, seed: int = 0) -> ClipDataset:
    return ClipDataset(labelled, [video for video, _ in readable], spec, train, seed, [n for _, n in readable])


@torch.no_grad()
def validate(model, loader, multi_label: bool, device, autocast, process: Process | None = None) -> dict:
    """Validation metrics over every process's share of the clips (each process runs its own share, so none
    waits on another; sums and mAP's scores are then combined), the same on every process."""
    model.eval()
    loss_sum, count, top1, top5, scores, positives = 0.0, 0, 0, 0, [], []
    for clips, targets, _ in loader:
        clips, targets = network_input(clips.to(device, non_blocking=True)), targets.to(device, non_blocking=True)
        with autocast():
            if multi_label:
                temporal = model.temporal_logits(clips).float()
                loss = charades_loss(temporal, targets)
                scores.append(temporal.amax(dim=2).cpu().numpy())
                positives.append(targets.amax(dim=2).cpu().numpy())
            else:
                logits = model(clips).float()
                loss = F.cross_entropy(logits, targets)
                top1 += top_k_correct(logits, targets, 1)
                top5 += top_k_correct(logits, targets, 5)
        loss_sum += float(loss) * len(clips)
        count += len(clips)
    if process is not None and process.world > 1:
        loss_sum, count, top1, top5 = all_reduce_sum(torch.tensor([loss_sum, count, top1, top5],
                                                                  dtype=torch.float64)).tolist()
        if multi_label:
            shares: list = [None] * process.world
            dist.all_gather_object(shares, (scores, positives))
            scores, positives = [a for share in shares for a in share[0]], [a for share in shares for a in share[1]]
    if count == 0:
        return {}
    if multi_label:
        return {"val_loss": loss_sum / count, "val_map": mean_average_precision(np.concatenate(scores),
                                                                             np.concatenate(positives))}
    return {"val_loss": loss_sum / count, "val_top1": top1 / count, "val_top5": top5 / count}


@dataclass
class TrainResult:
    steps: int
    final_weights: Path
    metrics: Path
    last_validation: dict


def train(config: TrainConfig, resume: bool = False, say: Callable[[str], None] = print) -> list[TrainResult]:
    """Fine-tune (or train) the stream, or both streams one after the other, as the reference trained them.

    With ``stream: joint`` the runs go to ``output/rgb`` and ``output/flow``; ``--resume`` resumes whichever
    is unfinished and skips a finished one.
    """
    if config.stream != "joint":
        return [train_stream(config, resume, say)]
    results = []
    for stream in ("rgb", "flow"):
        single = dataclasses.replace(config, stream=stream, output=str(Path(config.output) / stream))
        finished = (Path(single.output) / "model.safetensors").is_file()
        if resume and finished:
            say(f"{stream} stream: finished earlier ({single.output})")
            continue
        results.append(train_stream(single, resume and (Path(single.output) / "checkpoints" / "last.pt").is_file(),
                                    say))
    return results


@dataclass
class Run:
    """Everything one stream's training holds, set up once (``setup``), used by the parts below."""

    config: TrainConfig
    process: Process
    device: torch.device
    say: Callable[[str], None]
    labelled: LabelledSet
    train_videos: list
    val_videos: list
    model: InceptionI3d
    network: torch.nn.Module  # the model as stepped: per-time logits for multi-label, DDP across processes
    frozen: list[torch.nn.Module]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    origin: str
    first_step: int = 0

    @property
    def outdir(self) -> Path:
        return Path(self.config.output)

    @property
    def last_checkpoint(self) -> Path:
        return self.outdir / "checkpoints" / "last.pt"

    def autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()


def setup(config: TrainConfig, resume: bool, say: Callable[[str], None]) -> Run:
    """Process group, data, network, optimiser; the state of the last checkpoint when resuming."""
    process = start_process_group(config.device)
    say = say if process.main else (lambda message: None)
    if process.main:
        check_folder_writable(Path(config.output))
    device = pick_device(config, process)
    labelled, train_videos, val_videos = _data(config, say)
    if not train_videos:
        raise I3DError(f"{config.train}: no readable training videos")
    torch.manual_seed(config.seed + process.rank)  # dropout masks differ between processes, as batches do
    model, origin = build_network(config, labelled.classes)
    frozen = frozen_modules(model, config)
    for module in frozen:
        module.requires_grad_(False)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=lr_at(lr_schedule(config.schedule), 0), momentum=config.momentum,
                                weight_decay=config.weight_decay)
    if device.type == "cuda":  # fixed clip shapes: cuDNN's fastest algorithms are searched for once, then reused
        torch.backends.cudnn.benchmark = True
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = ((torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16)
                 if use_amp else None)  # emulated bf16 (T4, V100) is slower than fp16
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    network = TemporalLogits(model) if labelled.multi_label else model
    run = Run(config, process, device, say, labelled, train_videos, val_videos, model, network, frozen, optimizer,
              scaler, amp_dtype, origin)
    if resume:
        restore(run)
    elif run.last_checkpoint.exists():
        raise I3DError(f"{run.outdir} holds an earlier run; pass --resume to continue it or choose another output")
    if process.world > 1:
        run.network = torch.nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None)
    return run


def restore(run: Run) -> None:
    """Model, optimiser, loss scaler, step and random state of the last checkpoint."""
    if not run.last_checkpoint.is_file():
        raise I3DError(f"{run.last_checkpoint}: no checkpoint to resume from")
    state = load_checkpoint(run.last_checkpoint)
    if state["classes"] != run.labelled.classes:
        raise I3DError(f"{run.last_checkpoint}: trained for other classes than {run.config.train} has")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state["scaler"] is not None:
        run.scaler.load_state_dict(state["scaler"])
    run.first_step = int(state["step"])
    rng = state["rng"]
    set_random_state(rng[run.process.rank] if len(rng) == run.process.world else rng[0], run.device)
    run.say(f"resuming from step {run.first_step} ({run.last_checkpoint})")


def clip_spec(config: TrainConfig, device: torch.device) -> ClipSpec:
    """What every clip of the run is: frames, crop, stream, and how its flow is computed (on the run's device)."""
    return ClipSpec(config.clip_frames, config.crop, config.stream, config.flow_method, str(device),
                    config.raft_weights, config.raft_iterations)


def loaders(run: Run) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """The training stream from the run's first step, and the validation clips.

    The loaders draw their worker seeds from their own generators, not from the global one that drives
    dropout: otherwise creating an iterator, or validating, would shift every later mask.
    """
    config = run.config
    spec = clip_spec(config, run.device)
    stream = SampleStream(clip_dataset(run.labelled, run.train_videos, spec, train=True, seed=config.seed),
                          config.seed)
    options = loader_options(config, run.device)
    train_loader = torch.utils.data.DataLoader(
        stream, batch_size=config.batch_size,
        sampler=list(stream_positions(run.first_step, config.steps, config.batch_size, config.accumulate,
                                      run.process)),
        generator=torch.Generator().manual_seed(config.seed), **options)
    val_clips = clip_dataset(run.labelled, run.val_videos, spec, train=False)
    val_loader = torch.utils.data.DataLoader(val_clips, batch_size=config.batch_size,
                                             sampler=range(run.process.rank, len(val_clips), run.process.world),
                                             generator=torch.Generator().manual_seed(config.seed), **options)
    return train_loader, val_loader


def loader_options(config: TrainConfig, device: torch.device) -> dict:
    """Workers, their start method and pinning. Workers that compute flow on a GPU are spawned: a forked
    child of a process that has used CUDA cannot use it ("Cannot re-initialize CUDA in forked subprocess").
    Batches for a GPU come in pinned memory, so their copies to the device do not block the host."""
    options: dict = {"num_workers": config.workers, "pin_memory": device.type == "cuda"}
    if config.workers and config.stream == "flow" and device.type == "cuda":
        options["multiprocessing_context"] = "spawn"
    return options


def training_step(run: Run, batches: Iterator, lr: float) -> float:
    """One optimiser step over ``accumulate`` forward passes; the mean loss of its passes."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    accumulate, step_loss = run.config.accumulate, torch.zeros((), device=run.device)
    for micro in range(accumulate):
        clips, targets, _ = next(batches)
        clips = network_input(clips.to(run.device, non_blocking=True))
        targets = targets.to(run.device, non_blocking=True)
        last_micro = micro == accumulate - 1
        sync = nullcontext() if last_micro or run.process.world == 1 else run.network.no_sync()
        with sync:
            with run.autocast():
                outputs = run.network(clips).float()
                loss = charades_loss(outputs, targets) if run.labelled.multi_label else F.cross_entropy(
                    outputs, targets)
            scaled = loss / accumulate
            (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        step_loss += loss.detach() / accumulate  # on the device: the host waits once a step, not once a pass
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(step_loss)


def write_checkpoints(run: Run, done: int) -> None:
    """``last.pt`` at every checkpoint and at the end; ``step_NNNNNNN.pt`` kept at every checkpoint."""
    rng = _rng_states(run.process, run.device)
    if not run.process.main:
        return
    args = (run.model, run.optimizer, run.scaler, done, run.config, run.labelled.classes, rng)
    save_checkpoint(run.last_checkpoint, *args)
    if done % run.config.checkpoint_every == 0:
        save_checkpoint(run.last_checkpoint.parent / f"step_{done:07d}.pt", *args)


def write_start(run: Run) -> None:
    """The run's config and classes, and a line saying what is trained on what."""
    config, process = run.config, run.process
    run.outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.outdir / "config.json", config.to_json() + "\n")
    atomic_write_text(run.outdir / "classes.txt", "\n".join(run.labelled.classes) + "\n")
    run.say(f"{len(run.train_videos)} training and {len(run.val_videos)} validation videos, "
            f"{len(run.labelled.classes)} classes ({'multi-label' if run.labelled.multi_label else 'single-label'});"
            f" {config.stream} stream from {run.origin}; effective batch "
            f"{config.batch_size * config.accumulate * process.world} clips of {config.clip_frames} frames; "
            f"{config.steps} steps on {run.device}" + (f" x {process.world} processes" if process.world > 1 else ""))


def train_stream(config: TrainConfig, resume: bool = False, say: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune (or train) one stream; checkpoints, metrics and the final weights go to ``config.output``."""
    run = setup(config, resume, say)
    process, model = run.process, run.model
    train_loader, val_loader = loaders(run)
    schedule = lr_schedule(config.schedule)
    metrics = MetricsLog(run.outdir, run.first_step) if process.main else None

    def validation() -> dict:
        return validate(model, val_loader, run.labelled.multi_label, run.device, run.autocast, process)

    if process.main:
        write_start(run)
    if run.val_videos and config.eval_every and run.first_step == 0:  # where fine-tuning starts
        start = validation()
        if process.main:
            metrics.write({"step": 0, "epoch": 0, "lr": lr_at(schedule, 0),
                           **{k: round(v, 6) for k, v in start.items()}})
            say(" ".join(f"{k} {round(v, 6)}" for k, v in {"step": 0, **start}.items()))
    set_train_mode(model, run.frozen)
    batches = iter(train_loader)
    last_validation: dict = {}
    tic, clips_seen, losses = time.perf_counter(), 0, []
    for step in range(run.first_step, config.steps):
        lr = lr_at(schedule, step)
        step_loss = training_step(run, batches, lr)
        clips_seen += config.batch_size * config.accumulate
        done = step + 1
        if not math.isfinite(step_loss):  # nothing to gain from more steps; the last checkpoint stays intact
            raise I3DError(f"the loss became {step_loss} at step {done} (learning rate {lr}); lower the learning "
                           f"rate, or freeze more layers, and start again or resume from the last checkpoint")
        losses.append(step_loss)
        periodic = config.eval_every and done % config.eval_every == 0
        evaluate_now = bool(run.val_videos) and (done == config.steps or bool(periodic))
        if evaluate_now:
            last_validation = validation()
            set_train_mode(model, run.frozen)
        if done % config.log_every == 0 or done == config.steps or evaluate_now:
            mean_loss = _mean_over_processes(float(np.mean(losses)), process)
            rate = clips_seen * process.world / (time.perf_counter() - tic)
            if process.main:
                row = {"step": done, "epoch": round(done * config.batch_size * config.accumulate * process.world
                                                    / len(run.train_videos), 3),
                       "lr": lr, "loss": round(mean_loss, 6), "clips_per_s": round(rate, 3),
                       **({k: round(v, 6) for k, v in last_validation.items()} if evaluate_now else {})}
                metrics.write(row)
                say(" ".join(f"{k} {v}" for k, v in row.items()))
            tic, clips_seen, losses = time.perf_counter(), 0, []
        if done % config.checkpoint_every == 0 or done == config.steps:
            write_checkpoints(run, done)
    final = run.outdir / "model.safetensors"
    if process.main:
        save_weights(final, {k: v.detach().cpu() for k, v in model.state_dict().items()}, run.labelled.classes,
                     config.stream, getattr(model, "layout", None), name=run.outdir.name,
                     provenance=f"fine-tuned from {run.origin} by i3d train ({config.steps} steps)")
        metrics.close()
        say(f"weights written to {final} (use with --weights {final})")
    if process.world > 1:
        dist.barrier()
    return TrainResult(config.steps, final, run.outdir / "metrics.csv", last_validation)


def _mean_over_processes(value: float, process: Process) -> float:
    if process.world == 1:
        return value
    return float(all_reduce_sum(torch.tensor([value], dtype=torch.float64))) / process.world
