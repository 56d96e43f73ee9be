"""Paired comparison of two ShapesBench runs on the same prompts and seeds.

Two runs of one model with a change (a cache, a solver, new weights) produce the same clip for
most prompt/seed pairs, so their scores are compared pair by pair: per dimension, the mean of
each run, the mean difference (B - A, in points for accuracies) and a bootstrap interval over the
pairs. A difference whose interval excludes 0 is a real change, not the luck of which clips were
drawn; with 10 seeds one clip moves a dimension by 0.7 to 10 points, so a raw difference of a few
points alone says little.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinema.eval.shapesbench import ACCURACY_DIMENSIONS, DIMENSIONS

REFERENCES = ("groundtruth", "independent-frames")


class CompareError(ValueError):
    """A results file that cannot be read or compared; the message says why."""


@dataclass(frozen=True)
class PairedDifference:
    dimension: str
    pairs: int
    mean_a: float
    mean_b: float
    difference: float  # mean of B - A over the pairs
    low: float  # bootstrap interval of the difference
    high: float
    changed: int  # pairs whose score differs

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def load_clips(path: str | Path, generator: str | None = None) -> tuple[str, dict]:
    """(generator name, {(prompt_id, seed): scores}) from a results.json or its report folder.
    Without a generator name, the file's one generator that is not a reference."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        runs = json.loads(path.read_text())["clips"]
    except FileNotFoundError:
        raise CompareError(
            f"{path}: no such file (give a results.json or its report folder)"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise CompareError(f"{path}: not a ShapesBench results.json (no 'clips')") from None
    if generator is None:
        own = [n for n in runs if n not in REFERENCES] or list(runs)
        if len(own) != 1:
            raise CompareError(f"{path} holds {', '.join(runs)}: name the generator to compare")
        generator = own[0]
    if generator not in runs:
        raise CompareError(f"{path} has no generator {generator!r}; it has {', '.join(runs)}")
    try:
        clips = {(c["prompt_id"], c["seed"]): c["scores"] for c in runs[generator]}
    except (KeyError, TypeError):
        raise CompareError(
            f"{path}: the clips of {generator!r} lack prompt_id/seed/scores"
        ) from None
    return generator, clips


def compare_runs(
    a: dict, b: dict, confidence: float = 0.9, resamples: int = 4000, seed: int = 0
) -> tuple[list[PairedDifference], PairedDifference]:
    """Per-dimension paired differences of two runs' clips ({(prompt_id, seed): scores}), and the
    pooled one (every accuracy score of every shared clip). Accuracies in points (0..100),
    flicker and warping error in their own units."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise CompareError("the two runs share no (prompt, seed) clip: run them on the same suite")
    rng = np.random.default_rng(seed)
    tail = 100 * (1 - confidence) / 2

    def paired(dim: str, xa: np.ndarray, xb: np.ndarray) -> PairedDifference:
        diff = xb - xa
        picks = rng.integers(0, len(diff), (resamples, len(diff)))
        low, high = np.percentile(diff[picks].mean(axis=1), [tail, 100 - tail])
        changed = int((np.abs(diff) > 1e-9).sum())
        return PairedDifference(dim, len(diff), float(xa.mean()), float(xb.mean()),
                                float(diff.mean()), float(low), float(high), changed)  # fmt: skip

    rows, pooled_a, pooled_b = [], [], []
    for dim in DIMENSIONS:
        pairs = [(a[k][dim], b[k][dim]) for k in shared if a[k].get(dim) is not None
                 and b[k].get(dim) is not None]  # fmt: skip
        if not pairs:
            continue
        x = np.asarray(pairs, dtype=np.float64)
        if dim in ACCURACY_DIMENSIONS:
            x = 100 * x
            pooled_a += list(x[:, 0])
            pooled_b += list(x[:, 1])
        rows.append(paired(dim, x[:, 0], x[:, 1]))
    pooled = paired("pooled", np.asarray(pooled_a), np.asarray(pooled_b))
    return rows, pooled
