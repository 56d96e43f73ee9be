"""Frames the user gives (an image, a last frame, keyframes, the start of a clip to extend) turned
into the one conditioning mechanism: known latent frames with a mask (DESIGN.md).

Latent frame 0 is pixel frame 0 encoded alone (an image is a one-frame video); latent frame k >= 1
holds pixel frames 4k-3 .. 4k. So:
- a prefix of 1 + 4m real frames encodes to latent frames 0..m exactly as in training;
- an image pinned at pixel frame p > 0 lands on latent frame ceil(p / 4), encoded as the image
  held still over that group (the causal VAE sees a still video up to it). The decoded group is
  then close to the image on all four of its frames: keyframes have 4-frame granularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from kinema.io.frames import to_tensor
from kinema.sampling.guidance import KnownFrames
from kinema.vae.causal_vae import CausalVAE, latent_frames

FIT_MODES = ("crop", "pad", "resize")


class ConditioningError(ValueError):
    """Frames that cannot condition this clip; the message says what would."""


def latent_index(frame: int, temporal_factor: int = 4) -> int:
    """The latent frame that holds pixel frame `frame`."""
    return 0 if frame <= 0 else (frame + temporal_factor - 1) // temporal_factor


def fit_image(
    image: np.ndarray, width: int, height: int, fit: str = "crop"
) -> tuple[np.ndarray, str | None]:
    """An (H, W, 3) uint8 image at the clip's size, and a note saying what was done (None when it
    already had that size). crop: scale to cover, cut the middle; pad: scale to fit, black bars;
    resize: stretch."""
    if fit not in FIT_MODES:
        raise ConditioningError(f"unknown fit {fit!r}; choose one of {', '.join(FIT_MODES)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConditioningError(
            f"an image must be (H, W, 3) uint8, got {image.dtype} {image.shape}"
        )
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image, None
    pil = Image.fromarray(image)
    if fit == "resize":
        out = pil.resize((width, height), Image.Resampling.LANCZOS)
    else:
        scale = max(width / w, height / h) if fit == "crop" else min(width / w, height / h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        scaled = pil.resize((sw, sh), Image.Resampling.LANCZOS)
        out = Image.new("RGB", (width, height))
        out.paste(scaled, ((width - sw) // 2, (height - sh) // 2))  # negative offsets crop
    verb = {"crop": "scaled and cropped", "pad": "scaled and padded", "resize": "resized"}[fit]
    return np.asarray(out).copy(), f"image {w}x{h} {verb} to {width}x{height} (--fit {fit})"


def _to_video(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) in [-1, 1]."""
    return to_tensor(frames)[None]


@torch.inference_mode()
def encode_frames(vae: CausalVAE, frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 with T = 1 + 4k -> normalised latents (1, C, 1 + k, h, w), on the
    CPU whatever device the VAE runs on."""
    device = next(vae.parameters()).device
    mean, _ = vae.encode(_to_video(frames).to(device))
    return vae.to_model(mean).cpu()


@dataclass(frozen=True)
class FrameConditions:
    """What a clip must contain: images at pixel frames, and/or the clip's first frames."""

    images: tuple[tuple[int, np.ndarray], ...] = ()  # (pixel frame, (H, W, 3) uint8)
    prefix: np.ndarray | None = None  # (1 + 4m, H, W, 3) uint8: the clip starts with these
    # (H, W, 3) uint8 shown in place of the prefix's first frame: re-anchors a chain of windows
    # on the clip's first frame so that appearance does not drift
    anchor: np.ndarray | None = None

    def __bool__(self) -> bool:
        return bool(self.images) or self.prefix is not None


def known_frames(
    vae: CausalVAE,
    conditions: FrameConditions,
    latent_shape: tuple[int, ...],
    num_frames: int,
    noise_level: float = 0.0,
    seed: int = 0,
) -> KnownFrames:
    """Encode the conditions into known latents for a clip of num_frames frames."""
    f = vae.cfg.temporal_factor
    latents = torch.zeros(latent_shape)
    mask = torch.zeros(latent_shape[2], dtype=torch.bool)
    owner: dict[int, str] = {}

    def place(k: int, z: torch.Tensor, what: str) -> None:
        if k in owner:
            raise ConditioningError(
                f"{what} and {owner[k]} fall in the same latent frame (frames {max(4 * k - 3, 0)}"
                f"..{4 * k}); keep conditioning frames at least {f} frames apart"
            )
        latents[:, :, k] = z
        mask[k] = True
        owner[k] = what

    if conditions.prefix is not None:
        n = len(conditions.prefix)
        if (n - 1) % f or n > num_frames:
            raise ConditioningError(
                f"a prefix must have 1 + {f}k frames and fit the clip; got {n} of {num_frames}"
            )
        z = encode_frames(vae, conditions.prefix).clone()
        if conditions.anchor is not None:
            z[:, :, 0] = encode_frames(vae, conditions.anchor[None])[:, :, 0]
        for k in range(z.shape[2]):
            place(k, z[:, :, k], f"prefix frame {min(4 * k, n - 1)}")
    for frame, image in conditions.images:
        if not 0 <= frame < num_frames:
            raise ConditioningError(
                f"frame {frame} is outside the clip (frames 0..{num_frames - 1})"
            )
        k = latent_index(frame, f)
        still = np.repeat(image[None], 1 + f * k, axis=0)
        place(k, encode_frames(vae, still)[:, :, k], f"the image at frame {frame}")
    noise = None
    if noise_level > 0:
        noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed + 1))
    return KnownFrames(latents, mask, noise_level, noise)


def frames_for_latents(num_latents: int, temporal_factor: int = 4) -> int:
    """Pixel frames decoded from num_latents latent frames."""
    return 1 + temporal_factor * (num_latents - 1)


__all__ = [
    "FIT_MODES",
    "ConditioningError",
    "FrameConditions",
    "encode_frames",
    "fit_image",
    "frames_for_latents",
    "known_frames",
    "latent_frames",
    "latent_index",
]
