"""Training pairs told apart only by their captions.

Direction pairs: a scene and its mirror image, told apart only by which way things move.

Trained on with the same noise and flow time, the two clips of a pair can only be told apart by
the caption's direction words, which is the binding a small text-to-video model picks up last:
kinema-tiny learned colour and shape while its clips moved the way the seed, not the prompt,
said. The mirrored caption is drawn with the same random choices, so it is the same sentence
with each direction word swapped for its opposite at the same synonym.

Count pairs: a scene and the same scene with one object taken out ("two red circles" and "a red
circle", or "a red circle and a blue square" and "a red circle"), same noise and time: only the
caption says whether the other object is there, which is what a model that draws spurious
copies of the asked object has not learned.

Shape pairs: a scene and the same scene with one circle drawn as a square or one square as a
circle, same place, path, noise and time. The two have equal areas and differ only at the
corners, which a small model averages into a rounded square (kinema-tiny stage 11 read 93% of
its circles but 10% of its squares as asked): only the caption's shape word tells them apart.
"""

from __future__ import annotations

import dataclasses
import random

from kinema.world import vocab
from kinema.world.captions import DIRECTION_WORDS, canonical_caption, caption
from kinema.world.motion import margins
from kinema.world.spec import ObjectSpec, Scene

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
# equal synonym counts keep the random draws of a caption and its mirror in step
assert all(len(DIRECTION_WORDS[a]) == len(DIRECTION_WORDS[b]) for a, b in OPPOSITE.items())


def _mirror(obj: ObjectSpec, width: int, height: int) -> ObjectSpec:
    if obj.motion not in OPPOSITE:
        return obj
    # mirrored within the range the centre travels in (it reflects off its ends), so the whole
    # path is mirrored; a triangle's range is not centred vertically
    left, right, top, bottom = margins(obj, vocab.SIZES[obj.size], width, height)
    x, y = obj.start
    start = (left + right - x, y) if obj.motion in ("left", "right") else (x, top + bottom - y)
    start = (min(max(start[0], 0.0), 1.0), min(max(start[1], 0.0), 1.0))
    return dataclasses.replace(obj, motion=OPPOSITE[obj.motion], start=start)


def mirrored(scene: Scene, width: int = 64, height: int = 64) -> Scene | None:
    """The scene with every left/right/up/down mover going the opposite way along the mirrored
    path (at this frame size); None when no object moves that way."""
    if not any(o.motion in OPPOSITE for o in scene.objects):
        return None
    objects = tuple(_mirror(o, width, height) for o in scene.objects)
    return dataclasses.replace(scene, objects=objects)


def caption_pair(scene: Scene, rng: random.Random | None) -> tuple[str, str | None]:
    """(caption, caption of the mirrored scene or None). rng None: canonical captions."""
    mirror = mirrored(scene)
    if rng is None:
        return canonical_caption(scene), None if mirror is None else canonical_caption(mirror)
    state = rng.getstate()
    text = caption(scene, rng)
    if mirror is None:
        return text, None
    after = rng.getstate()
    rng.setstate(state)
    mirror_text = caption(mirror, rng)
    rng.setstate(after)
    return text, mirror_text


def without_one(scene: Scene, drop: int) -> Scene | None:
    """The placed scene with its object number `drop` taken out, every other object where it
    was; None for a scene of one object."""
    if len(scene.objects) < 2:
        return None
    objects = tuple(o for i, o in enumerate(scene.objects) if i != drop % len(scene.objects))
    return dataclasses.replace(scene, objects=objects)


def canonical_captions(scene: Scene, other: Scene) -> tuple[str, str]:
    """Canonical captions of a count pair (or a shape pair): they differ only in the phrase of
    the object taken out or reshaped (paraphrases draw each object's synonyms from one stream,
    so changing one would change the words of the others too)."""
    return canonical_caption(scene), canonical_caption(other)


# circle and square have equal areas (kinema/world/motion.py SHAPE_EXTENTS): only corners differ
SWAPPED_SHAPE = {"circle": "square", "square": "circle"}


def reshaped(scene: Scene, pick: int) -> Scene | None:
    """The placed scene with one of its circles drawn as a square or one of its squares as a
    circle (the `pick`-th of those objects, modulo their number), every object where it was;
    None when the scene has neither."""
    swappable = [i for i, o in enumerate(scene.objects) if o.shape in SWAPPED_SHAPE]
    if not swappable:
        return None
    index = swappable[pick % len(swappable)]
    obj = scene.objects[index]
    objects = list(scene.objects)
    objects[index] = dataclasses.replace(obj, shape=SWAPPED_SHAPE[obj.shape])
    return dataclasses.replace(scene, objects=tuple(objects))
