"""Solvers for flow matching (the ODE, and Euler with optional fresh noise per step), as pure
functions of a velocity function.

velocity(x, t) -> v: dx/dt at time t (v = eps - x_0). Solvers integrate from times[0] = 1 to
times[-1] = 0 and call callback(step, total, x) after each step (progress bars, previews,
cancellation by raising). They know nothing about networks, guidance or conditioning.

Euler takes an optional stochasticity eta (DDIM's eta, written for flow matching): 0 is the ODE,
1 ancestral sampling, where every step goes to the model's clean estimate and draws most of the
next step's noise afresh, as a DDPM sampler does. Every eta keeps the data's distribution for
an exact velocity; with a learned one the fresh noise corrects the errors of earlier steps
instead of carrying them along (kinema-tiny: fewer duplicated objects, see docs/training.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, float], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor], None] | None


def ancestral_std(t: float, t_next: float, eta: float) -> float:
    """The fresh noise's std in a step from t to t_next: DDIM's
    eta sigma_next sqrt(1 - SNR_t / SNR_next) with x_t = (1 - t) x_0 + t eps, so
    SNR = ((1 - t) / t)^2 and sigma = t. At most t_next (eta = 1 from t = 1: all fresh)."""
    if eta == 0 or t_next <= 0:
        return 0.0
    ratio = (1 - t) * t_next / (t * (1 - t_next))
    return eta * t_next * math.sqrt(max(0.0, 1 - ratio * ratio))


def euler(
    velocity: Velocity,
    x: torch.Tensor,
    times: torch.Tensor,
    callback: Callback = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    eta_from: float = 1.0,
) -> torch.Tensor:
    """First order: x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i). With eta > 0 each step that
    starts at t <= eta_from splits x_i into the clean estimate x0 = x - t v and the noise
    estimate eps = x + (1 - t) v, and goes to (1 - t_next) x0 + sqrt(t_next^2 - s^2) eps + s z,
    s = ancestral_std, z fresh from `generator` (on the CPU, so a seed gives the same clip on
    any device); the steps above eta_from stay deterministic."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    total = len(times) - 1
    for i in range(total):
        t, t_next = float(times[i]), float(times[i + 1])
        v = velocity(x, t)
        s = ancestral_std(t, t_next, eta) if t <= eta_from else 0.0
        if s == 0:
            x = x + (t_next - t) * v
        else:
            x0, eps = x - t * v, x + (1 - t) * v
            z = torch.randn(x.shape, generator=generator, dtype=torch.float32)
            x = (1 - t_next) * x0 + math.sqrt(t_next**2 - s**2) * eps + s * z.to(x)
        if callback is not None:
            callback(i + 1, total, x)
    return x


def heun(
    velocity: Velocity, x: torch.Tensor, times: torch.Tensor, callback: Callback = None
) -> torch.Tensor:
    """Second order (Heun): average the slopes at both ends of each step; the last step, which
    ends at t = 0, is an Euler step (as in EDM), so N steps cost 2N - 1 evaluations."""
    total = len(times) - 1
    for i in range(total):
        t, t_next = float(times[i]), float(times[i + 1])
        v = velocity(x, t)
        x_euler = x + (t_next - t) * v
        if t_next > 0:
            x = x + (t_next - t) * 0.5 * (v + velocity(x_euler, t_next))
        else:
            x = x_euler
        if callback is not None:
            callback(i + 1, total, x)
    return x


SOLVERS = {"euler": euler, "heun": heun}
