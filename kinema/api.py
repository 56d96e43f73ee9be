"""The Python API: `pipe = kinema.load()` then `video = pipe("a red circle moving left")`.

video.frames    (T, H, W, 3) uint8
video.fps       frames per second
video.metadata  prompt, seed, model and every setting
video.save("out.mp4")   H.264 yuv420p via PyAV with the metadata (also .gif, .webm)
video.save_frames("frames/")   one PNG per frame
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kinema.models import DEFAULT_MODEL, load_dit, load_vae, resolve_model
from kinema.pipeline.text_to_video import GenerationSettings, TextToVideo, sampler_overrides
from kinema.text.encoder import TextEncoder


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    metadata: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (len(self.frames) - 1) / self.fps if len(self.frames) > 1 else 0.0

    def save(self, path: str | Path) -> Path:
        from kinema.io.video import write_video

        if Path(path).suffix.lower() == ".gif":  # a GIF holds one comment: all of it as JSON
            meta = {"comment": json.dumps(self.metadata)}
        else:
            meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.metadata.items()}
        return write_video(path, self.frames, self.fps, metadata=meta)

    def save_frames(self, folder: str | Path) -> list[Path]:
        from kinema.io.images import save_png

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return [save_png(folder / f"frame_{i:04d}.png", f) for i, f in enumerate(self.frames)]


class Pipeline:
    """A loaded model, callable with a prompt."""

    def __init__(self, t2v: TextToVideo):
        self.t2v = t2v

    def __call__(
        self,
        prompt: str,
        seed: int = 0,
        seconds: float | None = None,
        fps: float = 8.0,
        width: int = 64,
        height: int = 64,
        steps: int | None = None,
        guidance: float | None = None,
        negative_prompt: str = "",
        solver: str | None = None,
        shift: float | None = None,
        num_frames: int | None = None,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> Video:
        """Sampler settings left as None take GenerationSettings' defaults."""
        sampler = sampler_overrides(steps, guidance, solver, shift)
        common = dict(width=width, height=height, negative_prompt=negative_prompt, seed=seed,
                      **sampler)  # fmt: skip
        if num_frames is not None:
            settings = GenerationSettings(num_frames=num_frames, fps=fps, **common)
        else:
            settings = GenerationSettings.from_seconds(
                2.0 if seconds is None else seconds, fps, **common
            )
        frames, timings = self.t2v.generate(prompt, settings, callback)
        meta = {
            "prompt": prompt,
            "model": self.t2v.name,
            **dataclasses.asdict(settings),
            "timings": timings,
        }
        return Video(frames, settings.fps, meta)


def load(model: str | Path = DEFAULT_MODEL, device: str = "cpu") -> Pipeline:
    """Load a model by name ("kinema-tiny") or folder."""
    folder = resolve_model(model)
    text_dir = folder / "text_encoder"
    encoder = TextEncoder(text_dir if text_dir.is_dir() else None, device=device)
    dit = load_dit(folder / "dit.safetensors").to(device)
    vae = load_vae(folder / "vae.safetensors").to(device)
    name = str(model) if not Path(str(model)).is_dir() else folder.name
    return Pipeline(TextToVideo(encoder, dit, vae, name))
