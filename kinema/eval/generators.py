"""Generators ShapesBench can run, and clips it can read from a folder.

Two reference generators bracket what the metrics can say:
- groundtruth: renders the scene the prompt describes: the ceiling, about 100%.
- independent-frames: every frame is the prompt's scene with objects placed anew, so each frame
  alone matches the caption while the clip has no continuity: the flicker and identity failure
  of frame-by-frame generation that the field warns about.
The model issue adds the trained model under its own name; `GENERATORS` is a plain dict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kinema.eval.shapesbench import BenchSettings, Generator
from kinema.io.video import read_video
from kinema.world.parse import parse_caption
from kinema.world.render import frame_times, render, render_times
from kinema.world.sampler import place


def _duration(settings: BenchSettings) -> float:
    return (settings.num_frames - 1) / settings.fps


def groundtruth(prompt: str, seed: int, settings: BenchSettings) -> np.ndarray:
    scene = place(
        parse_caption(prompt), np.random.default_rng(seed), _duration(settings),
        settings.width, settings.height, strict=False,
    )  # fmt: skip
    return render(scene, settings.width, settings.height, settings.num_frames, settings.fps)


def independent_frames(prompt: str, seed: int, settings: BenchSettings) -> np.ndarray:
    described = parse_caption(prompt)
    times = frame_times(settings.num_frames, settings.fps)
    frames = []
    for i, t in enumerate(times):
        rng = np.random.default_rng([seed, i])
        scene = place(
            described, rng, _duration(settings), settings.width, settings.height, strict=False
        )
        frames.append(render_times(scene, np.array([t]), settings.width, settings.height)[0])
    return np.stack(frames)


GENERATORS: dict[str, Generator] = {
    "groundtruth": groundtruth,
    "independent-frames": independent_frames,
}


class ModelGenerator:
    """A kinema model as a ShapesBench generator, with its default sampling settings."""

    def __init__(self, model: str | Path, **overrides):
        from kinema.api import load

        self.pipe = load(model)
        self.overrides = overrides
        # with step caching: transformer blocks and FLOPs run, against the uncached run
        self.cache_totals = dict.fromkeys(("blocks_run", "blocks_total", "flops", "flops_uncached"), 0)  # fmt: skip

    def __call__(self, prompt: str, seed: int, settings: BenchSettings) -> np.ndarray:
        video = self.pipe(
            prompt, seed=seed, num_frames=settings.num_frames, fps=settings.fps,
            width=settings.width, height=settings.height, **self.overrides,
        )  # fmt: skip
        stats = video.metadata.get("step_cache")
        if stats:
            self._count(stats, video.metadata)
        return video.frames

    def _count(self, stats: dict, meta: dict) -> None:
        from kinema.pipeline.plan import clip_step_cache_flops

        run, full = clip_step_cache_flops(self.pipe.t2v, meta)
        for k, v in (("blocks_run", stats["blocks_run"]), ("blocks_total", stats["blocks_total"]),
                     ("flops", run), ("flops_uncached", full)):  # fmt: skip
            self.cache_totals[k] += v


def get_generator(name: str, **overrides) -> Generator:
    """A reference generator by name, or a kinema model by name or folder."""
    if name in GENERATORS:
        return GENERATORS[name]
    from kinema.checkpoint import CheckpointError
    from kinema.models import MODELS

    try:
        return ModelGenerator(name, **overrides)
    except CheckpointError:
        known = [*GENERATORS, *MODELS]
        raise KeyError(
            f"unknown generator {name!r}; known: {', '.join(known)}, or a model folder"
        ) from None


def folder_clips(folder: str | Path) -> list[tuple[str, str, np.ndarray, float]]:
    """(name, prompt, frames, fps) for every MP4 in a folder.

    The prompt comes from `prompts.json` in the folder ({"file.mp4": "prompt", ...}) when there
    is one, else from the MP4's own "prompt" metadata (what kinema writes).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder of videos: {folder}")
    manifest_path = folder / "prompts.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    clips = []
    for path in sorted(folder.glob("*.mp4")):
        frames, fps, metadata = read_video(path)
        prompt = manifest.get(path.name) or metadata.get("prompt")
        if not prompt:
            raise ValueError(
                f"{path} has no prompt: add it to {manifest_path} or the MP4's 'prompt' metadata"
            )
        clips.append((path.stem, prompt, frames, fps))
    if not clips:
        raise FileNotFoundError(f"no .mp4 files in {folder}")
    return clips
