"""RAFT optical flow (Teed and Deng, ECCV 2020), the large model, as princeton-vl/RAFT defines it.

The network is written here, not imported: its parameters keep the names of princeton-vl/RAFT's
``core/raft.py`` (the published ``raft-*.pth`` files, less DataParallel's ``module.`` prefix), so those
files and torchvision's ports of them load after a renaming (``i3d.video.flow.raft_weights``). Every step follows
the source, including what a reimplementation would be tempted to tidy: the correlation window is indexed
(x offset, y offset) in that order (core/corr.py:37-43), images are scaled to [-1, 1] inside the network
(core/raft.py:91-92), and the flow is upsampled by the learned convex combination (core/raft.py:72-83).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CORR_LEVELS = 4
CORR_RADIUS = 4
HIDDEN = 128  # the GRU's state
CONTEXT = 128  # the context features fed to every update
ITERATIONS = 20  # video_features' setting (its raft.py:118); princeton-vl's default is 12


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm: str, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1, self.norm2 = _norm(norm, planes), _norm(norm, planes)
        self.downsample = (None if stride == 1 else
                           nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), _norm(norm, planes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


def _norm(kind: str, channels: int) -> nn.Module:
    """The feature encoder normalises each image on its own (no parameters), the context encoder by BatchNorm."""
    return nn.InstanceNorm2d(channels) if kind == "instance" else nn.BatchNorm2d(channels)


class Encoder(nn.Module):
    """Images at 1/8 resolution: a 7x7 stride-2 stem, three stages of two residual blocks, a 1x1 projection."""

    def __init__(self, output_dim: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = _norm(norm, 64)
        stages, planes = [], 64
        for width, stride in ((64, 1), (96, 2), (128, 2)):
            stages.append(nn.Sequential(ResidualBlock(planes, width, norm, stride),
                                        ResidualBlock(width, width, norm, 1)))
            planes = width
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(128, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class MotionEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], dim=1))), flow], dim=1)


class SeparableGRU(nn.Module):
    """A convolutional GRU run twice: with 1x5 kernels, then with 5x1 kernels."""

    def __init__(self, hidden: int = HIDDEN, inputs: int = 128 + HIDDEN) -> None:
        super().__init__()
        for gate in "zrq":
            setattr(self, f"conv{gate}1", nn.Conv2d(hidden + inputs, hidden, (1, 5), padding=(0, 2)))
            setattr(self, f"conv{gate}2", nn.Conv2d(hidden + inputs, hidden, (5, 1), padding=(2, 0)))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for k in "12":
            hx = torch.cat([h, x], dim=1)
            z = torch.sigmoid(getattr(self, f"convz{k}")(hx))
            r = torch.sigmoid(getattr(self, f"convr{k}")(hx))
            q = torch.tanh(getattr(self, f"convq{k}")(torch.cat([r * h, x], dim=1)))
            h = (1 - z) * h + z * q
        return h


class FlowHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(HIDDEN, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = MotionEncoder()
        self.gru = SeparableGRU()
        self.flow_head = FlowHead()
        self.mask = nn.Sequential(nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], dim=1))
        return net, 0.25 * self.mask(net), self.flow_head(net)  # the mask scaled as trained (core/update.py:138)


def _correlation_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor) -> list[torch.Tensor]:
    """All-pairs correlation (dot products over sqrt(channels)), then average-pooled three times."""
    batch, dim, height, width = fmap1.shape
    corr = torch.matmul(fmap1.reshape(batch, dim, -1).transpose(1, 2), fmap2.reshape(batch, dim, -1))
    corr = (corr / torch.sqrt(torch.tensor(dim).float())).reshape(batch * height * width, 1, height, width)
    pyramid = [corr]
    for _ in range(CORR_LEVELS - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], 2, stride=2))
    return pyramid


def _look_up(pyramid: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
    """Each level's (2r + 1)^2 window around ``coords`` (N, 2, h, w, in x, y order), bilinearly sampled."""
    batch, _, height, width = coords.shape
    offsets = torch.linspace(-CORR_RADIUS, CORR_RADIUS, 2 * CORR_RADIUS + 1, device=coords.device)
    # The window's first axis moves x and its second y, as the source's meshgrid(dy, dx) does.
    delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).view(1, 2 * CORR_RADIUS + 1,
                                                                                     2 * CORR_RADIUS + 1, 2)
    centres = coords.permute(0, 2, 3, 1).reshape(batch * height * width, 1, 1, 2)
    sampled = []
    for level, corr in enumerate(pyramid):
        points = centres / 2**level + delta
        size = corr.shape[-2:]
        grid = torch.cat([2 * points[..., :1] / (size[1] - 1) - 1, 2 * points[..., 1:] / (size[0] - 1) - 1], dim=-1)
        sampled.append(F.grid_sample(corr, grid, align_corners=True).view(batch, height, width, -1))
    return torch.cat(sampled, dim=-1).permute(0, 3, 1, 2).contiguous().float()


def _coords_grid(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].repeat(batch, 1, 1, 1)


def _upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flow at 1/8 resolution to full: each pixel a softmax-weighted mix of its 3x3 coarse neighbours, x8."""
    batch, _, height, width = flow.shape
    mask = torch.softmax(mask.view(batch, 1, 9, 8, 8, height, width), dim=2)
    neighbours = F.unfold(8 * flow, [3, 3], padding=1).view(batch, 2, 9, 1, 1, height, width)
    fine = torch.sum(mask * neighbours, dim=2).permute(0, 1, 4, 2, 5, 3)
    return fine.reshape(batch, 2, 8 * height, 8 * width)


class Raft(nn.Module):
    """RAFT-large: flow (N, 2, H, W) in pixels from ``image1`` to ``image2``, (N, 3, H, W) RGB in [0, 255],
    H and W multiples of 8 (``pad_to_eight``). Inference only: the published weights are used as trained."""

    def __init__(self) -> None:
        super().__init__()
        self.fnet = Encoder(256, "instance")
        self.cnet = Encoder(HIDDEN + CONTEXT, "batch")
        self.update_block = UpdateBlock()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iterations: int = ITERATIONS) -> torch.Tensor:
        if iterations < 1:
            raise ValueError(f"RAFT needs at least one iteration, not {iterations}")
        image1, image2 = (2 * (image / 255.0) - 1.0 for image in (image1, image2))
        features = self.fnet(torch.cat([image1, image2])).float()
        pyramid = _correlation_pyramid(*features.chunk(2))
        net, inp = torch.split(self.cnet(image1), [HIDDEN, CONTEXT], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        batch, _, height, width = image1.shape
        coords0 = _coords_grid(batch, height // 8, width // 8, image1.device)
        coords1 = coords0.clone()
        for _ in range(iterations):
            net, mask, delta = self.update_block(net, inp, _look_up(pyramid, coords1), coords1 - coords0)
            coords1 = coords1 + delta
        return _upsample(coords1 - coords0, mask)  # only the last iteration's is kept (test mode)


def eight_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) replicate padding to multiples of 8, split as princeton-vl's InputPadder does
    in its default ('sintel') mode: the smaller half first (core/utils/utils.py:7-19)."""
    pad_h, pad_w = (-height) % 8, (-width) % 8
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


def pad_to_eight(images: torch.Tensor) -> torch.Tensor:
    return F.pad(images, eight_padding(*images.shape[-2:]), mode="replicate")


def unpad(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of ``pad_to_eight`` for an image that was ``height`` x ``width``."""
    left, _, top, _ = eight_padding(height, width)
    return flow[..., top:top + height, left:left + width]
