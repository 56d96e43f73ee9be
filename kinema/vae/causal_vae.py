"""Causal 3D VAE: video (B, 3, T, H, W) <-> latents (B, C, 1 + (T-1)/4, H/4, W/4).

Spatial work is per-frame 2D convolution; time is mixed only by causal temporal convolutions
(left-padded, so frame t never sees frame t+1) and by grouping frames 4 to 1. The first frame
forms a group of its own (it is repeated to fill the group), so a still image is a one-frame
video and encodes to one latent frame. Decoding runs over chunks of latent frames with enough
past context to cover the decoder's temporal receptive field, so memory stays bounded however
long the clip is, and the result equals a full decode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    latent_channels: int = 16
    channels: tuple[int, ...] = (32, 64, 96)  # per spatial level; len - 1 halvings
    temporal_factor: int = 4
    temporal_blocks: int = 2  # causal temporal residual blocks at latent rate, each side
    # fixed normalisation of latents for the diffusion model: z_model = (z - shift) * scale
    scale: float = 1.0
    shift: float = 0.0

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


def check_video_shape(
    num_frames: int, height: int, width: int, temporal_factor: int, spatial_factor: int
) -> None:
    """Raise one ValueError naming every dimension a causal VAE cannot take, with the nearest
    values it can (1 + kT frames, multiples of S pixels)."""
    f, s = temporal_factor, spatial_factor
    problems = []
    if num_frames < 1 or (num_frames - 1) % f:
        lo = 1 + max(num_frames - 1, 0) // f * f
        problems.append(f"frame count {num_frames} must be 1 + {f}k (nearest: {lo} or {lo + f})")
    for name, v in (("height", height), ("width", width)):
        if v % s or v < s:
            lo = max(v // s * s, s)
            problems.append(f"{name} {v} must be a multiple of {s} (nearest: {lo} or {lo + s})")
    if problems:
        raise ValueError("; ".join(problems))


def latent_frames(num_frames: int, temporal_factor: int = 4) -> int:
    return 1 + (num_frames - 1) // temporal_factor


class ResBlock2d(nn.Module):
    """Per-frame residual block: frames are folded into the batch."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):  # (N, C, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class CausalTemporalBlock(nn.Module):
    """Residual block of causal temporal convolutions (kernel 3, two frames of past), applied
    at every spatial position; normalisation is per frame so nothing leaks from the future."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv3d(channels, channels, (3, 1, 1))
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1))
        nn.init.zeros_(self.conv2.weight)  # starts as identity
        nn.init.zeros_(self.conv2.bias)

    @staticmethod
    def _norm(norm, x):  # (B, C, T, H, W), normalised frame by frame
        b = x.shape[0]
        return rearrange(
            norm(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) c h w -> b c t h w", b=b
        )

    @staticmethod
    def _causal(conv, x):
        return conv(F.pad(x, (0, 0, 0, 0, 2, 0), mode="replicate"))

    def forward(self, x):  # (B, C, T, H, W)
        h = self._causal(self.conv1, F.silu(self._norm(self.norm1, x)))
        return x + self._causal(self.conv2, F.silu(self._norm(self.norm2, h)))


def _per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    y = module(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i in range(len(ch) - 1):
            layers += [
                ResBlock2d(ch[i], ch[i]),
                nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1),
            ]
        layers += [ResBlock2d(ch[-1], ch[-1])]
        self.spatial = nn.Sequential(*layers)
        self.factor = cfg.temporal_factor
        self.group = nn.Conv3d(ch[-1] * cfg.temporal_factor, ch[-1], 1)  # 4 frames -> 1
        self.temporal = nn.Sequential(
            *[CausalTemporalBlock(ch[-1]) for _ in range(cfg.temporal_blocks)]
        )
        self.norm_out = nn.GroupNorm(8, ch[-1])
        self.conv_out = nn.Conv3d(ch[-1], 2 * cfg.latent_channels, 1)

    def forward(self, video):  # (B, 3, T, H, W) -> (B, 2C, T', H', W')
        h = _per_frame(self.spatial, video)
        # the first frame fills a group of its own; later groups are frames 4i-3..4i
        h = torch.cat([h[:, :, :1].expand(-1, -1, self.factor - 1, -1, -1), h], dim=2)
        h = rearrange(h, "b c (t k) h w -> b (k c) t h w", k=self.factor)
        h = self.temporal(self.group(h))
        return self.conv_out(F.silu(CausalTemporalBlock._norm(self.norm_out, h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch = cfg.channels
        self.factor = cfg.temporal_factor
        self.conv_in = nn.Conv3d(cfg.latent_channels, ch[-1], 1)
        self.temporal = nn.Sequential(
            *[CausalTemporalBlock(ch[-1]) for _ in range(cfg.temporal_blocks)]
        )
        self.ungroup = nn.Conv3d(ch[-1], ch[-1] * cfg.temporal_factor, 1)  # 1 -> 4 frames
        self.frame_temporal = CausalTemporalBlock(ch[-1])
        layers: list[nn.Module] = [ResBlock2d(ch[-1], ch[-1])]
        for i in reversed(range(len(ch) - 1)):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ch[i + 1], ch[i], 3, padding=1),
                ResBlock2d(ch[i], ch[i]),
            ]
        layers += [nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.spatial = nn.Sequential(*layers)

    # frames of past the frame-rate block needs: two causal convolutions of kernel 3
    FRAME_CONTEXT = 4

    def forward(self, z, first_is_start: bool = True, skip: int = 0):
        """(B, C, T', H', W') -> (B, 3, T - skip, H, W): skip drops the first frames before
        the per-frame spatial decoder (they are context for chunked decoding)."""
        h = self.temporal(self.conv_in(z))
        h = rearrange(self.ungroup(h), "b (k c) t h w -> b c (t k) h w", k=self.factor)
        if first_is_start:  # latent 0 stands for one frame, not four
            h = h[:, :, self.factor - 1 :]
        cut = max(0, skip - self.FRAME_CONTEXT)  # frames even the frame-rate block needs not
        h = self.frame_temporal(h[:, :, cut:])[:, :, skip - cut :]
        return _per_frame(self.spatial, h)


class CausalVAE(nn.Module):
    """Args of the top-level calls:
    encode: video (B, 3, T, H, W) in [-1, 1], T = 1 + 4k, H and W multiples of 4
            -> (mean, logvar), each (B, C, 1 + k, H/4, W/4)
    decode: latents (B, C, T', H', W') -> video (B, 3, 1 + 4(T'-1), 4H', 4W')
    """

    def __init__(self, cfg: VAEConfig = VAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def check_shape(self, num_frames: int, height: int, width: int) -> None:
        check_video_shape(
            num_frames, height, width, self.cfg.temporal_factor, self.cfg.spatial_factor
        )

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_shape(*video.shape[2:])
        mean, logvar = self.encoder(video).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    # Context that covers the decoder's temporal receptive field, in latent frames: each
    # latent-rate block sees 4 latents back, the frame-rate block 4 frames (one latent).
    @property
    def decode_context(self) -> int:
        return 4 * self.cfg.temporal_blocks + 2

    def decode_chunked(self, z: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        """Decode `chunk` latent frames at a time with past context; equals decode(z)."""
        if z.shape[2] <= chunk:
            return self.decode(z)
        return torch.cat(list(self.decode_chunks(z, chunk)), dim=2)

    def decode_chunks(self, z: torch.Tensor, chunk: int = 4) -> Iterator[torch.Tensor]:
        """decode(z) as pieces of `chunk` latent frames' worth of video, in order. Each piece
        runs the latent-rate layers over its past context too (decode_context latents), but
        the frame-rate and spatial layers over its own frames only (and 4 frames of past), so
        its memory and time do not grow with the clip's length."""
        f, ctx = self.cfg.temporal_factor, self.decode_context
        for start in range(0, z.shape[2], chunk):
            lo = max(0, start - ctx)
            # frames of latent `start` begin at 1 + 4(start-1) + 1 in the full clip
            skip = 0 if start == 0 else 1 + f * (start - lo - 1)
            yield self.decoder(z[:, :, lo : start + chunk], skip=skip)

    def forward(
        self,
        video: torch.Tensor | None,
        sample: bool = True,
        latent_noise: float = 0.0,
        latents: torch.Tensor | None = None,
    ):
        """latent_noise: the largest std of extra Gaussian noise on the latents, in the
        diffusion model's normalised units, drawn per clip from U(0, latent_noise), so that
        the decoder learns to take imperfect generated latents as well as clean ones.
        latents: decode these normalised latents instead of encoding `video` (training the
        decoder on a diffusion model's own latents; mean and logvar are then None)."""
        if latents is not None:
            return self.decode(self.from_model(latents)), None, None
        mean, logvar = self.encode(video)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        if latent_noise > 0:
            std = torch.rand(z.shape[0], 1, 1, 1, 1, device=z.device) * latent_noise
            z = z + torch.randn_like(z) * std / self.cfg.scale
        return self.decode(z), mean, logvar

    # the diffusion model works on normalised latents
    def to_model(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.cfg.shift) * self.cfg.scale

    def from_model(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.cfg.scale + self.cfg.shift
