"""The learned frame interpolator: two frames and a time t in (0, 1) -> the frame in between.

A small coarse-to-fine intermediate-flow network in the manner of RIFE (Huang et al., ECCV 2022):
each `FlowBlock` looks at the two frames (and, after the first, at both frames warped by the
current estimate) at 1/4, 1/2 and full size and refines the flows from the middle frame to each
neighbour plus a blend mask. The neighbours are backward-warped along those flows, blended by the
mask, and a small convolutional head adds a residual for what warping cannot make (disocclusions
at a moving edge). Trained on the world's true in-between renders (kinema/train/interp_task.py);
`LearnedInterpolator` is the production stage (the `Interpolator` protocol of interpolate.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kinema.checkpoint import load_into, read_weights
from kinema.production.interpolate import _split

KIND = "kinema-interp"
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "production" / "interp.safetensors"


@dataclass(frozen=True)
class InterpConfig:
    channels: tuple[int, ...] = (64, 48, 32)  # one flow block per scale, coarse to fine
    scales: tuple[int, ...] = (4, 2, 1)  # each block works at 1/scale of the frame size
    refine_channels: int = 32

    @property
    def multiple(self) -> int:
        """Frame sides must be multiples of this (the coarsest block halves twice)."""
        return 4 * max(self.scales)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout))


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image(x + flow(x)), bilinear, borders replicated. image (B, C, H, W); flow (B, 2, H, W)
    in pixels (x, y)."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class FlowBlock(nn.Module):
    """Refines (flow to a, flow to b, mask logit) at 1/scale of the frame size."""

    def __init__(self, cin: int, channels: int, scale: int):
        super().__init__()
        self.scale = scale
        self.down = nn.Sequential(_conv(cin, channels // 2, 2), _conv(channels // 2, channels, 2))
        self.body = nn.Sequential(*[_conv(channels, channels) for _ in range(4)])
        self.up = nn.ConvTranspose2d(channels, 5 * 4, 4, 2, 1)  # to 1/2 the block's input size

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, H, W) at full size; flow (B, 4, H, W) in full-size pixels or None.
        Returns (B, 5, H, W): the update of the flows (full-size pixels) and of the mask logit."""
        h, w = x.shape[-2:]
        s = self.scale
        if flow is not None:
            x = torch.cat([x, flow / s], 1)
        if s != 1:
            x = F.interpolate(x, scale_factor=1 / s, mode="bilinear", align_corners=False)
        y = self.down(x)
        y = self.body(y) + y
        y = F.pixel_shuffle(self.up(y), 2)  # (B, 5, H/s, W/s)
        if s != 1:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([y[:, :4] * s, y[:, 4:]], 1)


class InterpNet(nn.Module):
    def __init__(self, cfg: InterpConfig = InterpConfig()):
        super().__init__()
        self.cfg = cfg
        blocks = []
        for i, (c, s) in enumerate(zip(cfg.channels, cfg.scales, strict=True)):
            # a, b, t, and from the second block on: warped a, warped b, mask, flows
            cin = 7 if i == 0 else 7 + 6 + 1 + 4
            blocks.append(FlowBlock(cin, c, s))
        self.blocks = nn.ModuleList(blocks)
        r = cfg.refine_channels
        self.refine = nn.Sequential(
            _conv(3 * 4 + 1 + 4 + 1, r), _conv(r, r), _conv(r, r), nn.Conv2d(r, 3, 3, 1, 1)
        )

    @staticmethod
    def warp(a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor):
        return backward_warp(a, flow[:, :2]), backward_warp(b, flow[:, 2:])

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """a, b (B, 3, H, W) in [0, 1], sides multiples of cfg.multiple; t (B,) in (0, 1).
        Returns (the frame at t, the warped blend after each flow block, for the loss)."""
        tmap = t.view(-1, 1, 1, 1).expand(-1, 1, *a.shape[-2:]).to(a.dtype)
        first, *rest = self.blocks
        update = first(torch.cat([a, b, tmap], 1), None)
        flow, mask = update[:, :4], update[:, 4:]
        wa, wb, m = *self.warp(a, b, flow), torch.sigmoid(mask)
        merged = [m * wa + (1 - m) * wb]
        for block in rest:  # refine, seeing both frames warped by the estimate so far
            update = block(torch.cat([a, b, tmap, wa, wb, mask], 1), flow)
            flow, mask = flow + update[:, :4], mask + update[:, 4:]
            wa, wb, m = *self.warp(a, b, flow), torch.sigmoid(mask)
            merged.append(m * wa + (1 - m) * wb)
        residual = self.refine(torch.cat([a, b, wa, wb, tmap, flow, m], 1))
        return (merged[-1] + residual).clamp(0, 1), merged


def load_interp(path: str | Path = SHIPPED) -> InterpNet:
    tensors, config = read_weights(path, KIND)
    cfg = InterpConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return load_into(InterpNet(cfg), tensors, path).eval()


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w


class LearnedInterpolator:
    """The shipped InterpNet as a production stage: frames at fractional positions of a clip.

    Frames are padded (edge replicated) to the network's multiple and cropped back; in-between
    frames are made in batches of `batch` on the CPU."""

    name = "learned"

    def __init__(self, path: str | Path = SHIPPED, batch: int = 16):
        self.net = load_interp(path)
        self.batch = batch

    @torch.inference_mode()
    def between(self, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 pairs and (N,) fractions -> (N, H, W, 3) uint8."""

        def prep(x):
            return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255

        pa, h, w = _pad_to(prep(a), self.net.cfg.multiple)
        pb, _, _ = _pad_to(prep(b), self.net.cfg.multiple)
        out, _ = self.net(pa, pb, torch.as_tensor(t, dtype=torch.float32))
        out = out[..., :h, :w].permute(0, 2, 3, 1).mul(255).round().clamp(0, 255)
        return out.to(torch.uint8).numpy()

    def __call__(self, frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
        left, t = _split(positions, len(frames))
        out = frames[left].copy()  # whole positions: the input frame unchanged
        todo = np.flatnonzero(t > 0)
        for start in range(0, len(todo), self.batch):
            k = todo[start : start + self.batch]
            out[k] = self.between(frames[left[k]], frames[left[k] + 1], t[k])
        return out
