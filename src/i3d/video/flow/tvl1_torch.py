"""Dual TV-L1 optical flow (Zach, Pock & Bischof 2007) as OpenCV-contrib's ``DualTVL1OpticalFlow`` computes it,
in batched PyTorch tensor operations: many frame pairs at once, on CPU or unchanged on a GPU.

Same parameters, pyramid and numerical scheme as the reference: pyramid by bilinear resize with factor
0.8 (the resize's own pixel-centre convention); warping by bicubic remap (Keys a = -0.75 at the exact
coordinates, as OpenCV 5's remap does; OpenCV 4 rounded them to 1/32 pixel), zero outside the image;
a 5x5 median filter of the flow before every outer iteration; and the stopping rule (sum of squared
flow updates <= epsilon^2 * area) applied to each pair on its own. On a CPU converged pairs leave the
batch (less work at once); on an accelerator they stay in it, frozen by a mask, and the host asks whether
any pair is still running only every CHECK_EVERY iterations (a question is a device-to-host sync).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FLT_EPSILON = 1.1920929e-07
CPU_CHUNK_PIXELS = 1 << 18
CHECK_EVERY = 10  # masked iterations between two questions to the device


class HostChecks:
    """How many times the iteration has asked the device a yes/no question (each one waits for the device)."""

    count = 0

    @classmethod
    def ask(cls, answer: torch.Tensor) -> bool:
        cls.count += 1
        return bool(answer)


@dataclass(frozen=True)
class TVL1Params:
    tau: float = 0.25
    lam: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5


def _linear_axis(size_in: int, size_out: int, scale: float, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Taps and weights of OpenCV's INTER_LINEAR along one axis (half-pixel centres, clamped at the borders)."""
    x = (torch.arange(size_out, device=device, dtype=torch.float64) + 0.5) * scale - 0.5
    x0 = torch.floor(x)
    weight = (x - x0).float()
    x0 = x0.long()
    return x0.clamp(0, size_in - 1), (x0 + 1).clamp(0, size_in - 1), weight


def resize_linear(images: torch.Tensor, height: int, width: int, scale_y: float, scale_x: float) -> torch.Tensor:
    """(B, H, W) -> (B, height, width); ``scale`` maps output to input coordinates as OpenCV's resize does."""
    y0, y1, wy = _linear_axis(images.shape[1], height, scale_y, images.device)
    x0, x1, wx = _linear_axis(images.shape[2], width, scale_x, images.device)
    rows = images[:, y0] * (1 - wy)[:, None] + images[:, y1] * wy[:, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    a = -0.75  # Keys' kernel as OpenCV's INTER_CUBIC; a literal, so that a compiled kernel folds it in
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return [w0, w1, w2, 1 - w0 - w1 - w2]


def sample_with_gradient(padded: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor, pair: torch.Tensor,
                         height: int) -> list[torch.Tensor]:
    """Bicubic samples of an image and of its centred gradient, as OpenCV's remap of the image and of
    centeredGradient's output (central differences, one-sided halves on the borders), taps outside the
    image counting 0.

    Images come stacked as rows: ``padded`` holds each pair's image replicate-padded by 4, (B * (H + 8),
    W + 8); the point in stacked row r is (map_x, map_y) in image pair[r] (N, 1) of ``height`` rows. With
    the padding the gradient's differences are plain neighbours (the border ones replicate), and the 4x4
    window plus its neighbours is 32 loads from one origin instead of 48 gathers from three images. No
    batch dimension, so a compiled kernel serves every batch size.
    """
    width = map_x.shape[1]
    stride = width + 8
    floor_x, floor_y = torch.floor(map_x), torch.floor(map_y)
    ix, iy = floor_x.long(), floor_y.long()
    # A tap outside the image weighs 0: floor + k - 1 in [0, size) compared in floats, as floor(x) >= 1 - k.
    wx = [torch.where((floor_x >= 1 - k) & (floor_x < width + 1 - k), w, 0.0)
          for k, w in enumerate(_cubic_weights(map_x - floor_x))]
    wy = [torch.where((floor_y >= 1 - k) & (floor_y < height + 1 - k), w, 0.0)
          for k, w in enumerate(_cubic_weights(map_y - floor_y))]
    # Clamping the window keeps every load inside the padding; a window clamped is wholly outside, weight 0.
    origin = (pair * (height + 8) + iy.clamp(-2, height) + 4) * stride + ix.clamp(-2, width) + 4
    flat, loaded = padded.reshape(-1), {}

    def at(dy: int, dx: int) -> torch.Tensor:
        if (dy, dx) not in loaded:
            loaded[dy, dx] = flat.gather(0, (origin + (dy * stride + dx)).view(-1)).view(origin.shape)
        return loaded[dy, dx]

    value, grad_x, grad_y = [], [], []
    for j in range(4):
        for i in range(4):
            weight = wy[j] * wx[i]
            value.append(weight * at(j - 1, i - 1))
            grad_x.append(weight * (0.5 * (at(j - 1, i) - at(j - 1, i - 2))))
            grad_y.append(weight * (0.5 * (at(j, i - 1) - at(j - 2, i - 1))))
    return [sum(taps[1:], taps[0]) for taps in (value, grad_x, grad_y)]


def _batcher_network(size: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort of ``size`` (a power of two) values."""
    comparators, p = [], 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return comparators


def _median25_network() -> list[tuple[int, int]]:
    """The comparators that decide the 13th smallest of 25 values padded with 7 x +inf to 32.

    Working backwards from output 12 keeps only comparators it depends on; one that compares with a
    padded +inf (index >= 25) changes nothing and is dropped. Exact, elementwise min/max only.
    """
    needed, kept = {12}, []
    for a, b in reversed(_batcher_network(32)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed |= {a, b}
    # Batcher's comparators always put the minimum at the lower index, so a padded +inf never moves down.
    return [(a, b) for a, b in reversed(kept) if b < 25]


MEDIAN25 = _median25_network()


def median25(padded: torch.Tensor) -> torch.Tensor:
    """The 5x5 medians of (R + 4, W + 4) padded rows -> (R, W): 113 elementwise min/max of shifted views.

    Pairs' padded images come stacked as rows (the outputs straddling two of them are dropped after),
    so a compiled kernel sees one shape at every batch size and compiles once.
    """
    height, width = padded.shape[0] - 4, padded.shape[1] - 4
    values = [padded[dy : dy + height, dx : dx + width] for dy in range(5) for dx in range(5)]
    for a, b in MEDIAN25:
        values[a], values[b] = torch.minimum(values[a], values[b]), torch.maximum(values[a], values[b])
    return values[12]


def median_blur5(flow: torch.Tensor, median: Callable = median25) -> torch.Tensor:
    """5x5 median with replicated borders, as cv2.medianBlur on float images (exact).

    The border is padded first, so that the (compiled) network reads plain shifted rows it can vectorise.
    Returns a strided view: its one copy is left to the caller.
    """
    batch, height, width = flow.shape
    padded = F.pad(flow[:, None], (2, 2, 2, 2), mode="replicate").view(-1, width + 4)
    rows = median(padded)  # B * (H + 4) - 4 rows: each pair's H, then 4 straddling the next
    return rows.as_strided((batch, height, width), ((height + 4) * width, width, 1))


def divergence(p1: torch.Tensor, p2: torch.Tensor, not_first_row: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence; the dual field is taken as 0 before the first row and column."""
    return p1 - F.pad(p1[:, :-1], (1, 0)) + p2 - F.pad(p2[:-1], (0, 0, 1, 0)) * not_first_row


def inner_step(u1, u2, p11, p12, p21, p22, rho_c, i1wx, i1wy, not_first_row, not_last_row,
               l_t: float, taut: float, theta: float, epsilon: float):
    """One primal-dual iteration: thresholding (v), primal update (u), dual update (p), and for each pair
    whether it goes on (its squared update above epsilon^2 per pixel).

    The pairs' rows are stacked, (B * H, W), and the (B, H, 1) row masks keep differences from
    crossing from one pair to the next: every size then gets the same loop, parallel over rows.
    u1 and u2 come (and go) flat, extended by a row of zeros (see extended), so that the dual update
    reads the new u's neighbours right and below as plain loads: Inductor would repeat padded loads,
    and the square roots that use them, at every use (the iteration ran 1.5x slower). Written without
    in-place writes, so that a compiler fuses it; |grad I1w|^2 is recomputed rather than read.
    """
    batch, height, _ = not_first_row.shape
    not_first_row, not_last_row = not_first_row.view(-1, 1), not_last_row.view(-1, 1)
    width = p11.shape[1]
    size = p11.numel()
    u1, u2 = u1[:size].view(-1, width), u2[:size].view(-1, width)
    grad = i1wx * i1wx + i1wy * i1wy
    rho = rho_c + i1wx * u1 + i1wy * u2
    lt_grad = l_t * grad
    textured = grad > FLT_EPSILON
    step = torch.where(rho < -lt_grad, l_t, torch.where(
        rho > lt_grad, -l_t, torch.where(textured, -rho / torch.where(textured, grad, 1.0), 0.0)))
    new_u1 = u1 + step * i1wx + theta * divergence(p11, p12, not_first_row)
    new_u2 = u2 + step * i1wy + theta * divergence(p21, p22, not_first_row)
    error = ((new_u1 - u1) ** 2 + (new_u2 - u2) ** 2).sum(dim=1).view(batch, height).sum(dim=1)
    last_column = torch.arange(width, device=u1.device) == width - 1
    out, differences = [], []
    for new in (new_u1, new_u2):
        flat = extended(new)
        out.append(flat)
        new = flat[:size].view(-1, width)
        differences += [torch.where(last_column, 0.0, flat[1 : size + 1].view(-1, width) - new),
                        (flat[width : size + width].view(-1, width) - new) * not_last_row]
    u1x, u1y, u2x, u2y = differences
    ng1 = 1.0 + taut * torch.sqrt(u1x * u1x + u1y * u1y)  # OpenCV's hypot, to float rounding; far cheaper
    ng2 = 1.0 + taut * torch.sqrt(u2x * u2x + u2y * u2y)
    return (*out, (p11 + taut * u1x) / ng1, (p12 + taut * u1y) / ng1, (p21 + taut * u2x) / ng2,
            (p22 + taut * u2y) / ng2, error > epsilon * epsilon * height * width)


def extended(rows: torch.Tensor) -> torch.Tensor:
    """(N, W) -> flat (N * W + W,): the rows and then a row of zeros."""
    return torch.cat([rows.reshape(-1), rows.new_zeros(rows.shape[1])])


def warp_terms(i0, i1_padded, u1, u2, pair_rows) -> list[torch.Tensor]:
    """The second image and its gradient warped by the flow u, as the iteration uses them:
    rho_c = I1w - I1wx u1 - I1wy u2 - I0, I1wx and I1wy.

    Everything comes as stacked rows (B * H, W; the second images padded, see sample_with_gradient); the
    pairs' height comes as the length of pair_rows (any (H, 1) tensor), so that a compiled kernel treats
    it as a size like the others and sees one shape at every batch size.
    """
    height, width = pair_rows.shape[0], i0.shape[1]
    rows = torch.arange(i0.shape[0], device=i0.device)[:, None]
    row_y = rows % height
    grid_x = torch.arange(width, device=i0.device, dtype=torch.float32)
    i1w, i1wx, i1wy = sample_with_gradient(i1_padded, grid_x + u1, row_y.float() + u2, rows // height, height)
    return [i1w - i1wx * u1 - i1wy * u2 - i0, i1wx, i1wy]


EAGER_KERNELS: Mapping[str, Callable] = {"step": inner_step, "warp": warp_terms, "median": median25}
"""The plain kernels; the fused ones (``i3d.video.flow.built_kernels``) take the same arguments."""


def _row_masks(batch: int, height: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, 1) masks of the rows that are not the first, and not the last, of their pair."""
    row = torch.arange(height, device=device)[:, None].expand(batch, height, 1)
    return (row != 0).float(), (row != height - 1).float()


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, params: TVL1Params,
               kernels: Mapping[str, Callable], converged: str) -> torch.Tensor:
    """Refine the flow u (2, B, H, W) at one pyramid level.

    On CPU the pairs go in chunks of at most CPU_CHUNK_PIXELS (or one pair): an iteration reads and
    writes 15 arrays, which then stay in the caches (one 256x602 pair: 3.2 ns per pixel, four: 3.9 ns).
    """
    batch, height, width = i0.shape
    if converged == "mask":
        return _refine_masked(i0, i1, u, params, kernels)
    chunk = max(1, CPU_CHUNK_PIXELS // (height * width)) if i0.device.type == "cpu" else batch
    return torch.cat([_refine(i0[k : k + chunk], i1[k : k + chunk], u[:, k : k + chunk], params, kernels)
                      for k in range(0, batch, chunk)], dim=1)


def _refine(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, params: TVL1Params,
            kernels: Mapping[str, Callable]) -> torch.Tensor:
    batch, height, width = i0.shape
    device = i0.device
    constants = params.lam * params.theta, params.tau / params.theta, params.theta, params.epsilon
    images = [i0.reshape(-1, width), F.pad(i1[:, None], (4, 4, 4, 4), mode="replicate").reshape(-1, width + 8)]
    pair_rows = torch.empty(height, 1, device=device)
    # u1, u2 (flat, extended), p11, p12, p21, p22 (stacked rows, B * H x W), as inner_step takes them;
    # kernels return new tensors, never write in place
    state = [_extended_copy(c) for c in u] + [torch.zeros(batch * height, width, device=device) for _ in range(4)]
    for _ in range(params.warps):
        fixed = kernels["warp"](*images, *(_pairs(c, height, width).view(-1, width) for c in state[:2]), pair_rows)
        # Pairs that meet the stopping rule leave the batch; the rest go on as a smaller batch.
        active = torch.arange(batch, device=device)
        work, masks = state, _row_masks(batch, height, device)
        for _ in range(params.outer_iterations):
            if params.median_filtering > 1:
                blurred = [median_blur5(_pairs(w, height, width), kernels["median"]) for w in work[:2]]
                work = [_extended_copy(b) for b in blurred] + work[2:]
            for _ in range(params.inner_iterations):
                *work, going = kernels["step"](*work, *fixed, *masks, *constants)
                if HostChecks.ask(going.all()):
                    continue
                state = _keep(state, work, active, height, width)
                active = active[going]
                if not len(active):
                    break
                kept = [_pairs(t, height, width)[going] for t in (*work, *fixed)]
                work = [_extended_copy(t) for t in kept[:2]] + [t.view(-1, width) for t in kept[2:6]]
                fixed = [t.view(-1, width) for t in kept[6:]]
                masks = _row_masks(len(active), height, device)
            if not len(active):
                break
        if len(active):
            state = _keep(state, work, active, height, width)
    return torch.stack([_pairs(c, height, width) for c in state[:2]])


def _refine_masked(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, params: TVL1Params,
                   kernels: Mapping[str, Callable]) -> torch.Tensor:
    """``_refine`` with every pair kept in the batch: a pair that met the stopping rule keeps its values (a
    mask), so nothing waits on the host but one question every CHECK_EVERY iterations. The same numbers."""
    batch, height, width = i0.shape
    device = i0.device
    constants = params.lam * params.theta, params.tau / params.theta, params.theta, params.epsilon
    images = [i0.reshape(-1, width), F.pad(i1[:, None], (4, 4, 4, 4), mode="replicate").reshape(-1, width + 8)]
    pair_rows = torch.empty(height, 1, device=device)
    masks = _row_masks(batch, height, device)
    state = [_extended_copy(c) for c in u] + [torch.zeros(batch * height, width, device=device) for _ in range(4)]
    for _ in range(params.warps):
        fixed = kernels["warp"](*images, *(_pairs(c, height, width).view(-1, width) for c in state[:2]), pair_rows)
        running = torch.ones(batch, dtype=torch.bool, device=device)
        steps, finished = 0, False
        for _ in range(params.outer_iterations):
            if params.median_filtering > 1:
                blurred = [_extended_copy(median_blur5(_pairs(w, height, width), kernels["median"]))
                           for w in state[:2]]
                state = _where_running(running, blurred, state[:2], height, width) + state[2:]
            for _ in range(params.inner_iterations):
                *new, going = kernels["step"](*state, *fixed, *masks, *constants)
                state = _where_running(running, new, state, height, width)
                running = running & going
                steps += 1
                if steps % CHECK_EVERY == 0 and not HostChecks.ask(running.any()):
                    finished = True
                    break
            if finished:
                break
    return torch.stack([_pairs(c, height, width) for c in state[:2]])


def _where_running(running: torch.Tensor, new: list[torch.Tensor], old: list[torch.Tensor], height: int,
                   width: int) -> list[torch.Tensor]:
    """New values for the pairs still running, old ones for the rest: flat extended u (its zero row kept) or
    stacked rows."""
    per_row = running.repeat_interleave(height)[:, None]
    flat = torch.cat([per_row.expand(-1, width).reshape(-1), running.new_ones(width)])
    return [torch.where(flat if n.dim() == 1 else per_row, n, o) for n, o in zip(new, old)]


def _extended_copy(pairs: torch.Tensor) -> torch.Tensor:
    """extended(pairs.view(-1, W)) in one copy, from a view of any strides."""
    flat = pairs.new_empty(pairs.numel() + pairs.shape[-1])
    flat[pairs.numel() :] = 0
    flat[: pairs.numel()].view(pairs.shape).copy_(pairs)
    return flat


def _pairs(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H, W) view of stacked rows, or of a flat extended u (see inner_step)."""
    return (t[:-width] if t.dim() == 1 else t).view(-1, height, width)


def _keep(state: list[torch.Tensor], work: list[torch.Tensor], active: torch.Tensor, height: int,
          width: int) -> list[torch.Tensor]:
    """The state with the active pairs taken from work; work itself when it holds every pair."""
    if len(work[0]) == len(state[0]):
        return work
    for kept, new in zip(state, work):
        _pairs(kept, height, width)[active] = _pairs(new, height, width)
    return state


@torch.inference_mode()
def tvl1_flow(first: torch.Tensor, second: torch.Tensor, params: TVL1Params = TVL1Params(),
              kernels: Mapping[str, Callable] = EAGER_KERNELS, converged: str | None = None) -> torch.Tensor:
    """Flow from ``first`` to ``second``: (B, H, W) grey levels in [0, 255] -> (B, H, W, 2) pixels (x, y).

    ``kernels`` are the iteration, warp and median to use: the plain ones, or fused ones of the same device.
    ``converged``: what becomes of pairs that met the stopping rule, ``shrink`` (they leave the batch; the
    CPU's default) or ``mask`` (they stay, frozen; the default elsewhere): the same flow either way.
    """
    converged = converged or ("shrink" if first.device.type == "cpu" else "mask")
    levels = [(first.float(), second.float())]
    for _ in range(1, params.scales):
        i0, i1 = levels[-1]
        height, width = round(i0.shape[1] * params.scale_step), round(i0.shape[2] * params.scale_step)
        if height < 16 or width < 16:
            break
        scale = 1 / params.scale_step
        levels.append((resize_linear(i0, height, width, scale, scale), resize_linear(i1, height, width, scale, scale)))
    i0, _ = levels[-1]
    u = torch.zeros(2, *i0.shape, device=i0.device)
    for level in range(len(levels) - 1, -1, -1):
        i0, i1 = levels[level]
        u = _one_scale(i0, i1, u, params, kernels, converged)
        if level:
            finer = levels[level - 1][0]
            height, width = finer.shape[1:]
            u = torch.stack([resize_linear(c, height, width, c.shape[1] / height, c.shape[2] / width) for c in u])
            u = u / params.scale_step
    return u.permute(1, 2, 3, 0).contiguous()
