"""TV-L1's kernels compiled ahead of time, once per machine (``i3d.video.flow.built_kernels`` loads them).

``python -m i3d.video.flow.aot`` (run by the README's set-up) exports the iteration, the warp and the
median with dynamic sizes and builds each with AOTInductor into ``$I3D_HOME/kernels/<key>/``; the key
holds the torch version, the CPU's vector ISA and a hash of the kernels' source, so a cache built by
another torch, another CPU or other code is never loaded (a process then uses the plain kernels, exactly
the same numbers, and says so once). A folder that cannot be written leaves the plain kernels in use.
"""

from __future__ import annotations

import contextlib
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

from i3d.video.flow import tvl1_torch as kernels
from i3d.video.flow.built_kernels import NAMES, cache_key, kernel_dir, load

# Inductor compiles for -march=native: kernels built on one CPU could then use instructions another CPU
# of the same ATen capability lacks (a shared home folder on a cluster, an image built elsewhere). They
# are built for the baseline of their capability instead, which every such CPU runs.
PORTABLE_MARCH = {"avx512": "x86-64-v4", "avx2": "x86-64-v3"}


def _portable_march() -> dict:
    march = PORTABLE_MARCH.get(torch.backends.cpu.get_cpu_capability().lower())
    return {"cpp.march": march} if march and platform.machine() in ("x86_64", "AMD64") else {}


def kernel_options() -> dict[str, dict]:
    """Inductor options per kernel, for the ahead-of-time build and ``torch.compile`` alike.

    The warp's indices are clamped inside the padding, and gathered (no negative-index wrap-around):
    without a bounds check per load it runs 1.5x faster. The median's 113 comparators must stay one
    loop (by default Inductor would store intermediates), on AVX-512 in 8-wide vectors: its 25 live
    values then fit the registers better (12 % faster than 16-wide).
    """
    unlimited = 1 << 20
    options = {"warp": {"assert_indirect_indexing": False},
               "median": {"max_fusion_size": unlimited, "realize_opcount_threshold": unlimited,
                          "realize_reads_threshold": unlimited, "realize_acc_reads_threshold": unlimited}}
    if vector_bits() == 512:
        options["median"]["cpp.simdlen"] = 256
    return options


def vector_bits() -> int:
    """Width of the vectors Inductor compiles for on this CPU, 0 where unknown."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        return pick_vec_isa().bit_width()
    except Exception:  # a private module: its absence only costs the median's tuning
        return 0


def compile_kernels(device: str | torch.device = "cpu") -> dict | None:
    """The kernels compiled now with ``torch.compile`` for ``device``; None without a working compiler.

    On a CPU (90 s the first time on 2 cores, 12 s per process after) the reference the ahead-of-time build
    is tested against; on CUDA what TV-L1 runs (Triton kernels: Inductor keeps them on disk, so a later
    process compiles in seconds)."""
    device = torch.device(device)
    options = {name: {k: v for k, v in opts.items() if device.type == "cpu" or not k.startswith("cpp.")}
               for name, opts in kernel_options().items()}
    compiled = {name: torch.compile(kernel, dynamic=True, options=options.get(name))
                for name, kernel in kernels.EAGER_KERNELS.items()}
    params = kernels.TVL1Params()
    constants = params.lam * params.theta, params.tau / params.theta, params.theta, params.epsilon

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=device)

    try:  # compile now, as used, on small inputs: then one kernel serves every size
        with torch.inference_mode():
            for batch in (1, 2):  # separate tensors, as in use: views would add storage-offset guards
                rows = [rand(batch * 128, 160) for _ in range(9)]  # sizes hint whether to use threads
                if batch == 2:  # the warp and the median see one shape at every batch size
                    padded = rand(batch * (128 + 8), 160 + 8)
                    compiled["warp"](rows[0], padded, *rows[1:3], torch.empty(128, 1, device=device))
                    compiled["median"](rows[0])
                with torch._dynamo.config.patch(specialize_float=True):  # constants folded in, not boxed per call
                    compiled["step"](*map(kernels.extended, rows[:2]), *rows[2:],
                                     *kernels._row_masks(batch, 128, device), *constants)
    except Exception:  # no working compiler toolchain: the eager kernels compute the same thing
        return None
    return compiled


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
    options = kernel_options()
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


if __name__ == "__main__":
    if "--if-missing" in sys.argv and load() is not None:
        sys.exit(0)
    if vector_bits() == 0 and "--force" not in sys.argv:
        print("no vector ISA Inductor knows here: TV-L1 keeps its plain kernels", file=sys.stderr)
        sys.exit(0)
    try:
        print(f"TV-L1 kernels in {build(quiet='--quiet' in sys.argv)}")
    except Exception as error:  # no compiler toolchain: the plain kernels still compute the same thing
        print(f"TV-L1 kernels could not be built ({type(error).__name__}: {str(error)[:200]}); "
              "flow uses the plain kernels", file=sys.stderr)
