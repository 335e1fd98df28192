"""TV-L1's kernels compiled ahead of time, once per machine, loaded in milliseconds by every process.

``python -m i3d.video.flow.aot`` (run by the README's set-up) exports the iteration, the warp and the
median with dynamic sizes and builds each with AOTInductor into ``$I3D_HOME/kernels/<key>/``; the key
holds the torch version, the CPU's vector ISA and a hash of the kernels' source, so a cache built by
another torch, another CPU or other code is never loaded (a process then uses the plain kernels, exactly
the same numbers, and says so once). A folder that cannot be written leaves the plain kernels in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from i3d.download import cache_dir
from i3d.video.flow import tvl1_torch as kernels

NAMES = ("warp", "median", "step", "step_single")  # step_single: one pair (sizes of 1 are specialised)


def cache_key() -> str:
    """torch version, CPU capability and kernel source. The capability is ATen's (a lookup, where asking
    Inductor would import it and probe the compiler: 2 s of a 10-frame run)."""
    source = hashlib.sha256(Path(kernels.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()[:12]
    isa = torch.backends.cpu.get_cpu_capability().lower()
    return f"torch-{torch.__version__.replace('+', '_')}-{isa}-{source}"


# Inductor compiles for -march=native: kernels built on one CPU could then use instructions another CPU
# of the same ATen capability lacks (a shared home folder on a cluster, an image built elsewhere). They
# are built for the baseline of their capability instead, which every such CPU runs.
PORTABLE_MARCH = {"avx512": "x86-64-v4", "avx2": "x86-64-v3"}


def _portable_march() -> dict:
    march = PORTABLE_MARCH.get(torch.backends.cpu.get_cpu_capability().lower())
    return {"cpp.march": march} if march and platform.machine() in ("x86_64", "AMD64") else {}


def kernel_dir() -> Path:
    return cache_dir() / "kernels" / cache_key()


class _Warp(torch.nn.Module):
    def forward(self, i0, i1_padded, u1, u2, pair_rows):
        return tuple(kernels.warp_terms(i0, i1_padded, u1, u2, pair_rows))


class _Median(torch.nn.Module):
    def forward(self, padded):
        return kernels.median25(padded)


class _Step(torch.nn.Module):
    """The iteration with the default parameters folded in, as the compiled kernel specialises them."""

    def forward(self, u1, u2, p11, p12, p21, p22, rho_c, i1wx, i1wy, not_first_row, not_last_row):
        params = kernels.TVL1Params()
        return tuple(kernels.inner_step(u1, u2, p11, p12, p21, p22, rho_c, i1wx, i1wy, not_first_row, not_last_row,
                                        params.lam * params.theta, params.tau / params.theta, params.theta,
                                        params.epsilon))


def _examples(batch: int) -> dict:
    height, width = 128, 160
    rows = [torch.rand(batch * height, width) for _ in range(9)]
    return {
        "warp": (_Warp(), (rows[0], torch.rand(batch * (height + 8), width + 8), rows[1], rows[2],
                           torch.empty(height, 1))),
        "median": (_Median(), (torch.rand(batch * height, width),)),
        "step": (_Step(), (kernels.extended(rows[0]), kernels.extended(rows[1]), *rows[2:],
                           *kernels._row_masks(batch, height))),
    }


@contextlib.contextmanager
def _quiet(logger: str):
    level = logging.getLogger(logger).level
    logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger(logger).setLevel(level)


def build(quiet: bool = False) -> Path:
    """Export and compile every kernel into the cache (a few minutes on 2 cores); the folder it wrote."""
    target = kernel_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    options = kernels.kernel_options()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        for name in NAMES:
            start = time.perf_counter()
            module, args = _examples(1 if name == "step_single" else 2)[name.removesuffix("_single")]
            dims = tuple({i: torch.export.Dim.AUTO for i in range(a.dim())} for a in args)
            with torch.inference_mode(), warnings.catch_warnings(), _quiet("torch._export"):
                warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations, nothing to act on
                program = torch.export.export(module, args, dynamic_shapes=dims)  # "specialized": meant so
            configs = {**options.get(name.removesuffix("_single"), {}), **_portable_march()}
            torch._inductor.aoti_compile_and_package(program, package_path=str(Path(tmp) / f"{name}.pt2"),
                                                     inductor_configs=configs)
            if not quiet:
                print(f"built TV-L1 kernel {name} in {time.perf_counter() - start:.0f} s", flush=True)
        (Path(tmp) / "key.json").write_text(json.dumps({"key": cache_key()}) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        Path(tmp).rename(target)
        Path(tmp).mkdir()  # TemporaryDirectory removes it on exit
    for stale in target.parent.glob(f"{target.name.rsplit('-', 1)[0]}-*"):  # this torch and CPU, older code
        if stale != target and (stale / "key.json").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return target


_LOADED: dict[Path, dict] = {}  # one load per process: every FlowComputer (one per video) shares them


def _runner(package: Path):
    """The package's kernel, called on tensors, returning its list of tensors. The loader behind
    ``torch._inductor.aoti_load_package``, used directly: importing Inductor costs a second, and its
    wrapper re-parses the call spec at every call (thousands per video)."""
    loader = torch._C._aoti.AOTIModelPackageLoader(str(package), "model", False, 1, -1)
    return lambda *tensors: loader.boxed_run(list(tensors))


def load() -> dict | None:
    """The compiled kernels of this machine, or None when they were not built for it (or cannot load)."""
    folder = kernel_dir()
    if folder in _LOADED:
        return _LOADED[folder]
    try:
        if json.loads((folder / "key.json").read_text())["key"] != cache_key():
            return None
        loaded = {name: _runner(folder / f"{name}.pt2") for name in NAMES}
    except Exception:  # missing, partial, from another build: the plain kernels compute the same
        return None

    def step(*args):
        return loaded["step_single" if args[9].shape[0] == 1 else "step"](*args[:11])

    _LOADED[folder] = {"warp": loaded["warp"], "median": lambda padded: loaded["median"](padded)[0], "step": step}
    return _LOADED[folder]


if __name__ == "__main__":
    if "--if-missing" in sys.argv and load() is not None:
        sys.exit(0)
    if kernels._vector_bits() == 0 and "--force" not in sys.argv:
        print("no vector ISA Inductor knows here: TV-L1 keeps its plain kernels", file=sys.stderr)
        sys.exit(0)
    try:
        print(f"TV-L1 kernels in {build()}")
    except Exception as error:  # no compiler toolchain: the plain kernels still compute the same thing
        print(f"TV-L1 kernels could not be built ({type(error).__name__}: {str(error)[:200]}); "
              "flow uses the plain kernels", file=sys.stderr)
