"""Training the causal VAE on world clips: L1 + MSE reconstruction plus a small KL term.

A decoder-only fine-tune keeps the latent space (and every diffusion model trained on it) and can
add a temporal term: the reconstruction's frame-to-frame change should equal the clip's, which
is what flicker and warping error measure (the plain loss treats each frame on its own). With a
latent pool (kinema/train/latent_pool.py), a share of its batches decode the diffusion model's own
latents and are scored against the clips they came from.

Clips are rendered at the base size and randomly cropped (the VAE is fully convolutional), which
keeps object scale while cutting the cost of each step. At export, the latents' mean and spread
on fresh clips fix the normalisation the diffusion model sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from kinema.checkpoint import save_weights
from kinema.train.distributed import DistInfo
from kinema.train.latent_pool import LatentPool, crop_pair, pool_batches
from kinema.vae.causal_vae import CausalVAE, VAEConfig
from kinema.world.dataset import Bucket, ShapesDataset

VAE_BUCKETS = (Bucket(64, 64, 1), Bucket(64, 64, 9), Bucket(64, 64, 17), Bucket(96, 64, 9))
VAE_WEIGHTS = (1.0, 3.0, 1.0, 1.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1]."""
    mse = F.mse_loss(a.clamp(-1, 1), b).item() / 4.0  # to the [0, 1] range
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


def temporal_difference_error(recon: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Mean |(recon[t+1] - recon[t]) - (video[t+1] - video[t])| over a (B, 3, T, H, W) clip:
    0 when the reconstruction changes between frames exactly as the clip does, whatever its
    per-frame error; 0 for one-frame clips."""
    if video.shape[2] < 2:
        return recon.new_zeros(())
    return (recon.diff(dim=2) - video.diff(dim=2)).abs().mean()


def random_crop(video: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    h, w = video.shape[-2:]
    if size >= min(h, w):
        return video
    y = int(torch.randint(0, (h - size) // 4 + 1, (1,), generator=gen)) * 4
    x = int(torch.randint(0, (w - size) // 4 + 1, (1,), generator=gen)) * 4
    return video[..., y : y + size, x : x + size]


class VAETask:
    name = "vae"

    def __init__(
        self,
        cfg: VAEConfig = VAEConfig(),
        batch_size: int = 4,
        crop: int = 32,
        kl_weight: float = 1e-6,
        init: CausalVAE | None = None,
        decoder_only: bool = False,
        temporal_weight: float = 0.0,
        latent_noise: float = 0.0,
        pool: LatentPool | None = None,
        pool_share: float = 0.5,
    ):
        """init: start from these weights. decoder_only: freeze the encoder (and the latent
        normalisation), so a diffusion model trained on its latents stays valid.
        temporal_weight: weight of temporal_difference_error in the loss. latent_noise: the
        largest std of noise added to the latents before decoding, drawn per clip (normalised
        units; CausalVAE.forward). pool: pairs of the diffusion model's latents and their
        clips; pool_share of the batches come from it (decoder-only)."""
        if latent_noise > 0 and not decoder_only:
            raise ValueError("latent_noise is for decoder-only fine-tunes (the encoder is kept)")
        if pool is not None and not decoder_only:
            raise ValueError("a latent pool is for decoder-only fine-tunes (its latents are fixed)")
        if not 0 <= pool_share <= 1:
            raise ValueError(f"pool_share must lie in [0, 1], got {pool_share}")
        self.model = init if init is not None else CausalVAE(cfg)
        self.cfg = self.model.cfg
        self.batch_size = batch_size
        self.crop = crop
        self.kl_weight = kl_weight
        self.decoder_only = decoder_only
        self.temporal_weight = temporal_weight
        self.latent_noise = latent_noise
        self.pool = pool
        self.pool_share = pool_share if pool is not None else 0.0
        if decoder_only:
            self.model.encoder.requires_grad_(False)

    def batches(self, info: DistInfo, seed: int) -> Iterator[torch.Tensor]:
        data = ShapesDataset(
            VAE_BUCKETS,
            self.batch_size,
            seed,
            VAE_WEIGHTS,
            rank=info.rank,
            world_size=info.world_size,
        )
        gen = torch.Generator().manual_seed(seed + info.rank)
        shared = torch.Generator().manual_seed(seed)  # every rank takes a pool batch together
        pooled = pool_batches(self.pool, self.batch_size, gen) if self.pool is not None else None
        for batch in data:
            if pooled is not None and float(torch.rand((), generator=shared)) < self.pool_share:
                video, latents = crop_pair(*next(pooled), self.crop, self.cfg.spatial_factor, gen)
                yield video.to(info.device), latents.to(info.device)
            else:
                yield random_crop(batch.video, self.crop, gen).to(info.device)

    def samples_in(self, batch) -> int:
        return (batch[0] if isinstance(batch, tuple) else batch).shape[0]

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: a clip (B, 3, T, H, W), or a pool pair (clip, the model's latents)."""
        if isinstance(batch, tuple):  # the diffusion model's latents, decoded as they are
            video, latents = batch
            recon, _, _ = model(None, latents=latents)
            kl = recon.new_zeros(())
        else:
            video = batch
            recon, mean, logvar = model(video, latent_noise=self.latent_noise)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        l1 = (recon - video).abs().mean()
        mse = F.mse_loss(recon, video)
        loss = l1 + mse + self.kl_weight * kl
        logs = {"kl": kl.item(), "psnr": psnr(recon.detach(), video)}
        if self.pool is not None:
            logs["pool"] = float(isinstance(batch, tuple))
        if self.temporal_weight > 0:
            temporal = temporal_difference_error(recon, video)
            logs["temporal"] = temporal.item()
            loss = loss + self.temporal_weight * temporal
        return loss, {"loss": loss.item(), **logs}

    @torch.no_grad()
    def latent_stats(self, vae: CausalVAE, clips: int = 16) -> tuple[float, float]:
        """(shift, scale) that make the latents of world clips about zero-mean, unit-variance."""
        data = iter(ShapesDataset([Bucket(64, 64, 17)], clips, seed=12345))
        mean, _ = vae.encode(next(data).video.to(next(vae.parameters()).device))
        return float(mean.mean()), float(1.0 / mean.std())

    def export(self, model: CausalVAE, out_dir: Path) -> Path:
        if self.decoder_only:  # the latent space is frozen, and so is its normalisation
            cfg = model.cfg
        else:
            shift, scale = self.latent_stats(model)
            cfg = dataclasses.replace(model.cfg, shift=shift, scale=scale)
        return save_weights(out_dir / "vae.safetensors", model, "kinema-vae", cfg)
