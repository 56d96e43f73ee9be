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
- Interleaved reuse (`interval` n > 1; FORA's fixed interval, with FasterCache's guidance
  reuse). After the warm-up, every n-th evaluation runs in full (both branches, all blocks); the
  ones between run the conditional branch's first block only, add the other blocks' residual of
  the last full evaluation, and take the guidance difference extrapolated along a straight line
  through the last two full evaluations. A fixed plan, not a threshold: the cost of a run is
  known before it starts. Why interleave rather than skip where the first block changed little:
  on kinema-tiny one reused step after the first fifth of the run changes the clip by 47-65 dB
  PSNR on its own, and the early steps decide the layout and motion; so the plan protects the
  first 35% of the run and then saves on the late steps, where a reuse costs least: n = 3 at 20
  steps runs 7 steps in full, then 5 of the other 13, for 1.60x fewer FLOPs with every
  ShapesBench score within 2 points (README).

The first `warmup` evaluations reuse nothing: the early, noisy steps decide the clip's layout
and motion, and reusing there cost kinema-tiny most of its motion scores on ShapesBench
(README). `warmup_evaluations` gives the quarter of a run that kinema protects for the first two
reuses, and the 35% that interleaved reuse protects.

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
INTERVAL_WARMUP_FRACTION = 0.35  # the same for interleaved reuse


def warmup_evaluations(evaluations: int, interval: int = 1) -> int:
    fraction = INTERVAL_WARMUP_FRACTION if interval > 1 else WARMUP_FRACTION
    return math.ceil(fraction * evaluations)


def interval_full_due(n: int, warmup: int, interval: int) -> bool:
    """Interleaved reuse's plan: whether evaluation n runs in full (the warm-up, then every
    interval-th one)."""
    return interval == 1 or n < warmup or (n - warmup) % interval == 0


def interval_full_evaluations(evaluations: int, interval: int) -> int:
    """How many of a run's evaluations interleaved reuse runs in full (the others reuse)."""
    if interval <= 1:  # no interleave: all of them
        return evaluations
    warmup = warmup_evaluations(evaluations, interval)
    return sum(interval_full_due(n, warmup, interval) for n in range(evaluations))


@dataclass
class StepCache:
    threshold: float | None  # block reuse: relative change of the first block's residual; None: off
    warmup: int = 0  # evaluations at the start that never reuse
    guidance_every: int = 1  # guidance reuse: run the unconditional branch every k-th evaluation
    interval: int = 1  # interleaved reuse: every n-th evaluation in full, the others cached
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
    # (evaluation, v_cond - v_uncond) of the last two evaluations with both branches
    _deltas: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"the cache threshold must be more than 0, got {self.threshold}")
        if not (isinstance(self.guidance_every, int) and self.guidance_every >= 1):
            raise ValueError(
                f"guidance reuse must run the unconditional branch every 1 or more evaluations, "
                f"got {self.guidance_every}"
            )
        if not (isinstance(self.interval, int) and self.interval >= 1):
            raise ValueError(
                f"the cache interval must be 1 or more evaluations, got {self.interval}"
            )
        if self.interval > 1 and (self.threshold is not None or self.guidance_every > 1):
            raise ValueError(
                "interleaved reuse (interval) decides both reuses itself: leave the threshold "
                "and guidance_every off with it"
            )

    @property
    def reuses_guidance(self) -> bool:
        """Whether some evaluations run the conditional branch alone."""
        return self.guidance_every > 1 or self.interval > 1

    def full_due(self) -> bool:
        """Interleaved reuse: whether the next evaluation runs in full."""
        return interval_full_due(self.evaluations, self.warmup, self.interval)

    # ------------------------------------------------------------------ guidance reuse

    def unconditional_due(self) -> bool:
        """Whether the next evaluation must run the unconditional branch too."""
        n = self.evaluations  # index of the next evaluation
        if not self._deltas:
            return True
        if self.interval > 1:
            return self.full_due()
        if self.guidance_every == 1 or n < self.warmup:
            return True
        # the warm-up's last evaluation left a fresh difference: reuse it first
        return (n - self.warmup + 1) % self.guidance_every == 0

    def guided(self, v_cond: torch.Tensor, v_uncond: torch.Tensor | None, scale: float):
        """The guided velocity; remembers the branches' difference when both ran, reuses the
        last one when only the conditional branch did (interleaved reuse: extrapolated from the
        last two). Called after the evaluation's network call."""
        n = self.evaluations - 1  # this evaluation
        if v_uncond is not None:
            delta = v_cond - v_uncond
            self._deltas = [*self._deltas[-1:], (n, delta)]
            return v_cond + (scale - 1.0) * delta
        self.guidance_reused += 1
        delta = self._deltas[-1][1]
        if self.interval > 1 and len(self._deltas) == 2:
            (i0, d0), (i1, d1) = self._deltas
            delta = d1 + (d1 - d0) * ((n - i1) / (i1 - i0))
        return v_cond + (scale - 1.0) * delta

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
        cached = not self.full_due()
        self.evaluations += 1
        self.rows_run += rows
        self.rows_total += self._rows
        self.blocks_total += blocks * self._rows
        first = block(0, tokens)
        self.blocks_run += rows
        residual = first - tokens
        warm = self.evaluations > self.warmup
        if cached and blocks > 1 and self._comparable(residual):
            self.reused += 1
            return first + self._rest[:rows]
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
            "interval": self.interval,
            "evaluations": self.evaluations,
            "reused": self.reused,
            "guidance_reused": self.guidance_reused,
            "rows_run": self.rows_run,
            "rows_total": self.rows_total,
            "blocks_run": self.blocks_run,
            "blocks_total": self.blocks_total,
        }
