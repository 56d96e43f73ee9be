"""Scene specs: frozen dataclasses that say everything about a Shapes-world clip.

Positions are fractions of the frame (x of the width, y of the height, y down); sizes are
fractions of the short side; times are seconds. A spec is independent of resolution and frame
rate, which is what lets one scene be rendered at any size, length and fps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from kinema.frame_budget import frames_over_budget
from kinema.world import vocab


class WorldError(ValueError):
    """A scene, caption or render request the Shapes world cannot take."""


def _check(kind: str, value: str, allowed) -> None:
    if value not in allowed:
        raise WorldError(f"unknown {kind} {value!r}; the world knows: {', '.join(allowed)}")


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str
    size: str = "medium"
    motion: str = "still"
    speed: str = "slow"
    start: tuple[float, float] = (0.5, 0.5)  # centre (x, y) at t = 0, frame fractions

    def __post_init__(self):
        _check("shape", self.shape, vocab.SHAPES)
        _check("color", self.color, vocab.COLORS)
        _check("size", self.size, vocab.SIZES)
        _check("motion", self.motion, vocab.MOTIONS)
        _check("speed", self.speed, vocab.SPEEDS)
        if self.motion == "still":
            object.__setattr__(self, "speed", "slow")  # speed means nothing when still
        x, y = self.start
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise WorldError(
                f"object start {self.start} is outside the frame; use values in [0, 1]"
            )
        object.__setattr__(self, "start", (float(x), float(y)))

    @property
    def is_moving(self) -> bool:
        return self.motion != "still"


@dataclass(frozen=True)
class Scene:
    objects: tuple[ObjectSpec, ...]
    background: str = "black"
    camera: str = "static"
    occluder: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # free-form notes

    def __post_init__(self):
        objects = tuple(self.objects)
        object.__setattr__(self, "objects", objects)
        if not 1 <= len(objects) <= vocab.MAX_OBJECTS:
            raise WorldError(f"a scene has 1 to {vocab.MAX_OBJECTS} objects, got {len(objects)}")
        _check("background", self.background, vocab.BACKGROUNDS)
        _check("camera", self.camera, vocab.CAMERAS)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        try:
            objects = tuple(
                ObjectSpec(**{**o, "start": tuple(o.get("start", (0.5, 0.5)))})
                for o in d["objects"]
            )
            rest = {k: d[k] for k in ("background", "camera", "occluder") if k in d}
        except (KeyError, TypeError) as e:
            raise WorldError(f"not a scene dict: {e}") from e
        return cls(objects=objects, **rest)


def check_render_request(width: int, height: int, num_frames: int, fps: float) -> None:
    """Raise WorldError for a size, length or frame rate no renderer can honour."""
    if int(width) != width or int(height) != height or width < 8 or height < 8:
        raise WorldError(f"frame size must be whole pixels >= 8, got {width}x{height}")
    if width * height > 4096 * 4096:
        raise WorldError(f"frame size {width}x{height} is larger than 4096x4096")
    if int(num_frames) != num_frames or num_frames < 1:
        raise WorldError(f"num_frames must be a positive integer, got {num_frames}")
    if not fps > 0:
        raise WorldError(f"fps must be positive, got {fps}")
    too_long = frames_over_budget(num_frames, width, height, fps)
    if too_long:
        raise WorldError(too_long)
