"""Frames as uint8 arrays (what files and users hold) and as [-1, 1] tensors (what models take)."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., T, H, W, 3) uint8 -> (..., 3, T, H, W) float32 in [-1, 1] (a clip, or a batch)."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    return x.movedim(-1, -4).float().div(127.5).sub(1.0)


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 on video's device: to_tensor's inverse
    (values outside [-1, 1] are clipped)."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
