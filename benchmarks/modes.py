"""Figures for the conditioned modes, measured on Shapes-world scenes with the ShapesBench judge.

    python benchmarks/modes.py [--model kinema-tiny] [--scenes 8] [--long 3] [--seconds 20]

- image-to-video: PSNR of frame 0 to the given image; direction accuracy of the clip against the
  prompt (does the motion follow the text?) next to plain text-to-video on the same prompts;
- first/last frame: PSNR of the last frame to the given last image;
- long clips: identity persistence over the whole clip (ShapesBench detector), flicker at window
  seams against flicker inside windows and motion magnitude (next to the ground truth's): a plain
  chain (the default), re-anchored, and hierarchical when the model has an fps input;
- motion strength (models with the input): motion magnitude for several settings.
Prints tables and writes reports/modes_<model>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import kinema
from kinema.eval.compare import compare_runs
from kinema.eval.shapesbench import clip_identity_breaks, score_clip
from kinema.eval.video_metrics import motion_magnitude
from kinema.pipeline.long_clip import SEAM_BAND, ChainSettings, seam_flicker
from kinema.world import vocab
from kinema.world.captions import canonical_caption
from kinema.world.render import render
from kinema.world.sampler import place, random_scene


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def moving_scenes(n: int, seed: int):
    """Scenes with one or two objects moving in a direction (so direction accuracy applies)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        scene = random_scene(rng, max_objects=2)
        if any(o.motion in vocab.DIRECTIONS for o in scene.objects) and not scene.occluder:
            out.append((canonical_caption(scene), place(scene, rng, 2.0, 64, 64, strict=False)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--long", type=int, default=3, help="prompts for the long-clip figures")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("-o", "--output", type=Path, default=None)
    ap.add_argument(
        "--long-variants",
        choices=("chain", "anchored", "hierarchical"),
        action="append",
        help="long-clip variants (repeatable) [default: all]",
    )
    ap.add_argument("--only", choices=("image", "long", "motion"), action="append",
                    help="measure these parts only (repeatable) [default: all]")  # fmt: skip
    args = ap.parse_args()
    parts = set(args.only or ("image", "long", "motion"))
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    pipe = kinema.load(args.model)
    micro = pipe.t2v.dit.cfg.micro_conditioning
    report: dict = {"model": args.model, "micro_conditioning": micro}

    if "image" in parts:
        image_to_video(pipe, args, report, console)
    if "long" in parts:
        long_clips(pipe, args, report, console, micro)
    if micro and "motion" in parts:
        motion_strengths(pipe, args, report, console)
    part = "" if args.only is None else "_" + "_".join(sorted(parts))
    out = args.output or Path("reports") / f"modes_{Path(args.model).name}{part}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float))
    console.print(f"wrote {out}")


def image_to_video(pipe, args, report: dict, console: Console) -> None:
    """Image-to-video and first/last frame."""
    rows = []
    for i, (prompt, scene) in enumerate(moving_scenes(args.scenes, seed=7)):
        gt = render(scene, 64, 64, 17, 8.0)
        t2v = pipe(prompt, seed=i)
        i2v = pipe(prompt, seed=i, image=gt[0])
        fl = pipe(prompt, seed=i, image=gt[0], last_image=gt[16])
        rows.append({
            "prompt": prompt,
            "first_psnr": psnr(i2v.frames[0], gt[0]),
            "last_psnr_first_last": psnr(fl.frames[16], gt[16]),
            "last_psnr_i2v": psnr(i2v.frames[16], gt[16]),
            "direction_t2v": score_clip(t2v.frames, prompt, 8.0).get("direction", np.nan),
            "direction_i2v": score_clip(i2v.frames, prompt, 8.0).get("direction", np.nan),
            "identity_i2v": score_clip(i2v.frames, prompt, 8.0)["identity"],
            "identity_t2v": score_clip(t2v.frames, prompt, 8.0)["identity"],
        })  # fmt: skip
    means = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k != "prompt"}
    gain = direction_gain(rows)
    report["image_to_video"] = {"scenes": len(rows), **means, "direction_gain": gain, "rows": rows}
    t = Table(title=f"image-to-video, {len(rows)} world scenes, 64x64, 17 frames")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in means.items():
        t.add_row(k, f"{v:.3f}" if "psnr" not in k else f"{v:.2f} dB")
    t.add_row("direction, image - text only", f"{gain['difference']:+.1f} points "
              f"({gain['low']:+.1f}..{gain['high']:+.1f}, 90%)")  # fmt: skip
    console.print(t)


def direction_gain(rows: list[dict]) -> dict:
    """Direction accuracy with the image minus text only, paired by scene, with a bootstrap
    interval: the two differ by a few movers on a handful of scenes, which alone says little."""
    text = {(i, 0): {"direction": r["direction_t2v"]} for i, r in enumerate(rows)}
    image = {(i, 0): {"direction": r["direction_i2v"]} for i, r in enumerate(rows)}
    (row,), _ = compare_runs(text, image)
    return {"scenes": row.pairs, "difference": row.difference, "low": row.low, "high": row.high}


def long_clips(pipe, args, report: dict, console: Console, micro: bool) -> None:
    n_frames = 1 + 4 * round(args.seconds * 8 / 4)
    variants = [("chain", {}), ("anchored", dict(chain=ChainSettings(anchor=True)))]
    if micro:
        variants.append(("hierarchical", dict(hierarchical=True)))
    variants = [v for v in variants if v[0] in (args.long_variants or [v[0]])]
    long_rows = []
    for name, kw in variants:
        for i, (prompt, _scene) in enumerate(moving_scenes(args.long, seed=11)):
            start = time.perf_counter()
            video = pipe(prompt, seed=i, num_frames=n_frames, **kw)
            took = time.perf_counter() - start
            at, inside = seam_flicker(video.frames, video.metadata["window_starts"])
            scores = score_clip(video.frames, prompt, 8.0)
            breaks = clip_identity_breaks(video.frames, prompt, 8.0)
            long_rows.append({"variant": name, "prompt": prompt, "seconds": took,
                              "identity": scores["identity"], "color": scores["color"],
                              "seam_flicker": at, "inside_flicker": inside,
                              "motion": motion_magnitude(video.frames),
                              **where_identity_breaks(breaks, video.metadata["window_starts"],
                                                      n_frames)})  # fmt: skip
    truth = [
        (p, render(place(s, np.random.default_rng(0), args.seconds, 64, 64, strict=False),
                   64, 64, n_frames, 8.0))
        for p, s in moving_scenes(args.long, seed=11)
    ]  # fmt: skip
    gt_identity = float(np.mean([score_clip(f, p, 8.0)["identity"] for p, f in truth]))
    gt_motion = float(np.mean([motion_magnitude(f) for _, f in truth]))
    t = Table(
        title=f"long clips: {n_frames} frames ({args.seconds:g} s), {args.long} prompts; "
        f"ground truth: identity {gt_identity:.3f}, motion {gt_motion:.4f}"
    )
    columns = ("variant", "identity", "colour", "seam flicker", "inside flicker", "ratio",
               "motion", "s/clip")  # fmt: skip
    for c in columns:
        t.add_column(c, justify="right")
    summary = {}
    for name, _ in variants:
        rs = [r for r in long_rows if r["variant"] == name]
        m = {
            k: float(np.mean([r[k] for r in rs]))
            for k in ("identity", "color", "seam_flicker", "inside_flicker", "motion", "seconds")
        }
        m["ratio"] = m["seam_flicker"] / max(m["inside_flicker"], 1e-9)
        summary[name] = m
        t.add_row(name, f"{m['identity']:.3f}", f"{m['color']:.3f}", f"{m['seam_flicker']:.2f}",
                  f"{m['inside_flicker']:.2f}", f"{m['ratio']:.2f}", f"{m['motion']:.4f}",
                  f"{m['seconds']:.1f}")  # fmt: skip
    console.print(t)
    t = Table(title="long clips: where identity breaks (share of transitions broken, and why)")
    for c in ("variant", "in seam bands", "inside windows", "reasons"):
        t.add_column(c, justify="right")
    for name, _ in variants:
        rs = [r for r in long_rows if r["variant"] == name]
        reasons = sum((Counter(r["break_reasons"]) for r in rs), Counter())
        seam_rate = sum(r["breaks_at_seams"] for r in rs) / max(
            sum(r["seam_transitions"] for r in rs), 1
        )
        inside_rate = sum(r["breaks_inside"] for r in rs) / max(
            sum(n_frames - 1 - r["seam_transitions"] for r in rs), 1
        )
        summary[name]["identity_breaks_at_seams"] = seam_rate
        summary[name]["identity_breaks_inside"] = inside_rate
        t.add_row(name, f"{seam_rate:.3f}", f"{inside_rate:.3f}",
                  ", ".join(f"{k} {v}" for k, v in reasons.most_common()))  # fmt: skip
    console.print(t)
    report["long"] = {
        "frames": n_frames,
        "ground_truth_identity": gt_identity,
        "ground_truth_motion": gt_motion,
        "summary": summary,
        "rows": long_rows,
    }


def where_identity_breaks(breaks: list[tuple[int, str]], window_starts: list[int],
                          n_frames: int) -> dict:  # fmt: skip
    """Split a long clip's identity breaks into those in a window's seam band (the transitions
    seam_flicker counts there) and those inside windows, with the count of each reason."""
    seam = {j for s in window_starts if s > 0 for j in range(s - SEAM_BAND + 1, s + 1)
            if 0 < j < n_frames}  # fmt: skip
    return {
        "breaks_at_seams": sum(j in seam for j, _ in breaks),
        "breaks_inside": sum(j not in seam for j, _ in breaks),
        "seam_transitions": len(seam),
        "break_reasons": dict(Counter(why for _, why in breaks)),
    }


def motion_strengths(pipe, args, report: dict, console: Console) -> None:
    """Motion magnitude for several motion strengths, next to the same scenes rendered with
    every object slow and every object fast (the world's own range)."""
    scenes = moving_scenes(args.scenes, seed=7)
    settings = (10.0, 80.0, 160.0, 250.0)
    mm = {}
    for m in settings:
        mm[m] = float(np.mean([motion_magnitude(pipe(p, seed=i, motion=m).frames)
                               for i, (p, _) in enumerate(scenes)]))  # fmt: skip
    truth = {}
    for speed in ("slow", "fast"):
        clips = []
        for i, (_, scene) in enumerate(scenes):
            objects = tuple(dataclasses.replace(o, speed=speed) for o in scene.objects)
            placed = place(dataclasses.replace(scene, objects=objects),
                           np.random.default_rng(i), 2.0, 64, 64, strict=False)  # fmt: skip
            clips.append(motion_magnitude(render(placed, 64, 64, 17, 8.0)))
        truth[speed] = float(np.mean(clips))
    report["motion"] = {str(k): v for k, v in mm.items()}
    report["motion_ground_truth"] = truth
    t = Table(
        title=f"motion strength -> motion magnitude (frame diagonals per frame), mean over "
        f"{len(scenes)} scenes"
    )
    for m in settings:
        t.add_column(f"motion {m:g}", justify="right")
    t.add_column("world, all slow", justify="right")
    t.add_column("world, all fast", justify="right")
    t.add_row(*(f"{mm[m]:.4f}" for m in settings), f"{truth['slow']:.4f}", f"{truth['fast']:.4f}")
    console.print(t)


if __name__ == "__main__":
    main()
