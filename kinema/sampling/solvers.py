"""ODE solvers for flow matching, as pure functions of a velocity function.

velocity(x, t) -> v: dx/dt at time t (v = eps - x_0). Solvers integrate from times[0] = 1 to
times[-1] = 0 and call callback(step, total, x) after each step (progress bars, previews,
cancellation by raising). They know nothing about networks, guidance or conditioning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, float], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor], None] | None


def euler(
    velocity: Velocity, x: torch.Tensor, times: torch.Tensor, callback: Callback = None
) -> torch.Tensor:
    """First order: x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i)."""
    total = len(times) - 1
    for i in range(total):
        t, t_next = float(times[i]), float(times[i + 1])
        x = x + (t_next - t) * velocity(x, t)
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
