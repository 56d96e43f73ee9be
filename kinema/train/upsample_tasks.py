"""Training the production upsamplers on the world, whose renderer gives the ground truth:

- `InterpTask`: two frames a frame interval apart and the true frame at a random time between
  them (render_times at any instant), for kinema/production/interp_net.py;
- `SRTask`: consecutive frames at the base size and two of them rendered at x4, for
  kinema/production/sr_net.py.

Both see the frame intervals the pipeline feeds them (8 fps base clips, and for super-resolution
the 24 fps frames interpolation makes), random flips and time reversal, and on some samples a
slight blur and noise on the inputs: generated frames are softer than renders, and a model that
has only seen perfect edges sharpens a soft one into ringing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from kinema.checkpoint import save_weights
from kinema.production import interp_net, sr_net
from kinema.production.interp_net import InterpConfig, InterpNet
from kinema.production.sr_net import SRConfig, SRNet
from kinema.train.distributed import DistInfo
from kinema.world import random_scene, render_times

SIZES = ((64, 64), (96, 64), (64, 96))  # (width, height), as kinema-tiny generates
SIZE_WEIGHTS = (0.7, 0.15, 0.15)
DURATION = 2.0


def _psnr(pred: torch.Tensor, truth: torch.Tensor) -> float:
    mse = F.mse_loss(pred.clamp(0, 1), truth).item()
    return 10 * float(np.log10(1.0 / max(mse, 1e-12)))


def charbonnier(pred: torch.Tensor, truth: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - truth) ** 2 + eps * eps).mean()


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [0, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 255


def _soften(frames: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability prob: the same slight Gaussian blur and noise on every frame given."""
    if rng.random() >= prob:
        return frames
    sigma = rng.uniform(0.3, 0.9)
    out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]).astype(np.float32)
    out += rng.normal(0, rng.uniform(0, 2.5), out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _sample_batches(sample, batch_size: int, rng: np.random.Generator) -> Iterator[list]:
    """Endless batches of sample(rng, width, height), one frame size (SIZES) per batch."""
    while True:
        width, height = SIZES[rng.choice(len(SIZES), p=SIZE_WEIGHTS)]
        yield [sample(rng, width, height) for _ in range(batch_size)]


class InterpTask:
    name = "interp"

    def __init__(self, cfg: InterpConfig | None = None, batch_size: int = 16,
                 soften: float = 0.3):  # fmt: skip
        self.model = InterpNet(cfg or InterpConfig())
        self.cfg = self.model.cfg
        self.batch_size = batch_size
        self.soften = soften

    def sample(self, rng: np.random.Generator, width: int, height: int):
        scene = random_scene(rng, DURATION, width, height)
        gap = rng.choice([1 / 8, 1 / 4, 1 / 16], p=[0.6, 0.25, 0.15])
        start = rng.uniform(0, DURATION - gap)
        t = rng.choice([1 / 3, 1 / 2, 2 / 3]) if rng.random() < 0.5 else rng.uniform(0.05, 0.95)
        frames = render_times(scene, np.array([start, start + t * gap, start + gap]), width, height)
        frames = _soften(frames, rng, self.soften)
        if rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        if rng.random() < 0.5:  # time reversed: b -> a at 1 - t
            frames, t = frames[::-1], 1 - t
        return np.ascontiguousarray(frames), t

    def batches(self, info: DistInfo, seed: int) -> Iterator:
        rng = np.random.default_rng([seed, info.rank, 1])
        for samples in _sample_batches(self.sample, self.batch_size, rng):
            frames = _to_tensor(np.stack([f for f, _ in samples])).to(info.device)
            t = torch.tensor([t for _, t in samples], dtype=torch.float32, device=info.device)
            yield frames[:, 0], frames[:, 2], frames[:, 1], t

    def samples_in(self, batch) -> int:
        return batch[0].shape[0]

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, float]]:
        a, b, mid, t = batch
        out, merged = model(a, b, t)
        final = charbonnier(out, mid)
        # each flow block's warped blend is pulled towards the truth too (RIFE's per-scale loss)
        stages = sum(charbonnier(m, mid) for m in merged) / len(merged)
        loss = final + 0.5 * stages
        blend = 0.5 * (a + b)
        logs = {"loss": loss.item(), "psnr": _psnr(out.detach(), mid),
                "psnr_blend": _psnr(blend, mid)}  # fmt: skip
        return loss, logs

    def export(self, model: InterpNet, out_dir: Path) -> Path:
        return save_weights(out_dir / "interp.safetensors", model, interp_net.KIND, model.cfg)


class SRTask:
    """Each sample is two consecutive frames: both are upscaled (each from its own window), and
    besides each frame's error the loss takes the error of their difference against the true
    frames' difference (weight `temporal`): an upscaler judged frame by frame can add ringing
    that changes from frame to frame, which reads as flicker on every moving edge."""

    name = "sr"

    def __init__(self, cfg: SRConfig | None = None, batch_size: int = 16, crop: int = 32,
                 soften: float = 0.3, temporal: float = 1.0):  # fmt: skip
        self.model = SRNet(cfg or SRConfig())
        self.cfg = self.model.cfg
        self.batch_size = batch_size
        self.crop = crop
        self.soften = soften
        self.temporal = temporal

    def sample(self, rng: np.random.Generator, width: int, height: int):
        """(window + 1 low frames, the 2 middle frames of the two windows at x scale)."""
        scene = random_scene(rng, DURATION, width, height)
        gap = rng.choice([1 / 24, 1 / 8])
        n, half = self.cfg.window + 1, self.cfg.window // 2
        start = rng.uniform(0, DURATION - (n - 1) * gap)
        times = start + gap * np.arange(n)
        low = _soften(render_times(scene, times, width, height), rng, self.soften)
        s = self.cfg.scale
        high = render_times(scene, times[half : half + 2], width * s, height * s)
        c = self.crop
        y, x = int(rng.integers(0, height - c + 1)), int(rng.integers(0, width - c + 1))
        low, high = low[:, y : y + c, x : x + c], high[:, y * s : (y + c) * s, x * s : (x + c) * s]
        if rng.random() < 0.5:
            low, high = low[:, :, ::-1], high[:, :, ::-1]
        if rng.random() < 0.5:
            low, high = low[::-1], high[::-1]
        return np.ascontiguousarray(low), np.ascontiguousarray(high)

    def batches(self, info: DistInfo, seed: int) -> Iterator:
        rng = np.random.default_rng([seed, info.rank, 2])
        for samples in _sample_batches(self.sample, self.batch_size, rng):
            low = _to_tensor(np.stack([lo for lo, _ in samples])).to(info.device)
            high = _to_tensor(np.stack([hi for _, hi in samples])).to(info.device)
            yield low, high

    def samples_in(self, batch) -> int:
        return batch[0].shape[0]

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, float]]:
        low, high = batch  # (B, window + 1, 3, h, w), (B, 2, 3, H, W)
        w = self.cfg.window
        b = low.shape[0]
        out = model(torch.cat([low[:, :w], low[:, 1:]])).unflatten(0, (2, b)).transpose(0, 1)
        frames = charbonnier(out, high)
        change = charbonnier(out[:, 1] - out[:, 0], high[:, 1] - high[:, 0])
        loss = frames + self.temporal * change
        middle = low[:, w // 2 : w // 2 + 2].flatten(0, 1)
        bicubic = F.interpolate(middle, scale_factor=self.cfg.scale, mode="bicubic",
                                align_corners=False)  # fmt: skip
        logs = {"loss": loss.item(), "loss_change": change.item(),
                "psnr": _psnr(out.detach().flatten(0, 1), high.flatten(0, 1)),
                "psnr_bicubic": _psnr(bicubic, high.flatten(0, 1))}  # fmt: skip
        return loss, logs

    def export(self, model: SRNet, out_dir: Path) -> Path:
        return save_weights(out_dir / "sr.safetensors", model, sr_net.KIND, model.cfg)
