"""Why identity persistence fails: every broken frame transition of a model's clips, by reason.

    python benchmarks/identity_breaks.py [--model kinema-tiny] [--seeds 2] [--threads 2]
        [-o reports/identity_breaks]

ShapesBench's identity score is the share of frame transitions in which every visible object
continues its track (identity_breaks in kinema/eval/shapesbench.py). For every full-suite prompt
without the pillar (whose hidden stretches are scored by permanence instead), this generates the
model's clips and the ground truth's and counts the broken transitions by their first reason:
"shape" (the blob reads as another shape than the frame before: a rounded square read as a
circle in one frame and a square in the next), "new" (an object from nowhere), "gone" (one that
vanishes away from the edge), "size", "colour" or "jump" (a move past the scene's fastest
plausible step).

Prints the totals and the prompts with the most breaks; writes results.json under -o.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from kinema.eval.generators import get_generator, groundtruth
from kinema.eval.shapesbench import BenchSettings, clip_identity_breaks, load_suite

REASONS = ("shape", "new", "gone", "size", "colour", "jump")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=Path("reports/identity_breaks"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()

    settings = BenchSettings()
    prompts = [p for p in load_suite() if not p.scene.occluder]
    sources = {"ground truth": groundtruth, args.model: get_generator(args.model)}
    totals = {name: Counter() for name in sources}
    transitions = dict.fromkeys(sources, 0)
    per_prompt: dict[str, dict[str, int]] = {}
    for p in track(prompts, description="clips", console=console):
        for name, generate in sources.items():
            for seed in range(args.seeds):
                frames = generate(p.prompt, seed, settings)
                transitions[name] += len(frames) - 1
                reasons = Counter(why for _, why in clip_identity_breaks(frames, p.prompt,
                                                                         settings.fps))  # fmt: skip
                totals[name].update(reasons)
                if name == args.model:
                    per_prompt.setdefault(p.prompt, Counter()).update(reasons)

    t = Table(title=f"identity breaks: {len(prompts)} prompts x {args.seeds} seeds, no pillar")
    for c in ("source", "transitions", "broken", *REASONS):
        t.add_column(c, justify="right")
    for name in sources:
        broken = sum(totals[name].values())
        t.add_row(name, str(transitions[name]), f"{broken} ({broken / transitions[name]:.1%})",
                  *(str(totals[name][r]) for r in REASONS))  # fmt: skip
    console.print(t)
    worst = sorted(per_prompt.items(), key=lambda kv: -sum(kv[1].values()))[:12]
    t = Table(title=f"{args.model}: prompts with the most broken transitions")
    for c in ("prompt", "broken", "reasons"):
        t.add_column(c, justify="right" if c != "prompt" else "left")
    for prompt, reasons in worst:
        t.add_row(prompt, str(sum(reasons.values())),
                  ", ".join(f"{k} {v}" for k, v in reasons.most_common()))  # fmt: skip
    console.print(t)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "model": args.model,
        "seeds": args.seeds,
        "transitions": transitions,
        "reasons": {name: dict(c) for name, c in totals.items()},
        "per_prompt": {k: dict(v) for k, v in per_prompt.items()},
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    console.print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
