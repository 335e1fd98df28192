"""Devices named by users: checked once, with one line saying what is wrong and what to use instead."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import numpy as np

from i3d.errors import I3DError


def parse_device(device: str | torch.device) -> torch.device:
    """``auto`` (CUDA where available: under torchrun the process's own GPU), ``cpu``, ``cuda``, ``cuda:N``,
    ``mps``...: refused if PyTorch does not know it or this machine lacks it."""
    if str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local_rank = os.environ.get("LOCAL_RANK")
        return torch.device("cuda", int(local_rank) % torch.cuda.device_count() if local_rank else
                            torch.cuda.current_device())
    if isinstance(device, torch.device):
        parsed = device
    else:
        try:
            parsed = torch.device(str(device))
        except RuntimeError:
            raise I3DError(f"--device {device}: not a device PyTorch knows (cpu, cuda, cuda:N, mps)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise I3DError(f"--device {device}: this machine has no CUDA device PyTorch can use "
                           f"(torch {torch.__version__}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise I3DError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices "
                           f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise I3DError(f"--device {device}: Apple's MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps", "xpu", "meta"):
        raise I3DError(f"--device {device}: this build of PyTorch cannot run I3D on {parsed.type}; use cpu or cuda")
    return parsed


PRECISIONS = ("fp32", "bf16", "fp16", "int8")


# oneDNN's instruction-set names (ONEDNN_MAX_CPU_ISA), lowest first, with the CPU flags each one adds.
ONEDNN_ISA_FLAGS = (("SSE41", ("sse4_1",)), ("AVX", ("avx",)), ("AVX2", ("avx2",)), ("AVX2_VNNI", ("avx_vnni",)),
                    ("AVX2_VNNI_2", ("avx_vnni_int8", "avx_ne_convert")), ("AVX512_CORE", ("avx512",)),
                    ("AVX512_CORE_VNNI", ("avx512_vnni",)), ("AVX512_CORE_BF16", ("avx512_bf16",)),
                    ("AVX10_1_512", ("avx512_fp16",)), ("AVX10_1_512_AMX", ("amx",)),
                    ("AVX10_1_512_AMX_FP16", ("amx_fp16",)))
ONEDNN_ISA_ALIASES = {"AVX512_CORE_FP16": "AVX10_1_512", "AVX512_CORE_AMX": "AVX10_1_512_AMX",
                      "AVX512_CORE_AMX_FP16": "AVX10_1_512_AMX_FP16"}


def read_cpuinfo(cpuinfo: str = "/proc/cpuinfo") -> tuple[str | None, set[str]]:
    """The CPU's model name and feature flags as Linux reports them (None and empty elsewhere): the one place
    the CPU is read."""
    model, flags = None, set()
    try:
        with open(cpuinfo) as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                if model is not None and flags:
                    break
    except OSError:
        pass
    return model, flags


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty where Linux does not report them: then only fp32 is offered on CPU), less
    those above the instruction set oneDNN is capped at (``ONEDNN_MAX_CPU_ISA`` or ``DNNL_MAX_CPU_ISA``,
    which PyTorch's and OpenVINO's CPU kernels both obey): capped at AVX2, this CPU is an AVX2 CPU to them."""
    flags = read_cpuinfo(cpuinfo)[1]
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    names = [name for name, _ in ONEDNN_ISA_FLAGS]
    cap = ONEDNN_ISA_ALIASES.get(cap, cap)
    if cap not in names:
        return flags
    above = [prefix for _, prefixes in ONEDNN_ISA_FLAGS[names.index(cap) + 1 :] for prefix in prefixes]
    return {flag for flag in flags if not any(flag.startswith(prefix) for prefix in above)}


def check_precision(precision: str, device: str | torch.device = "cpu") -> None:
    """Refuse, in one line and before any work, a precision the device cannot run usefully: bf16 needs a
    CPU with native bf16 (AVX512_BF16 or AMX) or a CUDA GPU of compute capability 8.0 or more (emulated bf16
    on older GPUs is slower than fp32); fp16 is for CUDA (CPUs have no fast fp16 convolutions); int8 runs
    on CPU through OpenVINO with NNCF (``pip install 'i3d[int8]'``), on any x86 CPU (faster than fp32 even on
    AVX2 alone: 0.93 against 1.60 s a clip, capped at AVX2 here)."""
    if precision not in PRECISIONS:
        raise I3DError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = parse_device(device)
    if precision == "fp32":
        return
    if device.type == "cuda":
        if precision == "int8":
            raise I3DError("--precision int8 runs on CPU (OpenVINO); on a GPU use fp16 or bf16")
        if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise I3DError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no native bf16 (compute "
                           "capability 8.0 or more); use fp16")
        return
    if device.type != "cpu":
        raise I3DError(f"--precision {precision} is offered on CPU and CUDA, not {device.type}; use fp32")
    if precision == "fp16":
        raise I3DError("--precision fp16 is for CUDA GPUs: CPUs have no fast fp16 convolutions; use bf16 (on a CPU "
                       "with native bf16) or fp32")
    if precision == "bf16" and not {"avx512_bf16", "amx_bf16"} & cpu_flags():
        raise I3DError("--precision bf16: this CPU has no native bf16 (AVX512_BF16 or AMX), where it would be "
                       "slower than fp32; use fp32")
    if precision == "int8":
        import importlib.util

        if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None:
            raise I3DError("--precision int8 quantises with NNCF: pip install 'i3d[int8]'")


def tf32_allowed() -> bool:
    return os.environ.get("I3D_ALLOW_TF32", "") in ("1", "true", "yes")


@contextlib.contextmanager
def exact_cuda_math(device: torch.device) -> Iterator[None]:
    """TF32 off for the cuDNN convolutions and CUDA matmuls of this block, as it was after it: TF32 moves
    features and FVD by about 1e-3 relative on Ampere and newer, past the 1e-4 this project promises.
    ``I3D_ALLOW_TF32=1`` allows it. The inference forms run every call under it, so no process-wide switch
    is left set for the user's own code."""
    if device.type != "cuda" or tf32_allowed():
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def compute_record(device: str | torch.device) -> dict:
    """Where a reported number was computed, for its report: the device, and whether TF32 was allowed there
    (only CUDA has it; allowed, it moves values by about 1e-3 relative)."""
    return {"device": str(device), "tf32_allowed": str(device) != "cpu" and tf32_allowed()}


def all_reduce_sum(values: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """The sum of ``values`` over the processes of the default group (itself alone when there is none),
    reduced where the group's backend can: NCCL only reduces CUDA tensors, on ``device`` where it is a GPU,
    else on this process's own GPU under torchrun (LOCAL_RANK; a script that never called ``set_device``
    would otherwise put every rank on cuda:0), gloo CPU ones. The dtype is kept; the result is on the CPU."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    if dist.get_backend() == "nccl":
        if device is None or device.type != "cuda":
            local_rank = os.environ.get("LOCAL_RANK")
            device = torch.device("cuda", int(local_rank) % torch.cuda.device_count() if local_rank is not None
                                  else torch.cuda.current_device())
        on_device = values.to(device)
        dist.all_reduce(on_device)
        return on_device.cpu()
    values = values.clone()
    dist.all_reduce(values)
    return values


CUDA_CLIPS_PER_CALL = 4  # a 250-frame 224x224 clip's first activation is 0.4 GB in fp32: 4 fit any 8 GB GPU


def decodes_ahead(device: torch.device) -> bool:
    """Whether decoding, where it shares the network's process, runs in a thread ahead of it: on CUDA, where
    the GPU would otherwise wait for every batch; not on a CPU, whose network takes every core (a decoding
    thread would only compete with it)."""
    return device.type == "cuda"


def clips_per_call(device: torch.device, requested: int | None = None) -> int:
    """How many clips of a video go through the network together: ``requested``, else 4 on CUDA (one clip
    leaves a GPU mostly idle) and 1 elsewhere (two CPU cores gain nothing from a batch, which only holds
    more memory)."""
    if requested is None:
        return CUDA_CLIPS_PER_CALL if device.type == "cuda" else 1
    if requested < 1:
        raise I3DError(f"the batch size must be at least 1, not {requested}")
    return requested


def stack_on(device: torch.device, arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """``np.stack(arrays)`` on ``device``. For CUDA the arrays are stacked straight into pinned memory and
    copied without blocking the host, so the next batch is prepared while this one uploads; uint8 frames
    travel as uint8 (a quarter of float32's bytes) and become floats on the device (``network_input``)."""
    import numpy as np

    if device.type != "cuda":
        return torch.from_numpy(np.stack(arrays))
    first = arrays[0]
    pinned = torch.empty((len(arrays), *first.shape), dtype=torch.from_numpy(first[:0]).dtype, pin_memory=True)
    np.stack(arrays, out=pinned.numpy())
    return pinned.to(device, non_blocking=True)


def network_input(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, T, H, W, C) as the network takes them: float32 (N, C, T, H, W), contiguous, where the frames
    are. uint8 becomes [-1, 1] by ``to_unit_range``'s arithmetic (float32 division, then subtraction: the
    same values bit for bit on CPU and CUDA) in one converting copy and two in-place passes, a third of the
    time of float(), /, - and a contiguous copy, each of which allocates the whole batch again."""
    batch, frames_, height, width, channels = frames.shape
    out = torch.empty((batch, channels, frames_, height, width), dtype=torch.float32, device=frames.device)
    out.copy_(frames.permute(0, 4, 1, 2, 3))
    return out.div_(127.5).sub_(1.0) if frames.dtype == torch.uint8 else out
