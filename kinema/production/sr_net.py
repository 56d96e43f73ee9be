"""The learned video super-resolution model: a frame and its two neighbours -> the frame at x4.

A small ESPCN/EDSR-style network (Shi et al. 2016; Lim et al. 2017) that does its work at the
low resolution: residual blocks over the three frames stacked on channels, then pixel shuffle to
x4, and the output is a residual on top of the bicubic upscale of the middle frame. Seeing the
neighbours lets it place an edge consistently from frame to frame (no shimmer on still edges),
and learning a residual over bicubic keeps flat areas exactly as bicubic makes them. Trained on
the world rendered at both sizes (kinema/train/sr_task.py); `LearnedUpscaler` is the production
stage (the `Upscaler` protocol of upscale.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kinema.checkpoint import load_into, read_weights

KIND = "kinema-sr"
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "production" / "sr.safetensors"


@dataclass(frozen=True)
class SRConfig:
    channels: int = 48
    blocks: int = 6
    window: int = 3  # frames seen: the middle one and (window - 1) / 2 on each side
    scale: int = 4


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRNet(nn.Module):
    def __init__(self, cfg: SRConfig = SRConfig()):
        super().__init__()
        if cfg.window % 2 != 1:
            raise ValueError(f"window must be odd, got {cfg.window}")
        self.cfg = cfg
        c, s = cfg.channels, cfg.scale
        self.head = nn.Conv2d(3 * cfg.window, c, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlock(c) for _ in range(cfg.blocks)])
        self.to_high = nn.Conv2d(c, 8 * s * s, 3, 1, 1)  # -> 8 channels at x scale
        self.tail = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, window, 3, h, w) in [0, 1] -> the middle frame (B, 3, h*scale, w*scale)."""
        b, n, _, h, w = frames.shape
        middle = frames[:, n // 2]
        base = F.interpolate(middle, scale_factor=self.cfg.scale, mode="bicubic",
                             align_corners=False)  # fmt: skip
        x = self.head(frames.reshape(b, n * 3, h, w))
        x = self.body(x) + x
        x = F.pixel_shuffle(self.to_high(x), self.cfg.scale)
        return base + self.tail(F.relu(x))


def load_sr(path: str | Path = SHIPPED) -> SRNet:
    tensors, config = read_weights(path, KIND)
    return load_into(SRNet(SRConfig(**config)), tensors, path).eval()


def windows(frames: torch.Tensor, window: int) -> torch.Tensor:
    """(T, 3, h, w) -> (T, window, 3, h, w): each frame with its neighbours, ends repeated."""
    half = window // 2
    index = torch.arange(len(frames))[:, None] + torch.arange(-half, half + 1)[None, :]
    return frames[index.clamp(0, len(frames) - 1)]


class LearnedUpscaler:
    """The shipped SRNet as a production stage. The network upscales x4 (twice for a target
    beyond x4); a target that is not exactly that is then resized from the network's output
    (OpenCV area when shrinking, bicubic when growing). A target no larger than the input is a
    plain resize: there is nothing to learn there."""

    name = "learned"

    def __init__(self, path: str | Path = SHIPPED, batch: int = 8):
        self.net = load_sr(path)
        self.batch = batch

    @torch.inference_mode()
    def _x_scale(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
        stacked = windows(x, self.net.cfg.window)
        out = []
        for start in range(0, len(stacked), self.batch):
            y = self.net(stacked[start : start + self.batch])
            out.append(y.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
        return torch.cat(out).numpy()

    def __call__(self, frames: np.ndarray, width: int, height: int) -> np.ndarray:
        h, w = frames.shape[1:3]
        if (h, w) == (height, width):
            return frames
        scale = self.net.cfg.scale
        if height > h or width > w:
            frames = self._x_scale(frames)
            if height > h * scale or width > w * scale:
                frames = self._x_scale(frames)
        if frames.shape[1:3] == (height, width):
            return frames
        shrink = height <= frames.shape[1] and width <= frames.shape[2]
        flag = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        return np.stack([cv2.resize(f, (width, height), interpolation=flag) for f in frames])
