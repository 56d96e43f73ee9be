"""Bounce on more seeds than ShapesBench's three: the suite's bounce prompts, many seeds.

    python benchmarks/bounce.py [--seeds 12] [--threads 2] MODEL [MODEL ...]

ShapesBench judges bounce on 4 prompts x 3 seeds, so one clip moves the score by 8 points and
stages seem to win or lose it by chance. This samples the same prompts with seeds 0..N-1 (the
model's default settings) and prints each model's share of clips that bounce as asked.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import kinema
from kinema.eval.shapesbench import load_suite, score_clip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="+", help="model names or folders")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    torch.set_num_threads(args.threads)
    prompts = [p.prompt for p in load_suite() if "bounce" in p.dimensions]
    table = Table(title=f"bounce: {len(prompts)} prompts x {args.seeds} seeds")
    for col in ("model", "clips", "bounce", *(p.split(" on ")[0] for p in prompts)):
        table.add_column(col, justify="right")
    for model in args.models:
        pipe = kinema.load(model)
        scores = np.array(
            [
                [score_clip(v.frames, p, v.fps)["bounce"] for v in (pipe(p, seed=s) for s in range(args.seeds))]
                for p in prompts
            ]
        )  # fmt: skip
        table.add_row(
            model, str(scores.size), f"{100 * scores.mean():.1f}%",
            *(f"{100 * row.mean():.0f}%" for row in scores),
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
