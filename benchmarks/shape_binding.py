"""Does a model read its shape words, and does sampling turn them into corners?

    python benchmarks/shape_binding.py [--model kinema-tiny] [--scenes 8] [--seeds 2]
        [--threads 2]

Scenes with one circle or square (kinema/world/sampler.py) are paired with the same scene with
that object drawn as the other shape (equal areas, kinema/world/pairs.py `reshaped`), so the two
clips differ only in corners and the two captions only in the shape word.

- loss ratio: with every frame at flow time t (plain text-to-video, nothing revealed), the
  flow-matching loss of the transformer's prediction with the swapped caption over the loss with
  the clip's own caption, from the same noise. 1.000 means the shape word changes nothing;
- x0 fill: the box fill (kinema/world/detect.py; a square 1.0, a circle 0.785, read as a square
  above 0.9) of the object in the decoded clean-clip prediction x0 = x_t - t v, with the own and
  with the swapped word: how far one step of the caption pulls the drawing;
- sampling: each scene's own caption sampled with the model's defaults, with the default
  negative prompt and with the swapped caption as the negative prompt (guidance then pushes along
  exactly the shape word's direction), and the share of the object's whole blobs that read as
  the asked shape.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import kinema
from kinema.io.frames import to_tensor
from kinema.world.captions import canonical_caption
from kinema.world.detect import detect
from kinema.world.motion import motion_strength
from kinema.world.pairs import reshaped
from kinema.world.render import render
from kinema.world.sampler import random_scene

TIMES = (0.3, 0.5, 0.7, 0.9, 1.0)
SIZE, FRAMES, FPS = 64, 17, 8.0


def shape_pairs(n: int, seed: int):
    """n (scene, reshaped scene) pairs of one-object scenes, half asking for a square."""
    rng = np.random.default_rng(seed)
    want = {"square": n // 2, "circle": n - n // 2}
    out = []
    while any(want.values()):
        scene = random_scene(rng, max_objects=1, camera_prob=0.0)
        shape = scene.objects[0].shape
        if want.get(shape, 0) > 0:
            want[shape] -= 1
            out.append((scene, reshaped(scene, 0)))
    return out


def blob_readings(frames: np.ndarray) -> list[tuple[float, str]]:
    """(fill, shape read) of every whole blob of a clip (T, H, W, 3) uint8."""
    return [
        (b.fill, b.shape)
        for t in detect(frames, FPS).tracks
        for b in t.blobs
        if not b.truncated and not b.tiny
    ]


@torch.no_grad()
def loss_and_fill(pipe, pairs) -> dict[tuple[str, float], list[tuple[float, float, float]]]:
    """{(asked shape, t): [(loss ratio, x0 fill own, x0 fill swapped)]} over the pairs."""
    dit, vae, encoder = pipe.t2v.dit, pipe.t2v.vae, pipe.t2v.text_encoder
    generator = torch.Generator().manual_seed(0)
    rows: dict[tuple[str, float], list] = {}
    for scene, other in pairs:
        video = to_tensor(render(scene, SIZE, SIZE, FRAMES, FPS))[None]
        latents = vae.to_model(vae.encode(video)[0])
        states, mask = encoder([canonical_caption(scene), canonical_caption(other)])
        motion = torch.full((2,), motion_strength(scene, (FRAMES - 1) / FPS))
        fps = torch.full((2,), FPS)
        for t in TIMES:
            noise = torch.randn(latents.shape, generator=generator)
            x = ((1 - t) * latents + t * noise).expand(2, -1, -1, -1, -1)
            v = dit(x, torch.full((2, latents.shape[2]), t), states, mask, motion, fps)
            loss = ((v - (noise - latents)) ** 2).flatten(1).mean(1)
            fills = []
            for clean in (x - t * v).split(1):
                found = blob_readings(pipe.t2v.decode(clean))
                fills.append(float(np.median([f for f, _ in found])) if found else np.nan)
            rows.setdefault((scene.objects[0].shape, t), []).append(
                (float(loss[1] / loss[0]), *fills)
            )
    return rows


def sampled_reading(pipe, pairs, seeds: int) -> dict[tuple[str, str], list[float]]:
    """{(asked shape, negative): [share of blobs read as asked, per clip]}."""
    out: dict[tuple[str, str], list[float]] = {}
    for scene, other in pairs:
        prompt, swapped = canonical_caption(scene), canonical_caption(other)
        asked = scene.objects[0].shape
        for seed in range(seeds):
            for name, negative in (("default", ""), ("swapped caption", swapped)):
                video = pipe(prompt, seed=seed, negative_prompt=negative)
                found = blob_readings(video.frames)
                if found:
                    share = float(np.mean([s == asked for _, s in found]))
                    out.setdefault((asked, name), []).append(share)
    return out


def _mean(values: np.ndarray) -> str:
    """Mean of the found values; "-" where no clip had a whole blob (x0 at t = 1 is a blur)."""
    found = values[~np.isnan(values)]
    return f"{found.mean():.3f}" if found.size else "-"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny", help="a model name or folder")
    ap.add_argument("--scenes", type=int, default=8, help="scene pairs (half of them squares)")
    ap.add_argument("--seeds", type=int, default=2, help="sampling seeds per scene")
    ap.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.scenes < 2 or args.seeds < 1:
        raise SystemExit("--scenes must be at least 2 and --seeds at least 1")
    torch.set_num_threads(args.threads)
    pipe = kinema.load(args.model)
    if not pipe.t2v.dit.cfg.micro_conditioning:
        raise SystemExit("this probe passes motion and fps: it needs a kinema model with them")
    pairs = shape_pairs(args.scenes, args.seed)
    console = Console()

    table = Table(title=f"{args.model}: own vs swapped shape word, nothing revealed")
    for col in ("asked", "t", "loss ratio", "x0 fill (own)", "x0 fill (swapped)"):
        table.add_column(col, justify="right")
    for (asked, t), rows in sorted(loss_and_fill(pipe, pairs).items()):
        a = np.array(rows)
        table.add_row(asked, f"{t:g}", f"{a[:, 0].mean():.3f}", *map(_mean, a[:, 1:].T))
    console.print(table)

    table = Table(title=f"sampled ({args.seeds} seeds): share of blobs read as the asked shape")
    for col in ("asked", "negative prompt", "clips", "read as asked"):
        table.add_column(col, justify="right")
    for (asked, name), shares in sorted(sampled_reading(pipe, pairs, args.seeds).items()):
        table.add_row(asked, name, str(len(shares)), f"{100 * np.mean(shares):.1f}%")
    console.print(table)


if __name__ == "__main__":
    main()
