"""Random scenes and the placement of objects: where each one starts.

Placement is rejection sampling over start positions: an object's start is drawn from the range
that keeps it in frame for the clip's duration, then kept only if it never comes near another
object and, with a pillar, starts and ends in view (and crosses the pillar when it can). This is
what makes every attribute readable from the pixels, which the detector and ShapesBench rely on.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kinema.world import vocab
from kinema.world.motion import SHAPE_EXTENTS, SHAPE_REACH, margins, object_track
from kinema.world.spec import ObjectSpec, Scene, WorldError

DEFAULT_DURATION = 2.0  # seconds: 17 frames at 8 fps span 2 s


def _max_radius(obj: ObjectSpec, duration: float) -> float:
    r0 = vocab.SIZES[obj.size]
    if obj.motion != "growing":
        return r0
    return r0 * min(np.exp(vocab.GROWTH_RATES[obj.speed] * duration), vocab.GROWTH_LIMITS[1])


def _start_range(
    obj: ObjectSpec, duration: float, width: int, height: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_lo, x_hi), (y_lo, y_hi)) of starts that keep the object in frame without wall hits."""
    left, right, top, bottom = margins(obj, _max_radius(obj, duration), width, height)
    speed = vocab.SPEEDS[obj.speed] * duration
    dx, dy = vocab.DIRECTIONS.get(obj.motion, (0.0, 0.0))
    if obj.motion == "bouncing":
        return (left, right), (top, top + 0.3 * (bottom - top))

    def span(lo, hi, d):
        lo2, hi2 = (lo - d, hi) if d < 0 else (lo, hi - d)
        return (lo2, hi2) if lo2 < hi2 else (lo, hi)

    return span(left, right, dx * speed), span(top, bottom, dy * speed)


def _extent(obj: ObjectSpec, radius: float, width: int, height: int) -> float:
    """Half width of the shape in frame widths."""
    return SHAPE_EXTENTS[obj.shape][0] * radius * min(width, height) / width


def _clear_of_pillar(x: np.ndarray, half: float) -> np.ndarray:
    return np.abs(x - vocab.OCCLUDER_X) > vocab.OCCLUDER_WIDTH / 2 + half + 0.01


def place(
    scene: Scene,
    rng: np.random.Generator,
    duration: float = DEFAULT_DURATION,
    width: int = 64,
    height: int = 64,
    tries: int = 300,
    strict: bool = True,
) -> Scene:
    """Choose every object's start position. Deterministic given the rng state.

    strict: raise WorldError when the objects cannot be kept apart; otherwise accept overlap
    (a user's caption is honoured even when it is crowded).
    """
    times = np.linspace(0.0, duration, 25)
    short = min(width, height)
    placed: list[tuple[ObjectSpec, np.ndarray]] = []
    for obj in scene.objects:
        (x_lo, x_hi), (y_lo, y_hi) = _start_range(obj, duration, width, height)
        best = None
        for attempt in range(tries):
            prefer_crossing = attempt < tries // 2
            candidate = dataclasses.replace(
                obj, start=(rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi))
            )
            track = object_track(candidate, times, width, height)  # (T, 3)
            ok = True
            for other, other_track in placed:
                gap = (
                    np.hypot(
                        (track[:, 0] - other_track[:, 0]) * width,
                        (track[:, 1] - other_track[:, 1]) * height,
                    )
                    / short
                )
                needed = 1.15 * (
                    track[:, 2] * SHAPE_REACH[obj.shape]
                    + other_track[:, 2] * SHAPE_REACH[other.shape]
                )
                ok &= bool(np.all(gap > needed))
            if scene.occluder and ok:
                half = _extent(obj, float(track[:, 2].max()), width, height)
                clear = _clear_of_pillar(track[:, 0], half)
                horizontal = obj.motion in ("left", "right", "diagonal", "bouncing")
                if not horizontal:
                    ok = bool(clear.all())  # it would hide behind the pillar for good
                else:
                    ok = bool(clear[0] and clear[-1])
                    crosses = (track[0, 0] - vocab.OCCLUDER_X) * (
                        track[-1, 0] - vocab.OCCLUDER_X
                    ) < 0
                    ok &= crosses or not prefer_crossing
            if ok:
                best = candidate
                placed.append((candidate, track))
                break
        if best is None:
            if strict:
                raise WorldError(
                    f"cannot place {len(scene.objects)} objects apart in {width}x{height}; use fewer or smaller ones"
                )
            placed.append((candidate, track))
    return dataclasses.replace(scene, objects=tuple(o for o, _ in placed))


def random_object(rng: np.random.Generator, exclude_colors: set[str] = frozenset()) -> ObjectSpec:
    colors = [c for c in vocab.COLORS if c not in exclude_colors] or list(vocab.COLORS)
    return ObjectSpec(
        shape=str(rng.choice(vocab.SHAPES)),
        color=str(rng.choice(colors)),
        size=str(rng.choice(list(vocab.SIZES))),
        motion=str(rng.choice(vocab.MOTIONS)),
        speed=str(rng.choice(list(vocab.SPEEDS))),
    )


def random_scene(
    rng: np.random.Generator,
    duration: float = DEFAULT_DURATION,
    width: int = 64,
    height: int = 64,
    max_objects: int = vocab.MAX_OBJECTS,
    occluder_prob: float = 0.15,
    camera_prob: float = 0.1,
    repeat_prob: float = 0.15,
) -> Scene:
    """A random, placed scene. Objects get distinct colours, except deliberate repeats
    ("two red circles"), which are what counting prompts are made of."""
    for _ in range(100):
        try:
            return place(
                _random_layout(rng, max_objects, occluder_prob, camera_prob, repeat_prob),
                rng,
                duration,
                width,
                height,
            )
        except WorldError:
            continue  # too crowded: draw another scene
    raise WorldError("could not draw a scene whose objects stay apart")


def _random_layout(rng, max_objects, occluder_prob, camera_prob, repeat_prob) -> Scene:
    n = int(rng.integers(1, max_objects + 1))
    objects: list[ObjectSpec] = []
    while len(objects) < n:
        if objects and rng.random() < repeat_prob:
            objects.append(objects[-1])
        else:
            objects.append(random_object(rng, {o.color for o in objects}))
    return Scene(
        tuple(objects),
        background=str(rng.choice(vocab.BACKGROUNDS)),
        camera=str(rng.choice(["pan-left", "pan-right"]))
        if rng.random() < camera_prob
        else "static",
        occluder=bool(rng.random() < occluder_prob),
    )
