"""Reference-free video quality metrics: flicker, flow warping error and motion magnitude.

All functions take frames as a numpy ``uint8`` array of shape ``(T, H, W, 3)`` in RGB order.
Optical flow is OpenCV's DIS (medium preset) on grayscale frames; flows are ``(H, W, 2)``
``float32`` arrays of ``(dx, dy)`` displacements in pixels, with the OpenCV convention
``prev(x) ~ next(x + flow(x))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# DIS with the medium preset works on an image pyramid whose coarsest level is chosen from
# the image size; below ~12 px it refuses the input and below ~100 px it runs on one or two
# half-resolution levels only. Frames whose short side is below this are upsampled by an
# integer factor before estimating flow, and the flow is scaled back afterwards.
_MIN_FLOW_SIDE = 128

# Forward-backward consistency check (Sundaram et al. 2010; Ruder et al. 2016):
# |w_fw + w_bw|^2 < _FB_ALPHA * (|w_fw|^2 + |w_bw|^2) + _FB_BETA.
_FB_ALPHA = 0.01
_FB_BETA = 0.5


@dataclass(frozen=True)
class VideoQuality:
    """All reference-free metrics of one video (see the functions of the same names)."""

    flicker: float
    warping_error: float
    motion_magnitude: float


def validate_video(frames: np.ndarray, *, min_frames: int = 1) -> np.ndarray:
    """Check that ``frames`` is a ``(T, H, W, 3)`` uint8 array with ``T >= min_frames``.

    Returns the array unchanged; raises ``ValueError`` naming the problem otherwise.
    """
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"frames must have non-empty height and width, got {frames.shape}")
    if frames.shape[0] < min_frames:
        raise ValueError(f"need at least {min_frames} frames, got {frames.shape[0]}")
    return frames


def _validate_frame(frame: np.ndarray, name: str) -> None:
    """Check that one frame is an ``(H, W, 3)`` uint8 array."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{name} must have shape (H, W, 3), got {frame.shape}")


def _to_gray(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, 3)`` uint8 RGB -> ``(..., H, W)`` uint8 luma (ITU-R BT.601 weights)."""
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


def _gray_flow(prev: np.ndarray, next_: np.ndarray) -> np.ndarray:
    """DIS flow between two ``(H, W)`` uint8 images -> ``(H, W, 2)`` float32 in pixels."""
    height, width = prev.shape
    factor = max(1, math.ceil(_MIN_FLOW_SIDE / min(height, width)))
    if factor > 1:
        size = (width * factor, height * factor)
        prev = cv2.resize(prev, size, interpolation=cv2.INTER_LINEAR)
        next_ = cv2.resize(next_, size, interpolation=cv2.INTER_LINEAR)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(prev, next_, None)
    if factor > 1:
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) / factor
    return flow.astype(np.float32, copy=False)


def optical_flow(prev: np.ndarray, next: np.ndarray) -> np.ndarray:
    """Dense DIS optical flow from ``prev`` to ``next``, both ``(H, W, 3)`` uint8 RGB.

    Returns ``(H, W, 2)`` float32 ``(dx, dy)`` in pixels of the input resolution, such that
    ``prev(x) ~ next(x + flow(x))``. Frames with a short side below 128 px are upsampled by
    an integer factor for DIS (which rejects or barely resolves tiny images) and the flow is
    downsampled and divided by the same factor, so any size down to 1x1 is accepted.
    """
    _validate_frame(prev, "prev")
    _validate_frame(next, "next")
    if prev.shape != next.shape:
        raise ValueError(
            f"prev and next must have the same shape, got {prev.shape} and {next.shape}"
        )
    return _gray_flow(_to_gray(prev), _to_gray(next))


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear lookup ``image[map_y, map_x]`` for an ``(H, W[, C])`` float32 image."""
    return cv2.remap(
        image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _pair_warping_error(
    frame: np.ndarray, next_frame: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray
) -> float:
    """Masked MSE between ``next_frame`` and ``frame`` warped onto it.

    ``frame``/``next_frame`` are ``(H, W, 3)`` uint8; ``flow_fw`` (frame -> next_frame) and
    ``flow_bw`` (next_frame -> frame) are ``(H, W, 2)`` float32. Intensities in [0, 1].
    """
    height, width = flow_bw.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    map_x = grid_x + flow_bw[..., 0]
    map_y = grid_y + flow_bw[..., 1]
    warped = _remap(frame.astype(np.float32) / 255.0, map_x, map_y)
    fw_at_target = _remap(flow_fw, map_x, map_y)
    mismatch = np.sum((fw_at_target + flow_bw) ** 2, axis=-1)
    tolerance = _FB_ALPHA * (np.sum(fw_at_target**2, axis=-1) + np.sum(flow_bw**2, axis=-1))
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    valid = (mismatch < tolerance + _FB_BETA) & inside
    sq_err = np.mean((warped - next_frame.astype(np.float32) / 255.0) ** 2, axis=-1)
    # A pair where nothing passes the check (e.g. a scene cut) is scored on all pixels
    # rather than dropped, so that such a video cannot look perfectly consistent.
    return float(sq_err[valid].mean() if valid.any() else sq_err.mean())


def _pair_motion(gray: np.ndarray, flow_fw: np.ndarray) -> float:
    """Gradient-weighted mean flow magnitude in pixels for one ``(H, W)`` uint8 frame."""
    image = gray.astype(np.float32) / 255.0
    grad = np.hypot(
        cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    )
    total = float(grad.sum())
    if total <= 0.0:
        return 0.0  # a flat frame carries no visible motion
    return float((grad * np.linalg.norm(flow_fw, axis=-1)).sum() / total)


def flicker(frames: np.ndarray) -> float:
    """Temporal flickering of a ``(T, H, W, 3)`` uint8 video, ``T >= 2`` (lower is better).

    Mean absolute difference between consecutive frames in 0..255 pixel units, averaged over
    pixels, channels and the ``T - 1`` frame pairs, as in VBench's temporal flickering
    dimension. A static video gives exactly 0.
    """
    validate_video(frames, min_frames=2)
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0))
    return float(diffs.mean(dtype=np.float64))


def flicker_score(frames: np.ndarray) -> float:
    """VBench's reported flicker score ``(255 - flicker(frames)) / 255`` in [0, 1] (higher is better)."""
    return (255.0 - flicker(frames)) / 255.0


def warping_error(frames: np.ndarray) -> float:
    """Flow warping error of a ``(T, H, W, 3)`` uint8 video, ``T >= 2`` (lower is better).

    For each consecutive pair ``(t, t+1)``: the backward flow ``b`` (frame t+1 -> frame t)
    warps frame t onto frame t+1 with ``cv2.remap`` (bilinear), ``warped(x) = I_t(x + b(x))``.
    A pixel ``x`` of frame t+1 counts when it passes the forward-backward consistency check
    ``|f(x + b(x)) + b(x)|^2 < 0.01 (|f(x + b(x))|^2 + |b(x)|^2) + 0.5`` (``f`` the forward
    flow t -> t+1, bilinearly sampled) and ``x + b(x)`` lies inside the frame; the others are
    treated as occluded. The pair's error is the mean squared difference between ``warped``
    and frame t+1 over counted pixels and the 3 channels, with intensities scaled to [0, 1]
    (if no pixel counts, all pixels are used). Returns the mean over the ``T - 1`` pairs.
    """
    validate_video(frames, min_frames=2)
    gray = _to_gray(frames)
    errors = [
        _pair_warping_error(
            frames[t],
            frames[t + 1],
            _gray_flow(gray[t], gray[t + 1]),
            _gray_flow(gray[t + 1], gray[t]),
        )
        for t in range(len(frames) - 1)
    ]
    return float(np.mean(errors))


def motion_magnitude(frames: np.ndarray) -> float:
    """Resolution-independent motion amount of a ``(T, H, W, 3)`` uint8 video, ``T >= 2``.

    For each consecutive pair the forward DIS flow (frame t -> t+1) magnitude in pixels per
    frame is averaged over frame t's pixels weighted by the Sobel gradient magnitude of its
    grayscale image, so that textureless regions (where any flow is an extrapolation by the
    estimator, not evidence of motion) do not count; a flat frame contributes 0. The mean over
    pairs is divided by the frame diagonal ``sqrt(H^2 + W^2)``: an object translating by
    ``v`` px/frame gives about ``v / diagonal``, a static video 0.
    """
    validate_video(frames, min_frames=2)
    gray = _to_gray(frames)
    speeds = [
        _pair_motion(gray[t], _gray_flow(gray[t], gray[t + 1])) for t in range(len(frames) - 1)
    ]
    return float(np.mean(speeds)) / math.hypot(frames.shape[1], frames.shape[2])


def video_quality(frames: np.ndarray) -> VideoQuality:
    """Flicker, warping error and motion magnitude of a ``(T, H, W, 3)`` uint8 video, ``T >= 2``.

    Equal to calling the three functions separately, but each forward and backward flow is
    computed once and shared.
    """
    validate_video(frames, min_frames=2)
    gray = _to_gray(frames)
    errors: list[float] = []
    speeds: list[float] = []
    for t in range(len(frames) - 1):
        flow_fw = _gray_flow(gray[t], gray[t + 1])
        flow_bw = _gray_flow(gray[t + 1], gray[t])
        errors.append(_pair_warping_error(frames[t], frames[t + 1], flow_fw, flow_bw))
        speeds.append(_pair_motion(gray[t], flow_fw))
    return VideoQuality(
        flicker=flicker(frames),
        warping_error=float(np.mean(errors)),
        motion_magnitude=float(np.mean(speeds)) / math.hypot(frames.shape[1], frames.shape[2]),
    )
