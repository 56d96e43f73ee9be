"""Generation speed of a model on this machine, printed as JSON.

    python benchmarks/generate_speed.py [--model kinema-tiny] [--runs 3]

- warm: a base clip (64x64, 17 frames at 8 fps) with the model loaded, per stage and in all,
  against the clip's own duration (real-time factor);
- cold: `kinema generate` in a fresh process (import, load, generate, write);
- achieved FLOP/s of the transformer (counted by torch's FlopCounterMode) against a plain
  matmul of similar size measured in the same run, since absolute times drift on shared machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import kinema


def matmul_flops_per_s(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="kinema-tiny")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, help="sampler steps [default: the model's]")
    parser.add_argument("--cache-interval", type=int, help="step caching [default: the model's]")
    parser.add_argument("--eta", type=float, help="fresh noise per step [default: the model's]")
    args = parser.parse_args()
    prompt = "a red circle moving left on a black background"

    start = time.perf_counter()
    pipe = kinema.load(args.model)
    load_s = time.perf_counter() - start
    t2v = pipe.t2v
    # the model's own sampler defaults (kinema-tiny: 30 steps, step caching 3, eta 1) unless told
    sampler = {"steps": args.steps, "cache_interval": args.cache_interval, "eta": args.eta}
    settings = pipe.settings(**sampler)
    t2v.generate(prompt, settings)  # warm-up
    runs = []
    for seed in range(args.runs):
        start = time.perf_counter()
        frames, timings = t2v.generate(prompt, pipe.settings(seed=seed, **sampler))
        runs.append({"total": time.perf_counter() - start, **timings})
    best = min(runs, key=lambda r: r["total"])
    clip_seconds = len(frames) / settings.fps

    # transformer FLOPs of one guided step (both CFG branches in one batch)
    cond, uncond = t2v.encode_prompt(prompt)
    x = t2v.prepare_latents(settings)
    ctx = torch.zeros(2, max(cond.states.shape[1], uncond.states.shape[1]), cond.states.shape[2])
    t = torch.full((2, x.shape[2]), 0.5)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        t2v.dit(torch.cat([x, x]), t, ctx)
    step_flops = counter.get_total_flops()
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(5):
            t2v.dit(torch.cat([x, x]), t, ctx)
        step_s = (time.perf_counter() - start) / 5
    tokens = (
        2 * x.shape[2] * (x.shape[3] // t2v.dit.cfg.patch[1]) * (x.shape[4] // t2v.dit.cfg.patch[2])
    )
    peer = matmul_flops_per_s(tokens, t2v.dit.cfg.dim, t2v.dit.cfg.ffn_dim)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cold.mp4"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kinema.cli", "generate", prompt, "-o", str(out), "--model", args.model]
            + ["--steps", str(args.steps)] * (args.steps is not None)
            + ["--cache-interval", str(args.cache_interval)] * (args.cache_interval is not None)
            + ["--eta", str(args.eta)] * (args.eta is not None),
            check=True, capture_output=True,
        )  # fmt: skip
        cold_s = time.perf_counter() - start

    print(json.dumps({
        "model": args.model,
        "clip": {"width": settings.width, "height": settings.height, "frames": len(frames), "fps": settings.fps,
                 "seconds": clip_seconds},
        "steps": settings.steps,
        "cache_interval": settings.cache_interval,
        "eta": settings.eta,
        "eta_from": settings.eta_from,
        "load_seconds": round(load_s, 2),
        "warm_seconds_best": round(best["total"], 3),
        "warm_stages_best": {k: round(v, 3) for k, v in best.items() if k != "total"},
        "warm_seconds_all": [round(r["total"], 3) for r in runs],
        "real_time_factor": round(best["total"] / clip_seconds, 3),
        "cold_generate_seconds": round(cold_s, 2),
        "dit_step_gflop": round(step_flops / 1e9, 3),
        "dit_step_seconds": round(step_s, 4),
        "dit_gflop_per_s": round(step_flops / step_s / 1e9, 1),
        "matmul_peer_gflop_per_s": round(peer / 1e9, 1),
        "dit_fraction_of_matmul": round(step_flops / step_s / peer, 3),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
