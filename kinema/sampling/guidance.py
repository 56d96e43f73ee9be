"""Wrappers that turn a network into the velocity function a solver integrates.

- parameterisation: the network may predict v = eps - x_0 or x_0; solvers always get v.
- classifier-free guidance: v = v_uncond + s (v_cond - v_uncond), both branches in one batch;
  the unconditional branch is the negative prompt (empty by default).
- known frames (the one conditioning mechanism): latent frames given by the user are put back at
  their positions before every evaluation and carry t = 0; only the other frames are denoised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kinema.sampling.solvers import Velocity

# net(x (B, C, F, H, W), t (B, F), context, mask) -> prediction
Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class TextCondition:
    states: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool


@dataclass
class KnownFrames:
    """Clean latents (B, C, F, H, W) valid where frame_mask (F,) is True."""

    latents: torch.Tensor
    frame_mask: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        m = self.frame_mask.to(x.device)[None, None, :, None, None]
        return torch.where(m, self.latents.to(x.dtype), x)


def velocity_from_prediction(
    prediction: str, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """v from the network output. t (B, F) broadcast over (C, H, W)."""
    if prediction == "v":
        return out
    tt = t[:, None, :, None, None].to(x.dtype).clamp(min=1e-3)
    return (x - out) / tt  # x_t = x_0 + t v  =>  v = (x_t - x_0) / t


def _pad_context(a: TextCondition, b: TextCondition) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack two conditions of different token lengths into one batch."""
    length = max(a.states.shape[1], b.states.shape[1])

    def pad(c: TextCondition):
        extra = length - c.states.shape[1]
        states = torch.nn.functional.pad(c.states, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(c.mask, (0, extra), value=False)
        return states, mask

    (sa, ma), (sb, mb) = pad(a), pad(b)
    return torch.cat([sa, sb]), torch.cat([ma, mb])


def guided_velocity(
    net: Network,
    prediction: str,
    cond: TextCondition,
    uncond: TextCondition | None,
    guidance: float,
    known: KnownFrames | None = None,
) -> Velocity:
    """The velocity function for a solver. With guidance 1 or no uncond, one branch only."""
    use_cfg = uncond is not None and guidance != 1.0
    if use_cfg:
        context, mask = _pad_context(cond, uncond)
    else:
        context, mask = cond.states, cond.mask

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        b, _, f = x.shape[:3]
        tt = torch.full((b, f), t, dtype=torch.float32, device=x.device)
        if known is not None:
            x = known.apply(x)
            tt = tt.masked_fill(known.frame_mask.to(x.device)[None, :], 0.0)
        if use_cfg:
            x2, t2 = torch.cat([x, x]), torch.cat([tt, tt])
            v = velocity_from_prediction(prediction, net(x2, t2, context, mask), x2, t2)
            v_cond, v_uncond = v.chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
        else:
            v = velocity_from_prediction(prediction, net(x, tt, context, mask), x, tt)
        if known is not None:  # known frames do not move
            v = v.masked_fill(known.frame_mask.to(x.device)[None, None, :, None, None], 0.0)
        return v

    return velocity
