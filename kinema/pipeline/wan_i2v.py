"""Wan2.1 image-to-video (I2V) and first-last-frame (FLF2V) conditioning, built as diffusers'
WanImageToVideoPipeline builds it.

kinema's own models take given frames as known latent frames (kinema/pipeline/conditioning.py).
Wan's I2V transformer takes the image in two other ways, and generates every frame itself:
- its input channels: the noisy latents (16) are followed by a 4-channel mask and the VAE
  latents (16, normalised) of a clip that is the image followed by zeros (mid-grey) for the
  other frames, or, FLF2V, the first image, zeros, the last image: 36 channels. The mask has a
  channel per pixel frame of each latent frame's 4-frame group (the first latent frame holds
  frame 0 four times), 1 where that frame is given;
- its cross-attention: the CLIP tokens of the image(s) get their own keys and values.
Both CFG branches see the same image. CLIP is given the image as fitted to the clip (what the
first frame shows); diffusers gives it the image as passed, which is the same image when it
already has the clip's size.
"""

from __future__ import annotations

import torch

from kinema.dit.transformer import DiTConfig
from kinema.pipeline.conditioning import ConditioningError, FrameConditions


def wan_images(cfg: DiTConfig) -> int:
    """Images a Wan transformer is conditioned on: 0 (text-to-video, or kinema's own models),
    1 (I2V: the first frame) or 2 (FLF2V: the first and the last frame)."""
    if cfg.image_dim is None:
        return 0
    return 2 if cfg.image_pos_len is not None else 1


def check_wan_images(
    cfg: DiTConfig, conditions: FrameConditions | None, num_frames: int, image_noise: float = 0.0
) -> None:
    """One-line errors for frames a Wan I2V/FLF2V model cannot take, before any work."""
    needed = wan_images(cfg)
    if not needed:
        return
    wanted = "the first frame (image=..., --image)"
    if needed == 2:
        wanted = "a first and a last frame (image= and last_image=, --image and --last-image)"
    frames = [f for f, _ in conditions.images] if conditions else []
    if not frames:
        raise ConditioningError(f"this Wan2.1 image-to-video model needs {wanted}")
    expected = [0] if needed == 1 else [0, num_frames - 1]
    if frames != expected or conditions.prefix is not None:
        raise ConditioningError(
            f"this Wan2.1 image-to-video model takes {wanted} only: no other images, keyframes "
            "or clip to extend"
        )
    if image_noise:
        raise ConditioningError(
            "image noise loosens known latent frames; a Wan2.1 image-to-video model takes its "
            "image through the transformer's input instead: leave it at 0"
        )


def mask_channels(
    given: list[int], num_frames: int, latent_shape: tuple[int, int, int], temporal_factor: int = 4
) -> torch.Tensor:
    """(1, temporal_factor, F', h, w): per latent frame, 1 for each of its pixel frames that is
    given. latent_shape: (F', h, w)."""
    frames = torch.zeros(num_frames)
    frames[given] = 1.0
    # latent frame 0 stands for pixel frame 0 alone: it fills all of its group's channels
    frames = torch.cat([frames[:1].repeat(temporal_factor), frames[1:]])
    per_latent = frames.view(1, -1, temporal_factor, 1, 1).transpose(1, 2)
    return per_latent.expand(1, temporal_factor, *latent_shape).contiguous()


@torch.inference_mode()
def latent_channels(vae, images: tuple, num_frames: int) -> torch.Tensor:
    """(frame, (H, W, 3) uint8) pairs -> (1, 4 + C, F', h, w) on the CPU: the mask, then the
    normalised latents of the clip that shows the images at their frames and zeros elsewhere."""
    h, w = images[0][1].shape[:2]
    video = torch.zeros(1, 3, num_frames, h, w)
    for frame, image in images:
        video[0, :, frame] = torch.from_numpy(image).float().permute(2, 0, 1) / 127.5 - 1.0
    device = next(vae.parameters()).device
    mean, _ = vae.encode(video.to(device))
    latents = vae.to_model(mean).cpu()  # (1, C, F', h, w)
    mask = mask_channels([f for f, _ in images], num_frames, tuple(latents.shape[2:]),
                         vae.cfg.temporal_factor)  # fmt: skip
    return torch.cat([mask, latents], dim=1)
