"""How soon does a small DiT learn direction words when that is its whole task?

    python benchmarks/direction_toy.py [--clips 512] [--steps 3000] [--threads 2] [--whiten]

A controlled experiment next to benchmarks/direction_binding.py: single large fast movers (left,
right, up, down) on black, each with its mirror image, encoded once by kinema-tiny's VAE; a
4-block, width-128 DiT trained from scratch with the first latent frame known and the rest at
shifted logit-normal times, 32 clips a step. Every 250 steps it prints the loss at t = 1 on
held-out pairs with the own and with the mirrored caption (same noise): their ratio leaves 1
when the model starts to read the direction words. For scale it prints two references first:
predicting the mean of a clip and its mirror (knows the axis, not the sign) and predicting the
first frame for every frame (the object stays put). --whiten: the text states whitened with the
statistics of the training caption pool (DiT's text whitening, kinema/dit/layers.py).

Measured on the 2-core CPU (0.7 s a step with 2 threads, 1.4 s with 1; stopped at 1,000 steps),
references 0.146 (axis, not sign) and 0.596 (stays put):

| steps | raw states: own loss, ratio | whitened (--whiten): own loss, ratio |
|---|---|---|
| 500 | 0.38, 1.000 | 0.350, 1.003 |
| 750 | 0.33, 1.001 | 0.297, 1.058 |
| 1,000 | 0.29, 1.009 | 0.228, 1.381 |
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from direction_binding import noisy_after_first  # this folder's probe

from kinema.dit.layers import TextWhitening
from kinema.dit.transformer import DiT, DiTConfig
from kinema.io.frames import to_tensor
from kinema.models import MODELS, load_vae
from kinema.sampling.schedules import shift_time
from kinema.text.encoder import TextEncoder
from kinema.train.dit_task import CaptionPool, stack_states
from kinema.world.captions import canonical_caption
from kinema.world.pairs import mirrored
from kinema.world.render import render
from kinema.world.sampler import place
from kinema.world.spec import ObjectSpec, Scene


def make_pairs(n: int, rng: np.random.Generator, vae, encoder):
    """n scenes and their mirrors, interleaved -> latents (2n, C, F, H, W), text states, mask."""
    latents, captions = [], []
    for _ in range(n):
        obj = ObjectSpec(shape=str(rng.choice(["circle", "square", "triangle"])),
                         color=str(rng.choice(["red", "green", "blue", "yellow", "white"])),
                         size="large", motion=str(rng.choice(["left", "right", "up", "down"])),
                         speed="fast")  # fmt: skip
        scene = place(Scene((obj,), background="black"), rng)
        mirror = mirrored(scene)
        video = torch.stack([to_tensor(render(s, 64, 64, 17, 8.0)) for s in (scene, mirror)])
        with torch.no_grad():
            latents.append(vae.to_model(vae.encode(video)[0]))
        captions += [canonical_caption(scene), canonical_caption(mirror)]
    states = []
    for i in range(0, len(captions), 64):
        s, m = encoder(captions[i : i + 64])
        states += [s[j, : int(m[j].sum())] for j in range(len(s))]
    return torch.cat(latents), *stack_states(states)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=512, help="training scenes (each with a mirror)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--whiten", action="store_true", help="whiten the text states")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vae, encoder = load_vae(MODELS["kinema-tiny"] / "vae.safetensors"), TextEncoder()
    latents, context, mask = make_pairs(args.clips, rng, vae, encoder)
    held, held_context, held_mask = make_pairs(48, rng, vae, encoder)
    x, y = held[0::2, :, 1:], held[1::2, :, 1:]
    print(f"references at t = 1: axis but not sign {((x - (x + y) / 2) ** 2).mean():.4f}, "
          f"stays put {((x - held[0::2, :, :1]) ** 2).mean():.4f}")  # fmt: skip
    channels = latents.shape[1]
    model = DiT(DiTConfig(in_channels=channels, out_channels=channels, dim=128, ffn_dim=512,
                          heads=4, layers=4, text_whitening=args.whiten))  # fmt: skip
    if args.whiten:  # the training pool's captions, as `kinema train dit` fits them
        pool = CaptionPool(encoder, 6000, seed=1234)
        mean, matrix = TextWhitening.statistics(torch.cat([s.float() for s in pool.states]))
        model.text_whitening.mean.copy_(mean)
        model.text_whitening.matrix.copy_(matrix)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    swap = torch.arange(len(held)) ^ 1  # each clip's mirror

    @torch.no_grad()
    def held_out_losses() -> tuple[float, float]:
        model.eval()
        noise = torch.randn(held[::2].shape, generator=torch.Generator().manual_seed(0))
        xt, times = noisy_after_first(held, noise.repeat_interleave(2, 0), torch.ones(len(held)))
        target = (noise.repeat_interleave(2, 0) - held)[:, :, 1:]
        own = ((model(xt, times, held_context, held_mask)[:, :, 1:] - target) ** 2).mean()
        mirror = model(xt, times, held_context[swap], held_mask[swap])[:, :, 1:]
        model.train()
        return own.item(), ((mirror - target) ** 2).mean().item()

    start, batch = time.perf_counter(), 32
    for step in range(args.steps + 1):
        if step % 250 == 0:
            own, mirror = held_out_losses()
            print(f"step {step}: t = 1 loss own {own:.4f}, mirrored caption {mirror:.4f}, "
                  f"ratio {mirror / own:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        if step == args.steps:
            break
        pick = torch.randint(0, len(latents), (batch,))
        x0, noise = latents[pick], torch.randn_like(latents[pick])
        xt, times = noisy_after_first(x0, noise, shift_time(torch.sigmoid(torch.randn(batch)), 3.0))
        out = model(xt, times, context[pick], mask[pick])
        loss = ((out - (noise - x0))[:, :, 1:] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


if __name__ == "__main__":
    main()
