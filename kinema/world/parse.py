"""Read a caption back into a scene: any sentence the caption grammar can say, and plain forms
like "a red circle moving left on a black background".

Words are matched longest phrase first ("navy blue background" is a background, "bouncing up
and down" is one motion), then slotted: size and colour words wait for their shape noun, motion
and speed words attach to the last shape named. A word the world does not know is an error that
lists what it does know. Start positions are not in a caption: `place` chooses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kinema.world import captions as cap
from kinema.world import vocab
from kinema.world.spec import ObjectSpec, Scene, WorldError


def _lexicon() -> dict[tuple[str, ...], tuple[str, str]]:
    """phrase (tuple of words) -> (slot, canonical value)."""
    entries: dict[str, tuple[str, str]] = {}

    def add(slot: str, table: dict[str, list[str]]) -> None:
        for value, words in table.items():
            for w in [value, *words]:
                entries[w] = (slot, value)

    add("color", cap.COLOR_WORDS)
    add("size", cap.SIZE_WORDS)
    add("speed", cap.SPEED_WORDS)
    add("direction", cap.DIRECTION_WORDS)
    add("background", cap.BACKGROUND_WORDS)
    for shape, words in cap.SHAPE_WORDS.items():
        for w in words:
            entries[w] = entries[cap.plural(w)] = ("shape", shape)
    for forms in cap.TRAVEL_VERBS:
        for w in forms:
            entries[w] = ("travel", "")
    for motion, phrases in cap.MOTION_PHRASES.items():
        entries[motion] = ("motion", motion)
        for forms in phrases:
            for w in forms:
                entries[w] = ("motion", motion)
    for camera, phrases in cap.CAMERA_PHRASES.items():
        side = camera.split("-")[1]
        for p in [*phrases, f"pans {side}", f"panning {side}", f"pans to the {side}",
                  f"panning to the {side}", f"camera {camera}"]:  # fmt: skip
            entries[p] = ("camera", camera)
    for p in [*cap.OCCLUDER_PHRASES, "pillar", "occluder"]:
        entries[p] = ("occluder", "yes")
    for n, w in cap.NUMBER_WORDS.items():
        entries[w] = ("count", str(n))
    for w in cap.BACKGROUND_NOUNS:
        entries[w] = ("background-noun", "")
    for w in cap.FILLER:
        entries.setdefault(w, ("filler", ""))
    return {tuple(k.split()): v for k, v in entries.items()}


LEXICON = _lexicon()
LONGEST = max(len(k) for k in LEXICON)


def _known_words() -> str:
    v = vocab.vocabulary()
    return (
        f"shapes ({', '.join(v['shape'])}), colours ({', '.join(v['color'])}), "
        f"sizes ({', '.join(v['size'])}), motions ({', '.join(v['motion'])}), "
        f"speeds (slowly, quickly), backgrounds ({', '.join(v['background'])}), "
        "'with a pillar', 'the camera pans left/right', and their synonyms "
        "(`kinema world vocab` lists them all)"
    )


def tokenize(text: str) -> list[tuple[str, str, str]]:
    """Split into lexicon phrases: [(phrase, slot, value)], longest match first."""
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    leftovers = re.sub(r"[a-z]+(?:-[a-z]+)*|[\s,.;:!]", "", text.lower())
    if leftovers:
        raise WorldError(f"unexpected characters {leftovers[:20]!r} in caption {text!r}")
    out, i = [], 0
    while i < len(words):
        for n in range(min(LONGEST, len(words) - i), 0, -1):
            key = tuple(words[i : i + n])
            if key in LEXICON:
                out.append((" ".join(key), *LEXICON[key]))
                i += n
                break
        else:
            raise WorldError(
                f"unknown word {words[i]!r} in {text!r}; the world knows {_known_words()}"
            )
    return out


@dataclass
class _Described:
    shape: str
    color: str
    size: str
    count: int
    motion: str | None = None
    speed: str | None = None
    travels: bool = False
    words: list[str] = field(default_factory=list)


def parse_caption(text: str) -> Scene:
    """Caption -> Scene, objects at their default start; pass the result to `place`."""
    if not text or not text.strip():
        raise WorldError(
            "empty caption: describe at least one object, e.g. 'a red circle moving left'"
        )
    pending: dict[str, str] = {}
    objects: list[_Described] = []
    scene: dict[str, object] = {}
    tokens = tokenize(text)
    for k, (phrase, slot, value) in enumerate(tokens):
        if slot in ("size", "color", "count"):
            if slot in pending:
                raise WorldError(
                    f"two {slot}s ({pending[slot]!r} and {value!r}) for one object in {text!r}"
                )
            pending[slot] = value
        elif slot == "shape":
            if "color" not in pending:
                raise WorldError(
                    f"the {phrase} in {text!r} needs a colour: one of {', '.join(vocab.COLORS)}"
                )
            objects.append(
                _Described(
                    value,
                    pending["color"],
                    pending.get("size", "medium"),
                    int(pending.get("count", 1)),
                )
            )
            pending = {}
        elif slot in ("direction", "motion", "speed", "travel"):
            if not objects:
                raise WorldError(f"{phrase!r} comes before any object in {text!r}")
            obj = objects[-1]
            if slot == "travel":
                obj.travels = True
                continue
            attr = "speed" if slot == "speed" else "motion"
            if getattr(obj, attr) not in (None, value):
                raise WorldError(
                    f"the {obj.color} {obj.shape} in {text!r} has two {attr}s: {getattr(obj, attr)} and {value}"
                )
            setattr(obj, attr, value)
        elif slot == "background":
            nxt = tokens[k + 1][1] if k + 1 < len(tokens) else ""
            if nxt == "shape":
                raise WorldError(
                    f"{phrase!r} is a background colour, not an object colour; objects can be {', '.join(vocab.COLORS)}"
                )
            if scene.get("background", value) != value:
                raise WorldError(f"two backgrounds in {text!r}: {scene['background']} and {value}")
            scene["background"] = value
        elif slot == "camera":
            scene["camera"] = value
        elif slot == "occluder":
            scene["occluder"] = True
    if pending:
        raise WorldError(f"{' '.join(pending.values())!r} in {text!r} does not describe any shape")
    if not objects:
        raise WorldError(f"no object in {text!r}; name a shape: {', '.join(vocab.SHAPES)}")
    specs = []
    for obj in objects:
        if obj.travels and obj.motion is None:
            raise WorldError(
                f"the {obj.color} {obj.shape} in {text!r} moves but no direction is given"
            )
        spec = ObjectSpec(
            obj.shape, obj.color, obj.size, obj.motion or "still", obj.speed or "slow"
        )
        specs.extend([spec] * obj.count)
    if len(specs) > vocab.MAX_OBJECTS:
        raise WorldError(
            f"{text!r} describes {len(specs)} objects; the world holds at most {vocab.MAX_OBJECTS}"
        )
    return Scene(tuple(specs), **scene)
