"""The renderer: scene spec -> frames (T, H, W, 3) uint8, anti-aliased, deterministic.

Each shape is drawn from its signed distance function: a pixel's coverage is 0.5 minus its
distance to the edge in pixels, clipped to [0, 1], which is a one-pixel-wide analytic
anti-aliasing that looks the same at every resolution. Rendering is a pure function of the
scene, the size and the frame times: no randomness happens here.
"""

from __future__ import annotations

import numpy as np

from kinema.world import vocab
from kinema.world.motion import SHAPE_EXTENTS, camera_offset, scene_tracks
from kinema.world.spec import Scene, check_render_request


def frame_times(num_frames: int, fps: float, start: float = 0.0) -> np.ndarray:
    """(T,) times in seconds of the frames of a clip."""
    return start + np.arange(num_frames, dtype=np.float64) / fps


def _background(scene: Scene, width: int, height: int, offset_px: float) -> np.ndarray:
    """(H, W, 3) float32 background, shifted left by offset_px when the camera pans."""
    kind = scene.background
    if kind in vocab.BACKGROUND_COLORS:
        return np.broadcast_to(
            np.array(vocab.BACKGROUND_COLORS[kind], np.float32), (height, width, 3)
        ).copy()
    ys = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    if kind == "gradient":
        w = (ys / height)[..., None]  # (H, 1, 1)
        top, bottom = (
            np.array(vocab.GRADIENT_TOP, np.float32),
            np.array(vocab.GRADIENT_BOTTOM, np.float32),
        )
        return np.broadcast_to(top * (1 - w) + bottom * w, (height, width, 3)).copy()
    # checkered: an anti-aliased checkerboard fixed to the world, so it slides when panning
    cell = vocab.CHECKER_CELL * min(width, height)
    xs = (np.arange(width, dtype=np.float32) + 0.5 + offset_px)[None, :]
    s = np.sin(np.pi * xs / cell) * np.sin(np.pi * ys / cell)  # sign gives the cell parity
    light = np.clip(0.5 + s * cell / 2, 0.0, 1.0)[..., None]  # ~1 px soft edge
    dark, bright = (
        np.array(vocab.CHECKER_DARK, np.float32),
        np.array(vocab.CHECKER_LIGHT, np.float32),
    )
    return dark * (1 - light) + bright * light


def _shape_distance(shape: str, px: np.ndarray, py: np.ndarray, r: float) -> np.ndarray:
    """Signed distance in pixels from points (px, py), relative to the centre, to the edge."""
    if shape == "circle":
        return np.hypot(px, py) - r
    if shape == "square":
        h = SHAPE_EXTENTS["square"][0] * r
        qx, qy = np.abs(px) - h, np.abs(py) - h
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0)
    # Equilateral triangle pointing up (Inigo Quilez's exact SDF), centroid at the origin.
    circum = SHAPE_EXTENTS["triangle"][1] * r
    side = circum * np.sqrt(3.0)
    k = np.sqrt(3.0)
    qx = np.abs(px) - side / 2
    qy = -py + side / (2 * k)  # image y points down, the formula's y points up
    swap = qx + k * qy > 0
    qx, qy = np.where(swap, (qx - k * qy) / 2, qx), np.where(swap, (-k * qx - qy) / 2, qy)
    qx = qx - np.clip(qx, -side, 0)
    return -np.hypot(qx, qy) * np.sign(qy)


def _paint_object(img, shape, color, cx, cy, r) -> None:
    """Blend one anti-aliased shape into img (H, W, 3) in place, touching only its bbox."""
    height, width = img.shape[:2]
    reach = 1.6 * r + 2
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, width)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    px = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    py = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    coverage = np.clip(0.5 - _shape_distance(shape, px, py, r), 0.0, 1.0)[..., None]
    patch = img[y0:y1, x0:x1]
    patch += (np.array(color, np.float32) - patch) * coverage


def _paint_occluder(img, centre_px: float, width_px: float) -> None:
    xs = np.arange(img.shape[1], dtype=np.float32) + 0.5
    coverage = np.clip(0.5 - (np.abs(xs - centre_px) - width_px / 2), 0.0, 1.0)[None, :, None]
    img += (np.array(vocab.OCCLUDER_COLOR, np.float32) - img) * coverage


def render_times(scene: Scene, times: np.ndarray, width: int, height: int) -> np.ndarray:
    """Render the scene at arbitrary times (seconds). Returns (T, H, W, 3) uint8."""
    times = np.asarray(times, dtype=np.float64)
    check_render_request(width, height, max(len(times), 1), 1.0)
    tracks = scene_tracks(scene, times, width, height)  # (N, T, 3)
    offsets = camera_offset(scene, times)
    short = min(width, height)
    frames = np.empty((len(times), height, width, 3), np.uint8)
    for i in range(len(times)):
        img = _background(scene, width, height, offsets[i] * width)
        for obj, (x, y, radius) in zip(scene.objects, tracks[:, i], strict=True):
            _paint_object(
                img, obj.shape, vocab.COLORS[obj.color], x * width, y * height, radius * short
            )
        if scene.occluder:
            centre = (vocab.OCCLUDER_X - offsets[i]) * width
            _paint_occluder(img, centre, vocab.OCCLUDER_WIDTH * width)
        frames[i] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames


def render(
    scene: Scene,
    width: int = 64,
    height: int = 64,
    num_frames: int = 17,
    fps: float = 8.0,
    start: float = 0.0,
) -> np.ndarray:
    """Render a clip. Returns frames (T, H, W, 3) uint8.

    The same scene at a multiple of the fps gives the true in-between frames; at a multiple of
    the size it gives the true high-resolution frames.
    """
    check_render_request(width, height, num_frames, fps)
    return render_times(scene, frame_times(num_frames, fps, start), width, height)
