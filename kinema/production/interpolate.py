"""Temporal upsampling: frames at the base fps -> frames at any target fps.

An `Interpolator` makes frames at fractional positions of a clip; `retime` asks it for the
positions of the target frame rate. The default is the learned one (`LearnedInterpolator`,
interp_net.py, trained on the world's true in-between frames); two classical ones are the
fallback, and any other model plugs in by having a `name` and the same `__call__`:

- `BlendInterpolator` ("blend"): the cross-fade (1 - t) a + t b of the two neighbours: what a
  frame-rate converter without motion estimation does, ghosting every moving edge.
- `FlowInterpolator` ("flow"): OpenCV DIS optical flow both ways between the neighbours; each
  neighbour is forward-splatted (bilinear) a fraction t (resp. 1 - t) of the way along its flow,
  the two splats blended with occlusion-aware weights, and pixels neither splat reaches fall back
  to the cross-fade. Splat weights follow softmax splatting (Niklaus & Liu, CVPR 2020) with a
  hand-set importance: pixels whose flow is photometrically consistent (brightness constancy to
  the other frame) win over inconsistent ones, and among consistent pixels the one that moves
  more wins (in a static-camera scene a moving object is in front of its background).
"""

from __future__ import annotations

import math
from typing import Protocol

import cv2
import numpy as np

from kinema.eval.video_metrics import optical_flow


class Interpolator(Protocol):
    name: str

    def __call__(self, frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Frames at fractional positions (in input frame indices, 0..T-1) of a clip.

        Args:
            frames: (T, H, W, 3) uint8, T >= 1.
            positions: (N,) float in [0, T - 1].
        Returns:
            (N, H, W, 3) uint8; whole positions return the input frame unchanged.
        """
        ...


def _split(positions: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """positions -> (left neighbour index, fraction t in [0, 1)); the last frame is (T-1, 0)."""
    positions = np.asarray(positions, np.float64)
    if positions.size and (positions.min() < -1e-9 or positions.max() > count - 1 + 1e-9):
        raise ValueError(
            f"positions must lie in [0, {count - 1}], got {positions.min():g}..{positions.max():g}"
        )
    positions = np.clip(positions, 0, count - 1)
    left = np.minimum(np.floor(positions + 1e-9).astype(int), count - 1)
    t = positions - left
    t[np.abs(t) < 1e-9] = 0.0
    return left, t


def _blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return a.astype(np.float32) * (1 - t) + b.astype(np.float32) * t


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class BlendInterpolator:
    """Cross-fade of the two neighbouring frames."""

    name = "blend"

    def __call__(self, frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
        left, t = _split(positions, len(frames))
        out = np.empty((len(left), *frames.shape[1:]), np.uint8)
        for k, (i, f) in enumerate(zip(left, t, strict=True)):
            out[k] = frames[i] if f == 0 else _to_uint8(_blend(frames[i], frames[i + 1], f))
        return out


def _warp_back(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(x + flow(x)), bilinear, edges replicated. image (H, W[, C]) float32."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def _splat(
    image: np.ndarray, flow: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forward-splat image (H, W, 3) float32 along flow (H, W, 2) with per-pixel weight (H, W),
    bilinearly. Returns (sum of weight * colour (H, W, 3), sum of weight (H, W))."""
    h, w = weight.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x, y = (gx + flow[..., 0]).ravel(), (gy + flow[..., 1]).ravel()
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    colour = image.reshape(-1, 3)
    wt = weight.ravel()
    acc = np.zeros((h * w, 3), np.float64)
    total = np.zeros(h * w, np.float64)
    for dx, dy, share in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                          (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):  # fmt: skip
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        idx = (yi * w + xi)[inside]
        s = (share * wt)[inside]
        np.add.at(total, idx, s)
        for c in range(3):
            np.add.at(acc[:, c], idx, s * colour[inside, c])
    return acc.reshape(h, w, 3), total.reshape(h, w)


class FlowInterpolator:
    """Bidirectional DIS flow, forward splatting, occlusion-aware blending (see the module doc).

    consistency: how sharply a photometrically inconsistent pixel loses (per unit of colour
    error in 0..1); motion_priority: how much a moving pixel wins over a still one (per pixel of
    flow, capped at `max_priority`); still: flow shorter than this (pixels) is estimator noise
    and set to 0, so still regions are copied rather than resampled."""

    name = "flow"

    def __init__(self, consistency: float = 20.0, motion_priority: float = 2.0,
                 max_priority: float = 8.0, still: float = 0.25):  # fmt: skip
        self.consistency = consistency
        self.still = still
        self.motion_priority = motion_priority
        self.max_priority = max_priority

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        flow = optical_flow(a, b)  # (H, W, 2)
        flow[np.linalg.norm(flow, axis=-1) < self.still] = 0.0
        return flow

    def _importance(self, a: np.ndarray, b: np.ndarray, flow_ab: np.ndarray) -> np.ndarray:
        """exp(Z) per pixel of a: Z rewards brightness constancy along flow_ab, and motion."""
        error = np.abs(a - _warp_back(b, flow_ab)).mean(axis=-1) / 255.0
        speed = np.linalg.norm(flow_ab, axis=-1)
        z = -self.consistency * error + np.minimum(self.motion_priority * speed, self.max_priority)
        return np.exp(z - self.max_priority)  # scaled into (0, 1]: no overflow

    def between(self, a: np.ndarray, b: np.ndarray, ts: list[float]) -> list[np.ndarray]:
        """Frames at fractions ts (0 < t < 1) between a and b, (H, W, 3) uint8 each."""
        flow_ab, flow_ba = self._flow(a, b), self._flow(b, a)
        af, bf = a.astype(np.float32), b.astype(np.float32)
        wa, wb = self._importance(af, bf, flow_ab), self._importance(bf, af, flow_ba)
        out = []
        for t in ts:
            acc_a, tot_a = _splat(af, flow_ab * t, wa)
            acc_b, tot_b = _splat(bf, flow_ba * (1 - t), wb)
            acc = (1 - t) * acc_a + t * acc_b
            total = (1 - t) * tot_a + t * tot_b
            reached = total > 1e-6
            frame = _blend(a, b, t).astype(np.float64)
            frame[reached] = acc[reached] / total[reached, None]
            out.append(_to_uint8(frame))
        return out

    def __call__(self, frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
        left, t = _split(positions, len(frames))
        out = np.empty((len(left), *frames.shape[1:]), np.uint8)
        wanted: dict[int, list[int]] = {}
        for k, (i, f) in enumerate(zip(left, t, strict=True)):
            if f == 0:
                out[k] = frames[i]
            else:
                wanted.setdefault(int(i), []).append(k)
        for i, ks in wanted.items():  # flows once per pair of neighbours
            for k, frame in zip(ks, self.between(frames[i], frames[i + 1], [t[k] for k in ks]),
                                strict=True):  # fmt: skip
                out[k] = frame
        return out


CLASSICAL = {"flow": FlowInterpolator, "blend": BlendInterpolator}
INTERPOLATORS = ("learned", *CLASSICAL)


def make_interpolator(name: str = "learned") -> Interpolator:
    """An interpolator by name ("learned", "flow", "blend") or the path of interp.safetensors
    weights (`kinema train interp`). "learned" falls back to "flow" when the shipped weights are
    missing from this install."""
    from kinema.production import interp_net

    if name == "learned":
        shipped = interp_net.SHIPPED.is_file()
        return interp_net.LearnedInterpolator() if shipped else FlowInterpolator()
    if name in CLASSICAL:
        return CLASSICAL[name]()
    if name.endswith(".safetensors"):
        return interp_net.LearnedInterpolator(name)
    raise ValueError(
        f"unknown interpolator {name!r}: use one of {', '.join(INTERPOLATORS)} "
        "or the path of an interp.safetensors file"
    )


def retime_positions(count: int, fps: float, target_fps: float) -> np.ndarray:
    """Positions (in input frame indices) of the frames of a clip of `count` frames at `fps`
    played at `target_fps`: the first and last frames kept exactly (a pinned last image stays
    the last frame), over N = round(duration * target_fps) + 1 frames, where the duration is
    (count - 1) / fps seconds. When the duration is not a whole number of output frames
    (2.5 s at 25 fps) the clip is stretched by less than half an output frame to end on its
    last frame. (N,) float."""
    if not (fps > 0 and target_fps > 0):
        raise ValueError(f"frame rates must be positive, got {fps} and {target_fps}")
    duration = (count - 1) / fps
    n = math.floor(duration * target_fps + 0.5) + 1  # half up (Python's round goes to even)
    if n == 1:
        return np.zeros(1)
    return np.linspace(0.0, count - 1.0, n)


def retime(
    frames: np.ndarray, fps: float, target_fps: float, interpolator: Interpolator
) -> np.ndarray:
    """(T, H, W, 3) uint8 at `fps` -> (N, H, W, 3) uint8 at `target_fps`, same duration. With an
    integer ratio k the input frames are every k-th output frame, unchanged."""
    if len(frames) < 2 or target_fps == fps:
        return frames
    return interpolator(frames, retime_positions(len(frames), fps, target_fps))
