"""Can guidance against the mirrored caption steer direction? A sampling screen, not a feature.

    python benchmarks/direction_guidance.py [--model kinema-tiny] [--seeds 2]
        [--mode none|negative|contrast] [--weight 2] [--guidance 3]

The direction probe (benchmarks/direction_binding.py) says kinema-tiny reads the axis of its
direction words well and the sign weakly. Guidance can only amplify what the network tells
apart, so this screen asks whether the weak sign signal is enough when guidance pushes on it:

- negative: the mirrored caption ("... moving right" for "... moving left", kinema/world/pairs.py)
  as the negative prompt, in place of the empty one: v = v_mirror + g (v_cond - v_mirror). The
  difference then holds only the direction (colour and shape cancel out).
- contrast: a third branch beside plain classifier-free guidance,
  v = v_uncond + g (v_cond - v_uncond) + w (v_cond - v_mirror), 1.5x the forwards.
- none: the default sampling, for comparison.

Prompts: ShapesBench's direction and count prompts (16, 14 with a left/right/up/down mover;
diagonal movers and still scenes keep the default sampling). Scores are ShapesBench's judge.
Every mode runs without step caching, so the modes compare like for like.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import kinema
import kinema.pipeline.text_to_video as text_to_video
from kinema.eval.shapesbench import load_suite, score_clip
from kinema.sampling.guidance import TextCondition, guided_velocity
from kinema.world.captions import canonical_caption
from kinema.world.pairs import mirrored
from kinema.world.parse import parse_caption

SHOWN = ("direction", "speed", "count", "color", "shape", "size", "identity", "flicker")


def mirror_caption(prompt: str) -> str | None:
    """The prompt with its direction words swapped, or None when nothing in it has a sign."""
    scene = parse_caption(prompt)
    if any(o.motion == "diagonal" for o in scene.objects):
        return None
    flipped = mirrored(scene)
    return None if flipped is None else canonical_caption(flipped)


class ContrastGuidance:
    """Stands in for the sampler's guided_velocity: with a mirror caption set, three branches
    (conditional, unconditional, mirror), one row each, combined as in the docstring above."""

    def __init__(self, weight: float):
        self.weight = weight
        self.mirror: TextCondition | None = None

    def __call__(self, net, prediction, cond, uncond, guidance, known=None, motion=None,
                 fps=None, step_cache=None, image=None):  # fmt: skip
        if self.mirror is None:
            return guided_velocity(net, prediction, cond, uncond, guidance, known, motion, fps,
                                   step_cache, image)  # fmt: skip
        device = cond.states.device
        mirror = TextCondition(self.mirror.states.to(device), self.mirror.mask.to(device))

        def branch(c: TextCondition, motion: float | None):
            return guided_velocity(net, prediction, c, None, 1.0, known, motion, fps, None, image)

        # the unconditional branch goes without the motion strength, as in guided_velocity
        v_cond, v_uncond, v_mirror = (
            branch(cond, motion),
            branch(uncond, None),
            branch(mirror, motion),
        )

        def velocity(x, t):
            vc, vu = v_cond(x, t), v_uncond(x, t)
            return vu + guidance * (vc - vu) + self.weight * (vc - v_mirror(x, t))

        return velocity


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--mode", choices=("none", "negative", "contrast"), default="contrast")
    ap.add_argument("--weight", type=float, default=2.0, help="contrast branch weight w")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    pipe = kinema.load(args.model)
    contrast = ContrastGuidance(args.weight)
    if args.mode == "contrast":
        text_to_video.guided_velocity = contrast  # the sampler looks it up in its module
    prompts = [p for p in load_suite() if {"direction", "count"} & set(p.dimensions)]
    scores: dict[str, list[float]] = {}
    start = time.perf_counter()
    for p in prompts:
        flipped = mirror_caption(p.prompt)
        negative = flipped if (args.mode == "negative" and flipped) else ""
        contrast.mirror = pipe.t2v.encode_prompt(flipped)[0] if flipped else None
        for seed in range(args.seeds):
            video = pipe(p.prompt, seed=seed, num_frames=17, fps=8, width=64, height=64,
                         guidance=args.guidance, negative_prompt=negative, cache_interval=1)  # fmt: skip
            for k, v in score_clip(video.frames, p.prompt, 8).items():
                scores.setdefault(k, []).append(v)
    seconds = time.perf_counter() - start

    weight = f", w {args.weight:g}" if args.mode == "contrast" else ""
    table = Table(title=f"{args.model}: {args.mode}{weight}, guidance {args.guidance:g}, "
                  f"{len(prompts)} prompts x {args.seeds} seeds, {seconds:.0f} s")  # fmt: skip
    table.add_column("dimension")
    table.add_column("score")
    table.add_column("clips", justify="right")
    for k in SHOWN:
        if k in scores:
            value = np.mean(scores[k])
            shown = f"{value:.2f}" if k == "flicker" else f"{100 * value:.1f}%"
            table.add_row(k, shown, str(len(scores[k])))
    Console().print(table)


if __name__ == "__main__":
    main()
