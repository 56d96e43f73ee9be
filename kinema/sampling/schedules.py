"""Flow-matching time grids. x_t = (1 - t) x_0 + t eps: t = 1 is pure noise, t = 0 the data.

A shift s > 1 spends more steps at high noise, where the layout of the clip is decided:
t' = s t / (1 + (s - 1) t) (the SD3/Wan schedule shift).
"""

from __future__ import annotations

import torch


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def flow_times(steps: int, shift: float = 3.0) -> torch.Tensor:
    """(steps + 1,) decreasing times from 1 to 0 for a sampler of `steps` steps."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not shift > 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def times_from(times: torch.Tensor, start: float) -> torch.Tensor:
    """The part of a time grid below `start`, with `start` itself first: a sampler that begins
    from data noised to flow time `start` instead of from pure noise (SDEdit; diffusers'
    `strength`), on the same grid as a full run, so it takes fewer of the same steps."""
    if not 0.0 < start <= 1.0:
        raise ValueError(f"start time must be in (0, 1], got {start}")
    below = times[times < start - 1e-9]
    return torch.cat([times.new_tensor([start]), below])
