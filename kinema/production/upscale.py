"""Super-resolution: frames at the base size -> frames at the target size.

An `Upscaler` resizes every frame of a clip. The default is the learned one (`LearnedUpscaler`,
sr_net.py, trained on the world rendered at both sizes); the classical fallbacks are OpenCV's
resamplers, frame by frame: "bicubic" (the baseline the learned model must beat), "lanczos"
(Lanczos-4, sharper, rings more) and "area" (for shrinking). Any other model plugs in by having a
`name` and the same `__call__`.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np


class Upscaler(Protocol):
    name: str

    def __call__(self, frames: np.ndarray, width: int, height: int) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8."""
        ...


class ResizeUpscaler:
    """Classical resampling of each frame with OpenCV."""

    METHODS = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "area": cv2.INTER_AREA}

    def __init__(self, method: str = "bicubic"):
        if method not in self.METHODS:
            raise ValueError(f"unknown upscaler {method!r}; known: {', '.join(self.METHODS)}")
        self.name = method
        self._flag = self.METHODS[method]

    def __call__(self, frames: np.ndarray, width: int, height: int) -> np.ndarray:
        if frames.shape[1:3] == (height, width):
            return frames
        out = np.empty((len(frames), height, width, 3), np.uint8)
        for i, frame in enumerate(frames):
            out[i] = cv2.resize(frame, (width, height), interpolation=self._flag)
        return out


UPSCALERS = ("learned", *ResizeUpscaler.METHODS)


def make_upscaler(name: str = "learned") -> Upscaler:
    """An upscaler by name ("learned", "bicubic", "lanczos", "area") or the path of
    sr.safetensors weights (`kinema train sr`). "learned" falls back to "bicubic" when the
    shipped weights are missing from this install."""
    from kinema.production import sr_net

    if name == "learned":
        return sr_net.LearnedUpscaler() if sr_net.SHIPPED.is_file() else ResizeUpscaler("bicubic")
    if name in ResizeUpscaler.METHODS:
        return ResizeUpscaler(name)
    if name.endswith(".safetensors"):
        return sr_net.LearnedUpscaler(name)
    raise ValueError(
        f"unknown upscaler {name!r}: use one of {', '.join(UPSCALERS)} "
        "or the path of an sr.safetensors file"
    )
