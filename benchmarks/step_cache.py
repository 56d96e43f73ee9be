"""Step caching: what each setting saves and how far it moves the clips, printed as a table.

    python benchmarks/step_cache.py [--model kinema-tiny] [--seeds 1] [--threads 2]

For every setting, the ShapesBench quick prompts (64x64, 17 frames, the model's default sampler)
are made with and without it from the same seed: transformer FLOPs (counted in rows and blocks
run, kinema.pipeline.plan.step_cache_flops), wall time of the whole generation, and the PSNR of the
cached clip against the uncached one (mean and worst clip). PSNR is the quick screen; whether a
setting keeps quality is for ShapesBench to judge (`kinema bench shapes --quick --seeds 10
--cache-interval 3`, then `kinema bench compare`).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import kinema
from kinema.eval.shapesbench import load_suite
from kinema.pipeline.plan import clip_step_cache_flops

SETTINGS = {
    "blocks 0.2": {"cache_threshold": 0.2},
    "guidance every 2": {"cache_guidance_every": 2},
    "blocks 0.1, guidance every 3": {"cache_threshold": 0.1, "cache_guidance_every": 3},
    "interval 2": {"cache_interval": 2},
    "interval 3": {"cache_interval": 3},
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="kinema-tiny")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = kinema.load(args.model)
    prompts = [p.prompt for p in load_suite(quick=True)]
    clips = [(p, seed) for seed in range(args.seeds) for p in prompts]
    size = dict(width=64, height=64, num_frames=17)

    def make(prompt, seed, **cache):
        start = time.perf_counter()
        video = pipe(prompt, seed=seed, **size, **cache)
        return video, time.perf_counter() - start

    base = [make(p, s) for p, s in clips]
    base_time = sum(t for _, t in base)
    print(f"{len(clips)} clips ({len(prompts)} prompts x {args.seeds} seeds), "
          f"torch threads {torch.get_num_threads()}; uncached: {base_time:.1f} s in all")  # fmt: skip
    print(f"{'setting':32s} {'FLOPs fewer':>11s} {'time':>7s} {'PSNR mean':>9s} {'worst':>6s}")
    for name, cache in SETTINGS.items():
        flops = full = seconds = 0.0
        scores = []
        for (prompt, seed), (ref, _) in zip(clips, base, strict=True):
            video, took = make(prompt, seed, **cache)
            seconds += took
            run, total = clip_step_cache_flops(pipe.t2v, video.metadata)
            flops, full = flops + run, full + total
            scores.append(psnr(video.frames, ref.frames))
        print(f"{name:32s} {full / flops:10.2f}x {base_time / seconds:6.2f}x "
              f"{np.mean(scores):8.1f}  {np.min(scores):5.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
