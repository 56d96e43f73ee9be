"""CLIP image tokens for Wan2.1 image-to-video: images -> the states of the vision tower's
second-to-last layer, (N, 257, 1280) for Wan's ViT-H/14, exactly what diffusers'
WanImageToVideoPipeline.encode_image gives (`hidden_states[-2]`; Wan's own code calls it
use_31_block).

The preprocessing is transformers' CLIPImageProcessor, done here with PIL and numpy so that
torchvision is not needed: resize the shortest side (PIL, bicubic), crop the middle, scale to
[0, 1], normalise with the CLIP mean and std; the numbers come from the folder's
image_processor/preprocessor_config.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipPreprocess:
    """CLIPImageProcessor's steps. size: the shortest side after resizing, or (height, width);
    crop: (height, width) cut from the middle."""

    size: int | tuple[int, int] = 224
    crop: tuple[int, int] = (224, 224)
    resample: int = Image.Resampling.BICUBIC
    rescale: float = 1 / 255
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_json(cls, path: Path) -> ClipPreprocess:
        """From a preprocessor_config.json (written by CLIPImageProcessor.save_pretrained)."""
        c = json.loads(Path(path).read_text())
        size = c.get("size", {"shortest_edge": 224})
        if isinstance(size, int):
            size = {"shortest_edge": size}
        crop = c.get("crop_size", {"height": 224, "width": 224})
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        flags = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
        return cls(
            size=size["shortest_edge"] if "shortest_edge" in size else (size["height"], size["width"]),
            crop=(crop["height"], crop["width"]),
            resample=c.get("resample", Image.Resampling.BICUBIC),
            rescale=c.get("rescale_factor", 1 / 255),
            mean=tuple(c.get("image_mean", OPENAI_CLIP_MEAN)),
            std=tuple(c.get("image_std", OPENAI_CLIP_STD)),
            **{k: bool(c.get(k, True)) for k in flags},
        )  # fmt: skip

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after resizing; the long side is truncated as transformers does."""
        if not isinstance(self.size, int):
            return tuple(self.size)
        short, long = min(height, width), max(height, width)
        new_long = int(self.size * long / short)
        return (new_long, self.size) if height > width else (self.size, new_long)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, crop height, crop width) float32."""
        if self.do_resize:
            h, w = self.resized_size(*image.shape[:2])
            image = np.asarray(Image.fromarray(image).resize((w, h), resample=self.resample))
        if self.do_center_crop:
            (h, w), (ch, cw) = image.shape[:2], self.crop
            if ch > h or cw > w:
                raise ValueError(f"CLIP crop {cw}x{ch} is larger than the resized image {w}x{h}")
            top, left = (h - ch) // 2, (w - cw) // 2
            image = image[top : top + ch, left : left + cw]
        x = image.astype(np.float32)
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale).astype(np.float32)
        if self.do_normalize:
            mean, std = (np.asarray(v, dtype=np.float32) for v in (self.mean, self.std))
            x = (x - mean) / std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class ClipImageEncoder:
    """images -> CLIP tokens (N, L, D) float32 on the CPU. Frozen, eval mode; `model` and
    `device` as a TextEncoder has them, so placement and offloading treat both alike."""

    def __init__(self, model, preprocess: ClipPreprocess, device: str | torch.device = "cpu"):
        self.model = model.eval().requires_grad_(False).to(device)
        self.preprocess = preprocess
        self.device = torch.device(device)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def tokens(self) -> int:
        """Tokens per image: the class token and one per patch."""
        config = self.model.config
        return (config.image_size // config.patch_size) ** 2 + 1

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 images -> (N, L, D), the second-to-last layer's states."""
        pixels = torch.stack([self.preprocess(image) for image in images])
        pixels = pixels.to(self.device, self.model.dtype)
        states = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        return states.float().cpu()


def load_clip_vision(folder: Path):
    """transformers' CLIP vision model in a folder (CLIPVisionModel or ...WithProjection, the
    class its config names), in float32 as kinema holds the transformer and VAE."""
    import transformers
    from transformers import AutoConfig

    from kinema.checkpoint import CheckpointError
    from kinema.text.encoder import _quiet_transformers

    _quiet_transformers()
    names = AutoConfig.from_pretrained(folder).architectures or ["CLIPVisionModel"]
    known = ("CLIPVisionModel", "CLIPVisionModelWithProjection")
    if names[0] not in known:
        raise CheckpointError(f"{folder} holds a {names[0]}; Wan's image encoder is one of {known}")
    return getattr(transformers, names[0]).from_pretrained(folder, dtype=torch.float32)
