"""3D rotary position embedding over (t, h, w) patch coordinates, laid out as in Wan2.1: the
head's channel pairs are split into a time part (the remainder) and equal height and width
parts; pairs are adjacent channels. Computed in float32 whatever the model's dtype."""

from __future__ import annotations

import functools

import torch


def _axis_angles(positions: torch.Tensor, pairs: int, theta: float) -> torch.Tensor:
    """(N,) positions -> (N, pairs) rotation angles."""
    inv = 1.0 / torch.pow(
        theta,
        torch.arange(0, 2 * pairs, 2, dtype=torch.float64, device=positions.device) / (2 * pairs),
    )
    return positions.double()[:, None] * inv


def rope_angles(
    head_dim: int, grid: tuple[int, int, int], theta: float = 10000.0, device=None
) -> torch.Tensor:
    """(F*H*W, head_dim/2) angles for tokens in (f, h, w) raster order."""
    c = head_dim // 2
    split = (c - 2 * (c // 3), c // 3, c // 3)
    f, h, w = grid
    parts = []
    for size, pairs, axis in zip(grid, split, range(3), strict=True):
        a = _axis_angles(torch.arange(size, device=device), pairs, theta)  # (size, pairs)
        shape = [1, 1, 1, pairs]
        shape[axis] = size
        parts.append(a.view(*shape).expand(f, h, w, pairs))
    return torch.cat(parts, dim=-1).reshape(f * h * w, c)


def rope_tables(
    head_dim: int, grid: tuple[int, int, int], device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    angles = rope_angles(head_dim, grid, device=device)
    return torch.cos(angles).float(), torch.sin(angles).float()


@functools.lru_cache(maxsize=32)
def rope_rotations(head_dim: int, grid: tuple[int, int, int], device=None) -> torch.Tensor:
    """(F*H*W, 1, head_dim/2) complex64 rotations cos + i sin, made once per grid and device
    (the transformer asks for them on every forward)."""
    with torch.inference_mode(False):  # a cached table must be usable outside inference mode
        cos, sin = rope_tables(head_dim, grid, device)
        return torch.complex(cos, sin)[:, None, :]


def apply_rope(
    x: torch.Tensor, rope: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """x (B, L, H, D) with adjacent channel pairs rotated: one complex product per pair, in
    float32. rope: rope_rotations' (L, 1, D/2) complex table, or rope_tables' (cos, sin)."""
    if isinstance(rope, tuple):
        rope = torch.complex(*rope)[:, None, :]
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, L, H, D/2)
    return torch.view_as_real(pairs * rope).flatten(-2).type_as(x)
