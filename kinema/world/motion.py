"""Kinematics: where each object is, and how big, at any time t (seconds).

Closed-form in t, so a frame at t = 0.0625 s is the true in-between of frames at 0 and 0.125 s.
Linear movers reflect off the frame edges (they stay in view); bouncing objects fall under
gravity and lose a little energy at each floor contact.
"""

from __future__ import annotations

import math

import numpy as np

from kinema.world import vocab
from kinema.world.spec import ObjectSpec, Scene

# Half extents of each shape in units of its equal-area radius: (half width, top, bottom).
# Square: half side sqrt(pi)/2. Triangle (equilateral, pointing up, centred on its centroid):
# circumradius 1.555, half side 1.347, centroid to base 0.778.
SHAPE_EXTENTS: dict[str, tuple[float, float, float]] = {
    "circle": (1.0, 1.0, 1.0),
    "square": (0.8862, 0.8862, 0.8862),
    "triangle": (1.3468, 1.5551, 0.7776),
}

# Radius of the smallest circle around the shape, in the same units: what keeps two apart.
SHAPE_REACH: dict[str, float] = {"circle": 1.0, "square": 1.2533, "triangle": 1.5551}


def _fold(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect u into [lo, hi] as a ball between two walls would travel."""
    span = hi - lo
    if span <= 0:
        return np.full_like(u, (lo + hi) / 2)
    w = np.mod(u - lo, 2 * span)
    return lo + np.where(w > span, 2 * span - w, w)


def _bounce_height(drop: float, t: np.ndarray) -> np.ndarray:
    """Distance above the floor at times t for a ball dropped from rest at height `drop`."""
    g, e = vocab.GRAVITY, vocab.RESTITUTION
    out = np.zeros_like(t)
    if drop <= 0:
        return out
    t_fall = math.sqrt(2 * drop / g)
    first = t < t_fall
    out[first] = drop - 0.5 * g * t[first] ** 2
    # After the first contact: arcs of duration 2 v / g with v shrinking by e each time.
    v = g * t_fall * e
    start = t_fall
    rest = ~first
    while rest.any() and v > 1e-3:
        dur = 2 * v / g
        arc = rest & (t < start + dur)
        tau = t[arc] - start
        out[arc] = v * tau - 0.5 * g * tau**2
        rest &= ~arc
        start += dur
        v *= e
    return out


def margins(obj: ObjectSpec, radius: float, width: int, height: int) -> tuple[float, ...]:
    """(left, right, top, bottom) limits of the centre that keep the whole shape in frame."""
    half_w, top, bottom = SHAPE_EXTENTS[obj.shape]
    short = min(width, height)
    rx = half_w * radius * short / width
    return rx, 1 - rx, top * radius * short / height, 1 - bottom * radius * short / height


def object_track(obj: ObjectSpec, times: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 3) array of (x, y, radius) for one object at the given times."""
    t = np.asarray(times, dtype=np.float64)
    r0 = vocab.SIZES[obj.size]
    x0, y0 = obj.start
    radius = np.full_like(t, r0)
    if obj.motion in ("growing", "shrinking"):
        rate = vocab.GROWTH_RATES[obj.speed] * (1 if obj.motion == "growing" else -1)
        lo, hi = vocab.GROWTH_LIMITS
        radius = r0 * np.clip(np.exp(rate * t), lo, hi)
    left, right, top, floor = margins(obj, r0, width, height)
    x = np.full_like(t, x0)
    y = np.full_like(t, y0)
    speed = vocab.SPEEDS[obj.speed]
    if obj.motion in vocab.DIRECTIONS:
        dx, dy = vocab.DIRECTIONS[obj.motion]
        x = _fold(x0 + dx * speed * t, left, right)
        y = _fold(y0 + dy * speed * t, top, floor)
    elif obj.motion == "bouncing":
        drift = vocab.BOUNCE_DRIFT * speed * (1 if x0 < 0.5 else -1)
        x = _fold(x0 + drift * t, left, right)
        y0 = min(max(y0, top), floor)
        y = floor - _bounce_height(floor - y0, t)
    return np.stack([x, y, radius], axis=-1)


def camera_velocity(scene: Scene) -> float:
    """Horizontal camera speed in frame widths per second (positive: panning right)."""
    return {"static": 0.0, "pan-left": -1.0, "pan-right": 1.0}[scene.camera] * vocab.PAN_SPEED


def camera_offset(scene: Scene, times: np.ndarray) -> np.ndarray:
    """(T,) horizontal camera position in frame widths; screen x = world x - offset."""
    return camera_velocity(scene) * np.asarray(times, dtype=np.float64)


def scene_tracks(scene: Scene, times: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N_objects, T, 3) screen-space (x, y, radius) of every object: the ground truth."""
    offset = camera_offset(scene, times)
    tracks = np.stack([object_track(o, times, width, height) for o in scene.objects])
    tracks[..., 0] -= offset
    return tracks


MOTION_FULL_SCALE = 0.3  # frame fractions per second that map to motion strength 255


def motion_strength(scene: Scene, duration: float, width: int = 64, height: int = 64) -> float:
    """How much the clip moves, 0..255 (like SVD's motion bucket), from the ground truth: the mean
    over objects of on-screen centre speed plus radius change, in frame fractions per second."""
    if duration <= 0 or not scene.objects:
        return 0.0
    times = np.linspace(0.0, duration, 17)
    tracks = scene_tracks(scene, times, width, height)  # (N, T, 3)
    step = np.diff(tracks, axis=1)
    path = np.hypot(step[..., 0], step[..., 1]) + np.abs(step[..., 2])
    speed = float(path.sum(axis=1).mean()) / duration
    return float(np.clip(255.0 * speed / MOTION_FULL_SCALE, 0.0, 255.0))
