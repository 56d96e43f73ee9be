"""Where a model's flicker comes from: latent boundaries or inside them, background or objects.

    python benchmarks/flicker_sources.py [--seeds 1] [--quick] [--threads 2] [-o OUT.json] MODEL...

ShapesBench's flicker is the mean absolute change between consecutive frames. This splits it
two ways, for each model and for the ground truth on the same prompts and seeds:
- by transition: the causal VAE decodes frame 0 alone and then groups of 4 frames per latent
  frame, so a change across a group boundary (frames 0-1, 4-5, 8-9, 12-13) is the transformer's
  latents changing, and one inside a group is the decoder's own temporal detail;
- by pixel: pixels of the background colour in both frames (within 40 of the clip's median
  colour in every channel) against the rest (objects and their edges). A steady background
  should not change at all; the truth's background flicker is 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import kinema
from kinema.eval.generators import groundtruth
from kinema.eval.shapesbench import BenchSettings, load_suite
from kinema.pipeline.conditioning import latent_index

BACKGROUND_TOLERANCE = 40  # 0..255 per channel


def flicker_parts(frames: np.ndarray) -> dict[str, float]:
    """Sums and counts of |frame change| (mean over channels) by transition kind and pixel kind,
    for pooling over clips (a mean of sums, not of per-clip means)."""
    x = frames.astype(np.float32)
    change = np.abs(np.diff(x, axis=0)).mean(axis=-1)  # (T - 1, H, W)
    background = np.median(x.reshape(-1, 3), axis=0)
    is_bg = (np.abs(x - background) < BACKGROUND_TOLERANCE).all(axis=-1)  # (T, H, W)
    bg_pair = is_bg[1:] & is_bg[:-1]
    crosses = np.array(
        [latent_index(t) != latent_index(t + 1) for t in range(len(frames) - 1)]
    )  # fmt: skip
    pixels = change[0].size
    return {
        "all": float(change.sum()), "all_n": change.size,
        "boundary": float(change[crosses].sum()), "boundary_n": int(crosses.sum()) * pixels,
        "inside": float(change[~crosses].sum()), "inside_n": int((~crosses).sum()) * pixels,
        "background": float(change[bg_pair].sum()), "background_n": int(bg_pair.sum()),
        "objects": float(change[~bg_pair].sum()), "objects_n": int((~bg_pair).sum()),
    }  # fmt: skip


def pooled(parts: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in ("all", "boundary", "inside", "background", "objects"):
        total, n = sum(p[key] for p in parts), sum(p[f"{key}_n"] for p in parts)
        out[key] = total / max(n, 1)
    out["background_share"] = sum(p["background"] for p in parts) / max(
        sum(p["all"] for p in parts), 1e-9
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="+", help="model names or folders")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="ShapesBench quick's prompts only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    torch.set_num_threads(args.threads)
    suite = [p for p in load_suite() if p.quick or not args.quick]
    settings = BenchSettings()
    jobs = [(p.prompt, s) for p in suite for s in range(args.seeds)]
    results = {"groundtruth": pooled([flicker_parts(groundtruth(p, s, settings)) for p, s in jobs])}
    for model in args.models:
        pipe = kinema.load(model)
        results[model] = pooled(
            [flicker_parts(pipe(p, seed=s, width=settings.width, height=settings.height,
                                num_frames=settings.num_frames, fps=settings.fps).frames)
             for p, s in jobs]
        )  # fmt: skip
    table = Table(title=f"flicker sources: {len(suite)} prompts x {args.seeds} seed(s)")
    table.add_column("generator", no_wrap=True)
    for col in ("flicker", "boundaries", "inside", "bg px", "object px", "bg share"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(
            name, f"{r['all']:.2f}", f"{r['boundary']:.2f}", f"{r['inside']:.2f}",
            f"{r['background']:.2f}", f"{r['objects']:.2f}", f"{100 * r['background_share']:.0f}%",
        )  # fmt: skip
    Console(width=max(100, Console().width)).print(table)
    print(
        "boundaries / inside: frame changes across latent groups / inside them; bg px / object"
        " px: mean change of background pixels / the rest; bg share: background's part of it"
    )
    if args.output:
        args.output.write_text(json.dumps({"clips": len(jobs), "results": results}, indent=1))


if __name__ == "__main__":
    main()
