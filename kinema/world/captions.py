"""The caption grammar: one scene, many ways to say it.

`canonical_caption` gives the one plain form ("a red circle moving left on a black background");
`caption` draws a paraphrase (synonyms, word order, sentence or phrase form) from an rng, so a
text model trained on these captions has to understand language rather than a fixed template.
Every word the grammar can emit is in LEXICON or FILLER, which is what lets `parse_caption`
read any generated caption back into its scene.
"""

from __future__ import annotations

import random
from itertools import groupby

from kinema.world.spec import ObjectSpec, Scene

# word class -> canonical value -> synonyms (the first is the canonical word)
COLOR_WORDS = {
    "red": ["red", "crimson", "scarlet"],
    "green": ["green", "emerald", "lime"],
    "blue": ["blue", "azure", "cobalt"],
    "yellow": ["yellow", "golden", "lemon"],
    "white": ["white", "snowy", "ivory"],
    "purple": ["purple", "violet", "lilac"],
    "orange": ["orange", "tangerine", "amber"],
    "cyan": ["cyan", "turquoise", "aqua"],
}
SHAPE_WORDS = {
    "circle": ["circle", "ball", "disc", "dot"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "wedge"],
}
SIZE_WORDS = {
    "small": ["small", "tiny", "little"],
    "medium": ["medium", "medium-sized", "mid-sized"],
    "large": ["large", "big", "huge"],
}
SPEED_WORDS = {
    "slow": ["slowly", "gently", "at a slow pace", "leisurely"],
    "fast": ["quickly", "fast", "rapidly", "at high speed"],
}
DIRECTION_WORDS = {
    "left": ["left", "to the left", "leftward", "leftwards"],
    "right": ["right", "to the right", "rightward", "rightwards"],
    "up": ["up", "upward", "upwards"],
    "down": ["down", "downward", "downwards"],
    "diagonal": ["diagonally", "diagonally up and to the right", "toward the upper right"],
}
# Verbs of travel: (participle, third person singular, plural)
TRAVEL_VERBS = [
    ("moving", "moves", "move"),
    ("drifting", "drifts", "drift"),
    ("sliding", "slides", "slide"),
    ("gliding", "glides", "glide"),
    ("rolling", "rolls", "roll"),
    ("heading", "heads", "head"),
    ("travelling", "travels", "travel"),
]
# Non-directional motions: lists of (participle, singular, plural) phrases
MOTION_PHRASES = {
    "still": [
        ("standing still", "stands still", "stand still"),
        ("staying still", "stays still", "stay still"),
        ("resting in place", "rests in place", "rest in place"),
        ("not moving", "does not move", "do not move"),
    ],
    "bouncing": [
        ("bouncing", "bounces", "bounce"),
        ("bouncing up and down", "bounces up and down", "bounce up and down"),
        ("bouncing on the floor", "bounces on the floor", "bounce on the floor"),
        ("hopping", "hops", "hop"),
    ],
    "growing": [
        ("growing", "grows", "grow"),
        ("getting bigger", "gets bigger", "get bigger"),
        ("expanding", "expands", "expand"),
    ],
    "shrinking": [
        ("shrinking", "shrinks", "shrink"),
        ("getting smaller", "gets smaller", "get smaller"),
        ("contracting", "contracts", "contract"),
    ],
}
BACKGROUND_WORDS = {
    "black": ["black", "pitch-black", "jet-black"],
    "gray": ["gray", "grey", "slate-gray"],
    "navy": ["navy", "navy blue", "dark blue"],
    "gradient": ["gradient", "dusk gradient", "twilight gradient"],
    "checkered": ["checkered", "checkerboard", "chequered"],
}
BACKGROUND_NOUNS = ["background", "backdrop"]
OCCLUDER_PHRASES = [
    "with a pillar",
    "with a brown pillar in front",
    "behind a wooden pillar",
    "with a pillar in the foreground",
]
CAMERA_PHRASES = {
    "pan-left": ["the camera pans left", "camera panning left", "the camera panning to the left"],
    "pan-right": [
        "the camera pans right",
        "camera panning right",
        "the camera panning to the right",
    ],
}
NUMBER_WORDS = {2: "two", 3: "three"}

FILLER = {
    "a", "an", "the", "on", "over", "against", "and", "with", "while", "as", "in", "of",
    "is", "are", "there", "scene", "shows", "where", "set", "seen", "it", "its", "front",
    "foreground", "brown", "wooden", "pillar", "camera",
}  # fmt: skip


def plural(shape_word: str) -> str:
    return shape_word + ("es" if shape_word.endswith(("x", "s")) else "s")


def _motion_phrase(obj: ObjectSpec, form: int, rng: random.Random | None) -> str:
    """Say how an object moves. form 0: participle, 1: singular verb, 2: plural verb.

    With rng None this is the canonical phrase: first synonyms, speed said only when fast.
    """
    pick = (lambda xs: xs[0]) if rng is None else rng.choice
    if obj.motion in DIRECTION_WORDS:
        words = [pick(TRAVEL_VERBS)[form], pick(DIRECTION_WORDS[obj.motion])]
    else:
        words = [pick(MOTION_PHRASES[obj.motion])[form]]
    # Slow is the default: a caption may leave it unsaid, never a fast speed.
    says_speed = obj.speed == "fast" or (rng is not None and rng.random() < 0.6)
    if obj.motion != "still" and says_speed:
        adverb = pick(SPEED_WORDS[obj.speed])
        if rng is not None and adverb.endswith("ly") and rng.random() < 0.3:
            words.insert(0, adverb)  # "quickly drifts left"
        else:
            words.append(adverb)
    return " ".join(words)


def _object_phrase(obj: ObjectSpec, count: int, form: int, rng: random.Random | None) -> str:
    pick = (lambda xs: xs[0]) if rng is None else rng.choice
    shape = pick(SHAPE_WORDS[obj.shape])
    size = "" if rng is None and obj.size == "medium" else pick(SIZE_WORDS[obj.size])
    color = pick(COLOR_WORDS[obj.color])
    if count == 1:
        det = "an" if (size or color)[0] in "aeiou" else "a"
    else:
        det, shape, form = NUMBER_WORDS[count], plural(shape), min(form * 2, 2)
    return " ".join(w for w in (det, size, color, shape, _motion_phrase(obj, form, rng)) if w)


def _groups(scene: Scene) -> list[tuple[ObjectSpec, int]]:
    """Consecutive objects that read the same are said once with a number ("two red circles")."""

    def key(o: ObjectSpec):
        return (o.shape, o.color, o.size, o.motion, o.speed)

    groups = []
    for _, same in groupby(scene.objects, key):
        same = list(same)
        groups.append((same[0], len(same)))
    return groups


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _scene_suffix(scene: Scene, rng: random.Random | None) -> tuple[str, str]:
    pick = (lambda xs: xs[0]) if rng is None else rng.choice
    bg = f"{pick(BACKGROUND_WORDS[scene.background])} {pick(BACKGROUND_NOUNS)}"
    extras = []
    if scene.occluder:
        extras.append(pick(OCCLUDER_PHRASES))
    if scene.camera != "static":
        extras.append(
            ("while " if rng is None else pick(["while ", "as ", ""]))
            + pick(CAMERA_PHRASES[scene.camera])
        )
    return bg, " ".join(extras)


def canonical_caption(scene: Scene) -> str:
    """The plain form: `parse_caption(canonical_caption(s))` gives s back (up to positions)."""
    objects = _join([_object_phrase(o, n, 0, None) for o, n in _groups(scene)])
    bg, extras = _scene_suffix(scene, None)
    return " ".join(x for x in (objects, "on a", bg, extras) if x)


def caption(scene: Scene, rng: random.Random) -> str:
    """A random paraphrase of the scene."""
    groups = _groups(scene)
    bg, extras = _scene_suffix(scene, rng)
    preposition = rng.choice(["on a", "over a", "against a", "in front of a"])
    template = rng.randrange(3)
    if template == 0:  # phrase: "a red ball drifting left over a black backdrop"
        text = f"{_join([_object_phrase(o, n, 0, rng) for o, n in groups])} {preposition} {bg}"
    elif template == 1:  # sentence: "a red ball rolls to the left on a black backdrop"
        text = f"{_join([_object_phrase(o, n, 1, rng) for o, n in groups])} {preposition} {bg}"
    else:  # background first: "on a black backdrop, a red ball rolls left"
        text = f"{preposition} {bg}, {_join([_object_phrase(o, n, 1, rng) for o, n in groups])}"
    if extras:
        text += f", {extras}"
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text
