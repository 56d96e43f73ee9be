"""How square are a model's squares? The box fill of every asked circle and square.

    python benchmarks/shape_fill.py [--model kinema-tiny] [--seeds 2] [--threads 2]
        [-o reports/shape_fill]

The detector reads a blob's shape from the share of its bounding box it covers (box_fill in
kinema/world/detect.py): a square fills 1.0, a circle pi/4 = 0.785, and a blob above 0.9 reads as
a square. For every ShapesBench prompt (full suite) that asks for a circle or a square, each such
object is found by its colour in three clips: the ground truth, the truth through the model's
VAE (the ceiling: what the latent space can hold), and the model's own clip of the prompt. Every
whole blob (not cut by an edge or another object, not tiny) gives its fill.

Prints, per asked shape and source, the median fill and the share of blobs read as asked;
writes results.json and fill.png (the fill distributions, with the reading's 0.9 line) under -o.
A model whose squares sit between the two shapes draws rounded squares: the text chose neither.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from kinema.api import load
from kinema.eval.generators import groundtruth
from kinema.eval.shapesbench import BenchSettings, load_suite
from kinema.pipeline.conditioning import encode_frames
from kinema.world.detect import SQUARE_FILL, detect

ASKED = ("circle", "square")


def blob_fills(frames: np.ndarray, asked: dict[str, str]) -> list[tuple[str, float, str]]:
    """(asked shape, fill, shape read) of every whole blob of an asked circle or square, the
    objects told apart by colour (asked: colour -> shape)."""
    out = []
    for t in detect(frames).tracks:
        shape = asked.get(t.color)
        if shape is None:
            continue
        out += [(shape, b.fill, b.shape) for b in t.blobs if not b.truncated and not b.tiny]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=Path("reports/shape_fill"))
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error(f"--seeds must be at least 1, got {args.seeds}")
    torch.set_num_threads(args.threads)
    pipe = load(args.model)
    bench = BenchSettings()
    prompts = []
    for p in load_suite():
        objects = p.scene.objects
        colours = [o.color for o in objects]
        asked = {o.color: o.shape for o in objects if o.shape in ASKED}
        # one object per colour, so the colour names the object
        if asked and len(set(colours)) == len(colours):
            prompts.append((p.prompt, asked))

    fills: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for prompt, asked in track(prompts, description="prompts", transient=True):
        for seed in range(args.seeds):
            truth = groundtruth(prompt, seed, bench)
            clips = {
                "truth": truth,
                "VAE round trip": pipe.t2v.decode(encode_frames(pipe.t2v.vae, truth)),
                args.model: pipe(prompt, seed=seed, num_frames=bench.num_frames, fps=bench.fps,
                                 width=bench.width, height=bench.height).frames,
            }  # fmt: skip
            for source, frames in clips.items():
                for shape, fill, read in blob_fills(frames, asked):
                    fills[source][shape].append((fill, read == shape))

    table = Table(title=f"box fill of asked circles and squares: {len(prompts)} ShapesBench "
                  f"prompts x {args.seeds} seeds (whole blobs of every frame)")  # fmt: skip
    for column in ("source", "asked", "blobs", "median fill", "read as asked"):
        table.add_column(column, justify="left" if column in ("source", "asked") else "right")
    summary: dict[str, dict[str, dict]] = {}
    for source, by_shape in fills.items():
        for shape in ASKED:
            rows = by_shape.get(shape, [])
            if not rows:
                continue
            f = np.array([r[0] for r in rows])
            right = float(np.mean([r[1] for r in rows]))
            summary.setdefault(source, {})[shape] = {
                "blobs": len(rows), "median_fill": float(np.median(f)), "read_as_asked": right,
            }  # fmt: skip
            table.add_row(source, shape, str(len(rows)), f"{np.median(f):.3f}", f"{right:.1%}")
    Console(width=max(Console().width, 100)).print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"model": args.model, "seeds": args.seeds, "prompts": len(prompts), "summary": summary},
        indent=1,
    ))  # fmt: skip
    plot(fills, args.out / "fill.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'fill.png'}")


def plot(fills, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(fills)
    fig, axes = plt.subplots(1, len(sources), figsize=(4 * len(sources), 3.2), sharey=True)
    bins = np.linspace(0.6, 1.05, 37)
    for ax, source in zip(np.atleast_1d(axes), sources, strict=True):
        for shape, colour in zip(ASKED, ("tab:blue", "tab:orange"), strict=True):
            values = [f for f, _ in fills[source].get(shape, [])]
            if values:
                weights = np.full(len(values), 1 / len(values))
                ax.hist(values, bins=bins, weights=weights, alpha=0.6, color=colour,
                        label=f"asked {shape}")  # fmt: skip
        ax.axvline(np.pi / 4, color="tab:blue", ls=":", lw=1)
        ax.axvline(SQUARE_FILL, color="k", ls="--", lw=1)
        ax.set_title(source)
        ax.set_xlabel("box fill")
    np.atleast_1d(axes)[0].set_ylabel("share of blobs")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("box fill of whole blobs: a circle fills 0.785 (dotted), a square 1.0; "
                 f"read as a square above {SQUARE_FILL:g} (dashed)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
