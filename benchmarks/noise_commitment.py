"""At which noise level does a model lose each attribute? ShapesBench from noised ground truth.

    python benchmarks/noise_commitment.py [--model kinema-tiny] [--starts 1 0.9 0.8 0.7 0.5 0.3]
        [--seeds 2] [--threads 2] [-o reports/noise_commitment]

For every ShapesBench quick prompt and seed, the ground-truth clip is encoded by the model's VAE,
noised to flow time t0 (x = (1 - t0) z + t0 eps) and sampled from there down to 0 with the model's
own sampler settings (the same time grid, only its steps below t0; step caching off), then scored
like any ShapesBench clip. t0 = 1 is plain text-to-video (nothing of the truth survives); the
column "VAE" is the truth through the VAE alone, the ceiling. Where a score climbs as t0 falls
tells where the model goes wrong: an attribute that holds from t0 = 0.5 but not from 1 is
decided at high noise (the layout stage, which training's time shift weights), one that is lost
even from low t0 is a matter of detail (the decoder, or the last steps).

Prints a table (attribute x t0), writes results.json and commitment.png (one line per
attribute) under -o.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from kinema.api import load
from kinema.eval.generators import groundtruth
from kinema.eval.shapesbench import DIMENSIONS, BenchSettings, load_suite, run_bench, summarize
from kinema.pipeline.conditioning import encode_frames
from kinema.pipeline.text_to_video import with_defaults

ACCURACIES = [d for d in DIMENSIONS if d not in ("flicker", "warping_error")]


def from_truth(pipe, start: float | None, settings: dict):
    """A ShapesBench generator: the ground truth noised to `start` and sampled to 0 by the
    model (start None: the truth through the VAE only)."""
    t2v = pipe.t2v

    def generate(prompt: str, seed: int, bench: BenchSettings) -> np.ndarray:
        z = encode_frames(t2v.vae, groundtruth(prompt, seed, bench))
        if start is None:
            return t2v.decode(z)
        s = t2v.settings(seed=seed, width=bench.width, height=bench.height,
                         num_frames=bench.num_frames, fps=bench.fps, **settings)  # fmt: skip
        cond, uncond = t2v.encode_prompt(prompt, s.negative_prompt)
        x = (1 - start) * z + start * t2v.prepare_latents(s)  # the seed's own noise
        return t2v.decode(t2v.sample(x, cond, uncond, s, start_time=start))

    return generate


def plot(summaries: dict[str, dict[str, float]], starts: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20").colors  # more lines than the default cycle's 10 colours
    for i, d in enumerate(ACCURACIES):
        ys = [100 * summaries[f"{t:g}"].get(d, np.nan) for t in starts]
        if not np.all(np.isnan(ys)):
            ax.plot(starts, ys, marker="o", label=d, color=colours[2 * i % 20 + 2 * i // 20])
    ax.set_xlabel("start time t0 (1 = pure noise: text-to-video)")
    ax.set_ylabel("ShapesBench score (%)")
    ax.invert_xaxis()
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("scores when sampling starts from the truth noised to t0")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny")
    ap.add_argument("--starts", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.5, 0.3])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=Path("reports/noise_commitment"))
    args = ap.parse_args()
    bad = [t for t in args.starts if not 0 < t <= 1]
    if bad:
        ap.error(f"--starts must lie in (0, 1], got {', '.join(f'{t:g}' for t in bad)}")
    torch.set_num_threads(args.threads)
    pipe = load(args.model)
    settings = with_defaults(pipe.t2v.sampler_defaults, {"cache_interval": 1})
    prompts, seeds = load_suite(quick=True), range(args.seeds)
    starts = sorted(set(args.starts), reverse=True)
    summaries: dict[str, dict[str, float]] = {}
    for label, start in [*((f"{t:g}", t) for t in starts), ("VAE", None)]:
        results = run_bench(
            from_truth(pipe, start, settings),
            track(prompts, description=f"t0 = {label}", transient=True), seeds,
        )  # fmt: skip
        summaries[label] = summarize(results)

    table = Table(title=f"{args.model}: ShapesBench quick ({len(prompts)} prompts x {args.seeds} "
                  f"seeds) sampled from the truth noised to t0")  # fmt: skip
    table.add_column("dimension")
    for label in summaries:
        table.add_column(f"t0 = {label}" if label != "VAE" else "VAE only", justify="right")
    for d in DIMENSIONS:
        if any(d in s for s in summaries.values()):
            cells = [summaries[k].get(d) for k in summaries]
            fmt = "{:.3g}" if d in ("flicker", "warping_error") else "{:.1%}"
            table.add_row(d, *("-" if v is None else fmt.format(v) for v in cells))
    Console(width=max(Console().width, 120)).print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"model": args.model, "seeds": args.seeds, "settings": settings, "summaries": summaries},
        indent=1,
    ))  # fmt: skip
    plot(summaries, starts, args.out / "commitment.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'commitment.png'}")


if __name__ == "__main__":
    main()
