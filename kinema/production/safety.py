"""Safety checks on the output: every frame, and the clip as a whole.

Classifiers are pluggable: a `FrameClassifier` has a name and `__call__(frame)` returning a
reason or None; a `ClipClassifier` has a name and `__call__(frames, fps)` returning (frame index
or None, reason) or None. `check_output` runs them all, on every frame, and raises `SafetyError`
(frame index, classifier, reason) at the first flag, before anything is exported.

The built-in ones are honest heuristics, not content classifiers: they do not know what is in a
picture.
- "heuristic" (frame): flags a frame in which a colour signature of the policy covers more than
  its `max_fraction` of the pixels.
- "blank" (clip): flags a clip whose every frame is near-uniform (every channel's standard
  deviation below the policy's `uniform_std`): blank or corrupt output. One uniform frame is no
  flag: an object that leaves a plain background, or a fade to black, makes one.
- "flashes" (clip): a simplified WCAG 2.3.1 general-flash test for photosensitive viewers: the
  relative luminance of the whole frame and of each quadrant is followed, a transition is a swing
  of at least 0.1 whose darker end is below 0.8, and more than 3 flashes (6 transitions) within
  any one second flag the clip. The red-flash rule and the exact screen-area rule are left out.
- "none" (either): checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from kinema.pipeline.text_to_video import GenerationError
from kinema.production.policy import DEFAULT_POLICY, SafetyPolicy, check_names


class FrameClassifier(Protocol):
    name: str

    def __call__(self, frame: np.ndarray) -> str | None:
        """(H, W, 3) uint8 -> a reason to fail the job, or None."""
        ...


class ClipClassifier(Protocol):
    name: str

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[int | None, str] | None:
        """(T, H, W, 3) uint8 -> (frame index or None, reason) to fail the job, or None."""
        ...


class SafetyError(GenerationError):
    """An output frame or clip a safety classifier flagged; nothing was exported."""

    def __init__(self, frame: int | None, classifier: str, reason: str):
        self.frame, self.classifier, self.reason = frame, classifier, reason
        where = f"frame {frame}" if frame is not None else "the clip"
        super().__init__(
            f"{where} flagged by safety classifier {classifier!r}: {reason}; nothing was exported"
        )


@dataclass(frozen=True)
class SafetyReport:
    frames_checked: int
    frame_classifiers: tuple[str, ...]
    clip_classifiers: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"frames_checked": self.frames_checked, "frame_classifiers": list(self.frame_classifiers),
                "clip_classifiers": list(self.clip_classifiers), "flagged": None}  # fmt: skip


def _largest_channel_std(frame: np.ndarray) -> float:
    return float(cv2.meanStdDev(np.ascontiguousarray(frame))[1].max())


class BlankClipClassifier:
    """A clip of near-uniform frames only (see the module doc)."""

    name = "blank"

    def __init__(self, policy: SafetyPolicy = DEFAULT_POLICY):
        self.policy = policy

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[int | None, str] | None:
        most = 0.0
        for frame in frames:
            most = max(most, _largest_channel_std(frame))
            if most >= self.policy.uniform_std:
                return None
        return None, (f"every frame is near-uniform (largest channel std at most {most:.2f}): "
                      "blank or corrupt output")  # fmt: skip


class HeuristicFrameClassifier:
    """Colour signatures (see the module doc)."""

    name = "heuristic"

    def __init__(self, policy: SafetyPolicy = DEFAULT_POLICY):
        self.policy = policy

    def __call__(self, frame: np.ndarray) -> str | None:
        for sig in self.policy.colour_signatures:
            close = np.all(
                np.abs(frame.astype(np.int16) - np.array(sig.rgb)) <= sig.tolerance, axis=-1
            )
            fraction = float(close.mean())
            if fraction > sig.max_fraction:
                return (f"colour signature {sig.name!r} covers {fraction:.0%} of the frame "
                        f"(limit {sig.max_fraction:.0%})")  # fmt: skip
        return None


_CODES = np.arange(256) / 255.0
# sRGB code -> linear light, times each channel's luminance weight (WCAG relative luminance)
_LINEAR = np.where(_CODES <= 0.04045, _CODES / 12.92, ((_CODES + 0.055) / 1.055) ** 2.4)
_LUMA_LUT = (_LINEAR[:, None] * np.array([0.2126, 0.7152, 0.0722])).astype(np.float32)  # (256, 3)


def relative_luminance(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (...) float32 relative luminance in [0, 1] (WCAG)."""
    return (
        _LUMA_LUT[frames[..., 0], 0] + _LUMA_LUT[frames[..., 1], 1] + _LUMA_LUT[frames[..., 2], 2]
    )


def _transitions(lum: np.ndarray, swing: float = 0.1, dark: float = 0.8) -> list[int]:
    """Frame indices where the luminance series completes a transition (see the module doc)."""
    out: list[int] = []
    hi = lo = float(lum[0])
    direction = 0  # +1 last transition was up, -1 down
    for t, value in enumerate(lum[1:], start=1):
        value = float(value)
        if direction >= 0 and hi - value >= swing and value < dark:  # fell from the high
            out.append(t)
            direction, lo, hi = -1, value, value
        elif direction <= 0 and value - lo >= swing and lo < dark:  # rose from the low
            out.append(t)
            direction, lo, hi = 1, value, value
        hi, lo = max(hi, value), min(lo, value)
    return out


class FlashClipClassifier:
    """More than 3 flashes in any second, whole frame or a quadrant (see the module doc)."""

    name = "flashes"
    max_flashes = 3

    def __call__(self, frames: np.ndarray, fps: float) -> tuple[int | None, str] | None:
        if len(frames) < 3:
            return None
        h, w = frames.shape[1:3]
        lum = relative_luminance(frames)  # (T, H, W)
        regions = {"the frame": lum.mean(axis=(1, 2))}
        for name, (ys, xs) in {
            "the top-left quadrant": (slice(0, h // 2), slice(0, w // 2)),
            "the top-right quadrant": (slice(0, h // 2), slice(w // 2, w)),
            "the bottom-left quadrant": (slice(h // 2, h), slice(0, w // 2)),
            "the bottom-right quadrant": (slice(h // 2, h), slice(w // 2, w)),
        }.items():
            if h >= 2 and w >= 2:
                regions[name] = lum[:, ys, xs].mean(axis=(1, 2))
        window = max(1, round(fps))
        limit = 2 * self.max_flashes
        for region, series in regions.items():
            marks = _transitions(series)
            for k in range(len(marks) - limit):
                if marks[k + limit] - marks[k] < window:
                    return marks[k + limit], (
                        f"more than {self.max_flashes} flashes within one second in {region} "
                        "(photosensitivity risk, simplified WCAG 2.3.1)"
                    )
        return None


class NoFrameCheck:
    name = "none"

    def __init__(self, policy: SafetyPolicy = DEFAULT_POLICY):
        pass

    def __call__(self, *args) -> None:
        return None


FRAME_CLASSIFIERS: dict[str, Callable[[SafetyPolicy], FrameClassifier]] = {
    "heuristic": HeuristicFrameClassifier,
    "none": NoFrameCheck,
}
CLIP_CLASSIFIERS: dict[str, Callable[[SafetyPolicy], ClipClassifier]] = {
    "flashes": lambda policy: FlashClipClassifier(),
    "blank": BlankClipClassifier,
    "none": NoFrameCheck,
}


def classifiers_for(policy: SafetyPolicy) -> tuple[list[FrameClassifier], list[ClipClassifier]]:
    check_names(policy)
    frame = [FRAME_CLASSIFIERS[n](policy) for n in policy.frame_classifiers]
    clip = [CLIP_CLASSIFIERS[n](policy) for n in policy.clip_classifiers]
    return frame, clip


def check_output(frames: np.ndarray, fps: float, frame_classifiers: list[FrameClassifier],
                 clip_classifiers: list[ClipClassifier]) -> SafetyReport:  # fmt: skip
    """Run every frame classifier on every frame, then the clip classifiers; raise SafetyError at
    the first flag."""
    for index, frame in enumerate(frames):
        for classifier in frame_classifiers:
            reason = classifier(frame)
            if reason:
                raise SafetyError(index, classifier.name, reason)
    for classifier in clip_classifiers:
        flag = classifier(frames, fps)
        if flag:
            raise SafetyError(flag[0], classifier.name, flag[1])
    return SafetyReport(len(frames), tuple(c.name for c in frame_classifiers),
                        tuple(c.name for c in clip_classifiers))  # fmt: skip
