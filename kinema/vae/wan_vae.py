"""Wan2.1's causal 3D VAE: video (B, 3, 1 + 4k, H, W) <-> latents (B, 16, 1 + k, H/8, W/8).

Module and parameter names follow the original Wan2.1 repository (wan/modules/vae.py), so
Wan2.1_VAE.pth loads as it is; kinema/convert/wan.py maps diffusers' AutoencoderKLWan names.
It has the public interface of kinema's own CausalVAE (kinema/vae/causal_vae.py), so the
TextToVideo pipeline takes either: encode -> (mean, logvar), decode, decode_chunked,
to_model / from_model, cfg.temporal_factor / spatial_factor / latent_channels, check_shape.

Where Wan's conventions differ from kinema's own VAE:
- every convolution is a 3D causal one (zero-padded with two frames of past, not replicated),
  and normalisation is an RMS norm over channels (F.normalize * sqrt(C) * gamma), not GroupNorm;
- time is halved by strided causal convolutions (kernel 3, stride 2) and doubled by a causal
  convolution to twice the channels, interleaved; the first frame skips both, so a clip of
  1 + 4k frames maps to 1 + k latents and a still image is one latent frame;
- there is single-head self-attention over each frame's positions in the middle blocks;
- latents are normalised per channel for the transformer: z_model = (z - mean) / std.

Every layer is causal in time, so the clip can be processed in chunks of frames that continue
one another through a StreamCache (each causal convolution keeps the frames it still needs):
decode_chunked equals decode while holding one chunk's activations, as Wan decodes one latent
frame at a time; encode runs over the first frame, then groups of 4, as Wan does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kinema.vae.causal_vae import check_video_shape

WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class WanVAEConfig:
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)  # per level; len - 1 spatial halvings
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)  # per halving, encoder order
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD

    def __post_init__(self):
        for name in ("dim_mult", "temporal_downsample", "latents_mean", "latents_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("temporal_downsample needs one entry per spatial halving")
        if not len(self.latents_mean) == len(self.latents_std) == self.z_dim:
            raise ValueError(f"latents_mean and latents_std need {self.z_dim} values each")

    @property
    def latent_channels(self) -> int:
        return self.z_dim

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)


class StreamCache:
    """State carried from one chunk of frames to the next: per causal convolution, the input
    frames its next output still needs; per temporal resampler, whether it has seen frame 0."""

    def __init__(self):
        self.tails: dict[nn.Module, torch.Tensor] = {}
        self.started: set[nn.Module] = set()

    def first_call(self, module: nn.Module) -> bool:
        first = module not in self.started
        self.started.add(module)
        return first


class CausalConv3d(nn.Conv3d):
    """3D convolution padded with zeros on the past side of time only (2 * padding[0] frames)
    and on both sides in space. With a cache, x continues the frames of the previous call."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        kernel, stride, padding = (_triple(v) for v in (kernel_size, stride, padding))
        super().__init__(cin, cout, kernel, stride, padding=(0, padding[1], padding[2]))
        self.time_pad = 2 * padding[0]

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        if cache is None:
            return super().forward(F.pad(x, (0, 0, 0, 0, self.time_pad, 0)))
        past = cache.tails.get(self)
        if past is None:
            past = x.new_zeros(*x.shape[:2], self.time_pad, *x.shape[3:])
        frames = torch.cat([past, x], dim=2)
        k, s = self.kernel_size[0], self.stride[0]
        n = max(0, (frames.shape[2] - k) // s + 1)  # outputs this call can complete
        cache.tails[self] = frames[:, :, n * s :].clone()
        if n == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0, *x.shape[3:])
        return super().forward(frames[:, :, : (n - 1) * s + k])


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, tuple | list) else (v, v, v)


class RMSNorm(nn.Module):
    """RMS norm over channels (dim 1): F.normalize(x) * sqrt(C) * gamma, as Wan writes it."""

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1).type_as(x) * self.scale * self.gamma


def _per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    y = module(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


def _run(layers: nn.Sequential, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
    """Apply layers in order, handing the cache to those that keep state across chunks."""
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, STREAMING) else layer(x)
    return x


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        # indices as in Wan: residual.0/.3 norms, residual.2/.6 convolutions (.5 was dropout)
        self.residual = nn.Sequential(
            RMSNorm(cin, images=False), nn.SiLU(), CausalConv3d(cin, cout, 3, padding=1),
            RMSNorm(cout, images=False), nn.SiLU(), nn.Identity(),
            CausalConv3d(cout, cout, 3, padding=1),
        )  # fmt: skip
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cache=None):  # (B, C, T, H, W)
        return _run(self.residual, x, cache) + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the positions of each frame (no mixing in time)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x, cache=None):  # (B, C, T, H, W)
        def attend(frames):  # (N, C, H, W)
            h, w = frames.shape[2:]
            qkv = rearrange(self.to_qkv(self.norm(frames)), "n c h w -> n 1 (h w) c")
            q, k, v = qkv.chunk(3, dim=-1)
            out = F.scaled_dot_product_attention(q, k, v)
            return self.proj(rearrange(out, "n 1 (h w) c -> n c h w", h=h, w=w))

        return x + _per_frame(attend, x)


class Resample(nn.Module):
    """Spatial halving/doubling per frame, with a causal temporal halving/doubling for the 3d
    modes. Frame 0 of the clip skips the temporal part (it stands for one frame)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                nn.Conv2d(dim, dim // 2, 3, padding=1),
            )
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, 2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x, cache=None):  # (B, C, T, H, W)
        first = cache is None or cache.first_call(self)  # does x hold the clip's frame 0?
        if self.mode == "upsample3d":
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
            if rest.shape[2]:
                doubled = self.time_conv(rest, cache)  # (B, 2C, T, H, W): two frames each
                rest = rearrange(doubled, "b (two c) t h w -> b c (t two) h w", two=2)
            x = torch.cat([head, rest], dim=2)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            # windows of 3 frames at stride 2 starting at frame 0: (0, 1, 2), (2, 3, 4), ...
            x = torch.cat([x[:, :, :1] if first else x[:, :, :0], self.time_conv(x, cache)], 2)
        return x


STREAMING = (CausalConv3d, ResidualBlock, AttentionBlock, Resample)


def _middle(dim: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


def _head(dim: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        RMSNorm(dim, images=False), nn.SiLU(), CausalConv3d(dim, cout, 3, padding=1)
    )


class Encoder3d(nn.Module):
    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i < len(cfg.dim_mult) - 1:
                mode = "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"
                layers.append(Resample(cout, mode))
        self.downsamples = nn.Sequential(*layers)
        self.middle = _middle(dims[-1])
        self.head = _head(dims[-1], 2 * cfg.z_dim)

    def forward(self, x, cache=None):
        x = _run(self.downsamples, self.conv1(x, cache), cache)
        return _run(self.head, _run(self.middle, x, cache), cache)


class Decoder3d(nn.Module):
    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.base_dim * m for m in (mult[-1], *mult[::-1])]
        upsample_time = cfg.temporal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0])
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i > 0:
                cin //= 2  # each upsampling also halves the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i < len(mult) - 1:
                layers.append(Resample(cout, "upsample3d" if upsample_time[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)
        self.head = _head(dims[-1], 3)

    def forward(self, z, cache=None):
        x = _run(self.middle, self.conv1(z, cache), cache)
        return _run(self.head, _run(self.upsamples, x, cache), cache)


class WanVAE(nn.Module):
    """Args of the top-level calls:
    encode: video (B, 3, T, H, W) in [-1, 1], T = 1 + 4k, H and W multiples of 8
            -> (mean, logvar), each (B, 16, 1 + k, H/8, W/8)
    decode: latents (B, 16, T', H', W') -> video (B, 3, 1 + 4(T'-1), 8H', 8W') in [-1, 1]
    """

    def __init__(self, cfg: WanVAEConfig = WanVAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)  # diffusers: quant_conv
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)  # diffusers: post_quant_conv
        self.decoder = Decoder3d(cfg)
        shape = (1, cfg.z_dim, 1, 1, 1)
        self.register_buffer("mean", torch.tensor(cfg.latents_mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.latents_std).view(shape), persistent=False)

    def check_shape(self, num_frames: int, height: int, width: int) -> None:
        check_video_shape(
            num_frames, height, width, self.cfg.temporal_factor, self.cfg.spatial_factor
        )

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame 0 alone, then groups of temporal_factor frames, continuing through a cache
        (Wan's order: equal to a whole-clip pass, with one group's activations at a time)."""
        self.check_shape(*video.shape[2:])
        cache, f = StreamCache(), self.cfg.temporal_factor
        starts = [0, *range(1, video.shape[2], f)]
        ends = [*starts[1:], video.shape[2]]
        out = torch.cat(
            [self.encoder(video[:, :, a:b], cache) for a, b in zip(starts, ends, strict=True)], 2
        )
        mean, logvar = self.conv1(out).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The whole clip in one pass, clamped to [-1, 1] as Wan does."""
        return self.decoder(self.conv2(z)).clamp(-1.0, 1.0)

    def decode_chunked(self, z: torch.Tensor, chunk: int = 1) -> torch.Tensor:
        """Decode `chunk` latent frames at a time (Wan: 1), each continuing the last through
        the causal convolutions' cache; equals decode(z)."""
        return torch.cat(list(self.decode_chunks(z, chunk)), dim=2)

    def decode_chunks(self, z: torch.Tensor, chunk: int = 1) -> Iterator[torch.Tensor]:
        """decode(z) as pieces of `chunk` latent frames' worth of video, in order, each
        continuing the last through the causal convolutions' cache (bounded memory)."""
        cache = StreamCache()
        for i in range(0, z.shape[2], chunk):
            yield self.decoder(self.conv2(z[:, :, i : i + chunk]), cache).clamp(-1.0, 1.0)

    def forward(self, video: torch.Tensor, sample: bool = True):
        mean, logvar = self.encode(video)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decode(z), mean, logvar

    # the transformer works on latents normalised per channel
    def to_model(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean.to(z.dtype)) / self.std.to(z.dtype)

    def from_model(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z.dtype) + self.mean.to(z.dtype)
