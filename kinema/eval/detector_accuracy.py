"""How right the detector is: render random scenes, detect them, compare with the truth.

Detected tracks are matched to true objects by position at the track's first sighting
(Hungarian), then each attribute is compared. Scenes with a camera pan (one in ten) are read
with the camera's velocity given, as a caption states it: over a plain background a pan cannot
be seen in the pixels.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy.optimize import linear_sum_assignment

from kinema.io.video import h264_round_trip
from kinema.world.detect import Detection, detect
from kinema.world.motion import camera_velocity, scene_tracks
from kinema.world.render import frame_times, render
from kinema.world.sampler import random_scene
from kinema.world.spec import Scene

OBJECT_ATTRIBUTES = ("color", "shape", "size", "motion", "speed")
SCENE_ATTRIBUTES = ("count", "background", "occluder")


def score_detection(
    scene: Scene, found: Detection, width: int, height: int
) -> tuple[Counter, Counter]:
    """(correct, total) counters per attribute for one clip."""
    correct, total = Counter(), Counter()
    for attr, ok in (
        ("count", found.count == len(scene.objects)),
        ("background", found.background == scene.background),
        ("occluder", found.occluder == scene.occluder),
    ):
        total[attr] += 1
        correct[attr] += ok
    truth = scene_tracks(scene, frame_times(found.num_frames, found.fps), width, height)
    cost = np.zeros((len(scene.objects), max(found.count, 1)))
    for i, obj in enumerate(scene.objects):
        for j, track in enumerate(found.tracks):
            first = track.blobs[0]
            dist = np.hypot(truth[i, first.frame, 0] - first.x, truth[i, first.frame, 1] - first.y)
            cost[i, j] = dist + (0.0 if track.color == obj.color else 10.0)
    rows, cols = linear_sum_assignment(cost) if found.count else ([], [])
    matched = dict(zip(rows, cols, strict=True))
    for i, obj in enumerate(scene.objects):
        track = found.tracks[matched[i]] if i in matched else None
        for attr in OBJECT_ATTRIBUTES:
            if attr == "speed" and obj.motion == "still":
                continue  # a still object has no speed to read
            total[attr] += 1
            correct[attr] += track is not None and getattr(track, attr) == getattr(obj, attr)
    return correct, total


def _one(args) -> tuple[Counter, Counter]:
    seed, size, num_frames, fps, h264 = args
    rng = np.random.default_rng(seed)
    scene = random_scene(
        rng, duration=(num_frames - 1) / fps, width=size, height=size, camera_prob=0.0
    )
    frames = render(scene, size, size, num_frames, fps)
    if h264:
        frames = h264_round_trip(frames, fps=fps, crf=23)
    return score_detection(scene, detect(frames, fps, camera_velocity(scene)), size, size)


def measure_accuracy(
    n: int = 1000,
    size: int = 64,
    num_frames: int = 17,
    fps: float = 8.0,
    h264: bool = False,
    seed: int = 0,
    workers: int = 1,
) -> dict:
    """Accuracy per attribute and overall over n random scenes (scene k uses seed + k)."""
    jobs = [(seed + k, size, num_frames, fps, h264) for k in range(n)]
    correct, total = Counter(), Counter()
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_one, jobs, chunksize=8))
    else:
        results = [_one(j) for j in jobs]
    for c, t in results:
        correct.update(c)
        total.update(t)
    per_attribute = {k: correct[k] / total[k] for k in total}
    return {
        "scenes": n,
        "size": size,
        "num_frames": num_frames,
        "fps": fps,
        "h264_crf23": h264,
        "overall": sum(correct.values()) / sum(total.values()),
        "per_attribute": per_attribute,
        "attributes_checked": sum(total.values()),
    }
