"""Step caching (first-block cache, as in TeaCache and diffusers' FirstBlockCache): between two
sampler steps the transformer's input changes little, and so do its blocks' outputs. Every
evaluation runs the first block; when that block's residual (output - input) differs from its
residual at the last full evaluation by less than `threshold` (mean absolute difference over
mean absolute value), the other blocks are skipped and their residual from that full evaluation
is added instead. Comparing with the last *full* evaluation, not the previous step, keeps small
changes from adding up unnoticed over many skipped steps.

The first `warmup` evaluations always run every block: the early, noisy steps decide the
clip's layout and motion, and reusing there cost kinema-tiny most of its motion scores on
ShapesBench (README). `warmup_evaluations` gives the quarter of a run that kinema protects.

One cache serves one sampling run (make a new one per run); with classifier-free guidance both
branches are one batch, so they are skipped or run together. The counters say what was run:
transformer FLOPs go with the blocks run (the first block of every evaluation included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# block(i, tokens) -> tokens after block i
BlockFn = Callable[[int, torch.Tensor], torch.Tensor]


WARMUP_FRACTION = 0.25  # of a run's evaluations, always run in full


def warmup_evaluations(evaluations: int) -> int:
    return math.ceil(WARMUP_FRACTION * evaluations)


@dataclass
class StepCache:
    threshold: float
    warmup: int = 0  # evaluations at the start that never reuse
    evaluations: int = 0  # transformer forwards
    reused: int = 0  # forwards that ran the first block only
    blocks_run: int = 0
    blocks_total: int = 0  # what the forwards would have run without the cache
    _first: torch.Tensor | None = field(default=None, repr=False)  # first block's residual
    _rest: torch.Tensor | None = field(default=None, repr=False)  # the other blocks' residual

    def __post_init__(self):
        if not self.threshold > 0:
            raise ValueError(f"the cache threshold must be more than 0, got {self.threshold}")

    def change(self, residual: torch.Tensor) -> float:
        """Relative L1 change of the first block's residual since the last full evaluation."""
        ref = self._first
        return float((residual - ref).abs().mean() / ref.abs().mean().clamp_min(1e-12))

    def run(self, tokens: torch.Tensor, block: BlockFn, blocks: int) -> torch.Tensor:
        """tokens (B, L, dim) through `blocks` blocks, or through the first and the cache."""
        self.evaluations += 1
        self.blocks_total += blocks
        first = block(0, tokens)
        self.blocks_run += 1
        residual = first - tokens
        comparable = self._first is not None and self._first.shape == residual.shape
        warm = self.evaluations > self.warmup
        if blocks > 1 and warm and comparable and self.change(residual) < self.threshold:
            self.reused += 1
            return first + self._rest
        out = first
        for i in range(1, blocks):
            out = block(i, out)
        self.blocks_run += blocks - 1
        self._first, self._rest = residual, out - first
        return out

    def stats(self) -> dict:
        """Counters for a generation's metadata."""
        return {
            "threshold": self.threshold,
            "evaluations": self.evaluations,
            "reused": self.reused,
            "blocks_run": self.blocks_run,
            "blocks_total": self.blocks_total,
        }
