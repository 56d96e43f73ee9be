"""Build a pool of a model's own latents paired with world clips, for a decoder fine-tune.

    python tools/latent_pool.py --model kinema-tiny --clips 1000 -o runs/pool.safetensors
    kinema train vae --decoder-only --init kinema/assets/kinema-tiny/vae.safetensors \
        --latent-pool runs/pool.safetensors ...

kinema/train/latent_pool.py says what an entry is. About 1 s a clip on a 2-core CPU.
"""

import argparse
import time
from pathlib import Path

import torch
from rich.progress import Progress

from kinema.api import load
from kinema.train.latent_pool import POOL_SEED, build_latent_pool, pool_meta, save_latent_pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model", default="kinema-tiny")
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--start", type=float, nargs=2, default=[0.5, 0.9], metavar=("LO", "HI"),
                    help="flow times t0 are drawn uniformly from [LO, HI]")  # fmt: skip
    ap.add_argument("--seed", type=int, default=POOL_SEED,
                    help="scene and noise stream (another seed gives a held-out pool)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=Path("runs/pool.safetensors"))
    args = ap.parse_args()
    if args.clips < 1:
        ap.error("--clips must be at least 1")
    lo, hi = args.start
    if not 0 < lo <= hi <= 1:
        ap.error(f"--start must satisfy 0 < LO <= HI <= 1, got {lo:g} {hi:g}")
    torch.set_num_threads(args.threads)
    pipe = load(args.model)
    began = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task("sampling", total=args.clips)

        def on_clip(i: int) -> None:
            progress.update(task, completed=i + 1)
            if not progress.console.is_terminal and (i + 1) % 100 == 0:  # a log file sees no bar
                rate = (time.perf_counter() - began) / (i + 1)
                print(f"{i + 1} of {args.clips} clips ({rate:.2f} s a clip)", flush=True)

        pool = build_latent_pool(pipe, args.clips, (lo, hi), args.seed, on_clip=on_clip)
    meta = {**pool_meta(args.model, args.clips, (lo, hi)), "seed": args.seed}
    path = save_latent_pool(pool, args.out, meta)
    took = time.perf_counter() - began
    print(f"wrote {path}: {len(pool)} clips in {took:.0f} s ({took / len(pool):.2f} s a clip)")


if __name__ == "__main__":
    main()
