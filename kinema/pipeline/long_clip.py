"""Clips longer than one window: extension, chains of windows, and hierarchical generation.

A window after the first is conditioned on the tail of the clip so far: its last
1 + 4 * overlap pixel frames, encoded as a prefix (latent frames 0..overlap), exactly like the
"prefix" reveal the model was trained with. What keeps a chain from drifting or jumping:
- re-anchoring (ChainSettings.anchor, off by default): latent frame 0 of each window's prefix is
  replaced by the clip's first frame, so every window sees the original appearance of the scene,
  not a copy of a copy. It also shows every mover back where it started, which contradicts the
  rest of the prefix: on kinema-tiny it cost identity (README, long clips), so it is a choice;
- seam blending: the last 4 tail frames are cross-faded from the original into the window's own
  decoding of them, so the new frames follow on from pixels the decoder produced itself;
- per-window seeds (seed + window index), so the chain is reproducible.

Hierarchical: a first pass makes keyframes at a low frame rate (the model takes fps as an input),
then a chain at the full rate pins every keyframe and fills the frames between them. The
keyframes are a reference for the whole clip that a plain chain lacks, but it is only as good as
the model's fps input: kinema-tiny's keyframes at 1 fps barely move (README, long clips), so
hierarchical generation is asked for, not the default.

How long one window may be is the model's (kinema.models.BaseFormat.max_frames: kinema-tiny's
33, Wan2.1's 81). A model never trained with known frames (Wan2.1) cannot chain: a longer clip
is refused (check_single_window) rather than stitched from windows it cannot continue.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kinema.pipeline.conditioning import ConditioningError, FrameConditions, frames_for_latents
from kinema.pipeline.text_to_video import GenerationError, GenerationSettings, TextToVideo

DEFAULT_WINDOW_FRAMES = 17
DEFAULT_OVERLAP_LATENTS = 2
KEYFRAME_STRIDE = 8  # hierarchical: one keyframe every 8 frames (the model's 1 fps at 8 fps)

# (window index, windows in all, step, steps) -> None
ChainCallback = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class ChainSettings:
    window_frames: int = DEFAULT_WINDOW_FRAMES
    overlap_latents: int = DEFAULT_OVERLAP_LATENTS
    anchor: bool = False  # measured worse on identity (stages 5 and 6, README): opt in
    blend: bool = True

    def check(self, temporal_factor: int = 4) -> None:
        tail = frames_for_latents(self.overlap_latents + 1, temporal_factor)
        if (self.window_frames - 1) % temporal_factor:
            raise GenerationError(
                f"window of {self.window_frames} frames must be 1 + {temporal_factor}k frames"
            )
        if self.overlap_latents < 1 or self.window_frames <= tail:
            raise GenerationError(
                f"a window of {self.window_frames} frames leaves no new frames after an overlap "
                f"of {tail} frames; use a longer window or a smaller overlap"
            )

    @property
    def tail_frames(self) -> int:
        return frames_for_latents(self.overlap_latents + 1)


@dataclass
class Chain:
    """A long clip and where its windows start (for seam measurements)."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    window_starts: list[int]  # first new frame of each window after the first
    timings: dict


def _window_images(
    images: tuple[tuple[int, np.ndarray], ...], start: int, first_new: int, end: int
) -> tuple[tuple[int, np.ndarray], ...]:
    """The pinned images whose frame falls among this window's new frames, in window frames."""
    return tuple((f - start, im) for f, im in images if start + first_new <= f < end)


def extend_frames(
    t2v: TextToVideo,
    clip: np.ndarray,
    prompt: str,
    new_frames: int,
    settings: GenerationSettings,
    chain: ChainSettings = ChainSettings(),
    anchor: np.ndarray | None = None,
    images: tuple[tuple[int, np.ndarray], ...] = (),
    callback: ChainCallback | None = None,
    window_offset: int = 0,
) -> Chain:
    """clip (T, H, W, 3) followed by new_frames (a multiple of 4) more, window by window.
    images: (frame in the whole clip, image) to pin among the new frames."""
    chain.check(t2v.vae.cfg.temporal_factor)
    if new_frames % 4 or new_frames < 0:
        raise GenerationError(f"new frames must be a multiple of 4, got {new_frames}")
    h, w = clip.shape[1:3]
    if (w, h) != (settings.width, settings.height):
        raise GenerationError(
            f"clip is {w}x{h} but the settings ask for {settings.width}x{settings.height}"
        )
    out = [clip]
    total = len(clip)
    per_window = chain.window_frames - chain.tail_frames
    windows = math.ceil(new_frames / per_window)
    starts, timings = [], {}
    for i in range(windows):
        so_far = np.concatenate(out) if len(out) > 1 else out[0]
        # the longest 1 + 4j tail the clip has, up to the overlap
        tail_len = min(chain.tail_frames, 1 + (len(so_far) - 1) // 4 * 4)
        tail = so_far[-tail_len:]
        add = min(per_window, new_frames - (total - len(clip)))
        window_len = tail_len + add
        start = len(so_far) - tail_len  # frame of the whole clip where this window starts
        conditions = FrameConditions(
            images=_window_images(images, start, tail_len, start + window_len),
            prefix=tail,
            anchor=anchor if chain.anchor and tail_len > 1 else None,
        )
        s = dataclasses.replace(
            settings, num_frames=window_len, seed=settings.seed + window_offset + i
        )
        cb = (
            None
            if callback is None
            else (lambda j, n, x, i=i: callback(i + window_offset, windows + window_offset, j, n))
        )
        frames, t = t2v.generate(prompt, s, cb, conditions)
        for k, v in t.items():
            timings[k] = timings.get(k, 0.0) + v
        if chain.blend and tail_len > 4:
            # cross-fade the last latent group of the tail into the window's own decoding of it
            wts = np.linspace(0.25, 1, 4)[:, None, None, None]
            seam = (
                so_far[-4:].astype(np.float32) * (1 - wts) + frames[tail_len - 4 : tail_len] * wts
            )
            so_far = np.concatenate([so_far[:-4], seam.round().astype(np.uint8)])
        out = [so_far, frames[tail_len:]]
        starts.append(len(so_far))
        total += add
    result = np.concatenate(out) if len(out) > 1 else out[0]
    return Chain(result, starts, timings)


def generate_long(
    t2v: TextToVideo,
    prompt: str,
    settings: GenerationSettings,
    chain: ChainSettings = ChainSettings(),
    images: tuple[tuple[int, np.ndarray], ...] = (),
    callback: ChainCallback | None = None,
) -> Chain:
    """A clip of settings.num_frames frames as a chain of windows; the first window is plain
    text-to-video (or image-to-video with the images that fall in it)."""
    chain.check(t2v.vae.cfg.temporal_factor)
    first_len = min(settings.num_frames, chain.window_frames)
    per_window = chain.window_frames - chain.tail_frames
    windows = 1 + math.ceil((settings.num_frames - first_len) / per_window)
    first_images = tuple((f, im) for f, im in images if f < first_len)
    s = dataclasses.replace(settings, num_frames=first_len)
    cb = None if callback is None else (lambda j, n, x: callback(0, windows, j, n))
    first, timings = t2v.generate(
        prompt, s, cb, FrameConditions(images=first_images) if first_images else None
    )
    rest = extend_frames(
        t2v, first, prompt, settings.num_frames - first_len, settings, chain,
        anchor=first[0], images=images, callback=callback, window_offset=1,
    )  # fmt: skip
    for k, v in timings.items():
        rest.timings[k] = rest.timings.get(k, 0.0) + v
    return rest


def check_single_window(num_frames: int, fps: float, max_frames: int, model: str) -> None:
    """A model that cannot chain windows (it takes no known frames) makes at most max_frames in
    its one window: refuse a longer clip, saying what fits, before any work."""
    if num_frames <= max_frames:
        return
    most = (max_frames - 1) / fps
    raise GenerationError(
        f"{num_frames} frames ({(num_frames - 1) / fps:g} s at {fps:g} fps) is more than {model} "
        f"makes in one window ({max_frames} frames, {most:g} s at {fps:g} fps), and it cannot "
        f"chain windows (it takes no known frames): ask for at most {most:g} s (seconds=, "
        "--seconds), a lower fps (fps=, --fps), or a model that chains windows, such as kinema-tiny"
    )


def keyframe_count(num_frames: int) -> int:
    """Frames of the keyframe pass of a hierarchical clip: one every KEYFRAME_STRIDE frames,
    rounded up to the 1 + 4k frames the VAE takes."""
    n_key = 1 + math.ceil((num_frames - 1) / KEYFRAME_STRIDE)
    return 1 + 4 * math.ceil((n_key - 1) / 4)


def check_hierarchical(micro_conditioning: bool, num_frames: int, max_frames: int) -> int:
    """The keyframe count of a hierarchical clip, or a one-line error where it cannot be made:
    the keyframe pass needs the model's fps input and must fit its one window (max_frames)."""
    if not micro_conditioning:
        raise GenerationError("hierarchical generation needs a model with an fps input")
    n_key = keyframe_count(num_frames)
    if n_key > max_frames:
        raise GenerationError(
            f"{num_frames} frames need {n_key} keyframes, more than one pass makes "
            f"({max_frames} frames); use a chain without --hierarchical"
        )
    return n_key


def generate_hierarchical(
    t2v: TextToVideo,
    prompt: str,
    settings: GenerationSettings,
    max_frames: int,
    chain: ChainSettings = ChainSettings(),
    callback: ChainCallback | None = None,
) -> tuple[Chain, np.ndarray]:
    """Keyframes at fps / 8 over the whole clip first, then the full-rate chain between them.
    max_frames: the model's longest single window (the keyframes are one). Returns the chain
    and the keyframe clip."""
    n_key = check_hierarchical(t2v.dit.cfg.micro_conditioning, settings.num_frames, max_frames)
    key_settings = dataclasses.replace(
        settings, num_frames=n_key, fps=settings.fps / KEYFRAME_STRIDE
    )
    cb = None if callback is None else (lambda j, n, x: callback(0, 0, j, n))
    keys, _ = t2v.generate(prompt, key_settings, cb)
    pinned = tuple(
        (KEYFRAME_STRIDE * j, keys[j])
        for j in range(n_key)
        if KEYFRAME_STRIDE * j < settings.num_frames
    )
    return generate_long(t2v, prompt, settings, chain, images=pinned, callback=callback), keys


SEAM_BAND = 5  # transitions counted as the seam: the 4 cross-faded ones and the cut itself


def seam_flicker(frames: np.ndarray, window_starts: list[int]) -> tuple[float, float]:
    """Mean absolute frame difference (0..255) in the seam band of each window (the cross-faded
    frames and the first new frame) and everywhere else; blending spreads a seam's jump over the
    band, so the band, not the one cut, is what must look like the inside."""
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    # diff index i: frames i -> i + 1; the first new frame s is reached by diff s - 1
    seams = {i for s in window_starts for i in range(s - SEAM_BAND, s) if 0 <= i < len(diffs)}
    at = [d for i, d in enumerate(diffs) if i in seams]
    inside = [d for i, d in enumerate(diffs) if i not in seams]
    return float(np.mean(at)) if at else 0.0, float(np.mean(inside)) if inside else 0.0


__all__ = [
    "Chain",
    "ChainSettings",
    "ConditioningError",
    "check_hierarchical",
    "check_single_window",
    "extend_frames",
    "generate_hierarchical",
    "generate_long",
    "keyframe_count",
    "seam_flicker",
]
