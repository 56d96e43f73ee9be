"""Does a model read its direction words? A probe of the transformer alone, no sampling.

    python benchmarks/direction_binding.py [--model kinema-tiny] [--pairs 24] [--threads 2]

Scenes with one left/right/up/down mover and their mirror images (kinema/world/pairs.py) are
encoded by the model's VAE. With the first latent frame known (t = 0) and the others at flow time
t, the transformer predicts the rest of the clip twice, with the clip's own caption and with its
mirror's caption (the same sentence, direction words swapped), from the same noise:

- loss ratio: flow-matching loss with the swapped caption over the loss with the own caption, on
  the unknown frames. 1.000 means the direction words change nothing; a model that reads them
  does better with its own caption (> 1), most at t = 1, where only the caption tells where the
  object goes;
- sensitivity: how much the prediction moves when one word changes (relative L2), for the
  direction word against a colour word and "staying still", on one fixed scene.

ShapesBench's direction score needs sampling, a detector and many seeds to move; this probe
answers in seconds whether training has started to bind the words at all.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from kinema.io.frames import to_tensor
from kinema.models import load_dit, load_vae, resolve_model
from kinema.text.encoder import TextEncoder
from kinema.world.captions import canonical_caption
from kinema.world.motion import motion_strength
from kinema.world.pairs import mirrored
from kinema.world.parse import parse_caption
from kinema.world.render import render
from kinema.world.sampler import place, random_scene

TIMES = (0.7, 0.9, 0.95, 1.0)
SIZE, FRAMES, FPS = 64, 17, 8.0


def mirror_pairs(n: int, seed: int):
    """n (scene, mirrored scene) pairs with one object moving left, right, up or down."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        scene = random_scene(rng, max_objects=1, camera_prob=0.0)
        mirror = mirrored(scene, SIZE, SIZE)
        if mirror is not None:
            out.append((scene, mirror))
    return out


def noisy_after_first(latents: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor):
    """Latents with frame 0 known (t = 0) and the others at flow time t (one for all clips, or
    one per clip) -> (x_t, per-frame t)."""
    b, f = latents.shape[0], latents.shape[2]
    times = torch.as_tensor(t, dtype=torch.float32).expand(b)[:, None].expand(b, f).clone()
    times[:, 0] = 0.0
    tt = times[:, None, :, None, None]
    return (1 - tt) * latents + tt * noise, times


@torch.no_grad()
def loss_ratios(dit, vae, encoder, pairs) -> dict[float, tuple[float, float, float]]:
    """{t: (own loss, swapped loss, share of pairs where own < swapped)}."""
    losses = {t: [] for t in TIMES}
    generator = torch.Generator().manual_seed(0)
    for scene, mirror in pairs:
        video = torch.stack(
            [to_tensor(render(s, SIZE, SIZE, FRAMES, FPS)) for s in (scene, mirror)]
        )
        latents = vae.to_model(vae.encode(video)[0])
        states, mask = encoder([canonical_caption(scene), canonical_caption(mirror)])
        duration = (FRAMES - 1) / FPS
        motion = torch.tensor([motion_strength(s, duration) for s in (scene, mirror)])
        fps = torch.full((2,), FPS)
        for t in TIMES:
            noise = torch.randn(latents[:1].shape, generator=generator).expand_as(latents)
            x, times = noisy_after_first(latents, noise, t)
            target = (noise - latents)[:, :, 1:]
            own = dit(x, times, states, mask, motion, fps)[:, :, 1:]
            swapped = dit(x, times, states.flip(0), mask.flip(0), motion, fps)[:, :, 1:]
            losses[t].append(
                (((own - target) ** 2).mean().item(), ((swapped - target) ** 2).mean().item())
            )
    out = {}
    for t, rows in losses.items():
        a = np.array(rows)
        out[t] = (float(a[:, 0].mean()), float(a[:, 1].mean()), float(np.mean(a[:, 0] < a[:, 1])))
    return out


@torch.no_grad()
def sensitivity(dit, vae, encoder) -> dict[str, float]:
    """Relative change of the t = 1 prediction when one word of the prompt changes."""
    prompt = "a large red circle moving left fast on a black background"
    variants = {
        "direction (left -> right)": prompt.replace("left", "right"),
        "direction (left -> up)": prompt.replace("left", "up"),
        "colour (red -> blue)": prompt.replace("red", "blue"),
        "motion (-> staying still)": "a large red circle staying still on a black background",
    }
    scene = place(parse_caption(prompt), np.random.default_rng(0), (FRAMES - 1) / FPS, SIZE, SIZE)
    latents = vae.to_model(vae.encode(to_tensor(render(scene, SIZE, SIZE, FRAMES, FPS))[None])[0])
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    x, times = noisy_after_first(latents, noise, 1.0)
    prompts = [prompt, *variants.values()]
    states, mask = encoder(prompts)
    n = len(prompts)
    out = dit(x.expand(n, -1, -1, -1, -1), times.expand(n, -1), states, mask,
              torch.full((n,), float("nan")), torch.full((n,), FPS))[:, :, 1:]  # fmt: skip
    base = out[0]
    return {
        name: float((out[i + 1] - base).norm() / base.norm()) for i, name in enumerate(variants)
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="kinema-tiny", help="a model name or folder")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = resolve_model(args.model)
    dit, vae = load_dit(folder / "dit.safetensors"), load_vae(folder / "vae.safetensors")
    if not dit.cfg.micro_conditioning:
        raise SystemExit("this probe passes motion and fps: it needs a kinema model with them")
    encoder = TextEncoder()
    console = Console()
    table = Table(
        title=f"{args.model}: own vs mirrored caption, first frame known, {args.pairs} pairs"
    )
    for col in ("t", "loss (own)", "loss (swapped)", "ratio", "own better"):
        table.add_column(col, justify="right")
    for t, (own, swapped, better) in loss_ratios(
        dit, vae, encoder, mirror_pairs(args.pairs, args.seed)
    ).items():
        table.add_row(
            f"{t:g}", f"{own:.4f}", f"{swapped:.4f}", f"{swapped / own:.3f}", f"{100 * better:.0f}%"
        )
    console.print(table)
    table = Table(title="prediction change at t = 1 when one word changes (relative L2)")
    table.add_column("word changed")
    table.add_column("change", justify="right")
    for name, value in sensitivity(dit, vae, encoder).items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)


if __name__ == "__main__":
    main()
