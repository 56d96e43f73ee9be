"""Training-step speed of kinema-tiny's transformer: float32 against bf16 mixed precision.

    python benchmarks/train_speed.py [--threads 2] [--rounds 3] [--steps 4] [--compile]

One step is what `kinema train dit` does per batch: forward under autocast (or not), the
flow-matching loss, backward, AdamW. Batch 8 of 64x64x17 clips (latents 16x5x16x16, 320 tokens)
and a 16-token caption, the shapes of the most frequent training bucket. Precisions alternate
round by round so that a change in the machine's load hits both. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kinema.dit.transformer import DiT, DiTConfig
from kinema.train.trainer import native_bf16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow start)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = DiTConfig(micro_conditioning=True, pooled_text=True, text_whitening=True)
    model = DiT(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    b = args.batch
    x, t = torch.randn(b, 16, 5, 16, 16), torch.rand(b)
    ctx, mask = torch.randn(b, 16, 384), torch.ones(b, 16, dtype=torch.bool)
    motion, fps = torch.full((b,), 100.0), torch.full((b,), 8.0)
    target = torch.randn_like(x)

    def step(net, bf16: bool) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = net(x, t, ctx, mask, motion, fps)
        loss = (out.float() - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    variants = {"fp32": (model, False), "bf16": (model, True)}
    compile_s = None
    if args.compile:
        compiled = torch.compile(model)
        start = time.perf_counter()
        step(compiled, True)
        compile_s = time.perf_counter() - start
        variants["bf16_compiled"] = (compiled, True)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (net, bf16) in variants.items():
            step(net, bf16)  # warm-up
            start = time.perf_counter()
            for _ in range(args.steps):
                step(net, bf16)
            times[name].append((time.perf_counter() - start) / args.steps)
    best = {k: min(v) for k, v in times.items()}
    report = {
        "threads": args.threads,
        "batch": b,
        "tokens": 320,
        "native_bf16": native_bf16(torch.device("cpu")),
        "seconds_per_step": {k: [round(s, 3) for s in v] for k, v in times.items()},
        "best_seconds_per_step": {k: round(v, 3) for k, v in best.items()},
        "speedup_vs_fp32": {k: round(best["fp32"] / v, 2) for k, v in best.items()},
        "compile_seconds": None if compile_s is None else round(compile_s, 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
