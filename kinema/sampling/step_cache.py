"""Step caching: between two sampler steps the transformer's input changes little, and so do
its outputs. Two reuses, one object per sampling run:

- Block reuse (first-block cache, as in TeaCache and diffusers' FirstBlockCache). Every
  evaluation runs the first block; when that block's residual (output - input) differs from its
  residual at the last full evaluation by less than `threshold` (mean absolute difference over
  mean absolute value), the other blocks are skipped and their residual from that full
  evaluation is added instead. Comparing with the last *full* evaluation, not the previous step,
  keeps small changes from adding up unnoticed over many skipped steps.
- Guidance reuse (the CFG cache of FasterCache, Lv et al. 2024). Classifier-free guidance runs
  the network twice, with and without the prompt; their difference changes slowly from step to
  step. With `guidance_every` k > 1, the unconditional branch runs on every k-th evaluation only;
  in between the conditional branch runs alone and the last difference is reused:
  v = v_cond + (s - 1) (v_cond - v_uncond).

The first `warmup` evaluations reuse nothing: the early, noisy steps decide the clip's layout
and motion, and reusing there cost kinema-tiny most of its motion scores on ShapesBench
(README). `warmup_evaluations` gives the quarter of a run that kinema protects.

With guidance both branches are one batch (conditional rows first), so their blocks are skipped
or run together; an evaluation of the conditional branch alone compares with, and reuses, the
conditional rows. The counters say what was run, in rows (one clip through one branch): the
transformer's FLOPs go with the rows embedded and the blocks run (the first block of every
evaluation included), against what every evaluation with both branches in full would run.
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
    threshold: float | None  # block reuse: relative change of the first block's residual; None: off
    warmup: int = 0  # evaluations at the start that never reuse
    guidance_every: int = 1  # guidance reuse: run the unconditional branch every k-th evaluation
    evaluations: int = 0  # transformer forwards
    reused: int = 0  # forwards that ran the first block only
    guidance_reused: int = 0  # evaluations that ran the conditional branch alone
    rows_run: int = 0  # clips x branches through the transformer's embeddings and head
    rows_total: int = 0  # the same without the cache (both branches every evaluation)
    blocks_run: int = 0  # blocks x rows run
    blocks_total: int = 0  # blocks x rows without the cache
    _rows: int = 0  # rows of a full evaluation (both branches)
    _first: torch.Tensor | None = field(default=None, repr=False)  # first block's residual
    _rest: torch.Tensor | None = field(default=None, repr=False)  # the other blocks' residual
    _delta: torch.Tensor | None = field(default=None, repr=False)  # v_cond - v_uncond

    def __post_init__(self):
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"the cache threshold must be more than 0, got {self.threshold}")
        if not (isinstance(self.guidance_every, int) and self.guidance_every >= 1):
            raise ValueError(
                f"guidance reuse must run the unconditional branch every 1 or more evaluations, "
                f"got {self.guidance_every}"
            )

    # ------------------------------------------------------------------ guidance reuse

    def unconditional_due(self) -> bool:
        """Whether the next evaluation must run the unconditional branch too."""
        n = self.evaluations  # index of the next evaluation
        if self.guidance_every == 1 or self._delta is None or n < self.warmup:
            return True
        # the warm-up's last evaluation left a fresh difference: reuse it first
        return (n - self.warmup + 1) % self.guidance_every == 0

    def guided(self, v_cond: torch.Tensor, v_uncond: torch.Tensor | None, scale: float):
        """The guided velocity; remembers the branches' difference when both ran, reuses the
        last one when only the conditional branch did."""
        if v_uncond is not None:
            self._delta = v_cond - v_uncond
        else:
            self.guidance_reused += 1
        return v_cond + (scale - 1.0) * self._delta

    # ------------------------------------------------------------------ block reuse

    def change(self, residual: torch.Tensor) -> float:
        """Relative L1 change of the first block's residual since the last full evaluation."""
        ref = self._first[: residual.shape[0]]
        return float((residual - ref).abs().mean() / ref.abs().mean().clamp_min(1e-12))

    def _comparable(self, residual: torch.Tensor) -> bool:
        ref = self._first
        return (
            ref is not None
            and ref.shape[0] >= residual.shape[0]
            and ref.shape[1:] == residual.shape[1:]
        )

    def run(self, tokens: torch.Tensor, block: BlockFn, blocks: int) -> torch.Tensor:
        """tokens (B, L, dim) through `blocks` blocks, or through the first and the cache."""
        rows = tokens.shape[0]
        self._rows = max(self._rows, rows)
        self.evaluations += 1
        self.rows_run += rows
        self.rows_total += self._rows
        self.blocks_total += blocks * self._rows
        first = block(0, tokens)
        self.blocks_run += rows
        residual = first - tokens
        warm = self.evaluations > self.warmup
        if (self.threshold is not None and blocks > 1 and warm and self._comparable(residual)
                and self.change(residual) < self.threshold):  # fmt: skip
            self.reused += 1
            return first + self._rest[:rows]
        out = first
        for i in range(1, blocks):
            out = block(i, out)
        self.blocks_run += (blocks - 1) * rows
        rest = out - first
        if self._comparable(residual) and rows < self._first.shape[0]:
            # the conditional branch alone: renew its rows, keep the unconditional ones
            self._first, self._rest = self._first.clone(), self._rest.clone()
            self._first[:rows], self._rest[:rows] = residual, rest
        else:
            self._first, self._rest = residual, rest
        return out

    def stats(self) -> dict:
        """Counters for a generation's metadata."""
        return {
            "threshold": self.threshold,
            "guidance_every": self.guidance_every,
            "evaluations": self.evaluations,
            "reused": self.reused,
            "guidance_reused": self.guidance_reused,
            "rows_run": self.rows_run,
            "rows_total": self.rows_total,
            "blocks_run": self.blocks_run,
            "blocks_total": self.blocks_total,
        }
