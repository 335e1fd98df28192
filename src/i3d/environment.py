"""What this installation is: versions, devices, CPU capabilities, the cache and what it holds, and which
optional extras each command would need. ``i3d doctor`` prints it; bug reports paste its ``--json``."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

from i3d.download import cache_dir

# What each command needs beyond the base install: (extra, distributions).
EXTRAS = {
    "export --format onnx": ("export", ["onnx", "onnxscript", "onnxruntime"]),
    "--precision int8, export --int8": ("int8", ["nncf"]),
    "bench (onnxruntime path)": ("export", ["onnxruntime"]),
    "features --engine ray": ("ray", ["ray"]),
    "serve": ("serve", ["fastapi", "uvicorn", "python-multipart"]),
    "train (TensorBoard logs)": ("train", ["tensorboard"]),
}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
             "avx_vnni")


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_info() -> dict[str, Any]:
    """The CPU's model and the vector extensions that decide speed: AVX-512, VNNI (int8), bf16, AMX, as the
    kernels see them (under an ONEDNN_MAX_CPU_ISA cap, the capped set)."""
    import torch

    from i3d.devices import cpu_flags, read_cpuinfo

    model, flags = read_cpuinfo()[0] or platform.processor() or platform.machine(), cpu_flags()
    return {"model": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "aten_capability": torch.backends.cpu.get_cpu_capability(),
            "flags": {flag: flag in flags for flag in CPU_FLAGS},
            "native_bf16": "avx512_bf16" in flags or "amx_bf16" in flags}


def devices() -> list[dict[str, Any]]:
    import torch

    found = [{"device": "cpu"}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            found.append({"device": f"cuda:{index}", "name": properties.name,
                          "capability": f"{properties.major}.{properties.minor}",
                          "memory_gib": round(properties.total_memory / 2**30, 1)})
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append({"device": "mps"})
    return found


def installed_weights() -> list[dict[str, Any]]:
    """Every registry entry on this machine, its size and whether its file still has the sha256 recorded
    when it was written (hashed now)."""
    import json

    from i3d.download import sha256_of
    from i3d.weights.registry import REGISTRY
    from i3d.weights.store import digest_path, installed_path

    rows = []
    for name in REGISTRY:
        path = installed_path(name)
        if not path.exists():
            continue
        row: dict[str, Any] = {"name": name, "path": str(path), "mib": round(path.stat().st_size / 2**20, 1)}
        try:
            row["sha256"] = sha256_of(path)
            recorded = json.loads(digest_path(path).read_text()).get("sha256") if digest_path(path).is_file() else None
            row["verified"] = ("no sha256 recorded" if recorded is None else "ok" if recorded == row["sha256"]
                               else f"DAMAGED: sha256 differs from {recorded}, recorded when it was written")
        except (OSError, ValueError, AttributeError) as error:
            row["verified"] = f"unreadable: {error}"
        rows.append(row)
    return rows


def kernels() -> dict[str, Any]:
    from i3d.video.flow import built_kernels

    folder = built_kernels.kernel_dir()
    failed = folder.with_name(folder.name + ".failed")
    others = sorted(p.name for p in folder.parent.glob("*") if p.is_dir() and p != folder) \
        if folder.parent.is_dir() else []
    state = "built" if built_kernels.load() is not None else ("build failed" if failed.exists() else "not built")
    return {"state": state, "folder": str(folder), "key": built_kernels.cache_key(), "other_builds": others}


def report() -> dict[str, Any]:
    import torch

    cache = cache_dir()
    cuda = torch.version.cuda
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    optional = {name: distribution_version(name) for name in
                ("openvino", "nncf", "onnxruntime", "onnx", "ray", "fastapi", "uvicorn", "tensorboard")}
    missing = {command: f"pip install 'i3d[{extra}]'" for command, (extra, names) in EXTRAS.items()
               if any(distribution_version(name) is None for name in names)}
    return {
        "i3d": distribution_version("i3d"), "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "cuda": cuda, "cudnn": cudnn, "optional": optional,
        "cpu": cpu_info(), "devices": devices(),
        "cache": {"folder": str(cache), "writable": os.access(cache if cache.exists() else cache.parent, os.W_OK),
                  "offline": os.environ.get("I3D_OFFLINE", "") not in ("", "0")},
        "weights": installed_weights(), "kernels": kernels(), "missing_extras": missing,
    }


def to_text(info: dict[str, Any]) -> str:
    cpu = info["cpu"]
    flags = ", ".join(flag for flag, present in cpu["flags"].items() if present) or "none of note"
    optional = ", ".join(f"{k} {v}" for k, v in info["optional"].items() if v) or "none"
    lines = [
        f"i3d {info['i3d']}, Python {info['python']}, torch {info['torch']} (CUDA {info['cuda'] or 'none'}, "
        f"cuDNN {info['cudnn'] or 'none'}), {info['platform']}",
        f"optional: {optional}",
        f"cpu: {cpu['model']}, {cpu['cores']} cores ({cpu['torch_threads']} torch threads), ATen "
        f"{cpu['aten_capability']}; {flags}; native bf16: {'yes' if cpu['native_bf16'] else 'no'}",
        "devices: " + ", ".join(d["device"] + (f" ({d['name']}, {d['memory_gib']} GiB)" if "name" in d else "")
                                for d in info["devices"]),
        f"cache: {info['cache']['folder']}" + ("" if info["cache"]["writable"] else " (NOT writable: set I3D_HOME)")
        + (" (offline: nothing is fetched on first use)" if info["cache"]["offline"] else ""),
    ]
    weights = info["weights"]
    lines.append("weights: " + ("none installed (fetched on first use)" if not weights else ""))
    lines += [f"  {w['name']}  {w['mib']} MiB  {w['verified']}" for w in weights]
    k = info["kernels"]
    lines.append(f"TV-L1 kernels: {k['state']} for {k['key']}" + (f" ({k['folder']})" if k["state"] == "built" else
                                                                 "; `i3d setup` builds them"))
    if info["missing_extras"]:
        lines.append("missing extras:")
        lines += [f"  {command}: {fix}" for command, fix in info["missing_extras"].items()]
    else:
        lines.append("missing extras: none")
    return "\n".join(lines)
