"""ShapesBench: a fixed suite of prompts, judged by the analytic detector.

A generator is any callable (prompt, seed, settings) -> frames (T, H, W, 3) uint8. For each
prompt and seed, the clip is read back by the detector and compared with the scene the prompt
describes (parsed from the prompt itself), giving a score in [0, 1] per dimension:

    color, shape, size, direction, speed, motion_type   matched objects with the right attribute
    count, background                                   the clip-level attribute is right
    identity       frame transitions in which every object continues smoothly, unchanged
    permanence     (pillar prompts) every object seen at the start is there, unchanged, at the end
    bounce         (bouncing prompts) the object's arcs fit parabolas with gravity down (R^2 > 0.9)
    flicker, warping_error   generic video metrics, lower is better (see eval/video_metrics.py)

Attribute dimensions are scored on every prompt where they apply; a prompt's own `dimensions`
say which capability it was written to probe (used to pick prompts, not to mask scores).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.optimize import linear_sum_assignment

from kinema.eval.video_metrics import video_quality
from kinema.world import vocab
from kinema.world.detect import Blob, Detection, Track, detect
from kinema.world.motion import camera_velocity
from kinema.world.parse import parse_caption
from kinema.world.spec import ObjectSpec, Scene

ACCURACY_DIMENSIONS = (
    "color", "shape", "size", "direction", "speed", "motion_type", "count", "background",
    "identity", "permanence", "bounce",
)  # fmt: skip
QUALITY_DIMENSIONS = ("flicker", "warping_error")  # lower is better
DIMENSIONS = ACCURACY_DIMENSIONS + QUALITY_DIMENSIONS


@dataclass(frozen=True)
class BenchSettings:
    width: int = 64
    height: int = 64
    num_frames: int = 17
    fps: float = 8.0


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    prompt: str
    dimensions: tuple[str, ...]
    quick: bool = False

    @property
    def scene(self) -> Scene:
        return parse_caption(self.prompt)


Generator = Callable[[str, int, BenchSettings], np.ndarray]


def load_suite(quick: bool = False) -> list[BenchPrompt]:
    """The checked-in prompt suite (kinema/eval/shapesbench_suite.json)."""
    text = resources.files("kinema.eval").joinpath("shapesbench_suite.json").read_text()
    prompts = [
        BenchPrompt(p["id"], p["prompt"], tuple(p["dimensions"]), p.get("quick", False))
        for p in json.loads(text)["prompts"]
    ]
    return [p for p in prompts if p.quick] if quick else prompts


# ----------------------------------------------------------------------------- scoring one clip


def _match(expected: tuple[ObjectSpec, ...], tracks: tuple[Track, ...]) -> dict[int, Track]:
    """Pair expected objects with detected tracks, most similar first (no positions in prompts)."""
    if not tracks:
        return {}
    cost = np.zeros((len(expected), len(tracks)))
    for i, obj in enumerate(expected):
        for j, t in enumerate(tracks):
            cost[i, j] = (
                4 * (t.color != obj.color) + 2 * (t.shape != obj.shape)
                + (t.size != obj.size) + (t.motion != obj.motion) - 0.01 * len(t.blobs)
            )  # fmt: skip
    rows, cols = linear_sum_assignment(cost)
    return {int(r): tracks[c] for r, c in zip(rows, cols, strict=True)}


def _identity_gate(scene: Scene, fps: float) -> float:
    """Largest plausible frame-to-frame jump (frame fractions) for this scene, with slack."""
    fastest = 0.0
    for obj in scene.objects:
        if obj.motion == "bouncing":
            fastest = max(fastest, math.sqrt(2 * vocab.GRAVITY))  # falling the whole height
        elif obj.motion in vocab.DIRECTIONS:
            fastest = max(fastest, vocab.SPEEDS[obj.speed])
    return max(2.0 * fastest / fps, 0.05)


# How far the centroid of a cut blob can sit from the whole object's: up to half the pillar.
CUT_SLACK = vocab.OCCLUDER_WIDTH


def _break(prev: Blob, b: Blob, gate: float) -> str | None:
    """Why b is not a plausible next sighting of the object seen as prev (None when it is). A
    blob cut by the pillar or the frame edge has a shifted centroid and a smaller area, so it
    gets slack; a tiny one's shape is not readable."""
    cut = b.truncated or prev.truncated
    ratio = b.radius / max(prev.radius, 1e-6)
    if b.color != prev.color:
        return "colour"
    if b.shape != prev.shape and not (cut or b.tiny or prev.tiny):
        return "shape"
    if not (0.7 < ratio < 1.45 or cut):
        return "size"
    if math.hypot(b.x - prev.x, b.y - prev.y) > gate + (CUT_SLACK if cut else 0.0):
        return "jump"
    return None


def _continues(prev: Blob, b: Blob, gate: float) -> bool:
    return _break(prev, b, gate) is None


def _returns_from_pillar(track: Track, frame: int, found: Detection) -> bool:
    return found.occluder and any(end + 1 == frame for _, end in track.gaps)


def _at_frame_edge(b: Blob) -> bool:
    """A cut blob whose centre is within reach of the frame's edge: entering or leaving view."""
    reach = 1.6 * b.radius + 0.02
    return b.truncated and min(b.x, b.y, 1 - b.x, 1 - b.y) < reach


def identity_breaks(found: Detection, scene: Scene) -> list[tuple[int, str]]:
    """The frame transitions (index of the later frame) in which some visible object does not
    continue a track from the frame before, each with the first reason found: "new" (a blob no
    track owns, or a track that starts mid-frame away from the pillar and the edge), "gone" (a
    track that ends away from them), or a changed "colour", "shape", "size", or a "jump"."""
    gate = _identity_gate(scene, found.fps)
    by_frame: list[dict[int, Blob]] = [{} for _ in range(found.num_frames)]
    for k, track in enumerate(found.tracks):
        for b in track.blobs:
            by_frame[b.frame][k] = b
    owned = {id(b) for frame in by_frame for b in frame.values()}
    unclaimed = [sum(id(b) not in owned for b in blobs) for blobs in found.blobs]
    breaks = []
    for i in range(1, found.num_frames):
        reasons = ["new"] if unclaimed[i] else []  # an object that came from nowhere
        for k, b in by_frame[i].items():
            prev = by_frame[i - 1].get(k)
            if prev is None:  # a new sighting: back from behind the pillar, or entering view
                if not (_returns_from_pillar(found.tracks[k], i, found) or _at_frame_edge(b)):
                    reasons.append("new")
            elif (why := _break(prev, b, gate)) is not None:
                reasons.append(why)
        for k, prev in by_frame[i - 1].items():  # gone: behind the pillar or out of view
            if k not in by_frame[i] and not (found.occluder or _at_frame_edge(prev)):
                reasons.append("gone")
        if reasons:
            breaks.append((i, reasons[0]))
    return breaks


def identity_persistence(found: Detection, scene: Scene) -> float:
    """Fraction of frame transitions in which every visible object continues a track from the
    frame before (or comes back from behind the pillar) with the same colour and shape, a
    similar size and a plausible jump. Objects flickering in and out, swapping or teleporting
    all break it."""
    if found.num_frames < 2:
        return 1.0
    return 1 - len(identity_breaks(found, scene)) / (found.num_frames - 1)


def _permanence(found: Detection, scene: Scene, matched: dict[int, Track]) -> float:
    """Every expected object is one track, seen in the first and the last fifth of the clip,
    with the same colour and shape, moving plausibly between sightings (across the pillar
    too), and no extra object appears."""
    if found.count != len(scene.objects):
        return 0.0
    edge = max(1, found.num_frames // 5)
    gate = _identity_gate(scene, found.fps)
    for i, obj in enumerate(scene.objects):
        t = matched.get(i)
        if t is None or t.color != obj.color or t.shape != obj.shape:
            return 0.0
        if min(t.frames) >= edge or max(t.frames) < found.num_frames - edge:
            return 0.0
        for prev, b in zip(t.blobs[:-1], t.blobs[1:], strict=True):
            hidden = b.frame - prev.frame - 1  # frames spent behind the pillar
            if not _continues(prev, b, gate * (hidden + 1)):
                return 0.0
    return 1.0


def clip_identity_breaks(frames: np.ndarray, prompt: str, fps: float) -> list[tuple[int, str]]:
    """identity_breaks of a clip judged against the scene its prompt describes."""
    scene = parse_caption(prompt)
    return identity_breaks(detect(frames, fps, camera_velocity(scene)), scene)


def score_clip(frames: np.ndarray, prompt: str, fps: float) -> dict[str, float]:
    """Scores of one clip against the scene its prompt describes; dimensions that do not apply
    to this prompt are absent."""
    scene = parse_caption(prompt)
    found = detect(frames, fps, camera_velocity(scene))
    matched = _match(scene.objects, found.tracks)
    scores: dict[str, list[float]] = {d: [] for d in ACCURACY_DIMENSIONS}

    def attr(i: int, name: str) -> float:
        t = matched.get(i)
        return float(t is not None and getattr(t, name) == getattr(scene.objects[i], name))

    for i, obj in enumerate(scene.objects):
        scores["color"].append(attr(i, "color"))
        scores["shape"].append(attr(i, "shape"))
        scores["size"].append(attr(i, "size"))
        if obj.motion in vocab.DIRECTIONS:
            scores["direction"].append(attr(i, "motion"))
        elif obj.motion == "bouncing":
            t = matched.get(i)
            scores["bounce"].append(float(t is not None and t.motion == "bouncing"))
        else:
            scores["motion_type"].append(attr(i, "motion"))
        if obj.motion in vocab.DIRECTIONS or obj.motion == "bouncing":
            scores["speed"].append(attr(i, "speed"))
    scores["count"].append(float(found.count == len(scene.objects)))
    scores["background"].append(float(found.background == scene.background))
    scores["identity"].append(identity_persistence(found, scene))
    if scene.occluder:
        scores["permanence"].append(_permanence(found, scene, matched))
    out = {k: float(np.mean(v)) for k, v in scores.items() if v}
    quality = video_quality(frames)
    out["flicker"] = quality.flicker
    out["warping_error"] = quality.warping_error
    return out


# ----------------------------------------------------------------------------- running the suite


@dataclass(frozen=True)
class ClipResult:
    prompt_id: str
    prompt: str
    seed: int
    scores: dict[str, float]


def run_bench(
    generator: Generator,
    prompts: Iterable[BenchPrompt],
    seeds: Iterable[int] = (0,),
    settings: BenchSettings = BenchSettings(),
    on_clip: Callable[[ClipResult, np.ndarray], None] | None = None,
) -> list[ClipResult]:
    """Generate and score every prompt x seed. on_clip sees each result and its frames."""
    results = []
    for p in prompts:
        for seed in seeds:
            frames = generator(p.prompt, seed, settings)
            result = ClipResult(p.id, p.prompt, seed, score_clip(frames, p.prompt, settings.fps))
            results.append(result)
            if on_clip is not None:
                on_clip(result, frames)
    return results


def summarize(results: list[ClipResult]) -> dict[str, float]:
    """Mean of each dimension over the clips where it applies."""
    summary = {}
    for d in DIMENSIONS:
        values = [r.scores[d] for r in results if d in r.scores]
        if values:
            summary[d] = float(np.mean(values))
    return summary
