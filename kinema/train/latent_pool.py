"""A pool of the diffusion model's own latents paired with the clips they should decode to.

The decoder is trained on the encoder's latents, but at generation time it decodes the
transformer's, which differ in their own ways (rounded corners, a wobble from one latent frame
to the next). Each pool entry is a world clip whose latents were noised to a flow time t0 and
sampled back to 0 by the model (SDEdit): below t0 ~ 0.9 the layout (where the objects are,
which way they go) is the clip's, while the detail is the transformer's. A decoder fine-tuned
on these pairs (`kinema train vae --latent-pool`) learns to draw the clip from the
transformer's latents.

    python tools/latent_pool.py --model kinema-tiny --clips 1000 -o runs/pool.safetensors
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kinema.io.frames import to_frames, to_tensor
from kinema.pipeline.conditioning import encode_frames
from kinema.pipeline.text_to_video import with_defaults
from kinema.world.dataset import Bucket, ShapesDataset

POOL_BUCKET = Bucket(64, 64, 17)
POOL_SEED = 424_242  # a stream of scenes apart from the training runs' seeds


class LatentPoolError(ValueError):
    pass


@dataclass
class LatentPool:
    video: torch.Tensor  # (N, T, H, W, 3) uint8: the world clips
    latents: torch.Tensor  # (N, C, F, h, w) float16: the model's latents, normalised units
    start_time: torch.Tensor  # (N,) float32: the flow time each was sampled from

    def __len__(self) -> int:
        return self.video.shape[0]


@torch.inference_mode()
def build_latent_pool(
    pipe,
    clips: int,
    start_range: tuple[float, float] = (0.5, 0.9),
    seed: int = POOL_SEED,
    on_clip: Callable[[int], None] | None = None,
) -> LatentPool:
    """`clips` world clips (paraphrased captions, the training distribution) at 64x64x17, each
    encoded, noised to t0 ~ U(start_range) and sampled to 0 by pipe's model with its default
    settings (step caching off: it plans a whole schedule)."""
    lo, hi = start_range
    if not 0 < lo <= hi <= 1:
        raise LatentPoolError(f"start times must satisfy 0 < lo <= hi <= 1, got {lo}, {hi}")
    t2v = pipe.t2v
    settings = with_defaults(t2v.sampler_defaults, {"cache_interval": 1})
    data = iter(ShapesDataset([POOL_BUCKET], 1, seed))
    gen = torch.Generator().manual_seed(seed)
    videos, latents, starts = [], [], []
    for i in range(clips):
        batch = next(data)
        clip = to_frames(batch.video[0])  # the uint8 frames the pool keeps, encoded as such
        z = encode_frames(t2v.vae, clip)
        t0 = lo + (hi - lo) * float(torch.rand((), generator=gen))
        s = t2v.settings(seed=seed + i, width=POOL_BUCKET.width, height=POOL_BUCKET.height,
                         num_frames=POOL_BUCKET.num_frames, fps=POOL_BUCKET.fps, **settings)  # fmt: skip
        cond, uncond = t2v.encode_prompt(batch.captions[0], s.negative_prompt)
        noise = torch.randn(z.shape, generator=gen)
        out = t2v.sample((1 - t0) * z + t0 * noise, cond, uncond, s, start_time=t0)
        videos.append(clip)
        latents.append(out[0].cpu().half())
        starts.append(t0)
        if on_clip is not None:
            on_clip(i)
    return LatentPool(torch.stack(videos), torch.stack(latents), torch.tensor(starts))


def save_latent_pool(pool: LatentPool, path: Path, meta: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"video": pool.video, "latents": pool.latents, "start_time": pool.start_time}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"kind": "kinema-latent-pool", "meta": json.dumps(meta)})  # fmt: skip
    return path


def load_latent_pool(path: Path, latent_channels: int | None = None) -> LatentPool:
    """Loads a pool; with latent_channels, checks it matches the VAE that will decode it."""
    if not Path(path).is_file():
        raise LatentPoolError(f"no latent pool at {path} (make one with tools/latent_pool.py)")
    try:
        t = load_file(str(path))
        pool = LatentPool(t["video"], t["latents"], t["start_time"])
    except Exception as e:  # safetensors raises several kinds for a bad file
        raise LatentPoolError(f"{path} is not a latent pool: {e}") from None
    if pool.video.ndim != 5 or pool.latents.ndim != 5 or len(pool.latents) != len(pool):
        raise LatentPoolError(f"{path}: video and latents do not pair up")
    if latent_channels is not None and pool.latents.shape[1] != latent_channels:
        raise LatentPoolError(
            f"{path} holds {pool.latents.shape[1]}-channel latents; this VAE has {latent_channels}"
        )
    return pool


def join_pools(pools: list[LatentPool]) -> LatentPool:
    """Several pools as one (other seeds, other start ranges, other models' samplers): their
    clips and latents must have the same shapes."""
    if not pools:
        raise LatentPoolError("no latent pools to join")
    first = pools[0]
    for i, pool in enumerate(pools[1:], start=2):
        if (
            pool.video.shape[1:] != first.video.shape[1:]
            or pool.latents.shape[1:] != first.latents.shape[1:]
        ):
            raise LatentPoolError(
                f"latent pool {i} holds clips {tuple(pool.video.shape[1:])} and latents "
                f"{tuple(pool.latents.shape[1:])}; pool 1 holds {tuple(first.video.shape[1:])} "
                f"and {tuple(first.latents.shape[1:])}"
            )
    if len(pools) == 1:
        return first
    return LatentPool(
        torch.cat([p.video for p in pools]),
        torch.cat([p.latents for p in pools]),
        torch.cat([p.start_time for p in pools]),
    )


def pool_batches(
    pool: LatentPool, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless random batches of (video (B, 3, T, H, W) in [-1, 1], latents (B, C, F, h, w)
    float32, normalised units)."""
    while True:
        idx = torch.randint(0, len(pool), (batch_size,), generator=gen)
        yield to_tensor(pool.video[idx].numpy()), pool.latents[idx].float()


def crop_pair(
    video: torch.Tensor, latents: torch.Tensor, size: int, spatial: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random square of a clip and of its latents (size pixels, a multiple of the
    VAE's spatial factor)."""
    h, w = latents.shape[-2:]
    side = size // spatial
    if side >= min(h, w):
        return video, latents
    y = int(torch.randint(0, h - side + 1, (1,), generator=gen))
    x = int(torch.randint(0, w - side + 1, (1,), generator=gen))
    crop_v = video[..., y * spatial : (y + side) * spatial, x * spatial : (x + side) * spatial]
    return crop_v, latents[..., y : y + side, x : x + side]


def pool_meta(pipe_name: str, clips: int, start_range: tuple[float, float]) -> dict:
    return {"model": pipe_name, "clips": clips, "start_range": list(start_range),
            "bucket": [POOL_BUCKET.width, POOL_BUCKET.height, POOL_BUCKET.num_frames]}  # fmt: skip
